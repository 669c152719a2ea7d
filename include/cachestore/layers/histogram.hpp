// cachestore/layers/histogram.hpp - the latency histogram the metered layer
// keeps: fixed bucket bounds from 10 us to 10 s, and its snapshot.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cachestore/layers/detail/prometheus.hpp"

namespace cachestore {

/// Upper bounds of the latency buckets, inclusive (Prometheus `le`), in
/// nanoseconds; a last, implicit bucket holds everything slower (`+Inf`).
/// From a memory store's microseconds to a stalled S3 request's seconds.
inline constexpr std::array<std::int64_t, 19> latency_bucket_bounds_ns{
    10'000,      25'000,      50'000,        100'000,       250'000,       500'000,       1'000'000,
    2'500'000,   5'000'000,   10'000'000,    25'000'000,    50'000'000,    100'000'000,   250'000'000,
    500'000'000, 1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};

/// Buckets of a latency histogram, the +Inf bucket included.
inline constexpr std::size_t latency_bucket_count = latency_bucket_bounds_ns.size() + 1;

namespace detail {
/// The `le` label of each bucket, in seconds.
inline constexpr std::array<std::string_view, latency_bucket_count> latency_bucket_le{
    "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    "0.025", "0.05",    "0.1",   "0.25",   "0.5",     "1",      "2.5",   "5",      "10",    "+Inf"};

/// The bucket a duration of `ns` nanoseconds falls in.
[[nodiscard]] constexpr std::size_t latency_bucket(std::int64_t ns) noexcept {
    std::size_t i = 0;
    while (i < latency_bucket_bounds_ns.size() && ns > latency_bucket_bounds_ns[i]) ++i;
    return i;
}
} // namespace detail

/// A histogram at one moment: per-bucket counts (not cumulative), their sum in seconds.
struct histogram_snapshot {
    std::array<std::uint64_t, latency_bucket_count> buckets{};
    double sum_seconds = 0;

    /// Observations in all buckets.
    [[nodiscard]] std::uint64_t count() const noexcept {
        std::uint64_t n = 0;
        for (const auto b : buckets) n += b;
        return n;
    }

    /// An upper estimate of quantile `q` (0..1): the bound of the bucket that
    /// holds it (the +Inf bucket answers the largest finite bound, 10 s).
    [[nodiscard]] std::chrono::nanoseconds quantile_bound(double q) const noexcept {
        const std::uint64_t n = count();
        if (n == 0) return std::chrono::nanoseconds(0);
        const double want = q * static_cast<double>(n);
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < latency_bucket_bounds_ns.size(); ++i) {
            seen += buckets[i];
            if (static_cast<double>(seen) >= want) return std::chrono::nanoseconds(latency_bucket_bounds_ns[i]);
        }
        return std::chrono::nanoseconds(latency_bucket_bounds_ns.back());
    }

    histogram_snapshot& operator+=(const histogram_snapshot& o) noexcept {
        for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
        sum_seconds += o.sum_seconds;
        return *this;
    }
};

namespace detail::prom {
/// The `_bucket` (cumulative), `_sum` and `_count` samples of one histogram.
inline void histogram(std::string& out, std::string_view name, std::string_view labels, const histogram_snapshot& h) {
    std::string bucket_name(name);
    bucket_name += "_bucket";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < latency_bucket_count; ++i) {
        cumulative += h.buckets[i];
        sample(out, bucket_name, with_label(labels, "le", latency_bucket_le[i]), cumulative);
    }
    sample(out, std::string(name) + "_sum", labels, h.sum_seconds);
    sample(out, std::string(name) + "_count", labels, cumulative);
}
} // namespace detail::prom

} // namespace cachestore
