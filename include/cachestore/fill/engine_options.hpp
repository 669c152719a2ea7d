// cachestore/fill/engine_options.hpp - what a read-through engine is told,
// and what it counts (docs/fill.md).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "cachestore/error.hpp"
#include "cachestore/layers/histogram.hpp"

namespace cachestore::fill {

struct engine_options {
    std::size_t origin_cap = 64;                                   ///< fills (origin fetches and their commits) at once; 0 is taken as 1
    std::chrono::milliseconds origin_queue_timeout{5000};          ///< a fill waiting longer for a slot fails: unavailable; 0: no limit
    std::chrono::milliseconds fill_timeout{std::chrono::minutes(5)}; ///< the ceiling of a fill's own context
    int origin_attempts = 3;                                       ///< a `transient` origin error is tried again, up to this many tries in all
    std::chrono::milliseconds origin_retry_budget{5000};           ///< ... while the next try starts within this of the first
    std::chrono::milliseconds origin_backoff_initial{100};         ///< the first back-off's ceiling (full jitter: uniform in [0, ceiling])
    std::chrono::milliseconds origin_backoff_max{2000};            ///< the ceiling doubles up to this
    std::size_t commit_queue_bytes = std::size_t{256} << 20; ///< commits after serve waiting for the store, in bytes; a chunk that does not fit is not committed (commits_dropped); 0: each commit runs on its fill's thread, holding the origin slot
    std::string name; ///< the Prometheus `engine` label (none when empty)
    std::int64_t readahead = 8; ///< stream(): chunks looked up (and their fills started) beyond the one going out; 0: one at a time
    std::chrono::milliseconds metadata_ttl{std::chrono::minutes(5)}; ///< head(): an object's size and ETag are kept this long; 0: not kept
    std::chrono::milliseconds metadata_negative_ttl{60000}; ///< ... not-found and a missing or weak ETag this long; 0: not kept
    std::size_t metadata_entries = 100000; ///< objects whose metadata is kept at most (least recently used dropped first)
};

/// The engine's counters since it was made.
struct engine_stats {
    std::int64_t fills_started = 0; ///< flights begun (one per cold chunk per flight; an origin fetch unless found stored)
    std::int64_t fills_joined = 0;  ///< callers that waited on another's fill
    std::int64_t fills_found_stored = 0; ///< fills that found their chunk stored when they ran (committed meanwhile): no origin fetch
    std::int64_t fills_failed = 0;  ///< flights that ended in an error (every waiter got it)
    std::array<std::int64_t, 16> fills_failed_by{}; ///< the same by error class: [static_cast<int>(errc)]
    std::int64_t origin_bytes = 0;  ///< bytes the origin produced for fills that succeeded
    std::int64_t origin_queue_timeouts = 0;
    std::int64_t origin_retries = 0; ///< origin tries after a transient error (before any waiter saw it)
    std::int64_t commits = 0;       ///< commits after serve that stored the chunk
    std::int64_t commits_lost = 0;  ///< ... that found it already stored (a success)
    std::int64_t commits_failed = 0; ///< ... that failed (never seen by a reader)
    std::int64_t commits_dropped = 0; ///< ... not made: the commit queue was full (or the engine was destroyed first)
    std::int64_t damaged_removed = 0; ///< chunks stored shorter than expected_len, removed so the commit replaces them
    std::int64_t metadata_hits = 0;   ///< head() calls answered from the metadata cache
    std::int64_t metadata_misses = 0; ///< ... that waited for an origin HEAD (their own or another caller's)
    std::int64_t metadata_heads = 0;  ///< origin HEADs begun (one per object per TTL however many callers)
};

/// The engine's state for a metrics scrape (fill/metrics.hpp writes it).
struct engine_snapshot {
    std::string name;                   ///< engine_options::name
    engine_stats stats;                 ///< the counters
    std::size_t flights = 0;            ///< flights in the table: fills running or queued, and commits pending
    std::size_t origin_running = 0;     ///< fills running now (origin fetches, and commits when there is no queue)
    std::size_t origin_queued = 0;      ///< fills waiting for an origin slot
    std::size_t commit_queue_bytes = 0; ///< bytes waiting for, or in, a commit
    std::size_t metadata_entries = 0;   ///< objects in the metadata cache
    histogram_snapshot origin_queue_wait; ///< how long fills and HEADs waited for an origin slot (those that timed out too)
};

namespace detail {

/// engine_stats as the engine's threads count it.
struct engine_counters {
    std::atomic<std::int64_t> fills_started{0}, fills_joined{0}, fills_found_stored{0}, fills_failed{0}, origin_bytes{0},
        origin_queue_timeouts{0}, origin_retries{0}, commits{0}, commits_lost{0}, commits_failed{0}, commits_dropped{0},
        metadata_hits{0}, metadata_misses{0}, metadata_heads{0}, damaged_removed{0};
    std::array<std::atomic<std::int64_t>, 16> failed_by{};
    std::array<std::atomic<std::uint64_t>, latency_bucket_count> queue_wait{};
    std::atomic<std::int64_t> queue_wait_ns{0};

    /// A fill or HEAD waited `d` for an origin slot.
    void waited(std::chrono::steady_clock::duration d) {
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
        ++queue_wait[cachestore::detail::latency_bucket(ns)];
        queue_wait_ns += ns;
    }

    [[nodiscard]] histogram_snapshot queue_wait_histogram() const {
        histogram_snapshot h;
        for (std::size_t i = 0; i < h.buckets.size(); ++i) h.buckets[i] = queue_wait[i].load();
        h.sum_seconds = static_cast<double>(queue_wait_ns.load()) / 1e9;
        return h;
    }

    void failed(errc code) {
        ++fills_failed;
        ++failed_by[static_cast<std::size_t>(code) % failed_by.size()];
    }

    [[nodiscard]] engine_stats load() const {
        engine_stats s;
        s.fills_started = fills_started.load();
        s.fills_joined = fills_joined.load();
        s.fills_found_stored = fills_found_stored.load();
        s.fills_failed = fills_failed.load();
        s.origin_bytes = origin_bytes.load();
        s.origin_queue_timeouts = origin_queue_timeouts.load();
        s.origin_retries = origin_retries.load();
        s.commits = commits.load();
        s.commits_lost = commits_lost.load();
        s.commits_failed = commits_failed.load();
        s.commits_dropped = commits_dropped.load();
        s.damaged_removed = damaged_removed.load();
        s.metadata_hits = metadata_hits.load();
        s.metadata_misses = metadata_misses.load();
        s.metadata_heads = metadata_heads.load();
        for (std::size_t i = 0; i < s.fills_failed_by.size(); ++i) s.fills_failed_by[i] = failed_by[i].load();
        return s;
    }
};

} // namespace detail

} // namespace cachestore::fill
