// cachestore/s3/detail/async_engine.hpp - the S3 driver's async engine
// (docs/async.md, "The engine"): one loop thread drives a libcurl multi
// handle over epoll_loop; operations wait in a FIFO for a transfer slot and
// run the same steps as the blocking path (begin_attempt, end_attempt,
// after_failure, the operation's plan), with back-off and deadlines on a
// timer heap instead of sleeping.
//
// Threads: initiation and resume() post to the loop from any thread; the
// loop runs every sink, completion and observer; credentials are fetched on
// a helper thread, never on the loop.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
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
#include "cachestore/s3/detail/state.hpp"
#include "cachestore/s3/detail/transport.hpp"

namespace cachestore::s3::detail {

/// The engine whose loop this thread is running (waiting<> refuses to block
/// there), or null.
inline thread_local const void* engine_current = nullptr;

struct engine_options {
    std::size_t max_connections = 32;
    bool own_thread = true; ///< false: the host drives the loop (run_for, fd, next_timeout)
    std::function<void(std::exception_ptr)> on_callback_exception;
};

class async_engine {
public:
    using clock = std::chrono::steady_clock;

    async_engine(store_state& st, engine_options o)
        : st_(st), opts_(std::move(o)), box_(std::make_shared<mailbox>()),
          driver_(loop_, static_cast<long>(std::max<std::size_t>(opts_.max_connections, 1)), &async_engine::on_done,
                  this) {
        box_->engine = this;
        slots_.resize(std::max<std::size_t>(opts_.max_connections, 1));
        for (auto& s : slots_) free_.push_back(&s);
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
        {
            const std::lock_guard lock(box_->mu);
            box_->engine = nullptr;
        }
        for (auto& s : slots_)
            if (s.easy != nullptr) curl_easy_cleanup(s.easy);
    }

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
    [[nodiscard]] bool stopping() const noexcept { return stopping_.load(); }
    [[nodiscard]] const std::shared_ptr<mailbox>& box() const noexcept { return box_; }
    [[nodiscard]] std::uint64_t next_seq() noexcept { return seq_.fetch_add(1, std::memory_order_relaxed) + 1; }
    [[nodiscard]] bool on_own_thread() const noexcept { return engine_current == this; }
    [[nodiscard]] std::size_t in_flight() const noexcept { return in_flight_.load(std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t callback_exceptions() const noexcept {
        return exceptions_.load(std::memory_order_relaxed);
    }
    [[nodiscard]] std::uint64_t transfers_started() const noexcept {
        return transfers_.load(std::memory_order_relaxed);
    }

    /// Any thread: the loop takes `op` (seq already set) later.
    void submit(std::unique_ptr<async_op> op) {
        in_flight_.fetch_add(1, std::memory_order_relaxed);
        loop_.post([this, o = op.release()] { admit(std::unique_ptr<async_op>(o)); });
    }

    /// Any thread: an engine message (never throws into the loop).
    void post_message(std::move_only_function<void()> f) { loop_.post(std::move(f)); }

    /// Any thread: runs `f` on the loop later (on the destroying thread if
    /// the engine is being destroyed).
    void post(std::move_only_function<void()> f) {
        loop_.post([this, f = std::move(f)]() mutable { guarded([&] { f(); }); });
    }

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
        auto& e = *static_cast<async_engine*>(self);
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
    multi_driver driver_; // after loop_: unwatches its sockets before the loop goes
    std::vector<slot> slots_;
    std::vector<slot*> free_;
    std::deque<async_op*> queue_;
    std::unordered_map<std::uint64_t, std::unique_ptr<async_op>> live_;
    async_op::timer_set timers_; ///< deadlines and back-offs of live operations
    std::unique_ptr<cachestore::detail::thread_pool> helper_;
    std::atomic<bool> stopping_{false};
    bool ready_ = false;
    std::atomic<std::uint64_t> seq_{0};
    std::atomic<std::size_t> in_flight_{0};
    std::atomic<std::uint64_t> exceptions_{0};
    std::atomic<std::uint64_t> transfers_{0};
    std::thread thread_; // last: started when everything else exists
};

inline void mailbox::post_resume(std::uint64_t seq, std::uint64_t pause) noexcept {
    const std::lock_guard lock(mu);
    if (engine != nullptr) {
        async_engine* e = engine;
        e->post_message([e, seq, pause] { e->resume(seq, pause); });
    }
}

inline void async_op::canceller::operator()() const noexcept {
    const std::lock_guard lock(box->mu);
    if (box->engine != nullptr) {
        async_engine* e = box->engine;
        e->post_message([e, s = seq] { e->cancel(s); });
    }
}

} // namespace cachestore::s3::detail
