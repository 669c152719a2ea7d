// cachestore/layers/metrics_text.hpp - the Prometheus text of a whole stack of
// layers in one call: walks `inner()` (and a tiered store's `near()` and
// `far()`) from the outermost layer down and writes every metered, breaker,
// hedged and tiered layer it finds, each family once.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "cachestore/layers/breaker.hpp"
#include "cachestore/layers/hedged.hpp"
#include "cachestore/layers/metered.hpp"
#include "cachestore/layers/tiered.hpp"

namespace cachestore {

namespace detail {

struct layer_snapshots {
    std::vector<metrics_snapshot> metered;
    std::vector<breaker_snapshot> breakers;
    std::vector<hedge_snapshot> hedges;
    std::vector<tiered_snapshot> tiers;

    void add(metrics_snapshot s) { metered.push_back(std::move(s)); }
    void add(breaker_snapshot s) { breakers.push_back(std::move(s)); }
    void add(hedge_snapshot s) { hedges.push_back(std::move(s)); }
    void add(tiered_snapshot s) { tiers.push_back(std::move(s)); }
};

template <class S>
void collect_layers(const S& s, layer_snapshots& out) {
    if constexpr (requires(layer_snapshots& l) { l.add(s.snapshot()); }) out.add(s.snapshot());
    if constexpr (requires { s.inner(); }) collect_layers(s.inner(), out);
    if constexpr (requires { s.near(); s.far(); }) {
        collect_layers(s.near(), out);
        collect_layers(s.far(), out);
    }
}

} // namespace detail

/// Appends the metrics of every layer in `store` (a metered, breaker or
/// hedged store, or any stack of them; other stores contribute nothing) in
/// the Prometheus text exposition format. Two layers of one kind in a stack
/// are both written, told apart by their `name` option (the `store` label):
/// give them different names.
template <class S>
void write_layer_metrics(std::string& out, const S& store) {
    detail::layer_snapshots l;
    detail::collect_layers(store, l);
    if (!l.metered.empty()) write_prometheus(out, std::span<const metrics_snapshot>(l.metered));
    if (!l.breakers.empty()) write_prometheus(out, std::span<const breaker_snapshot>(l.breakers));
    if (!l.hedges.empty()) write_prometheus(out, std::span<const hedge_snapshot>(l.hedges));
    if (!l.tiers.empty()) write_prometheus(out, std::span<const tiered_snapshot>(l.tiers));
}

} // namespace cachestore
