// cachestore/fill/detail/backoff.hpp - how the engine calls its origin: on a
// fill thread, exceptions turned into errors, and when and after what pause
// a request is tried again (docs/fill.md, R9).
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <random>
#include <string>

#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/fill/engine_options.hpp"

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

/// An origin call on a fill thread, where no caller can receive an
/// exception: one becomes `io_error` ("the origin threw: ...").
template <class F>
auto guarded(const char* op, const std::string& path, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const std::exception& e) {
        return fail(errc::io_error, op, path, std::string("the origin threw: ") + e.what());
    } catch (...) {
        return fail(errc::io_error, op, path, "the origin threw");
    }
}

/// `once()` (returning a result), tried again after a `transient` error: at
/// most `opt.origin_attempts` tries, each starting within
/// `opt.origin_retry_budget` of the first, after a back-off drawn uniformly
/// from [0, ceiling], the ceiling doubling from `origin_backoff_initial` to
/// `origin_backoff_max`; `retried()` is called before each new try. Every
/// other error (changed, not_found, auth, a wrong length, ...) is final; the
/// last error carries the tries in `attempts`.
template <class Once, class Retried>
auto retry_transient(const context& fctx, const engine_options& opt, Once&& once, Retried&& retried) -> decltype(once()) {
    const auto give_up = context::clock::now() + opt.origin_retry_budget;
    auto ceiling = std::max(opt.origin_backoff_initial, std::chrono::milliseconds(0));
    for (int attempt = 1;; ++attempt) {
        auto r = once();
        if (r || r.error().code != errc::transient || attempt >= opt.origin_attempts) {
            if (!r && attempt > 1) r.error().attempts = attempt;
            return r;
        }
        const auto pause = jittered(ceiling);
        if (context::clock::now() + pause >= give_up) return r;
        if (!sleep_for(fctx, pause)) return r; // the engine stops, or the fill's ceiling
        ceiling = std::min(ceiling * 2, opt.origin_backoff_max);
        retried();
    }
}

} // namespace cachestore::fill::detail
