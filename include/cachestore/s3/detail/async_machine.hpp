// cachestore/s3/detail/async_machine.hpp - the S3 async engine's operation
// state machine (docs/async.md, "The engine"): an operation is admitted,
// waits in a FIFO for a transfer slot, and runs the same steps as the
// blocking path (begin_attempt, end_attempt, after_failure, the operation's
// plan), with back-offs and deadlines on a timer set instead of sleeping,
// credentials fetched on a helper thread, and a stop or the deadline ending
// it in any state. Everything here runs on the loop thread; async_engine
// (async_engine.hpp) hosts the loop and is the way in from other threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include <curl/curl.h>

#include "cachestore/context.hpp"
#include "cachestore/detail/epoll_loop.hpp"
#include "cachestore/detail/thread_pool.hpp"
#include "cachestore/error.hpp"
#include "cachestore/s3/detail/async_op.hpp"
#include "cachestore/s3/detail/exchange.hpp"
#include "cachestore/s3/detail/multi_driver.hpp"
#include "cachestore/s3/detail/socket_registry.hpp"
#include "cachestore/s3/detail/state.hpp"
#include "cachestore/s3/detail/transport.hpp"

namespace cachestore::s3::detail {

struct engine_options {
    std::size_t max_connections = 32;
    bool own_thread = true; ///< false: the host drives the loop (run_for, fd, next_timeout)
    std::function<void(std::exception_ptr)> on_callback_exception;
};

/// The operations of one engine and what they hold: the loop and libcurl's
/// multi handle, the transfer slots, the queue, the live operations by
/// sequence number and their timers. The loop's thread only, but for the
/// counters, stopping(), box() and post_message(), which any thread may call.
class async_machine {
public:
    using clock = std::chrono::steady_clock;

    async_machine(const async_machine&) = delete;
    async_machine& operator=(const async_machine&) = delete;
    async_machine(async_machine&&) = delete;
    async_machine& operator=(async_machine&&) = delete;

    [[nodiscard]] bool stopping() const noexcept { return stopping_.load(); }
    [[nodiscard]] const std::shared_ptr<mailbox>& box() const noexcept { return box_; }
    [[nodiscard]] std::size_t in_flight() const noexcept { return in_flight_.load(std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t callback_exceptions() const noexcept {
        return exceptions_.load(std::memory_order_relaxed);
    }
    [[nodiscard]] std::uint64_t transfers_started() const noexcept {
        return transfers_.load(std::memory_order_relaxed);
    }

    /// Any thread: an engine message (never throws into the loop).
    void post_message(std::move_only_function<void()> f) { loop_.post(std::move(f)); }

    /// Runs caller code; what it throws goes to the hook and the counter.
    template <class F>
    void guarded(F&& f) noexcept {
        try {
            f();
        } catch (...) {
            report(std::current_exception());
        }
    }

    // Messages, run on the loop thread.
    void cancel(std::uint64_t seq) {
        if (async_op* op = find(seq)) stop_op(*op, abort_reason::cancelled);
    }
    void resume(std::uint64_t seq, std::uint64_t pause) {
        async_op* op = find(seq);
        if (op == nullptr || op->state != op_state::active || !op->x || !op->x->pause_pending) return;
        if (pause != op->sink_calls) return; // a stale handle's: the read went on since
        op->x->pause_pending = false;
        driver_.resume(op->at->easy); // may finish the transfer (on_done) before it returns
    }

    /// In a forked child, on the parent's engine (never used there): closes
    /// the child's copies of its connections' sockets (socket_registry.hpp).
    int close_inherited_sockets() noexcept { return driver_.registry().close_inherited(); }
    /// Sockets its connections hold now (for tests).
    [[nodiscard]] int open_sockets() const noexcept { return driver_.registry().size(); }

protected: // a base of async_engine only
    async_machine(store_state& st, engine_options o)
        : st_(st), opts_(std::move(o)), box_(std::make_shared<mailbox>()),
          driver_(loop_, static_cast<long>(std::max<std::size_t>(opts_.max_connections, 1)), &async_machine::on_done,
                  this) {
        box_->engine = this;
        slots_.resize(std::max<std::size_t>(opts_.max_connections, 1));
        for (auto& s : slots_) free_.push_back(&s);
    }
    ~async_machine() {
        {
            const std::lock_guard lock(box_->mu);
            box_->engine = nullptr;
        }
        for (auto& s : slots_)
            if (s.easy != nullptr) curl_easy_cleanup(s.easy);
    }

    void begin_stop() {
        stopping_.store(true);
        std::vector<std::uint64_t> seqs;
        seqs.reserve(live_.size());
        for (auto& [seq, op] : live_) seqs.push_back(seq);
        for (auto seq : seqs)
            if (async_op* op = find(seq)) {
                if (op->state == op_state::active) detach(*op, abort_reason::cancelled);
                finish(*op, fail(errc::cancelled, op->spec.op, op->spec.error_path, "the store was destroyed"));
            }
    }

    async_op* find(std::uint64_t seq) {
        auto it = live_.find(seq);
        return it == live_.end() ? nullptr : it->second.get();
    }

    void admit(std::unique_ptr<async_op> o) {
        async_op& op = *o;
        live_.emplace(op.seq, std::move(o));
        if (stopping_.load()) return finish(op, fail(errc::cancelled, op.spec.op, op.spec.error_path, "the store was destroyed"));
        if (op.ctx.stop_token().stop_possible()) op.on_stop.emplace(op.ctx.stop_token(), async_op::canceller{box_, op.seq});
        if (op.ctx.deadline() != clock::time_point::max()) op.deadline_timer = timers_.emplace(op.ctx.deadline(), &op);
        start(op);
        pump();
    }

    /// The top of the blocking path's retry loop: checks, credentials, queue.
    /// Whoever queues calls pump() afterwards.
    void start(async_op& op, bool front = false) {
        if (auto c = op.ctx.check(op.spec.op, op.spec.error_path); !c) {
            c.error().attempts = op.attempt;
            return finish(op, std::move(c));
        }
        if (st_.cfg.credentials_source && (!op.snap || !op.refreshed)) {
            auto s = st_.cfg.credentials_source->current_nowait();
            if (!s) return fetch_credentials(op, false);
            op.snap = std::move(*s);
        }
        enqueue(op, front);
    }

    void enqueue(async_op& op, bool front) {
        op.state = op_state::queued;
        op.t_queued = clock::now();
        if (front) {
            queue_.push_front(&op);
        } else {
            queue_.push_back(&op);
        }
    }

    /// Gives free slots to queued operations (an attempt that cannot start
    /// is handled here, which may queue it again).
    void pump() {
        while (!free_.empty() && !queue_.empty()) {
            async_op* op = queue_.front();
            queue_.pop_front();
            slot* s = free_.back();
            free_.pop_back();
            const int attempt = op->probing ? 1 : ++op->attempt;
            if (auto failed = launch(*op, *s, attempt); !failed) after_attempt(*op, std::move(failed), attempt);
        }
    }

    /// Starts the attempt's transfer; an error when it could not start.
    result<> launch(async_op& op, slot& s, int attempt) {
        const credentials& creds = op.snap ? *op.snap : st_.cfg.creds;
        request_spec& spec = op.sending();
        op.res = response{};
        auto req = begin_attempt(st_, creds, spec, s.bufs);
        if (!req) {
            free_.push_back(&s);
            return std::unexpected(std::move(req.error()));
        }
        if (s.easy == nullptr) s.easy = curl_easy_init();
        if (s.easy == nullptr) {
            free_.push_back(&s);
            return fail_ctx(errc::io_error, spec, op.res, "could not create a libcurl handle");
        }
        op.req = *req;
        op.x.emplace(op.req, op.res, op.ctx, op.ctx.deadline());
        if (!s.configured) {
            configure(s.easy, op.req);
            curl_easy_setopt(s.easy, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
            curl_easy_setopt(s.easy, CURLOPT_PRIVATE, static_cast<void*>(&s));
            s.configured = true;
        }
        if (s.buffer != op.recv_buffer) { // a pausing sink's read, or the first plain one after it
            curl_easy_setopt(s.easy, CURLOPT_BUFFERSIZE, op.recv_buffer);
            s.buffer = op.recv_buffer;
        }
        arm(s.easy, s.custom_method, *op.x);
        op.at = &s;
        s.op = &op;
        op.state = op_state::active;
        op.t_slot = clock::now();
        transfers_.fetch_add(1, std::memory_order_relaxed);
        if (driver_.add(s.easy) != CURLM_OK) {
            op.res.curl = CURLE_FAILED_INIT;
            release(op);
            return end_attempt(st_, spec, op.res, nullptr, attempt, nullptr);
        }
        return {};
    }

    static void on_done(void* self, CURL* easy, CURLcode code) {
        auto& e = *static_cast<async_machine*>(self);
        void* p = nullptr;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p);
        auto* s = static_cast<slot*>(p);
        if (s == nullptr || s->op == nullptr) return;
        async_op& op = *s->op;
        op.res.curl = code;
        e.end_transfer(op);
    }

    /// Takes an active operation's transfer out of the multi handle (an
    /// unfinished one closes its connection) and frees its slot.
    request_event detach(async_op& op, abort_reason why = abort_reason::none) {
        if (why != abort_reason::none && op.res.reason == abort_reason::none) op.res.reason = why;
        CURL* easy = op.at->easy;
        harvest(easy, op.res);
        request_event ev;
        if (st_.cfg.observer) ev = observe(easy, op.t_queued, op.t_slot);
        driver_.remove(easy);
        release(op);
        return ev;
    }

    void release(async_op& op) {
        unhook(op.at->easy);
        op.at->op = nullptr;
        free_.push_back(op.at);
        op.at = nullptr;
        op.x.reset();
    }

    void end_transfer(async_op& op) {
        const int attempt = op.probing ? 1 : op.attempt;
        request_event ev = detach(op);
        const bool observed = static_cast<bool>(st_.cfg.observer);
        result<> r;
        try {
            r = end_attempt(st_, op.sending(), op.res, op.probing ? nullptr : op.refusal, attempt, observed ? &ev : nullptr);
        } catch (...) { // a throwing observer: the attempt goes on
            report(std::current_exception());
            r = end_attempt(st_, op.sending(), op.res, op.probing ? nullptr : op.refusal, attempt, nullptr);
        }
        if (op.res.thrown) report(std::exchange(op.res.thrown, nullptr));
        after_attempt(op, std::move(r), attempt);
        pump();
    }

    /// What the blocking loop does after attempt_once returned.
    void after_attempt(async_op& op, result<> r, int attempt) {
        if (op.probing) {
            op.probing = false;
            error e = std::move(*op.head_error);
            op.head_error.reset();
            op.res = std::move(op.head_res);
            apply_bodiless_probe(r, op.res, e);
            r = std::unexpected(std::move(e));
        } else if (!r && bodiless_failure(op.spec, op.res, r.error()) && !bodiless_redirect(st_, op.res, r.error())) {
            op.head_error = std::move(r.error());
            op.head_res = std::move(op.res);
            op.probe_spec = bodiless_probe(op.spec);
            op.probing = true;
            return enqueue(op, true);
        }
        if (r) return finish(op, std::move(r));
        error& e = r.error();
        const auto next = after_failure(st_, op.spec, e, attempt, static_cast<bool>(op.snap), op.refreshed,
                                        op.ctx.deadline());
        switch (next.what) {
        case next_step::give_up:
            return finish(op, std::move(r));
        case next_step::refresh_credentials:
            op.refreshed = true;
            op.last_error = std::move(e);
            return fetch_credentials(op, true);
        case next_step::retry:
            op.state = op_state::backoff;
            op.backoff_timer = timers_.emplace(clock::now() + next.delay, &op);
            return;
        }
    }

    void retry_now(async_op& op) {
        if (op.spec.before_retry != nullptr) op.spec.before_retry(op.spec, op.res, op.spec.retry_state);
        start(op, true);
        pump();
    }

    /// Asks the provider on the helper thread: `current()` when no usable
    /// snapshot is at hand, or `refresh_after_refusal` after a refusal.
    void fetch_credentials(async_op& op, bool after_refusal) {
        op.state = op_state::preparing;
        if (!helper_) helper_ = std::make_unique<cachestore::detail::thread_pool>(1, clock::duration{});
        cachestore::detail::thread_pool::job j;
        auto source = st_.cfg.credentials_source;
        j.run = [this, source, seq = op.seq, used = after_refusal ? op.snap : nullptr,
                 after_refusal](const std::stop_token&) {
            auto r = after_refusal ? source->refresh_after_refusal(used) : source->current();
            loop_.post([this, seq, after_refusal, r = std::move(r)]() mutable { credentials_ready(seq, after_refusal, r); });
        };
        j.expired = [](bool) {}; // only at destruction, when the operation was completed already
        helper_->submit(std::move(j));
    }

    void credentials_ready(std::uint64_t seq, bool after_refusal, result<credentials_provider::snapshot>& r) {
        async_op* op = find(seq);
        if (op == nullptr || op->state != op_state::preparing) return;
        if (after_refusal) {
            if (!adopt_refreshed(op->snap, r)) return finish(*op, std::unexpected(std::move(op->last_error)));
            return retry_now(*op); // at once: nothing about the server is wrong
        }
        if (!r) {
            error e = std::move(r.error());
            e.op = op->spec.op;
            e.path = op->spec.error_path;
            return finish(*op, std::unexpected(std::move(e)));
        }
        op->snap = std::move(*r);
        enqueue(*op, false);
        pump();
    }

    void fire_timers() {
        const auto now = clock::now();
        while (!timers_.empty() && timers_.begin()->first <= now) {
            async_op& op = *timers_.begin()->second;
            if (op.backoff_timer && *op.backoff_timer == timers_.begin()) {
                timers_.erase(*op.backoff_timer);
                op.backoff_timer.reset();
                retry_now(op);
            } else {
                timers_.erase(*op.deadline_timer);
                op.deadline_timer.reset();
                stop_op(op, abort_reason::deadline);
            }
        }
    }

    /// A stop or the deadline: an active transfer is ended as the blocking
    /// path's poll loop ends it; anything else completes now.
    void stop_op(async_op& op, abort_reason why) {
        const bool stop = why == abort_reason::cancelled;
        if (op.state == op_state::active) {
            op.res.curl = CURLE_ABORTED_BY_CALLBACK;
            detach(op, why);
            const int attempt = op.probing ? 1 : op.attempt;
            op.probing = false;
            op.head_error.reset();
            after_attempt(op, end_attempt(st_, op.spec, op.res, nullptr, attempt, nullptr), attempt);
            pump();
            return;
        }
        if (op.state == op_state::backoff && stop) {
            auto c = fail_ctx(errc::cancelled, op.spec, op.res, "stop requested while waiting to retry");
            c.error().attempts = op.attempt;
            return finish(op, std::move(c));
        }
        auto c = fail(stop ? errc::cancelled : errc::deadline_exceeded, op.spec.op, op.spec.error_path,
                      stop ? "stop requested" : "deadline exceeded");
        c.error().attempts = op.attempt;
        finish(op, std::move(c));
    }

    void finish(async_op& op, result<> r) {
        if (op.state == op_state::queued) std::erase(queue_, &op); // a stop or deadline while queued
        op.state = op_state::done;
        op.on_stop.reset();
        for (auto* t : {&op.deadline_timer, &op.backoff_timer})
            if (*t) timers_.erase(**t);
        auto it = live_.find(op.seq);
        std::unique_ptr<async_op> owned = std::move(it->second);
        live_.erase(it);
        in_flight_.fetch_sub(1, std::memory_order_relaxed); // before the completion, which may look
        guarded([&] { op.complete(std::move(r)); });
    }

    void report(std::exception_ptr ex) noexcept {
        exceptions_.fetch_add(1, std::memory_order_relaxed);
        if (!opts_.on_callback_exception) return;
        try {
            opts_.on_callback_exception(std::move(ex));
        } catch (...) { // NOLINT(bugprone-empty-catch): a throwing hook must not end the loop
        }
    }

    store_state& st_;
    const engine_options opts_;
    std::shared_ptr<mailbox> box_;
    cachestore::detail::epoll_loop loop_;
    multi_driver driver_;     // after loop_: unwatches its sockets before the loop goes
    std::vector<slot> slots_;
    std::vector<slot*> free_;
    std::deque<async_op*> queue_;
    std::unordered_map<std::uint64_t, std::unique_ptr<async_op>> live_;
    async_op::timer_set timers_; ///< deadlines and back-offs of live operations
    std::unique_ptr<cachestore::detail::thread_pool> helper_;
    std::atomic<bool> stopping_{false};
    std::atomic<std::size_t> in_flight_{0};
    std::atomic<std::uint64_t> exceptions_{0};
    std::atomic<std::uint64_t> transfers_{0};
};

inline void mailbox::post_resume(std::uint64_t seq, std::uint64_t pause) noexcept {
    const std::lock_guard lock(mu);
    if (engine != nullptr) {
        async_machine* e = engine;
        e->post_message([e, seq, pause] { e->resume(seq, pause); });
    }
}

inline void async_op::canceller::operator()() const noexcept {
    const std::lock_guard lock(box->mu);
    if (box->engine != nullptr) {
        async_machine* e = box->engine;
        e->post_message([e, s = seq] { e->cancel(s); });
    }
}

} // namespace cachestore::s3::detail
