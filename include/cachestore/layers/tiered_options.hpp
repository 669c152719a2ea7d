// cachestore/layers/tiered_options.hpp - the options of cachestore::tiered, the
// counters it keeps, and their Prometheus text (docs/tiered.md).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "cachestore/error.hpp"
#include "cachestore/layers/detail/breaker_core.hpp"
#include "cachestore/layers/detail/prometheus.hpp"
#include "cachestore/layers/operation.hpp"

namespace cachestore {

/// The near tier's circuit breaker: 5 failures within 30 s open it for 30 s,
/// then 3 probes (the breaker layer's window, period and probes; half its
/// threshold, since a local disk fails far less often than a network), and
/// it counts what a sick disk answers (io_error: EIO, ENOSPC, EROFS) besides
/// transient, auth, protocol and misconfigured.
[[nodiscard]] inline breaker_options near_tier_breaker() {
    breaker_options b;
    b.failure_threshold = 5;
    b.failures = errc_set{errc::io_error, errc::transient, errc::auth, errc::protocol, errc::misconfigured};
    return b;
}

/// How `tiered<Near, Far>` promotes and guards its near tier.
struct tiered_options {
    /// The Prometheus `store` label (none when empty).
    std::string name;
    /// Bytes of far hits waiting for, or being written by, a promotion (each
    /// counts `chunk_size` until its near put answers). A far hit that would
    /// pass it is not promoted (counted as skipped). 0: never promote.
    std::size_t promotion_queue_bytes = std::size_t{256} << 20;
    /// Threads writing promotions into the near tier (started on first use).
    std::size_t promotion_threads = 2;
    /// Ceiling of one promotion (far stat and read when needed, near put).
    std::chrono::steady_clock::duration promotion_timeout = std::chrono::seconds(60);
    /// A far hit of a range not starting at 0 still promotes the chunk: the
    /// promotion reads the whole chunk from the far tier again (one more far
    /// GET and a stat). false: only reads from offset 0 promote.
    bool promote_partial_reads = true;
    /// The breaker over the near tier: while open, calls bypass it (reads
    /// and stats go to the far tier, puts reach the far tier only).
    breaker_options near_breaker = near_tier_breaker();
};

/// Which tier answered a get_chunk or stat.
enum class tier : std::uint8_t { near, far, none };

[[nodiscard]] constexpr std::string_view to_string(tier t) noexcept {
    switch (t) {
    case tier::near: return "near";
    case tier::far: return "far";
    case tier::none: return "none";
    }
    return "unknown";
}

/// A tiered store's counters at one moment.
struct tiered_snapshot {
    std::string store;
    std::uint64_t get_hits[3] = {};  ///< get_chunk calls answered by tier::near, tier::far, or neither (not_found)
    std::uint64_t stat_hits[3] = {}; ///< the same for stat
    std::uint64_t near_errors = 0;   ///< near-tier failures a caller never saw (the far tier answered instead)
    std::uint64_t near_resumed = 0;  ///< reads the near tier failed mid-way, finished from the far tier
    std::uint64_t bypassed = 0;      ///< calls that skipped the near tier: its breaker was open
    std::uint64_t near_put_failures = 0;     ///< puts the far tier took and the near tier failed (not returned)
    std::uint64_t promotions_done = 0;       ///< far hits written to the near tier (or found there already)
    std::uint64_t promotions_skipped = 0;    ///< far hits not promoted: one already running, queue full, removal, near bypassed
    std::uint64_t promotions_failed = 0;     ///< promotions that failed (far re-read or near put)
    std::uint64_t promotion_bytes = 0;       ///< bytes promotions wrote to the near tier
    std::uint64_t promotion_queue_bytes = 0; ///< gauge: bytes reserved by promotions now
    breaker_snapshot near_breaker;           ///< the near tier's breaker
};

/// Appends `snaps` (one per tiered store; give each a distinct name) in the
/// Prometheus text format:
///
///   cachestore_tier_hits_total{op,tier}          get_chunk and stat calls by the tier that answered (near, far, none)
///   cachestore_tier_near_errors_total            near-tier failures the far tier covered
///   cachestore_tier_near_resumed_total           reads finished from the far tier after the near tier failed mid-way
///   cachestore_tier_bypassed_total               calls that skipped the near tier (its breaker open)
///   cachestore_tier_near_put_failures_total      puts the far tier took and the near tier did not
///   cachestore_tier_promotions_total{result}     done, skipped, failed
///   cachestore_tier_promotion_bytes_total        bytes promoted into the near tier
///   cachestore_tier_promotion_queue_bytes        gauge
///   cachestore_tier_near_state{state}            gauge, 1 for the near breaker's current state
inline void write_prometheus(std::string& out, std::span<const tiered_snapshot> snaps) {
    namespace prom = detail::prom;
    prom::family(out, "cachestore_tier_hits_total", "counter", "get_chunk and stat calls by the tier that answered.");
    for (const auto& s : snaps) {
        const std::string base = prom::store_labels(s.store);
        for (const tier t : {tier::near, tier::far, tier::none}) {
            const auto i = static_cast<std::size_t>(t);
            prom::sample(out, "cachestore_tier_hits_total",
                         prom::with_label(prom::with_label(base, "op", "get_chunk"), "tier", to_string(t)), s.get_hits[i]);
            prom::sample(out, "cachestore_tier_hits_total",
                         prom::with_label(prom::with_label(base, "op", "stat"), "tier", to_string(t)), s.stat_hits[i]);
        }
    }
    struct counter {
        const char* name;
        const char* help;
        std::uint64_t tiered_snapshot::*field;
    };
    static constexpr counter counters[] = {
        {"cachestore_tier_near_errors_total", "Near-tier failures the far tier covered.", &tiered_snapshot::near_errors},
        {"cachestore_tier_near_resumed_total", "Reads finished from the far tier after the near tier failed mid-way.",
         &tiered_snapshot::near_resumed},
        {"cachestore_tier_bypassed_total", "Calls that skipped the near tier while its breaker was open.",
         &tiered_snapshot::bypassed},
        {"cachestore_tier_near_put_failures_total", "Puts the far tier took and the near tier did not.",
         &tiered_snapshot::near_put_failures},
        {"cachestore_tier_promotion_bytes_total", "Bytes promotions wrote to the near tier.", &tiered_snapshot::promotion_bytes},
    };
    for (const auto& c : counters) {
        prom::family(out, c.name, "counter", c.help);
        for (const auto& s : snaps) prom::sample(out, c.name, prom::store_labels(s.store), s.*c.field);
    }
    prom::family(out, "cachestore_tier_promotions_total", "counter", "Far hits promoted into the near tier, by result.");
    for (const auto& s : snaps) {
        const std::string base = prom::store_labels(s.store);
        prom::sample(out, "cachestore_tier_promotions_total", prom::with_label(base, "result", "done"), s.promotions_done);
        prom::sample(out, "cachestore_tier_promotions_total", prom::with_label(base, "result", "skipped"), s.promotions_skipped);
        prom::sample(out, "cachestore_tier_promotions_total", prom::with_label(base, "result", "failed"), s.promotions_failed);
    }
    prom::family(out, "cachestore_tier_promotion_queue_bytes", "gauge", "Bytes reserved by promotions now.");
    for (const auto& s : snaps)
        prom::sample(out, "cachestore_tier_promotion_queue_bytes", prom::store_labels(s.store), s.promotion_queue_bytes);
    prom::family(out, "cachestore_tier_near_state", "gauge", "The near tier's breaker state: 1 for the current one.");
    for (const auto& s : snaps)
        for (const auto st : {breaker_state::closed, breaker_state::open, breaker_state::half_open})
            prom::sample(out, "cachestore_tier_near_state", prom::with_label(prom::store_labels(s.store), "state", to_string(st)),
                         std::uint64_t{s.near_breaker.state == st ? 1U : 0U});
}

inline void write_prometheus(std::string& out, const tiered_snapshot& s) {
    write_prometheus(out, std::span<const tiered_snapshot>(&s, 1));
}

} // namespace cachestore
