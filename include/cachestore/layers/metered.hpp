// cachestore/layers/metered.hpp - cachestore::metered<S>: a CacheStore that
// counts, times and measures every call to the store it wraps, with a
// snapshot API and a Prometheus text-exposition writer. docs/layers.md.
#pragma once

#include <chrono>
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
#include "cachestore/layers/detail/meter.hpp"
#include "cachestore/layers/detail/meter_async.hpp"
#include "cachestore/layers/detail/prometheus.hpp"
#include "cachestore/layers/histogram.hpp"
#include "cachestore/layers/operation.hpp"
#include "cachestore/store.hpp"

namespace cachestore {

struct metered_options {
    /// Added to every series as the label `store="name"` (none when empty):
    /// tells several metered stores in one process apart.
    std::string name;
};

/// Wraps a CacheStore `S` and counts every call per operation and outcome,
/// times it (entry to return, and entry to the first byte for get_chunk),
/// adds up the bytes read and committed and keeps an in-flight gauge. The hot
/// path is a few relaxed atomic additions on a per-thread shard and two or
/// three clock reads. Owns the inner store (`metered<S>`), or refers to one
/// that outlives it (`metered<S&>`). Thread-safe when `S` is; movable.
/// Over an AsyncCacheStore it is one too (docs/async.md): a call runs from
/// initiation to its completion, with the same counters.
template <class S>
    requires CacheStore<S> || AsyncCacheStore<std::remove_reference_t<S>>
class metered {
public:
    using inner_type = std::remove_reference_t<S>;

    explicit metered(S inner, metered_options opts = {})
        : meter_(std::make_unique<detail::meter>(std::move(opts.name))), inner_(static_cast<S&&>(inner)) {}

    /// Constructs the inner store in place from `args` (for stores that
    /// cannot move, e.g. memory_store).
    template <class... Args>
    explicit metered(std::in_place_t, metered_options opts, Args&&... args)
        : meter_(std::make_unique<detail::meter>(std::move(opts.name))), inner_(std::forward<Args>(args)...) {}

    [[nodiscard]] inner_type& inner() noexcept { return inner_; }
    [[nodiscard]] const inner_type& inner() const noexcept { return inner_; }

    /// Everything counted so far (each counter read once; a call that ends
    /// meanwhile may show in one counter and not yet in another).
    [[nodiscard]] metrics_snapshot snapshot() const { return meter_->snapshot(); }

    // ---- CacheStore ------------------------------------------------------

    template <chunk_sink Sink>
        requires CacheStore<S>
    result<> get_chunk(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, Sink&& sink) {
        call c(*meter_, store_op::get_chunk);
        std::uint64_t bytes = 0;
        auto counting = [&](std::span<const std::byte> b) -> bool {
            if (bytes == 0 && !b.empty()) detail::meter::first_byte(c.shard, detail::elapsed_ns(c.start, clock::now()));
            bytes += b.size();
            return static_cast<bool>(sink(b));
        };
        result<> r = inner_.get_chunk(ctx, key, off, n, counting);
        if (bytes != 0) detail::add(c.shard.bytes_read, bytes);
        c.end(r);
        return r;
    }

    /// Only when the inner store has it. The first byte of a read straight
    /// into the caller's span is not observable: such calls add to the
    /// get_chunk counts and durations, not to the first-byte histogram.
    result<> get_chunk_into(const context& ctx, const chunk_key& key, std::int64_t off, std::span<std::byte> out)
        requires detail::has_get_chunk_into<inner_type>
    {
        call c(*meter_, store_op::get_chunk);
        result<> r = inner_.get_chunk_into(ctx, key, off, out);
        if (r) detail::add(c.shard.bytes_read, out.size());
        c.end(r);
        return r;
    }

    template <chunk_source Src>
        requires CacheStore<S>
    result<> put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src&& src) {
        call c(*meter_, store_op::put_chunk);
        result<> r = inner_.put_chunk(ctx, key, size, std::forward<Src>(src));
        if (r) detail::add(c.shard.bytes_written, static_cast<std::uint64_t>(size));
        c.end(r);
        return r;
    }

    /// Only when the inner store has it; counted as put_chunk.
    result<> put_chunk_prehashed(const context& ctx, const chunk_key& key, std::span<const std::byte> bytes,
                                 std::string_view sha256_hex)
        requires detail::has_put_chunk_prehashed<inner_type>
    {
        call c(*meter_, store_op::put_chunk);
        result<> r = inner_.put_chunk_prehashed(ctx, key, bytes, sha256_hex);
        if (r) detail::add(c.shard.bytes_written, bytes.size());
        c.end(r);
        return r;
    }

    result<info> stat(const context& ctx, const chunk_key& key)
        requires CacheStore<S>
    {
        call c(*meter_, store_op::stat);
        result<info> r = inner_.stat(ctx, key);
        c.end(r);
        return r;
    }

    result<> remove(const context& ctx, const chunk_key& key)
        requires CacheStore<S>
    {
        call c(*meter_, store_op::remove);
        result<> r = inner_.remove(ctx, key);
        c.end(r);
        return r;
    }

    /// Also over an async store that has a (blocking) self_test.
    result<> self_test(const context& ctx)
        requires requires(inner_type& s) {
            { s.self_test(std::declval<const context&>()) } -> std::same_as<result<>>;
        }
    {
        call c(*meter_, store_op::self_test);
        result<> r = inner_.self_test(ctx);
        c.end(r);
        return r;
    }

    // ---- AsyncCacheStore (over an async store) ---------------------------

    template <async_chunk_sink K, async_completion D>
        requires AsyncCacheStore<inner_type>
    void async_get_chunk(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, K sink, D done) {
        auto c = std::make_shared<detail::async_meter_call>(*meter_, store_op::get_chunk);
        inner_.async_get_chunk(ctx, key, off, n, detail::metered_sink<K>{std::move(sink), c},
                               detail::metered_done<D, void>{std::move(done), c});
    }

    template <class Src, async_completion D>
        requires AsyncCacheStore<inner_type>
    void async_put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src src, D done) {
        auto c = std::make_shared<detail::async_meter_call>(*meter_, store_op::put_chunk);
        inner_.async_put_chunk(ctx, key, size, std::move(src),
                               detail::metered_done<D, void>{std::move(done), c, static_cast<std::uint64_t>(size)});
    }

    template <async_completion<info> D>
        requires AsyncCacheStore<inner_type>
    void async_stat(const context& ctx, const chunk_key& key, D done) {
        auto c = std::make_shared<detail::async_meter_call>(*meter_, store_op::stat);
        inner_.async_stat(ctx, key, detail::metered_done<D, info>{std::move(done), c});
    }

    template <async_completion D>
        requires AsyncCacheStore<inner_type>
    void async_remove(const context& ctx, const chunk_key& key, D done) {
        auto c = std::make_shared<detail::async_meter_call>(*meter_, store_op::remove);
        inner_.async_remove(ctx, key, detail::metered_done<D, void>{std::move(done), c});
    }

    template <class F>
        requires AsyncCacheStore<inner_type>
    void post(F f) { inner_.post(std::move(f)); }

private:
    using clock = std::chrono::steady_clock;

    /// One call: in flight from construction to end(). When the inner store
    /// throws (std::bad_alloc), the destructor counts the call as io_error.
    struct call {
        detail::meter_shard& shard;
        store_op op;
        clock::time_point start;
        bool ended = false;

        call(detail::meter& m, store_op o) noexcept : shard(m.local()), op(o), start(clock::now()) {
            detail::meter::begin(shard, op);
        }
        call(const call&) = delete;
        call& operator=(const call&) = delete;
        ~call() {
            if (!ended) detail::meter::end(shard, op, static_cast<std::size_t>(errc::io_error), detail::elapsed_ns(start, clock::now()));
        }
        template <class T>
        void end(const result<T>& r) noexcept {
            ended = true;
            detail::meter::end(shard, op, outcome_index(r), detail::elapsed_ns(start, clock::now()));
        }
    };

    std::unique_ptr<detail::meter> meter_; // first: outlives an async inner store's last completions
    S inner_;
};

/// Appends `snaps` (one per metered store; give each a distinct name) in the
/// Prometheus text exposition format, version 0.0.4:
///
///   cachestore_operations_total{op,outcome}          counter
///   cachestore_operation_duration_seconds{op}        histogram
///   cachestore_get_first_byte_seconds                histogram
///   cachestore_read_bytes_total, cachestore_written_bytes_total   counters
///   cachestore_operations_in_flight{op}              gauge
///
/// Every op and outcome appears, zeros included, so that rates exist from the
/// first scrape.
inline void write_prometheus(std::string& out, std::span<const metrics_snapshot> snaps) {
    namespace prom = detail::prom;
    prom::family(out, "cachestore_operations_total", "counter",
                 "Store calls that ended, by operation and outcome (ok or the error code).");
    for (const auto& m : snaps) {
        const std::string base = prom::store_labels(m.store);
        for (std::size_t o = 0; o < store_op_count; ++o) {
            const std::string op = prom::with_label(base, "op", to_string(static_cast<store_op>(o)));
            for (std::size_t k = 0; k < outcome_count; ++k)
                prom::sample(out, "cachestore_operations_total", prom::with_label(op, "outcome", outcome_name(k)),
                             m.ops[o].outcomes[k]);
        }
    }
    prom::family(out, "cachestore_operation_duration_seconds", "histogram",
                 "Duration of store calls, from entry to return, by operation.");
    for (const auto& m : snaps) {
        const std::string base = prom::store_labels(m.store);
        for (std::size_t o = 0; o < store_op_count; ++o)
            prom::histogram(out, "cachestore_operation_duration_seconds",
                            prom::with_label(base, "op", to_string(static_cast<store_op>(o))), m.ops[o].duration);
    }
    prom::family(out, "cachestore_get_first_byte_seconds", "histogram",
                 "get_chunk: time from entry to the first byte handed to the sink.");
    for (const auto& m : snaps) prom::histogram(out, "cachestore_get_first_byte_seconds", prom::store_labels(m.store), m.get_first_byte);
    prom::family(out, "cachestore_read_bytes_total", "counter", "Bytes get_chunk delivered to callers.");
    for (const auto& m : snaps) prom::sample(out, "cachestore_read_bytes_total", prom::store_labels(m.store), m.bytes_read);
    prom::family(out, "cachestore_written_bytes_total", "counter", "Bytes of the chunks put_chunk committed.");
    for (const auto& m : snaps)
        prom::sample(out, "cachestore_written_bytes_total", prom::store_labels(m.store), m.bytes_written);
    prom::family(out, "cachestore_operations_in_flight", "gauge", "Store calls in progress, by operation.");
    for (const auto& m : snaps) {
        const std::string base = prom::store_labels(m.store);
        for (std::size_t o = 0; o < store_op_count; ++o)
            prom::sample(out, "cachestore_operations_in_flight", prom::with_label(base, "op", to_string(static_cast<store_op>(o))),
                         m.ops[o].in_flight);
    }
}

/// One metered store's metrics in the Prometheus text format.
inline void write_prometheus(std::string& out, const metrics_snapshot& m) {
    write_prometheus(out, std::span<const metrics_snapshot>(&m, 1));
}

static_assert(CacheStore<metered<detail::archetype_store>>);
static_assert(CacheStore<metered<detail::archetype_store&>>);
static_assert(detail::has_get_chunk_into<metered<detail::archetype_store_into>>);
static_assert(!detail::has_get_chunk_into<metered<detail::archetype_store>>);
static_assert(AsyncCacheStore<metered<detail::archetype_async_store>>);
static_assert(!CacheStore<metered<detail::archetype_async_store>>);
static_assert(!AsyncCacheStore<metered<detail::archetype_store>>);

} // namespace cachestore
