// cachestore/async/pooled.hpp - cachestore::pooled_async<S>: any CacheStore
// (memory, POSIX, a layer stack) as an AsyncCacheStore, each operation one
// job on a bounded thread pool, so a proxy writes one async code path for
// every store. docs/async.md.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "cachestore/async.hpp"
#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/detail/fork_generation.hpp"
#include "cachestore/detail/thread_pool.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/layers/detail/archetype_store.hpp"
#include "cachestore/store.hpp"

namespace cachestore {

struct pooled_options {
    /// Operations running at once, each on its own thread (started on need).
    std::size_t threads = 8;
    /// An operation still queued this long completes with `unavailable`
    /// without running (zero: it waits as long as its context allows).
    std::chrono::steady_clock::duration queue_timeout{};
    /// Gets what a sink, source or completion threw (after the operation
    /// was retired); empty: counted in `stats().callback_exceptions` only.
    std::function<void(std::exception_ptr)> on_callback_exception{};
};

struct pooled_stats {
    std::size_t running = 0; ///< operations on a thread now
    std::size_t queued = 0;  ///< operations waiting for a thread
    std::size_t threads = 0; ///< threads started so far
    std::uint64_t callback_exceptions = 0;
};

namespace detail {
/// The pooled_async whose job this thread is running (waiting<> refuses to
/// block there), or null.
inline thread_local const void* pooled_current = nullptr;

/// What a paused read waits on: resume() of its sink call from any thread,
/// the operation's stop token, or its deadline. `resumed` is the highest
/// sink call number resumed so far: a stale handle's resume() is below the
/// call now waiting and wakes nothing.
struct pause_gate : resume_target {
    std::atomic<std::uint64_t> resumed{0};
    std::mutex mu;
    std::condition_variable_any cv;

    pause_gate() noexcept { fn = &on_resume; }
    static void on_resume(resume_target& t, std::uint64_t pause) noexcept {
        auto& g = static_cast<pause_gate&>(t);
        std::uint64_t seen = g.resumed.load();
        while (seen < pause && !g.resumed.compare_exchange_weak(seen, pause)) {
        }
        { const std::lock_guard lk(g.mu); }
        g.cv.notify_all();
    }
    /// True when sink call `pause` was resumed, false when stopped or past the deadline first.
    bool wait(std::uint64_t pause, const std::stop_token& stop, std::chrono::steady_clock::time_point deadline) {
        std::unique_lock lk(mu);
        const auto ready = [this, pause] { return resumed.load() >= pause; };
        if (deadline == std::chrono::steady_clock::time_point::max()) return cv.wait(lk, stop, ready);
        return cv.wait_until(lk, stop, deadline, ready);
    }
};

struct stop_forwarder {
    std::stop_source* to;
    void operator()() const noexcept { to->request_stop(); }
};
struct pool_kicker {
    thread_pool* pool;
    void operator()() const noexcept { pool->kick(); }
};
} // namespace detail

/// Owns the store (`pooled_async<S>`) or refers to one that outlives it
/// (`pooled_async<S&>`); not movable (its jobs point at it). Destroying it
/// completes queued operations with `cancelled` at once, stops running ones
/// through their stop token and waits for them. After fork(), the child's
/// first operation starts the child's own threads; operations in flight in
/// the parent are never run nor completed in the child.
template <CacheStore S>
class pooled_async {
public:
    using inner_type = std::remove_reference_t<S>;

    explicit pooled_async(S inner, pooled_options opts = {}) : inner_(static_cast<S&&>(inner)), opts_(std::move(opts)) {
        make(proc_.get());
    }
    template <class... Args>
    explicit pooled_async(std::in_place_t, pooled_options opts, Args&&... args)
        : inner_(std::forward<Args>(args)...), opts_(std::move(opts)) {
        make(proc_.get());
    }
    pooled_async(const pooled_async&) = delete;
    pooled_async& operator=(const pooled_async&) = delete;
    ~pooled_async() = default;

    [[nodiscard]] inner_type& inner() noexcept { return inner_; }

    /// The inner store's self_test, on the calling thread (it blocks).
    result<> self_test(const context& ctx) { return inner_.self_test(ctx); }

    [[nodiscard]] pooled_stats stats() const {
        const auto g = here().pool->now();
        return {g.running, g.queued, g.threads, exceptions_.load(std::memory_order_relaxed)};
    }

    /// True on one of this store's threads (inside its sinks and completions).
    [[nodiscard]] bool on_own_thread() const noexcept { return detail::pooled_current == this; }

    // ---- AsyncCacheStore -------------------------------------------------

    template <async_chunk_sink K, async_completion D>
    void async_get_chunk(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, K sink, D done) {
        start<void>(ctx, "get_chunk", std::move(done),
                    [key, off, n, sink = std::move(sink)](inner_type& s, const context& c) mutable -> result<> {
                        if constexpr (pausing_sink<K>) {
                            return read_pausing(s, c, key, off, n, sink);
                        } else {
                            return s.get_chunk(c, key, off, n, sink);
                        }
                    });
    }

    template <class Src, async_completion D>
    requires async_source_function<Src> || std::convertible_to<Src, std::span<const std::byte>>
    void async_put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src src, D done) {
        start<void>(ctx, "put_chunk", std::move(done),
                    [key, size, src = std::move(src)](inner_type& s, const context& c) mutable -> result<> {
                        if constexpr (source_function<Src>) {
                            return s.put_chunk(c, key, size, src);
                        } else {
                            return s.put_chunk(c, key, size, std::span<const std::byte>(src));
                        }
                    });
    }

    /// Through cachestore::put_chunk_prehashed (so the inner store's member
    /// when it has one).
    template <async_completion D>
    void async_put_chunk_prehashed(const context& ctx, const chunk_key& key, std::span<const std::byte> bytes,
                                   std::string_view sha256_hex, D done) {
        start<void>(ctx, "put_chunk", std::move(done),
                    [key, bytes, hex = std::string(sha256_hex)](inner_type& s, const context& c) -> result<> {
                        return cachestore::put_chunk_prehashed(s, c, key, bytes, hex);
                    });
    }

    template <async_completion<info> D>
    void async_stat(const context& ctx, const chunk_key& key, D done) {
        start<info>(ctx, "stat", std::move(done),
                    [key](inner_type& s, const context& c) -> result<info> { return s.stat(c, key); });
    }

    template <async_completion D>
    void async_remove(const context& ctx, const chunk_key& key, D done) {
        start<void>(ctx, "remove", std::move(done),
                    [key](inner_type& s, const context& c) -> result<> { return s.remove(c, key); });
    }

    /// Runs `f()` once on a pool thread (on the destroying thread if the
    /// store is destroyed first).
    template <class F>
    requires std::move_constructible<F> && std::invocable<F>
    void post(F f) {
        auto shared = std::make_shared<F>(std::move(f));
        detail::thread_pool::job j;
        j.run = [this, shared](const std::stop_token&) { call_guarded([&] { std::invoke(std::move(*shared)); }); };
        j.expired = [this, shared](bool) { call_guarded([&] { std::invoke(std::move(*shared)); }); };
        here().pool->submit(std::move(j));
    }

private:
    template <class T, class Done, class Body>
    struct op {
        op(const context& c, const char* name, Done d, Body b)
            : ctx(c), what(name), done(std::move(d)), body(std::move(b)) {}
        using value_type = T;
        context ctx;
        const char* what;
        Done done;
        Body body;
        std::optional<std::stop_callback<detail::pool_kicker>> while_queued;
    };

    template <class T, class Done, class Body>
    void start(const context& ctx, const char* what, Done done, Body body) {
        detail::thread_pool& pool = *here().pool;
        auto o = std::make_shared<op<T, Done, Body>>(ctx, what, std::move(done), std::move(body));
        detail::thread_pool::job j;
        j.deadline = ctx.deadline();
        j.stop = ctx.stop_token();
        if (j.stop.stop_possible()) o->while_queued.emplace(j.stop, detail::pool_kicker{&pool});
        j.run = [this, o](const std::stop_token& pool_stop) { run(*o, pool_stop); };
        j.expired = [this, o](bool stopping) { expire(*o, stopping); };
        pool.submit(std::move(j));
    }

    template <class Op>
    void run(Op& o, const std::stop_token& pool_stop) {
        o.while_queued.reset();
        std::stop_source stop; // the caller's stop or the store's destruction
        std::optional<std::stop_callback<detail::stop_forwarder>> from_caller;
        if (o.ctx.stop_token().stop_possible()) from_caller.emplace(o.ctx.stop_token(), detail::stop_forwarder{&stop});
        const std::stop_callback<detail::stop_forwarder> from_pool(pool_stop, detail::stop_forwarder{&stop});
        const context c(stop.get_token(), o.ctx.deadline());
        using R = decltype(o.body(inner_, c));
        std::optional<R> r;
        call_guarded([&] { r.emplace(o.body(inner_, c)); });
        if (!r) {
            r.emplace(fail(errc::cancelled, o.what, {}, "a sink or source threw"));
        } else if (!*r && (*r).error().code == errc::cancelled && pool_stop.stop_requested()) {
            r.emplace(fail(errc::cancelled, o.what, {}, "the store was destroyed"));
        }
        finish(o, std::move(*r));
    }

    template <class Op>
    void expire(Op& o, bool stopping) {
        o.while_queued.reset();
        if (stopping) return finish(o, fail(errc::cancelled, o.what, {}, "the store was destroyed"));
        if (o.ctx.stop_requested()) return finish(o, fail(errc::cancelled, o.what, {}, "stop requested while queued"));
        if (o.ctx.expired())
            return finish(o, fail(errc::deadline_exceeded, o.what, {}, "deadline exceeded while queued"));
        finish(o, fail(errc::unavailable, o.what, {}, "queued longer than queue_timeout for a thread"));
    }

    template <class Op>
    void finish(Op& o, result<typename Op::value_type> r) {
        call_guarded([&] { std::move(o.done)(std::move(r)); });
    }

    /// Runs `f` marked as this store's thread; what it throws goes to the hook.
    template <class F>
    bool call_guarded(F&& f) noexcept {
        const void* const outer = detail::pooled_current;
        detail::pooled_current = this;
        bool ok = true;
        try {
            f();
        } catch (...) {
            ok = false;
            exceptions_.fetch_add(1, std::memory_order_relaxed);
            if (opts_.on_callback_exception) {
                try {
                    opts_.on_callback_exception(std::current_exception());
                } catch (...) { // NOLINT(bugprone-empty-catch): a throwing hook must not end the pool's thread
                }
            }
        }
        detail::pooled_current = outer;
        return ok;
    }

    template <class K>
    static result<> read_pausing(inner_type& s, const context& c, const chunk_key& key, std::int64_t off,
                                 std::int64_t n, K& sink) {
        auto gate = std::make_shared<detail::pause_gate>();
        std::uint64_t calls = 0;
        bool deadline_in_pause = false;
        auto r = s.get_chunk(c, key, off, n, [&](std::span<const std::byte> b) -> bool {
            const std::uint64_t pause = ++calls;
            switch (sink(b, resume_handle(gate, pause))) {
            case sink_verdict::proceed:
                return true;
            case sink_verdict::stop:
                return false;
            case sink_verdict::pause:
                break;
            }
            if (gate->wait(pause, c.stop_token(), c.deadline())) return true;
            deadline_in_pause = !c.stop_requested();
            return false;
        });
        if (!r && deadline_in_pause)
            return fail(errc::deadline_exceeded, "get_chunk", r.error().path,
                        "deadline exceeded while the sink paused");
        return r;
    }

    struct proc {
        std::unique_ptr<detail::thread_pool> pool;
    };
    void make(proc& p) const { p.pool = std::make_unique<detail::thread_pool>(opts_.threads, opts_.queue_timeout); }
    proc& here() const {
        return proc_.get([this](proc&, proc& fresh) { make(fresh); });
    }

    S inner_;
    const pooled_options opts_;
    std::atomic<std::uint64_t> exceptions_{0};
    mutable detail::per_process<proc> proc_; // last: destroyed first, so its jobs end before the store goes
};

static_assert(AsyncCacheStore<pooled_async<detail::archetype_store>>);

} // namespace cachestore
