// cachestore/layers/detail/meter.hpp - the counters behind cachestore::metered:
// one cache-line-aligned shard of relaxed atomics per group of threads, so a
// call touches only its own thread's shard; a snapshot sums the shards.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "cachestore/layers/histogram.hpp"
#include "cachestore/layers/operation.hpp"

namespace cachestore {

/// One operation's counters at one moment.
struct op_metrics {
    /// Calls that ended, by outcome: [0] succeeded, [k] failed with `static_cast<errc>(k)`.
    std::array<std::uint64_t, outcome_count> outcomes{};
    /// Duration of the calls that ended, from entry to return.
    histogram_snapshot duration;
    /// Calls in progress when the snapshot was taken.
    std::int64_t in_flight = 0;

    [[nodiscard]] std::uint64_t calls() const noexcept {
        std::uint64_t n = 0;
        for (const auto c : outcomes) n += c;
        return n;
    }
    [[nodiscard]] std::uint64_t succeeded() const noexcept { return outcomes[0]; }
    [[nodiscard]] std::uint64_t failed(errc e) const noexcept { return outcomes[static_cast<std::size_t>(e)]; }
};

/// What a metered store counted, from its construction to the snapshot.
struct metrics_snapshot {
    std::string store;                             ///< metered_options::name (the `store` label)
    std::array<op_metrics, store_op_count> ops{};  ///< indexed by store_op
    histogram_snapshot get_first_byte;             ///< get_chunk: entry to the first byte at the sink
    std::uint64_t bytes_read = 0;    ///< bytes get_chunk delivered (also a failed call's discarded prefix)
    std::uint64_t bytes_written = 0; ///< bytes of the put_chunk calls that committed

    [[nodiscard]] const op_metrics& operator[](store_op o) const noexcept { return ops[static_cast<std::size_t>(o)]; }
};

namespace detail {

struct op_cells {
    std::array<std::atomic<std::uint64_t>, outcome_count> outcomes{};
    std::array<std::atomic<std::uint64_t>, latency_bucket_count> buckets{};
    std::atomic<std::uint64_t> sum_ns{0};
    std::atomic<std::int64_t> in_flight{0};
};

struct alignas(64) meter_shard {
    std::array<op_cells, store_op_count> ops{};
    std::array<std::atomic<std::uint64_t>, latency_bucket_count> first_byte{};
    std::atomic<std::uint64_t> first_byte_sum_ns{0};
    std::atomic<std::uint64_t> bytes_read{0};
    std::atomic<std::uint64_t> bytes_written{0};
};

/// A small number per thread, handed out in order of first use.
[[nodiscard]] inline std::size_t thread_slot() noexcept {
    static std::atomic<std::size_t> next{0};
    thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed);
    return mine;
}

inline void add(std::atomic<std::uint64_t>& a, std::uint64_t v) noexcept { a.fetch_add(v, std::memory_order_relaxed); }

[[nodiscard]] inline std::uint64_t elapsed_ns(std::chrono::steady_clock::time_point from,
                                              std::chrono::steady_clock::time_point to) noexcept {
    const auto d = std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count();
    return d < 0 ? 0 : static_cast<std::uint64_t>(d);
}

class meter {
public:
    static constexpr std::size_t shards = 16;
    using clock = std::chrono::steady_clock;

    explicit meter(std::string name) : name_(std::move(name)), shards_(std::make_unique<meter_shard[]>(shards)) {}

    [[nodiscard]] meter_shard& local() noexcept { return shards_[thread_slot() % shards]; }

    static void begin(meter_shard& s, store_op o) noexcept {
        s.ops[static_cast<std::size_t>(o)].in_flight.fetch_add(1, std::memory_order_relaxed);
    }

    static void end(meter_shard& s, store_op o, std::size_t outcome, std::uint64_t ns) noexcept {
        auto& c = s.ops[static_cast<std::size_t>(o)];
        add(c.outcomes[outcome], 1);
        add(c.buckets[latency_bucket(static_cast<std::int64_t>(ns))], 1);
        add(c.sum_ns, ns);
        c.in_flight.fetch_sub(1, std::memory_order_relaxed);
    }

    static void first_byte(meter_shard& s, std::uint64_t ns) noexcept {
        add(s.first_byte[latency_bucket(static_cast<std::int64_t>(ns))], 1);
        add(s.first_byte_sum_ns, ns);
    }

    [[nodiscard]] metrics_snapshot snapshot() const {
        metrics_snapshot m;
        m.store = name_;
        std::array<std::uint64_t, store_op_count> sum_ns{};
        std::uint64_t fb_sum_ns = 0;
        for (std::size_t i = 0; i < shards; ++i) {
            const meter_shard& s = shards_[i];
            for (std::size_t o = 0; o < store_op_count; ++o) {
                const op_cells& c = s.ops[o];
                op_metrics& out = m.ops[o];
                for (std::size_t k = 0; k < outcome_count; ++k) out.outcomes[k] += c.outcomes[k].load(std::memory_order_relaxed);
                for (std::size_t b = 0; b < latency_bucket_count; ++b)
                    out.duration.buckets[b] += c.buckets[b].load(std::memory_order_relaxed);
                sum_ns[o] += c.sum_ns.load(std::memory_order_relaxed);
                out.in_flight += c.in_flight.load(std::memory_order_relaxed);
            }
            for (std::size_t b = 0; b < latency_bucket_count; ++b)
                m.get_first_byte.buckets[b] += s.first_byte[b].load(std::memory_order_relaxed);
            fb_sum_ns += s.first_byte_sum_ns.load(std::memory_order_relaxed);
            m.bytes_read += s.bytes_read.load(std::memory_order_relaxed);
            m.bytes_written += s.bytes_written.load(std::memory_order_relaxed);
        }
        for (std::size_t o = 0; o < store_op_count; ++o) m.ops[o].duration.sum_seconds = static_cast<double>(sum_ns[o]) * 1e-9;
        m.get_first_byte.sum_seconds = static_cast<double>(fb_sum_ns) * 1e-9;
        return m;
    }

private:
    std::string name_;
    std::unique_ptr<meter_shard[]> shards_;
};

} // namespace detail
} // namespace cachestore
