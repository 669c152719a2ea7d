// cachestore/fill/detail/commit_queue.hpp - commit after serve, off the fill
// threads (docs/fill.md, R6, R7).
//
// One thread runs the queued commits in order. The queue is bounded by the
// bytes it holds: a commit that does not fit is refused at once (the caller
// counts it dropped: the next miss fills the chunk again), so a slow store
// never holds an origin slot or a reader. Destroying the queue drops what is
// queued (each job's `drop` runs), stops the running commit through its stop
// token and joins the thread.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <stop_token>
#include <thread>
#include <utility>

namespace cachestore::fill::detail {

class commit_queue {
public:
    struct job {
        std::size_t bytes = 0;
        std::function<void(std::stop_token)> run; ///< the commit; must not throw
        std::function<void()> drop;               ///< instead of run, when the queue is destroyed first; must not throw
    };

    explicit commit_queue(std::size_t limit_bytes) : limit_(limit_bytes) {}
    commit_queue(const commit_queue&) = delete;
    commit_queue& operator=(const commit_queue&) = delete;

    ~commit_queue() {
        std::deque<job> left;
        {
            const std::lock_guard lk(mu_);
            stopping_ = true;
            left.swap(queue_);
        }
        stop_.request_stop();
        cv_.notify_all();
        for (auto& j : left) j.drop();
        if (thread_.joinable()) thread_.join();
    }

    /// Queues `j` if its bytes fit beside those queued; false (nothing
    /// queued, nothing called) when they do not, or the queue is stopping.
    [[nodiscard]] bool push(job&& j) {
        {
            const std::lock_guard lk(mu_);
            if (stopping_ || j.bytes > limit_ - std::min(limit_, queued_bytes_)) return false;
            queued_bytes_ += j.bytes;
            queue_.push_back(std::move(j));
            if (!thread_.joinable()) thread_ = std::thread([this] { work(); });
        }
        cv_.notify_one();
        return true;
    }

    /// Bytes queued or being committed.
    [[nodiscard]] std::size_t queued_bytes() const {
        const std::lock_guard lk(mu_);
        return queued_bytes_;
    }

private:
    void work() {
        std::unique_lock lk(mu_);
        for (;;) {
            cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return; // stopping
            job j = std::move(queue_.front());
            queue_.pop_front();
            lk.unlock();
            j.run(stop_.get_token());
            const std::size_t done = j.bytes;
            j = job{}; // its captures (the chunk's buffer) go before the bytes are given back
            lk.lock();
            queued_bytes_ -= done;
        }
    }

    const std::size_t limit_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<job> queue_;
    std::size_t queued_bytes_ = 0;
    std::thread thread_;
    std::stop_source stop_;
    bool stopping_ = false;
};

} // namespace cachestore::fill::detail
