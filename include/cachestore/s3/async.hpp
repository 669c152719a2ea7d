// cachestore/s3/async.hpp - cachestore::s3::async_store: the S3 driver as an
// AsyncCacheStore on libcurl's multi interface (docs/async.md, "The S3
// driver's async engine"). One loop thread keeps every GET, HEAD and DELETE
// in flight over at most `max_connections` connections; signing, checks,
// retries, deadlines and the observer are the blocking driver's own steps.
//
// This header always includes libcurl's (also under
// CACHESTORE_SEPARATE_COMPILATION): the engine is header-only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "cachestore/async.hpp"
#include "cachestore/async/pooled.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/detail/fork_generation.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/s3/config.hpp"
#include "cachestore/s3/detail/async_engine.hpp"
#include "cachestore/s3/detail/async_op.hpp"
#include "cachestore/s3/detail/operations.hpp"
#include "cachestore/s3/store.hpp"

namespace cachestore::s3 {

struct async_options {
    /// Transfers (and connections) at once; the rest wait in a FIFO, their
    /// deadlines running. Also libcurl's connection cache size.
    std::size_t max_connections = 32;
    /// Threads for put_chunk, which runs the blocking driver's upload (HEAD,
    /// then PUT) on a pooled_async (docs/async.md: the engine's own upload
    /// is a later step).
    std::size_t put_threads = 4;
    /// Gets what a sink, completion or observer threw; empty: counted in
    /// stats().callback_exceptions only. The loop keeps running either way.
    std::function<void(std::exception_ptr)> on_callback_exception{};
    /// true: the store runs its loop on a thread of its own. false: no
    /// thread; the host's loop drives it (run_for, fd, next_timeout; the
    /// Asio driver is cachestore::asio::host_loop), and sinks and
    /// completions run inside those calls.
    bool own_thread = true;
};

struct async_stats {
    std::size_t in_flight = 0;              ///< get, stat and remove operations not yet completed
    std::uint64_t transfers = 0;            ///< HTTP attempts started (retries and probes count)
    std::uint64_t callback_exceptions = 0;
};

/// Owns an s3::store (blocking(): the same settings, signer, credentials and
/// TLS sessions). Movable; destroying it completes every operation in flight
/// with `cancelled` and joins its thread. Not from one of its own callbacks.
class async_store {
public:
    static result<async_store> create(config cfg, async_options opts = {}) {
        auto s = store::create(std::move(cfg));
        if (!s) return std::unexpected(std::move(s.error()));
        auto p = std::make_unique<parts>(std::move(*s), std::move(opts));
        if (!p->here().engine->ok())
            return fail(errc::io_error, "async_store", {}, "could not start the event loop (epoll, eventfd or libcurl multi)");
        return async_store(std::move(p));
    }

    async_store(async_store&&) noexcept = default;
    async_store& operator=(async_store&&) noexcept = default;
    ~async_store() = default;

    /// The blocking store over the same state: self_test, last_self_test,
    /// object_key, conditional_commit and every blocking call.
    [[nodiscard]] store& blocking() noexcept { return p_->blocking; }
    [[nodiscard]] const config& settings() const noexcept { return p_->blocking.settings(); }

    /// The blocking store's self-test, on the calling thread.
    result<> self_test(const context& ctx) { return p_->blocking.self_test(ctx); }

    [[nodiscard]] async_stats stats() const {
        auto& e = *p_->here().engine;
        return {e.in_flight(), e.transfers_started(), e.callback_exceptions()};
    }

    /// True on the loop thread (inside this store's sinks and completions).
    [[nodiscard]] bool on_own_thread() const noexcept { return p_->here().engine->on_own_thread(); }

    // ---- host-driven stores (own_thread false) ----------------------------
    // One thread at a time, the host loop's: it calls run_for(0) when fd()
    // is readable or next_timeout() has passed. Initiation stays any-thread.
    // Destroy the store on that thread, or with the host loop stopped.

    /// One iteration: posted work, ready transfers, due timers; waits at
    /// most `timeout` for them. Returns how many callbacks ran. Does
    /// nothing on a store with its own thread.
    std::size_t run_for(std::chrono::milliseconds timeout) {
        if (p_->opts.own_thread) return 0;
        return p_->here().engine->run_for(timeout);
    }
    /// A descriptor that is readable whenever run_for(0) has work.
    [[nodiscard]] int fd() const { return p_->here().engine->fd(); }
    /// How long the host may wait on fd() before calling run_for(0) anyway
    /// (-1: until fd() is readable).
    [[nodiscard]] std::chrono::milliseconds next_timeout() const { return p_->here().engine->next_timeout(); }

    // ---- AsyncCacheStore -------------------------------------------------

    template <async_chunk_sink K, async_completion D>
    void async_get_chunk(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, K sink, D done) {
        auto& e = engine();
        if (auto a = cachestore::detail::check_get_args(key, off, n); !a) return post_result(e, std::move(done), std::move(a));
        auto op = std::make_unique<detail::get_op<K, D>>(std::move(sink), std::move(done), off, n);
        prepare(e, *op, ctx, "GET", "get_chunk", key);
        op->plan.attach(op->spec);
        if constexpr (pausing_sink<K>) {
            op->gate = std::make_shared<detail::resume_gate>(e.box(), op->seq);
            op->recv_buffer = detail::pausing_receive_buffer;
        }
        e.submit(std::move(op));
    }

    template <class Src, async_completion D>
    requires async_source_function<Src> || std::convertible_to<Src, std::span<const std::byte>>
    void async_put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src src, D done) {
        auto& pr = p_->here();
        if (pr.engine->stopping()) return post_result(*pr.engine, std::move(done), destroyed("put_chunk"));
        pr.puts->async_put_chunk(ctx, key, size, std::move(src), on_loop<D>{pr.engine.get(), std::move(done)});
    }

    template <async_completion D>
    void async_put_chunk_prehashed(const context& ctx, const chunk_key& key, std::span<const std::byte> bytes,
                                   std::string_view sha256_hex, D done) {
        auto& pr = p_->here();
        if (pr.engine->stopping()) return post_result(*pr.engine, std::move(done), destroyed("put_chunk"));
        pr.puts->async_put_chunk_prehashed(ctx, key, bytes, sha256_hex, on_loop<D>{pr.engine.get(), std::move(done)});
    }

    template <async_completion<info> D>
    void async_stat(const context& ctx, const chunk_key& key, D done) {
        auto& e = engine();
        if (auto v = validate(key, "stat"); !v)
            return post_result(e, std::move(done), result<info>(std::unexpected(std::move(v.error()))));
        auto op = std::make_unique<detail::stat_op<D>>(std::move(done));
        prepare(e, *op, ctx, "HEAD", "stat", key);
        e.submit(std::move(op));
    }

    template <async_completion D>
    void async_remove(const context& ctx, const chunk_key& key, D done) {
        auto& e = engine();
        if (auto v = validate(key, "remove"); !v) return post_result(e, std::move(done), std::move(v));
        auto op = std::make_unique<detail::remove_op<D>>(std::move(done));
        prepare(e, *op, ctx, "DELETE", "remove", key);
        e.submit(std::move(op));
    }

    /// Runs `f()` once on the loop thread (on the destroying thread if the
    /// store is destroyed first).
    template <class F>
    requires std::move_constructible<F> && std::invocable<F>
    void post(F f) {
        engine().post([f = std::move(f)]() mutable { std::invoke(std::move(f)); });
    }

private:
    /// Per process: a forked child's first operation makes its own loop
    /// thread, multi handle and put pool; the parent's are left alone.
    struct proc {
        std::unique_ptr<detail::async_engine> engine;
        std::unique_ptr<pooled_async<store&>> puts;
        proc() = default;
        proc(const proc&) = delete;
        proc& operator=(const proc&) = delete;
        proc(proc&&) = delete;
        proc& operator=(proc&&) = delete;
        ~proc() {
            if (engine) engine->shutdown(); // no loop thread from here on
            puts.reset();                   // their completions are posted to the loop, run below
            engine.reset();
        }
    };
    struct parts {
        store blocking;
        async_options opts;
        cachestore::detail::per_process<proc> procs;
        parts(store s, async_options o) : blocking(std::move(s)), opts(std::move(o)) { make(procs.get()); }
        void make(proc& p) {
            detail::engine_options eo;
            eo.max_connections = opts.max_connections;
            eo.on_callback_exception = opts.on_callback_exception;
            eo.own_thread = opts.own_thread;
            p.engine = std::make_unique<detail::async_engine>(*blocking.st_, std::move(eo));
            p.puts = std::make_unique<pooled_async<store&>>(
                blocking, pooled_options{.threads = opts.put_threads, .on_callback_exception = opts.on_callback_exception});
        }
        proc& here() {
            return procs.get([this](proc& inherited, proc& fresh) {
                // The parent's engine stays unused here; only the child's
                // copies of its connections are closed (docs/async.md, fork()).
                if (inherited.engine) inherited.engine->close_inherited_sockets();
                make(fresh);
            });
        }
    };

    /// A put's completion, moved onto the loop thread.
    template <class D>
    struct on_loop {
        detail::async_engine* e;
        D done;
        void operator()(result<> r) {
            e->post([d = std::move(done), r = std::move(r)]() mutable { std::move(d)(std::move(r)); });
        }
    };

    explicit async_store(std::unique_ptr<parts> p) noexcept : p_(std::move(p)) {}

    detail::async_engine& engine() { return *p_->here().engine; }

    void prepare(detail::async_engine& e, detail::async_op& op, const context& ctx, const char* method, const char* name,
                 const chunk_key& key) const {
        op.seq = e.next_seq();
        op.ctx = detail::call_context(*p_->blocking.st_, ctx);
        op.spec.method = method;
        op.spec.op = name;
        detail::prepare_key(op.spec, p_->blocking.st_->cfg.prefix, key);
    }

    static error destroyed(const char* op) { return fail(errc::cancelled, op, {}, "the store was destroyed").error(); }

    template <class D, class R>
    static void post_result(detail::async_engine& e, D done, R r) {
        e.post([d = std::move(done), r = std::move(r)]() mutable { std::move(d)(std::move(r)); });
    }
    template <class D>
    static void post_result(detail::async_engine& e, D done, error err) {
        using R = std::conditional_t<std::is_invocable_v<D, result<info>>, result<info>, result<>>;
        post_result(e, std::move(done), R(std::unexpected(std::move(err))));
    }

    std::unique_ptr<parts> p_;
};

static_assert(AsyncCacheStore<async_store>);

} // namespace cachestore::s3
