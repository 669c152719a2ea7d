// cachestore/detail/fork_safe_mutex.hpp - a mutex that fork() never leaves
// locked in the child.
//
// A store whose own background thread may hold a mutex (the POSIX store's
// sweeper) cannot ask its users not to fork while it runs. pthread_atfork
// handlers therefore take every live fork_safe_mutex before fork() and
// release them after it, in the parent and in the child: the child sees the
// state each one guards whole, and unlocked. Rules for users of this class:
// hold one only for short, bounded work (fork waits for it) and never while
// calling the caller's code; never create or destroy one while holding one
// (fork's handlers take the registry first, then each mutex); when two are
// held together, take them in the order they were made. Locks held around
// caller code or I/O are per process instead (fork_generation.hpp).
#pragma once

#include <pthread.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <type_traits>
#include <vector>

namespace cachestore::detail {

/// The registry every fork-safe mutex of the process is in: fork's prepare
/// handler locks them all (in the order they were made), the parent and child
/// handlers unlock them. Never destroyed (a fork during static destruction
/// must still find it).
class fork_registry {
public:
    struct entry {
        void* mutex;
        void (*lock)(void*);
        void (*unlock)(void*);       ///< in the parent
        void (*child_unlock)(void*); ///< in the child (whose thread ids differ)
    };
    static void add(entry e) {
        auto& r = get();
        const std::lock_guard lk(r.mu_);
        r.all_.push_back(e);
    }
    static void remove(const void* m) {
        auto& r = get();
        const std::lock_guard lk(r.mu_);
        r.all_.erase(std::remove_if(r.all_.begin(), r.all_.end(), [m](const entry& e) { return e.mutex == m; }),
                     r.all_.end());
    }

private:
    static fork_registry& get() {
        static fork_registry* r = [] {
            auto* made = new fork_registry; // NOLINT(cppcoreguidelines-owning-memory): lives as long as the process
            ::pthread_atfork(&fork_registry::prepare, &fork_registry::in_parent, &fork_registry::in_child);
            return made;
        }();
        return *r;
    }
    static void prepare() {
        auto& r = get();
        r.mu_.lock();
        for (const entry& e : r.all_) e.lock(e.mutex);
    }
    // The forking thread holds them all here: any order.
    static void in_parent() {
        auto& r = get();
        for (const entry& e : r.all_) e.unlock(e.mutex);
        r.mu_.unlock();
    }
    static void in_child() {
        auto& r = get();
        for (const entry& e : r.all_) e.child_unlock(e.mutex);
        r.mu_.unlock();
    }
    std::mutex mu_;
    std::vector<entry> all_;
};

/// `M` (std::mutex, std::shared_mutex), never inherited locked by a child.
template <class M>
class basic_fork_safe_mutex {
public:
    basic_fork_safe_mutex() {
        fork_registry::add({&mu_, [](void* m) { static_cast<M*>(m)->lock(); },
                            [](void* m) { static_cast<M*>(m)->unlock(); }, &child_unlock});
    }
    ~basic_fork_safe_mutex() { fork_registry::remove(&mu_); }
    basic_fork_safe_mutex(const basic_fork_safe_mutex&) = delete;
    basic_fork_safe_mutex& operator=(const basic_fork_safe_mutex&) = delete;
    basic_fork_safe_mutex(basic_fork_safe_mutex&&) = delete;
    basic_fork_safe_mutex& operator=(basic_fork_safe_mutex&&) = delete;

    void lock() { mu_.lock(); }
    void unlock() { mu_.unlock(); }
    bool try_lock() { return mu_.try_lock(); }
    void lock_shared()
        requires requires(M& m) { m.lock_shared(); }
    {
        mu_.lock_shared();
    }
    void unlock_shared()
        requires requires(M& m) { m.unlock_shared(); }
    {
        mu_.unlock_shared();
    }

private:
    /// A pthread mutex is unlocked by whoever holds it; a pthread rwlock
    /// held for writing knows its writer by thread id, which the child's
    /// thread does not share: the child makes it anew (unlocked, and
    /// nothing else can hold it there).
    static void child_unlock(void* m) {
        if constexpr (std::is_same_v<M, std::mutex>) static_cast<M*>(m)->unlock();
        else std::construct_at(static_cast<M*>(m));
    }
    M mu_;
};

using fork_safe_mutex = basic_fork_safe_mutex<std::mutex>;
using fork_safe_shared_mutex = basic_fork_safe_mutex<std::shared_mutex>;

} // namespace cachestore::detail
