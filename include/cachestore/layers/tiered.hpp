// cachestore/layers/tiered.hpp - cachestore::tiered<Near, Far>: a near tier (a
// bounded local disk) in front of a far tier (the shared S3 store), as one
// CacheStore. Reads try the near tier first; a far hit is served and promoted
// into the near tier off the caller's path; puts commit to the far tier, then
// the near tier. docs/tiered.md.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/layers/detail/archetype_store.hpp"
#include "cachestore/layers/detail/breaker_core.hpp"
#include "cachestore/layers/detail/promotions.hpp"
#include "cachestore/layers/operation.hpp"
#include "cachestore/layers/tiered_options.hpp"
#include "cachestore/store.hpp"

namespace cachestore {

namespace detail {

/// A near-tier answer the far tier may still serve: a miss, or a failure of
/// the near tier itself. Not the caller's own stop, deadline or bad
/// arguments, which the far tier would answer the same way.
[[nodiscard]] constexpr bool far_may_answer(errc e) noexcept {
    return e != errc::cancelled && e != errc::deadline_exceeded && e != errc::invalid_argument && e != errc::out_of_range;
}

/// Wraps a caller's sink: counts what it accepted and remembers a refusal.
template <class Sink>
struct counted_sink {
    Sink& sink;
    std::int64_t delivered = 0;
    bool refused = false;
    std::vector<std::byte>* copy = nullptr; ///< a promotion's copy of the bytes, when one is kept
    std::size_t keep = 0;                   ///< at most this many (the buffer's capacity holds them)
    bool operator()(std::span<const std::byte> b) {
        if (copy != nullptr && b.size() <= keep - copy->size()) {
            copy->insert(copy->end(), b.begin(), b.end());
        }
        if (!sink(b)) {
            refused = true;
            return false;
        }
        delivered += static_cast<std::int64_t>(b.size());
        return true;
    }
};

} // namespace detail

/// A near tier `Near` in front of a far tier `Far`, as one CacheStore
/// (requirement table in docs/tiered.md). Each tier is owned (`tiered<A, B>`)
/// or referred to (`tiered<A&, B&>`); both live behind one pointer, so the
/// store moves while promotions run. Thread-safe when both tiers are.
template <CacheStore Near, CacheStore Far>
class tiered {
public:
    using near_type = std::remove_reference_t<Near>;
    using far_type = std::remove_reference_t<Far>;

    tiered(Near near, Far far, tiered_options opts = {})
        : b_(std::make_unique<body>(static_cast<Near&&>(near), static_cast<Far&&>(far), std::move(opts))) {}

    /// Builds each tier in place from its tuple of arguments (for stores that
    /// cannot move, e.g. memory_store).
    template <class... NearArgs, class... FarArgs>
    tiered(std::piecewise_construct_t, std::tuple<NearArgs...> near_args, std::tuple<FarArgs...> far_args,
           tiered_options opts = {})
        : b_(std::make_unique<body>(std::piecewise_construct, std::move(near_args), std::move(far_args), std::move(opts))) {}

    [[nodiscard]] near_type& near() noexcept { return b_->near; }
    [[nodiscard]] const near_type& near() const noexcept { return b_->near; }
    [[nodiscard]] far_type& far() noexcept { return b_->far; }
    [[nodiscard]] const far_type& far() const noexcept { return b_->far; }

    [[nodiscard]] tiered_snapshot snapshot() const { return b_->snapshot(); }

    // ---- CacheStore ------------------------------------------------------

    /// The near tier; on its miss or failure the far tier, from the first byte
    /// the near tier did not deliver. A far hit is promoted (docs/tiered.md).
    template <chunk_sink Sink>
    result<> get_chunk(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, Sink&& sink) {
        body& b = *b_;
        detail::counted_sink<std::remove_reference_t<Sink>> counted{sink};
        bool near_missed = false;
        if (auto r = b.near_first(
                store_op::get_chunk, [&] { return b.near.get_chunk(ctx, key, off, n, counted); }, near_missed,
                [&] { return counted.refused; }))
            return std::move(*r);
        const std::int64_t done = counted.delivered; // > 0 only after a near failure mid-way
        if (done > 0) ++b.c.near_resumed;
        detail::promotions::ticket promo;
        if (near_missed) promo = b.plan(key, off);
        if (promo && off == 0) {
            counted.copy = &promo.buffer();
            counted.keep = static_cast<std::size_t>(n); // <= chunk_size, the buffer's capacity
        }
        auto r = b.far.get_chunk(ctx, key, off + done, n - done, counted);
        if (r && promo) b.promote(std::move(promo), key);
        return b.far_answer(store_op::get_chunk, r);
    }

    /// Only when the near tier has it: reads straight into `out` from the
    /// near tier, and from the far tier through cachestore::get_chunk.
    result<> get_chunk_into(const context& ctx, const chunk_key& key, std::int64_t off, std::span<std::byte> out)
        requires detail::has_get_chunk_into<near_type>
    {
        body& b = *b_;
        bool near_missed = false;
        if (auto r = b.near_first(store_op::get_chunk, [&] { return b.near.get_chunk_into(ctx, key, off, out); }, near_missed))
            return std::move(*r);
        detail::promotions::ticket promo;
        if (near_missed) promo = b.plan(key, off);
        auto r = cachestore::get_chunk(b.far, ctx, key, off, out);
        if (r && promo) {
            if (off == 0) promo.buffer().assign(out.begin(), out.end()); // the one copy a promotion costs
            b.promote(std::move(promo), key);
        }
        return b.far_answer(store_op::get_chunk, r);
    }

    /// The far tier first (the shared truth); then, when it took the bytes
    /// (or had them: commit_lost), the near tier. The far tier's answer is
    /// returned; a near failure is counted, never returned.
    template <chunk_source Src>
    result<> put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src&& src) {
        body& b = *b_;
        if constexpr (source_function<std::remove_cvref_t<Src>>) {
            // A stream is read once: the far tier's put reads it through a copy for the near tier.
            // The copy grows as the bytes arrive (never reserved from `size`,
            // which a failing source may never deliver).
            std::vector<std::byte> copy;
            const bool keep = size > 0 && size <= key.chunk_size && b.near_open_for_puts();
            auto tee = [&](std::span<std::byte> buf) -> result<std::size_t> {
                result<std::size_t> got = src(buf);
                if (keep && got && *got <= buf.size() && *got <= static_cast<std::size_t>(size) - copy.size())
                    copy.insert(copy.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*got));
                return got;
            };
            auto r = b.far.put_chunk(ctx, key, size, tee);
            if (keep && !r && r.error().code == errc::commit_lost && copy.empty()) {
                // The far tier had the chunk before reading the stream (drivers
                // stat first): the stream holds the same bytes, read them for the near tier.
                std::byte scratch[16 * 1024];
                auto pulled = detail::pump_exact(ctx, "put_chunk", {}, src, size, scratch,
                                                 [&](std::span<const std::byte> x) -> result<> {
                                                     copy.insert(copy.end(), x.begin(), x.end());
                                                     return {};
                                                 });
                if (!pulled) copy.clear();
            }
            if (keep && copy.size() == static_cast<std::size_t>(size)) b.put_near(ctx, key, r, std::span<const std::byte>(copy));
            return r;
        } else {
            const std::span<const std::byte> bytes(src);
            auto r = b.far.put_chunk(ctx, key, size, bytes);
            b.put_near(ctx, key, r, bytes);
            return r;
        }
    }

    /// Only when the far tier has it (S3): the far tier skips hashing again.
    result<> put_chunk_prehashed(const context& ctx, const chunk_key& key, std::span<const std::byte> bytes,
                                 std::string_view sha256_hex)
        requires detail::has_put_chunk_prehashed<far_type>
    {
        auto r = b_->far.put_chunk_prehashed(ctx, key, bytes, sha256_hex);
        b_->put_near(ctx, key, r, bytes);
        return r;
    }

    /// The near tier, then (on its miss or failure) the far tier.
    result<info> stat(const context& ctx, const chunk_key& key) {
        body& b = *b_;
        bool near_missed = false;
        if (auto r = b.near_first(store_op::stat, [&] { return b.near.stat(ctx, key); }, near_missed)) return std::move(*r);
        return b.far_answer(store_op::stat, b.far.stat(ctx, key));
    }

    /// Both tiers, the far one first, whatever the near tier's breaker says;
    /// no promotion that raced the removal leaves the chunk in the near tier.
    result<> remove(const context& ctx, const chunk_key& key) {
        body& b = *b_;
        auto path = storage_path(key);
        if (!path) return std::unexpected(std::move(path.error()));
        const detail::promotions::removal no_promotions(b.promos, *path);
        auto far = b.far.remove(ctx, key);
        auto near = b.near.remove(ctx, key);
        if (!far) return far;
        if (!near) return in_tier("near", std::move(near));
        return {};
    }

    /// Both tiers; a failure names its tier ("near tier: ..." / "far tier: ...").
    result<> self_test(const context& ctx) {
        auto near = b_->near.self_test(ctx);
        if (!near) return in_tier("near", std::move(near));
        auto far = b_->far.self_test(ctx);
        if (!far) return in_tier("far", std::move(far));
        return {};
    }

private:
    static result<> in_tier(std::string_view name, result<> r) {
        r.error().message = std::string(name) + " tier: " + r.error().message;
        return r;
    }

    struct counters {
        std::atomic<std::uint64_t> get_hits[3] = {}, stat_hits[3] = {};
        std::atomic<std::uint64_t> near_errors{0}, near_resumed{0}, bypassed{0}, near_put_failures{0};
        std::atomic<std::uint64_t> promotions_done{0}, promotions_skipped{0}, promotions_failed{0}, promotion_bytes{0};
    };

    struct body {
        Near near;
        Far far;
        const tiered_options opt;
        counters c;
        detail::breaker_core near_health;
        detail::promotions promos; // last: its threads end before the tiers go

        body(Near n, Far f, tiered_options o)
            : near(static_cast<Near&&>(n)), far(static_cast<Far&&>(f)), opt(std::move(o)), near_health(opt.near_breaker),
              promos(opt.promotion_queue_bytes, opt.promotion_threads) {}
        template <class NT, class FT>
        body(std::piecewise_construct_t, NT na, FT fa, tiered_options o)
            : near(std::make_from_tuple<Near>(std::move(na))), far(std::make_from_tuple<Far>(std::move(fa))),
              opt(std::move(o)), near_health(opt.near_breaker), promos(opt.promotion_queue_bytes, opt.promotion_threads) {}

        /// The near tier's answer to `call` when it is the caller's: a hit, or
        /// an error the far tier would give the same way (or one `final()`
        /// calls final, such as a sink's refusal). Otherwise nothing: the far
        /// tier answers; `missed` tells a near miss from a near failure
        /// (counted) or a bypass (the breaker is open; counted).
        template <class Call, class Final = bool (*)()>
        auto near_first(store_op op, Call&& call, bool& missed, Final&& final = [] { return false; })
            -> std::optional<std::invoke_result_t<Call&>> {
            missed = false;
            auto t = near_health.admit(op);
            if (!t) {
                ++c.bypassed;
                return std::nullopt;
            }
            auto r = call();
            near_health.finish(*t, outcome_index(r));
            if (r) return hit(op, tier::near, std::move(r));
            if (!detail::far_may_answer(r.error().code) || final()) return r;
            missed = r.error().code == errc::not_found;
            if (!missed) ++c.near_errors;
            return std::nullopt;
        }

        /// The near tier's put of `bytes` through its breaker; nothing when the breaker is open.
        std::optional<result<>> near_put(const context& ctx, const chunk_key& key, std::span<const std::byte> bytes) {
            auto t = near_health.admit(store_op::put_chunk);
            if (!t) return std::nullopt;
            auto r = near.put_chunk(ctx, key, static_cast<std::int64_t>(bytes.size()), bytes);
            near_health.finish(*t, outcome_index(r));
            return r;
        }

        bool near_open_for_puts() const { return near_health.state() != breaker_state::open; }

        template <class T>
        T hit(store_op op, tier t, T r) {
            ++(op == store_op::stat ? c.stat_hits : c.get_hits)[static_cast<std::size_t>(t)];
            return r;
        }
        template <class T>
        T far_answer(store_op op, T r) {
            if (r) return hit(op, tier::far, std::move(r));
            if (r.error().code == errc::not_found) return hit(op, tier::none, std::move(r));
            return r;
        }

        /// A promotion of the chunk a far read from `off` is about to serve.
        detail::promotions::ticket plan(const chunk_key& key, std::int64_t off) {
            if (opt.promotion_queue_bytes == 0 || (off != 0 && !opt.promote_partial_reads)) return {};
            auto path = storage_path(key);
            if (!path || near_health.state() == breaker_state::open) {
                ++c.promotions_skipped;
                return {};
            }
            auto t = promos.plan(*path, static_cast<std::size_t>(key.chunk_size));
            if (!t) ++c.promotions_skipped;
            return t;
        }

        /// Queues the promotion; its buffer holds the chunk's first bytes (or none).
        void promote(detail::promotions::ticket t, const chunk_key& key) {
            promos.submit(std::move(t), [this, key](detail::promotions::ticket& tk, std::stop_token stop) {
                const context ctx(std::move(stop), context::clock::now() + opt.promotion_timeout);
                auto r = promote_now(ctx, tk, key);
                if (r) ++c.promotions_done;
                else if (r.error().code == errc::unavailable) ++c.promotions_skipped;
                else ++c.promotions_failed;
            });
        }

        /// The whole chunk into the ticket's buffer (reading from the far tier
        /// what the caller's read did not give), then into the near tier.
        result<> promote_now(const context& ctx, detail::promotions::ticket& t, const chunk_key& key) {
            std::vector<std::byte>& bytes = t.buffer();
            if (std::cmp_less(bytes.size(), key.chunk_size)) {
                auto st = far.stat(ctx, key);
                if (!st) return std::unexpected(std::move(st.error()));
                const auto have = static_cast<std::int64_t>(bytes.size());
                if (st->size < have || st->size > key.chunk_size)
                    return fail(errc::protocol, "promote", t.path(), "the far tier's size disagrees with its bytes");
                if (st->size > have) {
                    bytes.resize(static_cast<std::size_t>(st->size));
                    auto rest = cachestore::get_chunk(far, ctx, key, have, std::span<std::byte>(bytes).subspan(static_cast<std::size_t>(have)));
                    if (!rest) return rest;
                }
            }
            if (!promos.begin_put(t)) return fail(errc::unavailable, "promote", t.path(), "the chunk is being removed");
            auto r = near_put(ctx, key, bytes);
            if (!r) return fail(errc::unavailable, "promote", t.path(), "the near tier is bypassed (its breaker is open)");
            if (!*r && r->error().code != errc::commit_lost) return std::move(*r);
            if (*r) c.promotion_bytes += bytes.size();
            return {};
        }

        /// After the far tier's answer `far_r` to a put: the near put, when the far tier has the bytes.
        void put_near(const context& ctx, const chunk_key& key, const result<>& far_r, std::span<const std::byte> bytes) {
            if (!far_r && far_r.error().code != errc::commit_lost) return;
            auto r = near_put(ctx, key, bytes);
            if (!r) ++c.bypassed;
            else if (!*r && r->error().code != errc::commit_lost) ++c.near_put_failures;
        }

        tiered_snapshot snapshot() {
            tiered_snapshot s;
            s.store = opt.name;
            for (std::size_t i = 0; i < 3; ++i) {
                s.get_hits[i] = c.get_hits[i].load();
                s.stat_hits[i] = c.stat_hits[i].load();
            }
            s.near_errors = c.near_errors.load();
            s.near_resumed = c.near_resumed.load();
            s.bypassed = c.bypassed.load();
            s.near_put_failures = c.near_put_failures.load();
            s.promotions_done = c.promotions_done.load();
            s.promotions_skipped = c.promotions_skipped.load();
            s.promotions_failed = c.promotions_failed.load();
            s.promotion_bytes = c.promotion_bytes.load();
            s.promotion_queue_bytes = promos.queued_bytes();
            s.near_breaker = near_health.snapshot();
            return s;
        }
    };

    std::unique_ptr<body> b_;
};

static_assert(CacheStore<tiered<detail::archetype_store, detail::archetype_store>>);
static_assert(CacheStore<tiered<detail::archetype_store&, detail::archetype_store_into&>>);
static_assert(detail::has_get_chunk_into<tiered<detail::archetype_store_into, detail::archetype_store>>);
static_assert(!detail::has_get_chunk_into<tiered<detail::archetype_store, detail::archetype_store_into>>);

} // namespace cachestore
