// cachestore/s3/detail/async_engine.hpp - the S3 driver's async engine
// (docs/async.md, "The engine"): hosts async_machine's loop, on a thread of
// its own or on the host's (run_for, fd, next_timeout), and is the way in
// from other threads: initiation and resume() post to the loop, which runs
// every sink, completion and observer. Shutdown completes every operation
// with `cancelled`.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <utility>

#include "cachestore/s3/detail/async_machine.hpp"
#include "cachestore/s3/detail/async_op.hpp"
#include "cachestore/s3/detail/state.hpp"

namespace cachestore::s3::detail {

/// The engine whose loop this thread is running (waiting<> refuses to block
/// there), or null.
inline thread_local const void* engine_current = nullptr;

class async_engine : public async_machine {
public:
    async_engine(store_state& st, engine_options o) : async_machine(st, std::move(o)) {
        if (!loop_.ok() || !driver_.ok()) return;
        if (!opts_.own_thread) {
            ready_ = true;
            return;
        }
        thread_ = std::thread([this] { run(); });
        ready_ = true;
    }
    async_engine(const async_engine&) = delete;
    async_engine& operator=(const async_engine&) = delete;
    async_engine(async_engine&&) = delete;
    async_engine& operator=(async_engine&&) = delete;

    /// Completes every operation with `cancelled` (docs/async.md, "Shutdown
    /// and destruction") and joins the loop thread; what is posted after
    /// runs in the destructor. Must not run on the loop thread.
    void shutdown() {
        stopping_.store(true);
        if (!opts_.own_thread) { // on the host's loop thread, or with the host's loop stopped
            const void* outer = engine_current;
            engine_current = this;
            begin_stop();
            engine_current = outer;
            return;
        }
        if (!thread_.joinable()) return;
        if (std::this_thread::get_id() == thread_.get_id()) {
            std::fputs("cachestore: an s3::async_store was destroyed inside its own callback\n", stderr);
            std::terminate();
        }
        loop_.post([this] { begin_stop(); });
        thread_.join();
    }

    ~async_engine() {
        shutdown();
        helper_.reset(); // a running fetch is waited for; its answer finds no operation
        const void* outer = engine_current;
        engine_current = this;
        while (loop_.run_for(std::chrono::milliseconds(0)) != 0) { // what was posted since: user posts, stale messages
        }
        engine_current = outer;
    } // then ~async_machine: resume() and stop callbacks find no engine, the easy handles go

    [[nodiscard]] bool ok() const noexcept { return ready_; }

    /// Host-driven engines (own_thread false). One iteration: runs what was
    /// posted, waits at most `timeout` (or until the next timer) for
    /// descriptors, handles them and the timers due. One thread at a time:
    /// the host loop's. Returns how many callbacks ran.
    std::size_t run_for(std::chrono::milliseconds timeout) {
        const void* outer = engine_current;
        engine_current = this;
        const std::size_t ran = loop_.run_for(clamp_to_timers(timeout));
        fire_timers();
        engine_current = outer;
        return ran;
    }
    /// Readable whenever run_for(0) has work (epoll, eventfd): what a host
    /// loop watches.
    [[nodiscard]] int fd() const noexcept { return loop_.fd(); }
    /// When the host must call run_for(0) even if fd() stays quiet: the
    /// earlier of libcurl's timer and the engine's; -1 for none.
    [[nodiscard]] std::chrono::milliseconds next_timeout() const {
        auto at = loop_.timer_at();
        if (!timers_.empty()) at = std::min(at, timers_.begin()->first);
        if (at == clock::time_point::max()) return std::chrono::milliseconds(-1);
        return std::max(std::chrono::milliseconds(0), std::chrono::ceil<std::chrono::milliseconds>(at - clock::now()));
    }
    [[nodiscard]] std::uint64_t next_seq() noexcept { return seq_.fetch_add(1, std::memory_order_relaxed) + 1; }
    [[nodiscard]] bool on_own_thread() const noexcept { return engine_current == this; }

    /// Any thread: the loop takes `op` (seq already set) later.
    void submit(std::unique_ptr<async_op> op) {
        in_flight_.fetch_add(1, std::memory_order_relaxed);
        loop_.post([this, o = op.release()] { admit(std::unique_ptr<async_op>(o)); });
    }

    /// Any thread: runs `f` on the loop later (on the destroying thread if
    /// the engine is being destroyed).
    void post(std::move_only_function<void()> f) {
        loop_.post([this, f = std::move(f)]() mutable { guarded([&] { f(); }); });
    }

private:
    void run() {
        engine_current = this;
        while (!(stopping_.load(std::memory_order_relaxed) && live_.empty())) {
            loop_.run_for(clamp_to_timers(std::chrono::milliseconds(1000)));
            fire_timers();
        }
        engine_current = nullptr;
    }

    /// `wait`, or less when the engine's first timer is due sooner (the
    /// loop's own timer, libcurl's, is applied by epoll_loop::run_for).
    [[nodiscard]] std::chrono::milliseconds clamp_to_timers(std::chrono::milliseconds wait) const {
        if (timers_.empty()) return wait;
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(timers_.begin()->first - clock::now());
        return std::clamp(left, std::chrono::milliseconds(0), wait);
    }

    bool ready_ = false;
    std::atomic<std::uint64_t> seq_{0};
    std::thread thread_; // last: started when everything else exists
};

} // namespace cachestore::s3::detail
