// cachestore/detail/thread_pool.hpp - a bounded pool of threads with a FIFO
// queue whose jobs can end without running. The fill engine's origin cap and
// commit queue (docs/fill.md R3, R7, R8), the tiered store's promotions and
// pooled_async (docs/async.md) run on it.
//
// At most `cap` jobs run at once, each on a thread of the pool (started as
// needed, up to `cap`, kept until the pool is destroyed). A job waits in a
// FIFO queue for a thread. One still queued when it is due is not run: its
// `expired(false)` runs instead, on the pool's timer thread. A job is due
// `queue_timeout` after it was submitted (unless that is `no_timeout`), at its
// own `deadline`, or as soon as its `stop` token is stopped and `kick()` is
// called (pooled_async calls it from a stop callback). The timer thread starts
// with the first job that can be due, so a pool of jobs that never expire (the
// commit queue) has none. Destroying the pool runs `expired(true)` for every
// queued job and joins the threads after their running jobs end; a job sees
// the pool stopping through the stop token it is given.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

namespace cachestore::detail {

class thread_pool {
public:
    using clock = std::chrono::steady_clock;
    struct job {
        std::move_only_function<void(std::stop_token)> run;    ///< must not throw
        std::move_only_function<void(bool stopping)> expired;  ///< instead of run (see above); must not throw
        clock::time_point deadline = clock::time_point::max(); ///< due then, if still queued
        std::stop_token stop{};                                ///< due when stopped (after a kick())
        clock::time_point queued{};                            ///< set by submit
    };
    struct gauges {
        std::size_t running = 0; ///< jobs running now (origin fetches and commits in flight)
        std::size_t queued = 0;  ///< jobs waiting for a thread
        std::size_t threads = 0;
    };

    static constexpr clock::duration no_timeout = clock::duration::zero();

    /// `queue_timeout` <= 0 is no_timeout.
    thread_pool(std::size_t cap, clock::duration queue_timeout) : cap_(cap == 0 ? 1 : cap), timeout_(queue_timeout) {}
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;

    ~thread_pool() {
        std::deque<job> left;
        {
            const std::lock_guard lk(mu_);
            stopping_ = true;
            left.swap(queue_);
        }
        stop_.request_stop();
        cv_.notify_all();
        timer_cv_.notify_all();
        for (auto& j : left) j.expired(true);
        left.clear();
        for (auto& t : threads_) t.join();
        if (timer_.joinable()) timer_.join();
    }

    /// Queues `j`; a thread runs it when one is free (starting one if fewer
    /// than `cap` exist and the idle ones are all spoken for). Called while stopping: `expired(true)` now.
    void submit(job j) {
        std::unique_lock lk(mu_);
        if (stopping_) {
            lk.unlock();
            j.expired(true);
            return;
        }
        j.queued = clock::now();
        const bool can_expire =
            timeout_ > no_timeout || j.deadline != clock::time_point::max() || j.stop.stop_possible();
        const bool sooner = due(j) < next_due_;
        queue_.push_back(std::move(j));
        // A thread per queued job the idle ones will not take: a burst of
        // submits while one thread is idle starts more than that one.
        if (queue_.size() > idle_ && threads_.size() < cap_) threads_.emplace_back([this] { work(); });
        if (can_expire && !timer_.joinable()) timer_ = std::thread([this] { expire(); });
        lk.unlock();
        cv_.notify_one();
        if (sooner) timer_cv_.notify_one();
    }

    /// Wakes the timer thread to look for queued jobs whose stop token was
    /// stopped. Safe from any thread, a stop callback included.
    void kick() {
        { const std::lock_guard lk(mu_); }
        timer_cv_.notify_one();
    }

    [[nodiscard]] gauges now() const {
        const std::lock_guard lk(mu_);
        return {running_, queue_.size(), threads_.size()};
    }

    /// The most jobs that ever ran at once (the cap is never exceeded: a test's check).
    [[nodiscard]] std::size_t peak_running() const {
        const std::lock_guard lk(mu_);
        return peak_;
    }

private:
    [[nodiscard]] clock::time_point due(const job& j) const {
        return timeout_ > no_timeout ? std::min(j.deadline, j.queued + timeout_) : j.deadline;
    }

    void work() {
        std::unique_lock lk(mu_);
        for (;;) {
            ++idle_;
            cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
            --idle_;
            if (stopping_ && queue_.empty()) return;
            job j = std::move(queue_.front());
            queue_.pop_front();
            ++running_;
            peak_ = std::max(peak_, running_);
            lk.unlock();
            j.run(stop_.get_token());
            j = job{}; // its captures go before the lock is taken again
            lk.lock();
            --running_;
        }
    }

    /// The timer thread: takes every queued job that is due or stopped, runs
    /// its `expired(false)` outside the lock, and sleeps until the next due
    /// time (or a submit with a sooner one, or a kick).
    void expire() {
        std::unique_lock lk(mu_);
        std::vector<job> late;
        while (!stopping_) {
            const auto t = clock::now();
            next_due_ = clock::time_point::max();
            for (auto it = queue_.begin(); it != queue_.end();) {
                if (due(*it) <= t || it->stop.stop_requested()) {
                    late.push_back(std::move(*it));
                    it = queue_.erase(it);
                } else {
                    next_due_ = std::min(next_due_, due(*it));
                    ++it;
                }
            }
            if (!late.empty()) {
                lk.unlock();
                for (auto& j : late) j.expired(false);
                late.clear();
                lk.lock();
                continue;
            }
            if (next_due_ == clock::time_point::max())
                timer_cv_.wait(lk);
            else
                timer_cv_.wait_until(lk, next_due_);
        }
    }

    const std::size_t cap_;
    const clock::duration timeout_;
    mutable std::mutex mu_;
    std::condition_variable cv_;       ///< workers: a job is queued, or the pool stops
    std::condition_variable timer_cv_; ///< the timer: a sooner job, a kick, or the pool stops
    std::deque<job> queue_;
    std::vector<std::thread> threads_;
    std::thread timer_;
    std::stop_source stop_;
    clock::time_point next_due_ = clock::time_point::max(); ///< the timer's next wake-up
    std::size_t idle_ = 0, running_ = 0, peak_ = 0;
    bool stopping_ = false;
};

} // namespace cachestore::detail
