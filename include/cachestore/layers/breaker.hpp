// cachestore/layers/breaker.hpp - cachestore::breaker<S>: a circuit breaker
// around any CacheStore. After repeated failures it refuses calls at once,
// without I/O, with errc::unavailable, then probes the store and closes again.
// docs/layers.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "cachestore/async.hpp"
#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/layers/detail/archetype_store.hpp"
#include "cachestore/layers/detail/breaker_core.hpp"
#include "cachestore/layers/detail/prometheus.hpp"
#include "cachestore/layers/operation.hpp"
#include "cachestore/store.hpp"

namespace cachestore {

namespace detail {
/// An async caller's completion under a breaker: reports the call's outcome
/// to the breaker, then runs; dropped without running, it reports a neutral
/// end (as a throwing blocking call does).
template <class D, class T>
class breaker_done {
public:
    breaker_done(D d, breaker_core& c, breaker_core::ticket t) : done_(std::move(d)), core_(&c), t_(t) {}
    breaker_done(breaker_done&& o) noexcept(std::is_nothrow_move_constructible_v<D>)
        : done_(std::move(o.done_)), core_(std::exchange(o.core_, nullptr)), t_(o.t_) {}
    breaker_done(const breaker_done&) = delete;
    breaker_done& operator=(const breaker_done&) = delete;
    breaker_done& operator=(breaker_done&&) = delete;
    ~breaker_done() {
        if (core_ != nullptr) core_->finish(t_, static_cast<std::size_t>(errc::cancelled));
    }
    void operator()(result<T> r) && {
        std::exchange(core_, nullptr)->finish(t_, outcome_index(r));
        std::move(done_)(std::move(r));
    }

private:
    D done_;
    breaker_core* core_;
    breaker_core::ticket t_;
};
} // namespace detail

/// A circuit breaker over a CacheStore `S`. Closed: calls go through; a call
/// ending in one of `breaker_options::failures` (transient, auth) is recorded,
/// and `failure_threshold` of them within `failure_window` open it. Open: every
/// call fails at once with errc::unavailable, without touching the store,
/// for `open_for`. Then half-open: `half_open_probes` calls go through (the
/// others are refused); if they all succeed it closes, if one fails it opens
/// again. not_found, commit_lost and any other answer of the store are
/// successes; cancelled, deadline_exceeded, invalid_argument and unavailable
/// (an inner breaker) say nothing about the store and count as neither. All
/// operations are guarded. Owns the inner store (`breaker<S>`) or refers to
/// one (`breaker<S&>`). Thread-safe when `S` is; movable.
/// Over an AsyncCacheStore it is one too (docs/async.md): admitted at
/// initiation; a refusal completes through the inner store's `post`, never
/// inline.
template <class S>
    requires CacheStore<S> || AsyncCacheStore<std::remove_reference_t<S>>
class breaker {
public:
    using inner_type = std::remove_reference_t<S>;

    explicit breaker(S inner, breaker_options opts = {})
        : core_(std::make_unique<detail::breaker_core>(std::move(opts))), inner_(static_cast<S&&>(inner)) {}

    /// Constructs the inner store in place from `args` (for stores that
    /// cannot move, e.g. memory_store).
    template <class... Args>
    explicit breaker(std::in_place_t, breaker_options opts, Args&&... args)
        : core_(std::make_unique<detail::breaker_core>(std::move(opts))), inner_(std::forward<Args>(args)...) {}

    [[nodiscard]] inner_type& inner() noexcept { return inner_; }
    [[nodiscard]] const inner_type& inner() const noexcept { return inner_; }

    [[nodiscard]] breaker_state state() const noexcept { return core_->state(); }
    [[nodiscard]] breaker_snapshot snapshot() const { return core_->snapshot(); }

    // ---- CacheStore ------------------------------------------------------

    template <chunk_sink Sink>
        requires CacheStore<S>
    result<> get_chunk(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, Sink&& sink) {
        return guarded(store_op::get_chunk, [&] { return inner_.get_chunk(ctx, key, off, n, sink); });
    }

    /// Only when the inner store has it.
    result<> get_chunk_into(const context& ctx, const chunk_key& key, std::int64_t off, std::span<std::byte> out)
        requires detail::has_get_chunk_into<inner_type>
    {
        return guarded(store_op::get_chunk, [&] { return inner_.get_chunk_into(ctx, key, off, out); });
    }

    template <chunk_source Src>
        requires CacheStore<S>
    result<> put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src&& src) {
        return guarded(store_op::put_chunk, [&] { return inner_.put_chunk(ctx, key, size, std::forward<Src>(src)); });
    }

    /// Only when the inner store has it.
    result<> put_chunk_prehashed(const context& ctx, const chunk_key& key, std::span<const std::byte> bytes,
                                 std::string_view sha256_hex)
        requires detail::has_put_chunk_prehashed<inner_type>
    {
        return guarded(store_op::put_chunk, [&] { return inner_.put_chunk_prehashed(ctx, key, bytes, sha256_hex); });
    }

    result<info> stat(const context& ctx, const chunk_key& key)
        requires CacheStore<S>
    {
        return guarded(store_op::stat, [&] { return inner_.stat(ctx, key); });
    }

    result<> remove(const context& ctx, const chunk_key& key)
        requires CacheStore<S>
    {
        return guarded(store_op::remove, [&] { return inner_.remove(ctx, key); });
    }

    /// Also over an async store that has a (blocking) self_test.
    result<> self_test(const context& ctx)
        requires requires(inner_type& s) {
            { s.self_test(std::declval<const context&>()) } -> std::same_as<result<>>;
        }
    {
        return guarded(store_op::self_test, [&] { return inner_.self_test(ctx); });
    }

    // ---- AsyncCacheStore (over an async store) ---------------------------

    template <async_chunk_sink K, async_completion D>
        requires AsyncCacheStore<inner_type>
    void async_get_chunk(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, K sink, D done) {
        async_guarded<void>(store_op::get_chunk, std::move(done), [&](auto finish) {
            inner_.async_get_chunk(ctx, key, off, n, std::move(sink), std::move(finish));
        });
    }

    template <class Src, async_completion D>
        requires AsyncCacheStore<inner_type>
    void async_put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src src, D done) {
        async_guarded<void>(store_op::put_chunk, std::move(done), [&](auto finish) {
            inner_.async_put_chunk(ctx, key, size, std::move(src), std::move(finish));
        });
    }

    template <async_completion<info> D>
        requires AsyncCacheStore<inner_type>
    void async_stat(const context& ctx, const chunk_key& key, D done) {
        async_guarded<info>(store_op::stat, std::move(done),
                            [&](auto finish) { inner_.async_stat(ctx, key, std::move(finish)); });
    }

    template <async_completion D>
        requires AsyncCacheStore<inner_type>
    void async_remove(const context& ctx, const chunk_key& key, D done) {
        async_guarded<void>(store_op::remove, std::move(done),
                            [&](auto finish) { inner_.async_remove(ctx, key, std::move(finish)); });
    }

    template <class F>
        requires AsyncCacheStore<inner_type>
    void post(F f) { inner_.post(std::move(f)); }

private:
    /// Reports a call's end exactly once; as neutral when the inner store throws.
    class admitted {
    public:
        admitted(detail::breaker_core& c, detail::breaker_core::ticket t) noexcept : core_(c), t_(t) {}
        admitted(const admitted&) = delete;
        admitted& operator=(const admitted&) = delete;
        ~admitted() {
            if (!done_) core_.finish(t_, static_cast<std::size_t>(errc::cancelled));
        }
        void finish(std::size_t outcome) {
            done_ = true;
            core_.finish(t_, outcome);
        }

    private:
        detail::breaker_core& core_;
        detail::breaker_core::ticket t_;
        bool done_ = false;
    };

    template <class F>
    auto guarded(store_op op, F&& f) -> decltype(f()) {
        auto t = core_->admit(op);
        if (!t) return std::unexpected(std::move(t.error()));
        admitted a(*core_, *t);
        auto r = f();
        a.finish(outcome_index(r));
        return r;
    }

    /// Admits an async call and starts it with a completion that reports its
    /// outcome; a refusal completes with its error through the inner `post`.
    template <class T, class D, class Start>
    void async_guarded(store_op op, D done, Start start) {
        auto t = core_->admit(op);
        if (!t) {
            inner_.post([done = std::move(done), e = std::move(t.error())]() mutable {
                std::move(done)(result<T>(std::unexpected(std::move(e))));
            });
            return;
        }
        start(detail::breaker_done<D, T>(std::move(done), *core_, *t));
    }

    std::unique_ptr<detail::breaker_core> core_; // first: outlives an async inner store's last completions
    S inner_;
};

/// Appends `snaps` (one per breaker; give each a distinct name) in the
/// Prometheus text format:
///
///   cachestore_breaker_state{state}            gauge, 1 for the current state
///   cachestore_breaker_transitions_total{to}   counter
///   cachestore_breaker_rejected_total          counter (calls refused without I/O)
///   cachestore_breaker_failures_total          counter (calls that ended in a failure class)
inline void write_prometheus(std::string& out, std::span<const breaker_snapshot> snaps) {
    namespace prom = detail::prom;
    constexpr breaker_state states[] = {breaker_state::closed, breaker_state::open, breaker_state::half_open};
    prom::family(out, "cachestore_breaker_state", "gauge", "Circuit breaker state: 1 for the current one.");
    for (const auto& b : snaps)
        for (const auto s : states)
            prom::sample(out, "cachestore_breaker_state", prom::with_label(prom::store_labels(b.store), "state", to_string(s)),
                         std::uint64_t{b.state == s ? 1U : 0U});
    prom::family(out, "cachestore_breaker_transitions_total", "counter", "Circuit breaker state changes, by new state.");
    for (const auto& b : snaps) {
        const std::string base = prom::store_labels(b.store);
        prom::sample(out, "cachestore_breaker_transitions_total", prom::with_label(base, "to", "open"), b.opened);
        prom::sample(out, "cachestore_breaker_transitions_total", prom::with_label(base, "to", "half_open"), b.half_opened);
        prom::sample(out, "cachestore_breaker_transitions_total", prom::with_label(base, "to", "closed"), b.closed);
    }
    prom::family(out, "cachestore_breaker_rejected_total", "counter",
                 "Calls the circuit breaker refused with errc::unavailable, without I/O.");
    for (const auto& b : snaps) prom::sample(out, "cachestore_breaker_rejected_total", prom::store_labels(b.store), b.rejected);
    prom::family(out, "cachestore_breaker_failures_total", "counter",
                 "Calls that ended in a failure class the circuit breaker counts.");
    for (const auto& b : snaps) prom::sample(out, "cachestore_breaker_failures_total", prom::store_labels(b.store), b.failures);
}

inline void write_prometheus(std::string& out, const breaker_snapshot& b) {
    write_prometheus(out, std::span<const breaker_snapshot>(&b, 1));
}

static_assert(CacheStore<breaker<detail::archetype_store>>);
static_assert(CacheStore<breaker<detail::archetype_store&>>);
static_assert(detail::has_get_chunk_into<breaker<detail::archetype_store_into>>);
static_assert(!detail::has_get_chunk_into<breaker<detail::archetype_store>>);
static_assert(AsyncCacheStore<breaker<detail::archetype_async_store>>);
static_assert(!CacheStore<breaker<detail::archetype_async_store>>);

} // namespace cachestore
