// cachestore/fill/detail/fill_pool.hpp - the threads fills run on, which are
// also the origin cap (docs/fill.md R3, R8).
//
// At most `cap` jobs run at once, each on a thread of the pool (started as
// needed, up to `cap`, kept until the pool is destroyed). A job waits in a
// FIFO queue for a thread; one still queued `queue_timeout` after it was
// submitted is not run: its `expired` callback runs instead, on the pool's
// timer thread (which sleeps until the oldest queued job's time is up), so the
// job can fail its flight with `unavailable` on time even while every thread
// is busy. With `no_timeout` a job waits as long as it takes (no timer thread:
// the engine's commit queue is such a pool, of one thread). Destroying the pool runs `expired`
// for every queued job (with `stopping` true) and joins the threads after
// their running jobs end; a job sees the pool stopping through the stop token
// it is given.
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

namespace cachestore::fill::detail {

class fill_pool {
public:
    using clock = std::chrono::steady_clock;
    struct job {
        std::function<void(std::stop_token)> run;   ///< the fill; must not throw
        std::function<void(bool stopping)> expired; ///< instead of run: queued too long, or the pool stops; must not throw
        clock::time_point queued{};
    };
    struct gauges {
        std::size_t running = 0; ///< jobs running now (origin fetches and commits in flight)
        std::size_t queued = 0;  ///< jobs waiting for a thread
        std::size_t threads = 0;
    };

    static constexpr clock::duration no_timeout = clock::duration::zero();

    /// `queue_timeout` <= 0 is no_timeout.
    fill_pool(std::size_t cap, clock::duration queue_timeout) : cap_(cap == 0 ? 1 : cap), timeout_(queue_timeout) {}
    fill_pool(const fill_pool&) = delete;
    fill_pool& operator=(const fill_pool&) = delete;

    ~fill_pool() {
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
        for (auto& t : threads_) t.join();
        if (timer_.joinable()) timer_.join();
    }

    /// Queues `j`; a thread runs it when one is free (starting one if fewer
    /// than `cap` exist and none is idle). Called while stopping: `expired(true)` now.
    void submit(job j) {
        std::unique_lock lk(mu_);
        if (stopping_) {
            lk.unlock();
            j.expired(true);
            return;
        }
        j.queued = clock::now();
        queue_.push_back(std::move(j));
        if (idle_ == 0 && threads_.size() < cap_) threads_.emplace_back([this] { work(); });
        if (!timer_.joinable() && timeout_ > no_timeout) timer_ = std::thread([this] { expire(); });
        lk.unlock();
        cv_.notify_one();
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

    /// The timer thread: runs `expired(false)` for each job still queued
    /// `timeout_` after it was submitted (the queue is in submission order).
    void expire() {
        std::unique_lock lk(mu_);
        while (!stopping_) {
            if (queue_.empty()) {
                timer_cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
                continue;
            }
            const auto due = queue_.front().queued + timeout_;
            if (clock::now() < due) {
                timer_cv_.wait_until(lk, due);
                continue;
            }
            std::vector<job> late;
            while (!queue_.empty() && clock::now() >= queue_.front().queued + timeout_) {
                late.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
            lk.unlock();
            for (auto& j : late) j.expired(false);
            late.clear();
            lk.lock();
        }
    }

    const std::size_t cap_;
    const clock::duration timeout_;
    mutable std::mutex mu_;
    std::condition_variable cv_;       ///< workers: a job is queued, or the pool stops
    std::condition_variable timer_cv_; ///< the timer: the same, woken with the workers
    std::deque<job> queue_;
    std::vector<std::thread> threads_;
    std::thread timer_;
    std::stop_source stop_;
    std::size_t idle_ = 0, running_ = 0, peak_ = 0;
    bool stopping_ = false;
};

} // namespace cachestore::fill::detail
