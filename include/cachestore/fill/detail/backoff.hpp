// cachestore/fill/detail/backoff.hpp - the pauses between a fill's origin
// tries (docs/fill.md, R9).
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <random>

#include "cachestore/context.hpp"

namespace cachestore::fill::detail {

/// A pause drawn uniformly from [0, ceiling] (full jitter: a herd of proxies
/// that failed together does not retry together).
[[nodiscard]] inline std::chrono::milliseconds jittered(std::chrono::milliseconds ceiling) {
    thread_local std::minstd_rand rng{std::random_device{}()};
    if (ceiling.count() <= 0) return std::chrono::milliseconds(0);
    return std::chrono::milliseconds(
        std::uniform_int_distribution<std::int64_t>(0, static_cast<std::int64_t>(ceiling.count()))(rng));
}

/// Sleeps `d`, or less if `ctx` stops or expires first; false then.
inline bool sleep_for(const context& ctx, std::chrono::milliseconds d) {
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lk(m);
    const auto until = std::min(context::clock::now() + d, ctx.deadline());
    cv.wait_until(lk, ctx.stop_token(), until, [] { return false; });
    return !ctx.stop_requested() && !ctx.expired();
}

} // namespace cachestore::fill::detail
