// cachestore/detail/epoll_loop.hpp - a small event loop on epoll: descriptor
// readiness, one timer, and work posted from any thread (docs/async.md, "Own
// loop and host loop": the S3 engine's built-in driver).
//
// One thread runs the loop (run_for); it alone calls watch, unwatch and
// arm_timer, from inside callbacks too. post() may be called from any
// thread. The epoll descriptor, fd(), is readable whenever run_for(0) has
// something to do, so another event loop (nginx, libuv, libevent) can embed
// this one by watching that single descriptor.
//
// fork(): an epoll instance and an eventfd are shared with a child, so a child
// must never use a loop its parent made (its epoll_ctl would change the
// parent's interest set, its writes wake the parent's loop). A child only
// abandon()s it: closes its copies, no other system call.
#pragma once

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "cachestore/detail/fork_safe_mutex.hpp"

namespace cachestore::detail {

class epoll_loop {
public:
    using clock = std::chrono::steady_clock;
    /// Called with the descriptor and what it is ready for (`readable`,
    /// `writable`, `failed`, or'ed).
    using io_fn = void (*)(void* self, int fd, unsigned ready);
    using timer_fn = void (*)(void* self);

    static constexpr unsigned readable = 1U, writable = 2U, failed = 4U;

    epoll_loop() noexcept : ep_(::epoll_create1(EPOLL_CLOEXEC)), wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
        if (ep_ < 0 || wake_ < 0) return;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = wake_tag; // the wake-up descriptor
        if (::epoll_ctl(ep_, EPOLL_CTL_ADD, wake_, &ev) != 0) close_all();
    }
    epoll_loop(const epoll_loop&) = delete;
    epoll_loop& operator=(const epoll_loop&) = delete;
    epoll_loop(epoll_loop&&) = delete;
    epoll_loop& operator=(epoll_loop&&) = delete;
    ~epoll_loop() { close_all(); }

    /// False when the kernel refused an epoll instance or an eventfd.
    [[nodiscard]] bool ok() const noexcept { return ep_ >= 0 && wake_ >= 0; }

    /// The epoll descriptor: readable when run_for(0) has work.
    [[nodiscard]] int fd() const noexcept { return ep_; }

    /// Loop thread: calls `fn(self, fd, ready)` when `fd` is ready for
    /// `interest` (`readable`, `writable` or both); called again for a
    /// watched descriptor, it changes the interest. The descriptor stays the
    /// caller's (never closed here). False if epoll refused it.
    bool watch(int fd, unsigned interest, io_fn fn, void* self) {
        if (fd < 0) return false;
        if (regs_.size() <= static_cast<std::size_t>(fd)) regs_.resize(static_cast<std::size_t>(fd) + 1);
        reg& r = regs_[static_cast<std::size_t>(fd)];
        epoll_event ev{};
        ev.events = ((interest & readable) != 0 ? EPOLLIN : 0U) | ((interest & writable) != 0 ? EPOLLOUT : 0U);
        if (r.fn != nullptr || r.parked) {
            const bool was_parked = r.parked;
            bool ok = r.events == ev.events; // the same interest (a parked descriptor's usual case): no system call
            if (!ok) {
                ev.data.u64 = tag(fd, r.gen);
                ok = ::epoll_ctl(ep_, EPOLL_CTL_MOD, fd, &ev) == 0;
            }
            if (ok || !was_parked) {
                if (was_parked) ++watched_;
                r.fn = fn;
                r.self = self;
                r.parked = false;
                if (ok) r.events = ev.events;
                return ok;
            }
            drop(fd); // a parked registration the kernel no longer has: registered anew below
        }
        ev.data.u64 = tag(fd, r.gen + 1); // a new registration: events of an earlier one are not its own
        if (::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) return false;
        r = reg{fn, self, r.gen + 1, ev.events, false};
        ++watched_;
        return true;
    }

    /// Loop thread: stops watching `fd` (before the caller closes it). No
    /// callback for it runs afterwards, not even one already reported in the
    /// batch being dispatched.
    void unwatch(int fd) {
        if (fd < 0 || static_cast<std::size_t>(fd) >= regs_.size()) return;
        reg& r = regs_[static_cast<std::size_t>(fd)];
        if (r.fn == nullptr && !r.parked) return;
        if (!r.parked) --watched_;
        drop(fd);
    }

    /// Loop thread: stops calling back for `fd` (as unwatch) but keeps the
    /// kernel's registration, so that watching it again for the same
    /// interest costs no system call: for a connection that goes idle
    /// between requests (the multi handle unwatches a kept connection after
    /// every transfer). The caller must unwatch() it before closing it: a
    /// registration outlives a close while a forked child holds a copy. An
    /// event for a parked descriptor (the peer closed it) ends its
    /// registration.
    void park(int fd) {
        if (fd < 0 || static_cast<std::size_t>(fd) >= regs_.size()) return;
        reg& r = regs_[static_cast<std::size_t>(fd)];
        if (r.fn == nullptr) return;
        r.fn = nullptr; // an event of it still pending in this batch is dropped
        r.parked = true;
        --watched_;
    }

    /// Descriptors watched now.
    [[nodiscard]] std::size_t watched() const noexcept { return watched_; }

    /// Loop thread: calls `fn(self)` once, `after` from now; replaces the
    /// timer armed before. A negative `after` disarms it.
    void arm_timer(std::chrono::milliseconds after, timer_fn fn, void* self) {
        if (after.count() < 0) {
            timer_at_ = clock::time_point::max();
            return;
        }
        timer_at_ = clock::now() + after;
        timer_fn_ = fn;
        timer_self_ = self;
    }

    /// When the armed timer is due (time_point::max() when none): a host loop
    /// embedding this one through fd() calls run_for(0) then too.
    [[nodiscard]] clock::time_point timer_at() const noexcept { return timer_at_; }

    /// Any thread: runs `fn` on the loop thread, in the order posted. Wakes
    /// the loop only when the queue was empty: no system call per post while
    /// the loop is busy.
    void post(std::move_only_function<void()> fn) {
        bool was_empty = false;
        {
            std::lock_guard lock(mu_);
            was_empty = posted_.empty();
            posted_.push_back(std::move(fn));
        }
        if (was_empty) {
            const std::uint64_t one = 1;
            while (::write(wake_, &one, sizeof one) < 0 && errno == EINTR) {
            }
        }
    }

    /// Loop thread: waits at most `timeout` (0: not at all) for a ready
    /// descriptor, the timer or posted work, and runs their callbacks: posted
    /// work first, then descriptors, then a due timer. Returns how many
    /// callbacks ran.
    std::size_t run_for(std::chrono::milliseconds timeout) {
        std::size_t ran = run_posted();
        const auto now = clock::now();
        auto wait = timeout;
        if (timer_at_ != clock::time_point::max()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(timer_at_ - now);
            wait = std::max(std::chrono::milliseconds(0), std::min(wait, left));
        }
        if (ran != 0) wait = std::chrono::milliseconds(0);
        std::array<epoll_event, 64> evs{};
        int n = ::epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), static_cast<int>(wait.count()));
        if (n < 0) n = 0; // EINTR: the caller loops
        for (int i = 0; i < n; ++i) {
            const std::uint64_t t = evs[static_cast<std::size_t>(i)].data.u64;
            if (t == wake_tag) {
                std::uint64_t v = 0;
                while (::read(wake_, &v, sizeof v) < 0 && errno == EINTR) {
                }
                continue;
            }
            const auto fd = static_cast<std::size_t>(t & 0xffffffffU);
            if (fd >= regs_.size()) continue;
            reg& r = regs_[fd];
            if (r.gen != static_cast<std::uint32_t>(t >> 32)) continue; // unwatched (and watched again) in this batch
            if (r.fn == nullptr) {
                if (r.parked) drop(static_cast<int>(fd)); // idle and ready: the peer closed it, or sent unasked
                continue;
            }
            const std::uint32_t e = evs[static_cast<std::size_t>(i)].events;
            const unsigned ready = ((e & EPOLLIN) != 0 ? readable : 0U) | ((e & EPOLLOUT) != 0 ? writable : 0U) |
                                   ((e & (EPOLLERR | EPOLLHUP)) != 0 ? failed : 0U);
            r.fn(r.self, static_cast<int>(fd), ready);
            ++ran;
        }
        if (timer_at_ != clock::time_point::max() && clock::now() >= timer_at_) {
            timer_at_ = clock::time_point::max(); // one-shot; the callback may arm it again
            timer_fn_(timer_self_);
            ++ran;
        }
        return ran + run_posted();
    }

    /// In a forked child: closes this process's copies of the descriptors
    /// without touching the parent's epoll interest set. The loop is dead.
    void abandon() noexcept {
        regs_.clear();
        watched_ = 0;
        close_all();
    }

private:
    /// One descriptor's registration, indexed by its number: no allocation
    /// per watch. `gen` counts its registrations; an event carries the one
    /// it was reported for, so an event of an unwatched (or unwatched and
    /// watched again) descriptor is dropped.
    struct reg {
        io_fn fn = nullptr;
        void* self = nullptr;
        std::uint32_t gen = 0;
        std::uint32_t events = 0; ///< the kernel's interest while registered
        bool parked = false;      ///< registered, no callback (park)
    };
    static constexpr std::uint64_t wake_tag = ~std::uint64_t{0};
    static std::uint64_t tag(int fd, std::uint32_t gen) noexcept {
        return (std::uint64_t{gen} << 32) | static_cast<std::uint32_t>(fd);
    }

    /// Ends `fd`'s kernel registration (fails harmlessly if the caller
    /// already closed it).
    void drop(int fd) noexcept {
        ::epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
        reg& r = regs_[static_cast<std::size_t>(fd)];
        r.fn = nullptr;
        r.parked = false;
    }

    std::size_t run_posted() {
        std::vector<std::move_only_function<void()>> batch;
        {
            std::lock_guard lock(mu_);
            batch.swap(posted_);
        }
        for (auto& f : batch) f();
        return batch.size();
    }

    void close_all() noexcept {
        if (wake_ >= 0) ::close(wake_);
        if (ep_ >= 0) ::close(ep_);
        wake_ = ep_ = -1;
    }

    int ep_;
    int wake_;
    std::vector<reg> regs_; ///< by descriptor number
    std::size_t watched_ = 0;
    clock::time_point timer_at_ = clock::time_point::max();
    timer_fn timer_fn_ = nullptr;
    void* timer_self_ = nullptr;
    fork_safe_mutex mu_; ///< a child never inherits it locked
    std::vector<std::move_only_function<void()>> posted_;
};

} // namespace cachestore::detail
