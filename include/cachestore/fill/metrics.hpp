// cachestore/fill/metrics.hpp - a read-through engine's counters and gauges
// in the Prometheus text exposition format, written as the layers' are
// (docs/fill.md, "Metrics"; the writer of layers/detail/prometheus.hpp).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "cachestore/error.hpp"
#include "cachestore/fill/engine_options.hpp"
#include "cachestore/layers/detail/prometheus.hpp"

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
    struct counter {
        std::string_view name, help;
        std::int64_t engine_stats::*field;
    };
    static constexpr std::array<counter, 5> counters{{
        {"cachestore_fill_started_total", "Fills begun: one origin fetch per cold chunk per flight.",
         &engine_stats::fills_started},
        {"cachestore_fill_joined_total", "Readers that waited on a fill another reader started.",
         &engine_stats::fills_joined},
        {"cachestore_fill_origin_bytes_total", "Bytes the origin produced for fills that succeeded.",
         &engine_stats::origin_bytes},
        {"cachestore_fill_origin_retries_total", "Origin tries after a transient error, before any reader saw it.",
         &engine_stats::origin_retries},
        {"cachestore_fill_origin_queue_timeouts_total",
         "Fills that waited longer than origin_queue_timeout for an origin slot (unavailable).",
         &engine_stats::origin_queue_timeouts},
    }};
    for (const auto& c : counters) {
        prom::family(out, c.name, "counter", c.help);
        for (const auto& e : engines) prom::sample(out, c.name, labels(e), e.stats.*(c.field));
    }
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
    struct gauge {
        std::string_view name, help;
        std::size_t engine_snapshot::*field;
    };
    static constexpr std::array<gauge, 4> gauges{{
        {"cachestore_fill_flights", "Fills in progress, and served fills whose commit is pending.",
         &engine_snapshot::flights},
        {"cachestore_fill_origin_inflight", "Fills holding an origin slot now.", &engine_snapshot::origin_running},
        {"cachestore_fill_origin_queued", "Fills waiting for an origin slot.", &engine_snapshot::origin_queued},
        {"cachestore_fill_commit_queue_bytes", "Bytes waiting for, or in, a commit after serve.",
         &engine_snapshot::commit_queue_bytes},
    }};
    for (const auto& g : gauges) {
        prom::family(out, g.name, "gauge", g.help);
        for (const auto& e : engines)
            prom::sample(out, g.name, labels(e), static_cast<std::uint64_t>(e.*(g.field)));
    }
}

/// One engine's metrics.
inline void write_prometheus(std::string& out, const engine_snapshot& engine) {
    write_prometheus(out, std::span<const engine_snapshot>(&engine, 1));
}

} // namespace cachestore::fill
