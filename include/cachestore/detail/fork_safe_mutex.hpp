// cachestore/detail/fork_safe_mutex.hpp - a mutex that fork() never leaves
// locked in the child.
//
// A store whose own background thread may hold a mutex (the POSIX store's
// sweeper) cannot ask its users not to fork while it runs. pthread_atfork
// handlers therefore take every live fork_safe_mutex before fork() and
// release them after it, in the parent and in the child: the child sees the
// state each one guards whole, and unlocked. Rule for users of this class:
// never create or destroy a fork_safe_mutex while holding one (fork's
// handlers take the registry first, then each mutex).
#pragma once

#include <pthread.h>

#include <algorithm>
#include <mutex>
#include <vector>

namespace cachestore::detail {

class fork_safe_mutex {
public:
    fork_safe_mutex() { registry::add(this); }
    ~fork_safe_mutex() { registry::remove(this); }
    fork_safe_mutex(const fork_safe_mutex&) = delete;
    fork_safe_mutex& operator=(const fork_safe_mutex&) = delete;
    fork_safe_mutex(fork_safe_mutex&&) = delete;
    fork_safe_mutex& operator=(fork_safe_mutex&&) = delete;

    void lock() { mu_.lock(); }
    void unlock() { mu_.unlock(); }
    bool try_lock() { return mu_.try_lock(); }

private:
    /// Every live fork_safe_mutex of the process. Never destroyed (a fork
    /// during static destruction must still find it).
    class registry {
    public:
        static void add(fork_safe_mutex* m) {
            auto& r = get();
            const std::lock_guard lk(r.mu_);
            r.all_.push_back(m);
        }
        static void remove(fork_safe_mutex* m) {
            auto& r = get();
            const std::lock_guard lk(r.mu_);
            r.all_.erase(std::remove(r.all_.begin(), r.all_.end(), m), r.all_.end());
        }

    private:
        static registry& get() {
            static registry* r = [] {
                auto* made = new registry; // NOLINT(cppcoreguidelines-owning-memory): lives as long as the process
                ::pthread_atfork(&registry::prepare, &registry::after, &registry::after);
                return made;
            }();
            return *r;
        }
        static void prepare() {
            auto& r = get();
            r.mu_.lock();
            for (fork_safe_mutex* m : r.all_) m->mu_.lock();
        }
        static void after() { // in the parent and in the child: the forking thread holds them all
            auto& r = get();
            for (fork_safe_mutex* m : r.all_) m->mu_.unlock(); // any order: all are held here
            r.mu_.unlock();
        }
        std::mutex mu_;
        std::vector<fork_safe_mutex*> all_;
    };

    std::mutex mu_;
};

} // namespace cachestore::detail
