// cachestore/fill/metrics.hpp - a read-through engine's counters and gauges
// in the Prometheus text exposition format, written as the layers' are
// (docs/fill.md, "Metrics"; the writer of layers/detail/prometheus.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "cachestore/error.hpp"
#include "cachestore/fill/engine_options.hpp"
#include "cachestore/layers/detail/prometheus.hpp"
#include "cachestore/layers/histogram.hpp"

namespace cachestore::fill {

/// Appends the metrics of `engines` (each told apart by its `engine` label,
/// engine_options::name; none when empty): each family once, its samples
/// for every engine.
inline void write_prometheus(std::string& out, std::span<const engine_snapshot> engines) {
    namespace prom = cachestore::detail::prom;
    const auto labels = [](const engine_snapshot& e) {
        std::string l;
        if (!e.name.empty()) prom::append_label(l, "engine", e.name);
        return l;
    };
    // One family: its HELP and TYPE, then `value(engine)` for each engine.
    const auto family = [&](std::string_view name, std::string_view type, std::string_view help, auto value) {
        prom::family(out, name, type, help);
        for (const auto& e : engines) prom::sample(out, name, labels(e), value(e));
    };
    family("cachestore_fill_started_total", "counter", "Fills begun: one origin fetch per cold chunk per flight.",
           [](const engine_snapshot& e) { return e.stats.fills_started; });
    family("cachestore_fill_joined_total", "counter", "Readers that waited on a fill another reader started.",
           [](const engine_snapshot& e) { return e.stats.fills_joined; });
    family("cachestore_fill_found_stored_total", "counter",
           "Fills that found their chunk stored when they ran (committed meanwhile): no origin fetch.",
           [](const engine_snapshot& e) { return e.stats.fills_found_stored; });
    family("cachestore_fill_damaged_removed_total", "counter",
           "Chunks stored shorter than their expected length, removed so that the commit replaces them.",
           [](const engine_snapshot& e) { return e.stats.damaged_removed; });
    family("cachestore_fill_origin_bytes_total", "counter", "Bytes the origin produced for fills that succeeded.",
           [](const engine_snapshot& e) { return e.stats.origin_bytes; });
    family("cachestore_fill_origin_retries_total", "counter",
           "Origin tries after a transient error, before any reader saw it.",
           [](const engine_snapshot& e) { return e.stats.origin_retries; });
    family("cachestore_fill_origin_queue_timeouts_total", "counter",
           "Fills that waited longer than origin_queue_timeout for an origin slot (unavailable).",
           [](const engine_snapshot& e) { return e.stats.origin_queue_timeouts; });
    prom::family(out, "cachestore_fill_failed_total", "counter",
                 "Fills that ended in an error, by its class (every reader of the fill got it).");
    for (const auto& e : engines)
        for (std::size_t i = 0; i < e.stats.fills_failed_by.size(); ++i)
            if (e.stats.fills_failed_by[i] != 0 || i == static_cast<std::size_t>(errc::transient))
                prom::sample(out, "cachestore_fill_failed_total",
                             prom::with_label(labels(e), "class", to_string(static_cast<errc>(i))),
                             e.stats.fills_failed_by[i]);
    prom::family(out, "cachestore_fill_commits_total", "counter",
                 "Commits after serve, by outcome (lost: another writer had stored the same bytes; dropped: the "
                 "commit queue was full).");
    for (const auto& e : engines)
        for (const auto& [outcome, v] : {std::pair<std::string_view, std::int64_t>{"ok", e.stats.commits},
                                         {"lost", e.stats.commits_lost},
                                         {"failed", e.stats.commits_failed},
                                         {"dropped", e.stats.commits_dropped}})
            prom::sample(out, "cachestore_fill_commits_total", prom::with_label(labels(e), "outcome", outcome), v);
    prom::family(out, "cachestore_fill_metadata_total", "counter",
                 "head() calls, by result (hit: from the metadata cache; miss: waited for an origin HEAD).");
    for (const auto& e : engines)
        for (const auto& [result, v] : {std::pair<std::string_view, std::int64_t>{"hit", e.stats.metadata_hits},
                                        {"miss", e.stats.metadata_misses}})
            prom::sample(out, "cachestore_fill_metadata_total", prom::with_label(labels(e), "result", result), v);
    family("cachestore_fill_metadata_heads_total", "counter",
           "Origin HEADs begun: one per object per TTL however many callers ask.",
           [](const engine_snapshot& e) { return e.stats.metadata_heads; });
    const auto gauge = [](std::size_t engine_snapshot::*field) {
        return [field](const engine_snapshot& e) { return static_cast<std::uint64_t>(e.*field); };
    };
    family("cachestore_fill_flights", "gauge", "Fills in progress, and served fills whose commit is pending.",
           gauge(&engine_snapshot::flights));
    family("cachestore_fill_origin_inflight", "gauge", "Fills holding an origin slot now.",
           gauge(&engine_snapshot::origin_running));
    family("cachestore_fill_origin_queued", "gauge", "Fills waiting for an origin slot.",
           gauge(&engine_snapshot::origin_queued));
    family("cachestore_fill_commit_queue_bytes", "gauge", "Bytes waiting for, or in, a commit after serve.",
           gauge(&engine_snapshot::commit_queue_bytes));
    family("cachestore_fill_metadata_entries", "gauge", "Objects in the metadata cache.",
           gauge(&engine_snapshot::metadata_entries));
    prom::family(out, "cachestore_fill_origin_queue_wait_seconds", "histogram",
                 "How long fills and origin HEADs waited for an origin slot (those that timed out too).");
    for (const auto& e : engines) prom::histogram(out, "cachestore_fill_origin_queue_wait_seconds", labels(e), e.origin_queue_wait);
}

/// One engine's metrics.
inline void write_prometheus(std::string& out, const engine_snapshot& engine) {
    write_prometheus(out, std::span<const engine_snapshot>(&engine, 1));
}

} // namespace cachestore::fill
