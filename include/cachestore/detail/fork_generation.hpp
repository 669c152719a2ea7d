// cachestore/detail/fork_generation.hpp - which process this is, cheaply.
//
// State that belongs to one process (a thread, a condition variable someone
// waits on, a lock a vanished thread may hold) must not be used by a child
// forked from it. getpid() tells, but it is a system call on every use;
// fork_generation() is one atomic load: a pthread_atfork handler counts the
// forks this process descends from. State records the generation it was made
// in and is replaced (never destroyed: see per_process) when it differs.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>

namespace cachestore::detail {

namespace fork_detail {
inline std::atomic<std::uint64_t> generation{0};
inline void count_fork() noexcept { generation.fetch_add(1, std::memory_order_relaxed); }
} // namespace fork_detail

/// 0 in a process that was not forked since the first call, and a new value
/// in every child forked after it. The first call installs the handler:
/// call it when the state that depends on it is made (before any fork).
[[nodiscard]] inline std::uint64_t fork_generation() noexcept {
    static const bool installed = [] {
        ::pthread_atfork(nullptr, nullptr, &fork_detail::count_fork);
        return true;
    }();
    (void)installed;
    return fork_detail::generation.load(std::memory_order_relaxed);
}

/// A `T` for each process: the one made in this process, or, in a child
/// forked since, a fresh one made on the child's first use. The parent's copy
/// is left alone in the child, never used nor destroyed: a thread that does
/// not exist there may hold its lock or wait on its condition variable
/// (destroying those would block forever, and a std::thread object of the
/// parent's would terminate the child).
template <class T>
class per_process {
public:
    template <class... Args>
    explicit per_process(Args&&... args) : cur_(new slot(fork_generation(), std::forward<Args>(args)...)) {}
    per_process(const per_process&) = delete;
    per_process& operator=(const per_process&) = delete;
    ~per_process() {
        slot* s = cur_.load(std::memory_order_acquire);
        if (s->gen == fork_generation()) delete s; // else the parent's: leaked on purpose
    }

    /// This process's T. A child's first call default-constructs the child's
    /// and calls `init(inherited, fresh)`, where `inherited` is the parent's:
    /// read only what is safe to read of it (try_lock its mutex, never wait).
    template <class Init>
    T& get(Init&& init) {
        slot* s = cur_.load(std::memory_order_acquire);
        const std::uint64_t gen = fork_generation();
        if (s->gen == gen) return s->value;
        auto fresh = std::make_unique<slot>(gen);
        init(s->value, fresh->value);
        if (cur_.compare_exchange_strong(s, fresh.get(), std::memory_order_acq_rel)) return fresh.release()->value;
        return s->value; // another thread of this child made it first
    }
    T& get() {
        return get([](T&, T&) {});
    }

    /// This process's T if it made one, else nullptr (nothing is made).
    [[nodiscard]] T* mine_or_null() const noexcept {
        slot* s = cur_.load(std::memory_order_acquire);
        return s->gen == fork_generation() ? &s->value : nullptr;
    }

private:
    struct slot {
        template <class... Args>
        explicit slot(std::uint64_t g, Args&&... args) : gen(g), value(std::forward<Args>(args)...) {}
        std::uint64_t gen;
        T value;
    };
    std::atomic<slot*> cur_;
};

} // namespace cachestore::detail
