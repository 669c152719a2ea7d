// cachestore/asio/host_loop.hpp - drives a host-driven event loop (an
// s3::async_store made with own_thread = false) from an Asio executor, so
// its transfers, sinks and completions run on the io_context's thread and no
// thread of the store's exists. Optional, like <cachestore/asio.hpp>:
// include it only where standalone Asio is on the include path.
// docs/async.md, "Own loop and host loop".
#pragma once

#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <system_error>
#include <utility>

namespace cachestore::asio {

/// Watches `loop.fd()` (released, never closed) and arms one timer at
/// `loop.next_timeout()`; either calls `loop.run_for(0)`. `Loop` is any type
/// with those three members: s3::async_store with own_thread = false. Run
/// the executor on one thread (or make it a strand): the loop is driven from
/// one thread at a time. Destroy the host_loop before the store, on that
/// thread or with the io_context stopped; outstanding waits end harmlessly.
template <class Loop, class Executor>
class host_loop {
public:
    host_loop(const Executor& ex, Loop& loop) : s_(std::make_shared<state>(ex, loop)) {
        wait_readable(s_);
        rearm_timer(s_);
    }
    host_loop(const host_loop&) = delete;
    host_loop& operator=(const host_loop&) = delete;
    host_loop(host_loop&&) = delete;
    host_loop& operator=(host_loop&&) = delete;
    ~host_loop() {
        s_->loop = nullptr;
        std::error_code ec;
        s_->fd.cancel(ec);
        try {
            s_->timer.cancel();
        } catch (...) { // NOLINT(bugprone-empty-catch): its wait then ends on its own, finding no loop
        }
    }

private:
    struct state {
        Loop* loop;
        ::asio::posix::stream_descriptor fd;
        ::asio::steady_timer timer;
        state(const Executor& ex, Loop& l) : loop(&l), fd(ex, l.fd()), timer(ex) {}
        state(const state&) = delete;
        state& operator=(const state&) = delete;
        state(state&&) = delete;
        state& operator=(state&&) = delete;
        ~state() { (void)fd.release(); } // the store's descriptor: never closed here
    };

    static void run_once(const std::shared_ptr<state>& s) {
        if (s->loop == nullptr) return;
        s->loop->run_for(std::chrono::milliseconds(0));
        rearm_timer(s);
    }

    static void wait_readable(std::shared_ptr<state> s) {
        auto& fd = s->fd;
        fd.async_wait(::asio::posix::descriptor_base::wait_read, [s = std::move(s)](const std::error_code& ec) {
            if (ec || s->loop == nullptr) return;
            run_once(s);
            wait_readable(s);
        });
    }

    static void rearm_timer(const std::shared_ptr<state>& s) {
        if (s->loop == nullptr) return;
        const auto t = s->loop->next_timeout();
        if (t.count() < 0) {
            s->timer.cancel();
            return;
        }
        s->timer.expires_after(t);
        s->timer.async_wait([s](const std::error_code& ec) {
            if (ec || s->loop == nullptr) return;
            run_once(s);
        });
    }

    std::shared_ptr<state> s_;
};

template <class Executor, class Loop>
host_loop(const Executor&, Loop&) -> host_loop<Loop, Executor>;

} // namespace cachestore::asio
