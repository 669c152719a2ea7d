// cachestore/fill/engine.hpp - the read-through engine: one origin fetch per
// cold chunk however many callers ask (docs/fill.md).
//
// Built so far: singleflight per chunk (R1, R2, R4, R5), fills on the
// engine's threads under their own context with a ceiling (R3), bytes to the
// waiters before the commit (R6, the commit on the fill's thread), the origin
// cap and its queue timeout (R8), retries of transient origin errors (R9),
// exact length (R10), memory bounded by the cap (R11). Not yet: the commit
// queue (R7), streaming and read-ahead (R12, R13), the metadata cache (R14),
// fork (R15).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/chunk_range.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/fill/detail/fill_pool.hpp"
#include "cachestore/fill/detail/flight.hpp"
#include "cachestore/fill/origin.hpp"
#include "cachestore/read_range.hpp"
#include "cachestore/store.hpp"

namespace cachestore::fill {

namespace detail {
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
} // namespace detail

struct engine_options {
    std::size_t origin_cap = 64;                                   ///< fills (origin fetches and their commits) at once; 0 is taken as 1
    std::chrono::milliseconds origin_queue_timeout{5000};          ///< a fill waiting longer for a slot fails: unavailable
    std::chrono::milliseconds fill_timeout{std::chrono::minutes(5)}; ///< the ceiling of a fill's own context
    int origin_attempts = 3;                                       ///< a `transient` origin error is tried again, up to this many tries in all
    std::chrono::milliseconds origin_retry_budget{5000};           ///< ... while the next try starts within this of the first
    std::chrono::milliseconds origin_backoff_initial{100};         ///< the first back-off's ceiling (full jitter: uniform in [0, ceiling])
    std::chrono::milliseconds origin_backoff_max{2000};            ///< the ceiling doubles up to this
};

/// The engine's counters since it was made.
struct engine_stats {
    std::int64_t fills_started = 0; ///< origin fetches begun (one per cold chunk per flight)
    std::int64_t fills_joined = 0;  ///< callers that waited on another's fill
    std::int64_t fills_failed = 0;  ///< flights that ended in an error (every waiter got it)
    std::int64_t origin_bytes = 0;  ///< bytes the origin produced for fills that succeeded
    std::int64_t origin_queue_timeouts = 0;
    std::int64_t origin_retries = 0; ///< origin tries after a transient error (before any waiter saw it)
    std::int64_t commits = 0;       ///< commits after serve that stored the chunk
    std::int64_t commits_lost = 0;  ///< ... that found it already stored (a success)
    std::int64_t commits_failed = 0; ///< ... that failed (never seen by a reader)
};

template <CacheStore S, Origin O>
class engine {
public:
    using chunk_bytes = std::shared_ptr<const std::vector<std::byte>>;

    engine(S& store, O& origin, engine_options opt = {})
        : store_(store), origin_(origin), opt_(opt), pool_(opt.origin_cap, opt.origin_queue_timeout) {}
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;
    ~engine() = default; // the pool first (declared last): queued fills fail `cancelled`, running ones end

    /// Serves object bytes `[offset, offset + out.size())` of `obj`, clamped to
    /// `obj.size`, into `out`, like read_range: hits from the store; a miss
    /// joins the chunk's fill (or starts it) and waits on `ctx` alone. The
    /// chunk is committed after the waiters have it. Errors: read_range's, and
    /// a fill's error (the origin's, `protocol` for a wrong length,
    /// `unavailable` when no slot freed within the queue timeout).
    result<read_stats> read(const context& ctx, const origin_object& obj, std::int64_t offset,
                            std::span<std::byte> out) {
        chunk_key key = obj.chunk(0);
        if (auto v = validate(key, "fill::read"); !v) return std::unexpected(std::move(v.error()));
        if (obj.etag.starts_with("W/"))
            return fail(errc::invalid_argument, "fill::read", obj.object_key,
                        "weak ETag " + obj.etag + ": it does not promise byte-identical content");
        auto range = range_in_object(obj.chunk_size, obj.size, offset, static_cast<std::int64_t>(out.size()));
        if (!range) {
            range.error().op = "fill::read";
            range.error().path = obj.object_key;
            return std::unexpected(std::move(range.error()));
        }
        read_stats st;
        std::size_t pos = 0;
        for (key.index = range->chunks.first; key.index <= range->chunks.last; ++key.index) {
            const chunk_slice slice = slice_in_chunk(obj.chunk_size, key.index, range->offset, range->length);
            const std::span<std::byte> dst = out.subspan(pos, static_cast<std::size_t>(slice.length));
            pos += dst.size();
            auto hit = get_chunk(store_, ctx, key, slice.offset, dst);
            if (hit) {
                ++st.chunks_hit;
                continue;
            }
            if (cachestore::detail::ends_read(hit.error().code)) return std::unexpected(std::move(hit.error()));
            if (hit.error().code != errc::not_found) cachestore::detail::note_store_error(st, std::move(hit.error()));
            auto bytes = fill_chunk(ctx, obj, key);
            if (!bytes) return std::unexpected(std::move(bytes.error()));
            std::memcpy(dst.data(), (*bytes)->data() + slice.offset, dst.size());
            ++st.chunks_missed;
        }
        st.served = static_cast<std::int64_t>(pos);
        return st;
    }

    [[nodiscard]] engine_stats stats() const {
        engine_stats s;
        s.fills_started = c_.fills_started.load();
        s.fills_joined = c_.fills_joined.load();
        s.fills_failed = c_.fills_failed.load();
        s.origin_bytes = c_.origin_bytes.load();
        s.origin_queue_timeouts = c_.origin_queue_timeouts.load();
        s.origin_retries = c_.origin_retries.load();
        s.commits = c_.commits.load();
        s.commits_lost = c_.commits_lost.load();
        s.commits_failed = c_.commits_failed.load();
        return s;
    }

    /// Flights in the table (fills running or queued, and successes whose commit runs).
    [[nodiscard]] std::size_t flights() const { return flights_.size(); }
    /// Fills running now and queued for a slot, and the most that ever ran at once.
    [[nodiscard]] detail::fill_pool::gauges origin_gauges() const { return pool_.now(); }
    [[nodiscard]] std::size_t origin_peak() const { return pool_.peak_running(); }

private:
    struct counters {
        std::atomic<std::int64_t> fills_started{0}, fills_joined{0}, fills_failed{0}, origin_bytes{0},
            origin_queue_timeouts{0}, origin_retries{0}, commits{0}, commits_lost{0}, commits_failed{0};
    };

    /// The chunk's bytes: from its flight, started here when there is none.
    result<chunk_bytes> fill_chunk(const context& ctx, const origin_object& obj, const chunk_key& key) {
        auto path = storage_path(key);
        if (!path) return std::unexpected(std::move(path.error()));
        auto tk = flights_.join(*path);
        if (tk.leader) {
            ++c_.fills_started;
            start_fill(std::move(*path), obj, key, tk.f);
        } else {
            ++c_.fills_joined;
        }
        return tk.f->wait(ctx, "fill::read", obj.object_key);
    }

    void start_fill(std::string path, const origin_object& obj, const chunk_key& key,
                    std::shared_ptr<detail::flight<chunk_bytes>> f) {
        detail::fill_pool::job j;
        j.run = [this, path, obj, key, f](std::stop_token stop) {
            run_fill(context(std::move(stop), context::clock::now() + opt_.fill_timeout), path, obj, key, f);
        };
        j.expired = [this, path, obj, f](bool stopping) {
            ++c_.fills_failed;
            if (!stopping) ++c_.origin_queue_timeouts;
            flights_.finish(path, f,
                            stopping ? fail(errc::cancelled, "fill", obj.object_key, "the engine is shutting down")
                                     : fail(errc::unavailable, "fill", obj.object_key,
                                            "origin cap: " + std::to_string(opt_.origin_cap) +
                                                " fills in flight, none freed a slot within " +
                                                std::to_string(opt_.origin_queue_timeout.count()) + " ms"));
        };
        pool_.submit(std::move(j));
    }

    /// On a pool thread: fetch exactly expected_len bytes, release the
    /// waiters, then commit (the slot is held through the commit: R11).
    void run_fill(const context& fctx, const std::string& path, const origin_object& obj, const chunk_key& key,
                  const std::shared_ptr<detail::flight<chunk_bytes>>& f) {
        const std::int64_t len = key.expected_len(obj.size);
        auto buf = std::make_shared<std::vector<std::byte>>();
        auto fetched = fetch_with_retries(fctx, obj, key, len, *buf);
        if (!fetched) {
            ++c_.fills_failed;
            flights_.finish(path, f, std::unexpected(std::move(fetched.error())));
            return;
        }
        c_.origin_bytes += len;
        f->publish(chunk_bytes(buf)); // served: every waiter has the bytes; callers from now on join a done flight
        auto put = store_.put_chunk(fctx, key, len, std::span<const std::byte>(*buf));
        if (put) ++c_.commits;
        else if (put.error().code == errc::commit_lost) ++c_.commits_lost;
        else ++c_.commits_failed;
        flights_.retire(path, f); // committed (or not): later callers read the store
    }

    /// fetch(), tried again after a `transient` error (R9): at most
    /// `origin_attempts` tries, each starting within `origin_retry_budget` of
    /// the first, after a back-off drawn uniformly from [0, ceiling], the
    /// ceiling doubling from `origin_backoff_initial` to `origin_backoff_max`.
    /// Every other error (not_found, auth, a wrong length, ...) is final.
    result<> fetch_with_retries(const context& fctx, const origin_object& obj, const chunk_key& key, std::int64_t len,
                                std::vector<std::byte>& buf) {
        const auto give_up = context::clock::now() + opt_.origin_retry_budget;
        auto ceiling = std::max(opt_.origin_backoff_initial, std::chrono::milliseconds(0));
        for (int attempt = 1;; ++attempt) {
            auto r = fetch(fctx, obj, key, len, buf);
            if (r || r.error().code != errc::transient || attempt >= opt_.origin_attempts) {
                if (!r && attempt > 1) r.error().attempts = attempt;
                return r;
            }
            const auto pause = detail::jittered(ceiling);
            if (context::clock::now() + pause >= give_up) return r;
            if (!detail::sleep_for(fctx, pause)) return r; // the engine stops, or the fill's ceiling
            ceiling = std::min(ceiling * 2, opt_.origin_backoff_max);
            ++c_.origin_retries;
        }
    }

    result<> fetch(const context& fctx, const origin_object& obj, const chunk_key& key, std::int64_t len,
                   std::vector<std::byte>& buf) {
        if (auto sized = cachestore::detail::resize_buffer(buf, len, "fill", obj.object_key, "a chunk"); !sized)
            return sized;
        const std::int64_t at = key.index * obj.chunk_size;
        result<std::size_t> got = fail(errc::io_error, "fill", obj.object_key, "the origin did not answer");
        try {
            got = origin_.get(fctx, obj, at, std::span<std::byte>(buf));
        } catch (const std::exception& e) { // on a pool thread: no caller to rethrow to
            return fail(errc::io_error, "fill", obj.object_key, std::string("the origin threw: ") + e.what());
        } catch (...) {
            return fail(errc::io_error, "fill", obj.object_key, "the origin threw");
        }
        if (!got) return std::unexpected(std::move(got.error()));
        if (*got != buf.size())
            return fail(errc::protocol, "fill", obj.object_key,
                        "the origin produced " + std::to_string(*got) + " bytes of chunk " + std::to_string(key.index) +
                            " where the " + std::to_string(obj.size) + "-byte object has " + std::to_string(len) +
                            ": it changed or broke; nothing committed");
        return {};
    }

    S& store_;
    O& origin_;
    const engine_options opt_;
    counters c_;
    detail::flight_table<chunk_bytes> flights_;
    detail::fill_pool pool_; // last: destroyed first, so its threads end before what they use
};

} // namespace cachestore::fill
