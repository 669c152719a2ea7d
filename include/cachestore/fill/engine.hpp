// cachestore/fill/engine.hpp - the read-through engine: one origin fetch per
// cold chunk however many callers ask (docs/fill.md).
//
// Requirements R1-R15 of docs/fill.md; the counters it keeps are in
// engine_options.hpp, how an origin call is guarded and retried in
// detail/backoff.hpp.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/chunk_range.hpp"
#include "cachestore/context.hpp"
#include "cachestore/detail/fork_generation.hpp"
#include "cachestore/error.hpp"
#include "cachestore/fill/detail/backoff.hpp"
#include "cachestore/detail/thread_pool.hpp"
#include "cachestore/fill/detail/flight.hpp"
#include "cachestore/fill/engine_options.hpp"
#include "cachestore/fill/metadata_cache.hpp"
#include "cachestore/fill/origin.hpp"
#include "cachestore/read_range.hpp"
#include "cachestore/store.hpp"

namespace cachestore::fill {

template <CacheStore S, Origin O>
class engine {
public:
    using pool_type = cachestore::detail::thread_pool; ///< the fill threads (the origin cap) and the commit queue
    using chunk_bytes = std::shared_ptr<const std::vector<std::byte>>;

    engine(S& store, O& origin, engine_options opt = {}) : store_(store), origin_(origin), opt_(std::move(opt)) {
        make_threads(proc_.get());
    }
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;
    ~engine() = default; // this process's threads first (declared last): queued fills fail `cancelled`, running ones end

    /// Serves object bytes `[offset, offset + out.size())` of `obj`, clamped to
    /// `obj.size`, into `out`, like read_range: hits from the store; a miss
    /// joins the chunk's fill (or starts it) and waits on `ctx` alone. The
    /// chunk is committed after the waiters have it. Errors: read_range's, and
    /// a fill's error (the origin's, `protocol` for a wrong length,
    /// `unavailable` when no slot freed within the queue timeout).
    result<read_stats> read(const context& ctx, const origin_object& obj, std::int64_t offset,
                            std::span<std::byte> out) {
        auto miss = [&](const chunk_key& key, const chunk_slice& slice, std::span<std::byte> dst, error&& hit_error,
                        read_stats& st) -> result<> {
            if (hit_error.code != errc::not_found) cachestore::detail::note_store_error(st, std::move(hit_error));
            auto bytes = fill_chunk(ctx, obj, key);
            if (!bytes) return std::unexpected(std::move(bytes.error()));
            std::memcpy(dst.data(), (*bytes)->data() + slice.offset, dst.size());
            ++st.chunks_missed;
            return {};
        };
        return cachestore::detail::read_chunks(store_, ctx, obj, offset, out, "fill::read", miss);
    }

    /// Streams object bytes `[offset, offset + length)` of `obj`, clamped to
    /// `obj.size`, to `sink` in order, each once (R12). The first chunk is
    /// resolved whole before its first byte goes out, so an error there is a
    /// clean one (R13); after that an error ends the call, the sink having
    /// had a prefix. While chunk i goes out, chunks up to i + `readahead` are
    /// looked up in the store (`stat`) and the missing ones' fills started,
    /// under the origin cap; a later chunk the store has is streamed from it
    /// (and filled from the origin, from the byte it stopped at, if the store
    /// fails midway). A sink returning false ends the call with `cancelled`.
    template <chunk_sink Sink>
    result<read_stats> stream(const context& ctx, const origin_object& obj, std::int64_t offset, std::int64_t length,
                              Sink&& sink) {
        chunk_key key = obj.chunk(0);
        auto range = cachestore::detail::checked_range(obj, offset, length, "fill::stream");
        if (!range) return std::unexpected(std::move(range.error()));
        read_stats st;
        if (range->length == 0) return st;
        const std::int64_t first = range->chunks.first, last = range->chunks.last;
        std::deque<flight_ptr> ahead; // chunks planned + 1 .. ; null: the store had it when asked
        std::int64_t planned = first; // chunks up to here are the current one or in `ahead`
        std::vector<std::byte> scratch; // the first chunk's slice, resolved before any byte goes out
        for (key.index = first; key.index <= last; ++key.index) {
            for (const std::int64_t horizon = std::min(last, key.index + std::max<std::int64_t>(opt_.readahead, 0));
                 planned < horizon;) {
                if (++planned <= key.index) { // readahead 0: the current chunk, tried in the store as it comes
                    ahead.emplace_back();
                    continue;
                }
                auto f = plan(ctx, obj, planned, st);
                if (!f) return std::unexpected(std::move(f.error()));
                ahead.push_back(std::move(*f));
            }
            flight_ptr f;
            if (key.index != first && !ahead.empty()) {
                f = std::move(ahead.front());
                ahead.pop_front();
            }
            const chunk_slice slice = slice_in_chunk(obj.chunk_size, key.index, range->offset, range->length);
            std::int64_t sent = 0; // bytes of this slice the sink has
            auto deliver = [&](std::span<const std::byte> b) {
                sent += static_cast<std::int64_t>(b.size());
                return static_cast<bool>(sink(b));
            };
            if (!f && key.index == first) {
                if (auto sized = cachestore::detail::resize_buffer(scratch, slice.length, "fill::stream", obj.object_key,
                                                                   "the first chunk");
                    !sized)
                    return std::unexpected(std::move(sized.error()));
                auto hit = get_chunk(store_, ctx, key, slice.offset, std::span<std::byte>(scratch));
                if (hit) {
                    ++st.chunks_hit;
                    if (!deliver(scratch)) return sink_stopped(obj);
                    continue;
                }
                if (cachestore::detail::ends_read(hit.error().code)) return std::unexpected(std::move(hit.error()));
                if (hit.error().code != errc::not_found) cachestore::detail::note_store_error(st, std::move(hit.error()));
            } else if (!f) {
                bool stopped = false;
                auto hit = store_.get_chunk(ctx, key, slice.offset, slice.length, [&](std::span<const std::byte> b) {
                    if (deliver(b)) return true;
                    stopped = true;
                    return false;
                });
                if (hit) {
                    ++st.chunks_hit;
                    continue;
                }
                if (stopped) return sink_stopped(obj);
                if (cachestore::detail::ends_read(hit.error().code)) return std::unexpected(std::move(hit.error()));
                if (hit.error().code != errc::not_found) cachestore::detail::note_store_error(st, std::move(hit.error()));
            }
            if (!f) {
                auto started = join_or_start(obj, key);
                if (!started) return std::unexpected(std::move(started.error()));
                f = std::move(*started);
            }
            auto bytes = f->wait(ctx, "fill::stream", obj.object_key);
            if (!bytes) return std::unexpected(std::move(bytes.error()));
            ++st.chunks_missed;
            const auto rest = std::span<const std::byte>(**bytes).subspan(static_cast<std::size_t>(slice.offset + sent),
                                                                          static_cast<std::size_t>(slice.length - sent));
            if (!deliver(rest)) return sink_stopped(obj);
        }
        st.served = range->length;
        return st;
    }

    /// The object's size and strong ETag (R14), from the metadata cache, or
    /// from one origin HEAD however many callers ask at once (they join it,
    /// each waiting on its own context). Kept `metadata_ttl`; `not_found` and
    /// a missing or weak ETag (`misconfigured`: nothing can be cached by
    /// content) kept `metadata_negative_ttl`; other errors not kept. The HEAD
    /// runs on a fill thread under the origin cap, retried as a fill is (R9).
    result<object_meta> head(const context& ctx, const object_ref& ref)
        requires MetadataOrigin<O>
    {
        proc& p = here();
        const std::string k = metadata_cache::key_of(ref);
        if (auto hit = p.meta->find(k)) {
            ++c_.metadata_hits;
            return std::move(*hit);
        }
        ++c_.metadata_misses;
        auto tk = p.heads.join(k);
        if (tk.leader) {
            if (auto hit = p.meta->find(k)) // kept between the look and the join: no HEAD
                p.heads.finish(k, tk.f, std::move(*hit));
            else
                start_head(p, k, ref, tk.f);
        }
        return tk.f->wait(ctx, "fill::head", ref.object_key);
    }

    /// The counters and gauges, for a metrics scrape (fill/metrics.hpp).
    [[nodiscard]] engine_snapshot snapshot() const {
        engine_snapshot snap;
        snap.name = opt_.name;
        snap.stats = stats();
        proc& p = here();
        snap.flights = p.flights.size();
        const auto g = p.pool->now();
        snap.origin_running = g.running;
        snap.origin_queued = g.queued;
        snap.commit_queue_bytes = p.commit_bytes.load();
        snap.metadata_entries = p.meta->size();
        snap.origin_queue_wait = c_.queue_wait_histogram();
        return snap;
    }

    [[nodiscard]] engine_stats stats() const { return c_.load(); }

    /// Flights in the table (fills running or queued, and successes whose commit runs).
    [[nodiscard]] std::size_t flights() const { return here().flights.size(); }
    /// Fills running now and queued for a slot, and the most that ever ran at once.
    [[nodiscard]] pool_type::gauges origin_gauges() const { return here().pool->now(); }
    [[nodiscard]] std::size_t origin_peak() const { return here().pool->peak_running(); }

private:
    using flight_ptr = std::shared_ptr<detail::flight<chunk_bytes>>;

    /// The chunk's flight: joined, or made and its fill started.
    result<flight_ptr> join_or_start(const origin_object& obj, const chunk_key& key) {
        auto path = storage_path(key);
        if (!path) return std::unexpected(std::move(path.error()));
        auto tk = here().flights.join(*path);
        if (tk.leader) {
            ++c_.fills_started;
            start_fill(std::move(*path), obj, key, tk.f);
        } else {
            ++c_.fills_joined;
        }
        return std::move(tk.f);
    }

    /// The chunk's bytes: from its flight, started here when there is none.
    result<chunk_bytes> fill_chunk(const context& ctx, const origin_object& obj, const chunk_key& key) {
        auto f = join_or_start(obj, key);
        if (!f) return std::unexpected(std::move(f.error()));
        return (*f)->wait(ctx, "fill::read", obj.object_key);
    }

    /// Read-ahead of chunk `index`: null when the store has it, else its
    /// flight (its fill started, under the origin cap).
    result<flight_ptr> plan(const context& ctx, const origin_object& obj, std::int64_t index, read_stats& st) {
        const chunk_key key = obj.chunk(index);
        auto info = store_.stat(ctx, key);
        if (info) return flight_ptr{};
        if (cachestore::detail::ends_read(info.error().code)) return std::unexpected(std::move(info.error()));
        if (info.error().code != errc::not_found) cachestore::detail::note_store_error(st, std::move(info.error()));
        return join_or_start(obj, key);
    }

    static std::unexpected<error> sink_stopped(const origin_object& obj) {
        return fail(errc::cancelled, "fill::stream", obj.object_key, "the sink asked to stop");
    }

    struct proc;

    void start_fill(std::string path, const origin_object& obj, const chunk_key& key,
                    std::shared_ptr<detail::flight<chunk_bytes>> f) {
        proc& p = here(); // outlives its pool's and commit queue's jobs: they capture it, never here()
        submit_origin_job(
            p, "fill", obj.object_key,
            [this, &p, path, obj, key, f](const context& fctx) { run_fill(p, fctx, path, obj, key, f); },
            [this, &p, path, f](error&& e) {
                c_.failed(e.code);
                p.flights.finish(path, f, std::unexpected(std::move(e)));
            });
    }

    /// The object's HEAD, on a pool thread like a fill (under the origin cap,
    /// its own context, retried), its answer kept before the waiters have it.
    void start_head(proc& p, const std::string& k, const object_ref& ref,
                    const std::shared_ptr<detail::flight<object_meta>>& f) {
        ++c_.metadata_heads;
        submit_origin_job(
            p, "fill::head", ref.object_key,
            [this, &p, k, ref, f](const context& hctx) {
                auto r = detail::retry_transient(
                    hctx, opt_,
                    [&] { return detail::guarded("fill::head", ref.object_key, [&] { return origin_.head(hctx, ref); }); },
                    [this] { ++c_.origin_retries; });
                bool negative = !r && r.error().code == errc::not_found;
                if (r && (r->etag.empty() || r->etag.starts_with("W/"))) {
                    r = fail(errc::misconfigured, "fill::head", ref.object_key,
                             "the origin gives no strong ETag (" + (r->etag.empty() ? std::string("none") : r->etag) +
                                 "): nothing can be cached by content");
                    negative = true;
                }
                if (r) p.meta->put(k, *r);
                else if (negative) p.meta->put_negative(k, r.error());
                p.heads.finish(k, f, std::move(r));
            },
            [&p, k, f](error&& e) { p.heads.finish(k, f, std::unexpected(std::move(e))); });
    }

    /// Queues `run(ctx)` for an origin slot: on a pool thread, under a context
    /// of its own (the engine's stop token, the fill ceiling), the wait for
    /// the slot counted. A job that finds no slot within the queue timeout,
    /// or is still queued when the engine shuts down, calls `failed` instead
    /// with `unavailable` or `cancelled` (op, the object's key).
    template <class Run, class Failed>
    void submit_origin_job(proc& p, const char* op, const std::string& object_key, Run run, Failed failed) {
        const auto submitted = context::clock::now();
        pool_type::job j;
        j.run = [this, submitted, run = std::move(run)](std::stop_token stop) {
            c_.waited(context::clock::now() - submitted);
            run(context(std::move(stop), context::clock::now() + opt_.fill_timeout));
        };
        j.expired = [this, submitted, op, object_key, failed = std::move(failed)](bool stopping) {
            if (stopping) return failed(fail(errc::cancelled, op, object_key, "the engine is shutting down").error());
            ++c_.origin_queue_timeouts;
            c_.waited(context::clock::now() - submitted);
            failed(fail(errc::unavailable, op, object_key,
                        "origin cap: " + std::to_string(opt_.origin_cap) + " fills in flight, none freed a slot within " +
                            std::to_string(opt_.origin_queue_timeout.count()) + " ms")
                       .error());
        };
        p.pool->submit(std::move(j));
    }

    /// On a pool thread: fetch exactly expected_len bytes, release the
    /// waiters, then commit: on the commit queue (the slot is free at once),
    /// or here when there is none (`commit_queue_bytes` 0: the slot is held
    /// through the commit).
    void run_fill(proc& p, const context& fctx, const std::string& path, const origin_object& obj,
                  const chunk_key& key, const std::shared_ptr<detail::flight<chunk_bytes>>& f) {
        const std::int64_t len = key.expected_len(obj.size);
        auto buf = std::make_shared<std::vector<std::byte>>();
        // The store once more: a reader that found it without the chunk may
        // have joined just after the flight that committed it retired (or
        // another process committed it). Then no origin fetch.
        // A chunk stored shorter than expected_len (committed under a wrong
        // object size) answers out_of_range: damaged, if the origin's bytes
        // prove it below.
        bool damaged = false;
        if (cachestore::detail::resize_buffer(*buf, len, "fill", obj.object_key, "a chunk")) {
            auto stored = get_chunk(store_, fctx, key, 0, std::span<std::byte>(*buf));
            if (stored) {
                ++c_.fills_found_stored;
                f->publish(chunk_bytes(buf));
                p.flights.retire(path, f);
                return;
            }
            damaged = stored.error().code == errc::out_of_range;
        }
        auto fetched = detail::retry_transient(
            fctx, opt_, [&] { return fetch(fctx, obj, key, len, *buf); }, [this] { ++c_.origin_retries; });
        if (!fetched) {
            c_.failed(fetched.error().code);
            if (fetched.error().code == errc::changed) p.meta->drop(metadata_cache::key_of({obj.origin_id, obj.bucket, obj.object_key}));
            p.flights.finish(path, f, std::unexpected(std::move(fetched.error())));
            return;
        }
        c_.origin_bytes += len;
        f->publish(chunk_bytes(buf)); // served: every waiter has the bytes; callers from now on join a done flight
        if (damaged) remove_damaged(fctx, key, len);
        if (!p.commits) {
            commit(fctx, key, len, *buf);
            p.flights.retire(path, f); // committed (or not): later callers read the store
            return;
        }
        // Room on the commit queue (bounded in bytes: a chunk counts until the
        // store has answered), or the commit is dropped.
        const auto bytes = static_cast<std::size_t>(len);
        for (std::size_t queued = p.commit_bytes.load();;) {
            if (bytes > opt_.commit_queue_bytes - std::min(opt_.commit_queue_bytes, queued)) {
                ++c_.commits_dropped; // full: the next miss fills the chunk again
                p.flights.retire(path, f);
                return;
            }
            if (p.commit_bytes.compare_exchange_weak(queued, queued + bytes)) break;
        }
        pool_type::job cj;
        cj.run = [this, &p, path, key, len, buf, f](std::stop_token stop) {
            commit(context(std::move(stop), context::clock::now() + opt_.fill_timeout), key, len, *buf);
            p.flights.retire(path, f);
            p.commit_bytes -= static_cast<std::size_t>(len);
        };
        cj.expired = [this, &p, path, len, f](bool) { // the engine is destroyed first
            ++c_.commits_dropped;
            p.flights.retire(path, f);
            p.commit_bytes -= static_cast<std::size_t>(len);
        };
        p.commits->submit(std::move(cj));
    }

    /// The origin produced exactly `len` bytes of this (strong) ETag: a
    /// stored chunk of another length is proven damaged. Removed, so that the
    /// commit replaces it (a put onto it would be commit_lost).
    void remove_damaged(const context& ctx, const chunk_key& key, std::int64_t len) {
        auto info = store_.stat(ctx, key);
        if (info && info->size != len && store_.remove(ctx, key)) ++c_.damaged_removed;
    }

    void commit(const context& ctx, const chunk_key& key, std::int64_t len, const std::vector<std::byte>& bytes) {
        auto put = store_.put_chunk(ctx, key, len, std::span<const std::byte>(bytes));
        if (put) ++c_.commits;
        else if (put.error().code == errc::commit_lost) ++c_.commits_lost;
        else ++c_.commits_failed;
    }

    result<> fetch(const context& fctx, const origin_object& obj, const chunk_key& key, std::int64_t len,
                   std::vector<std::byte>& buf) {
        if (auto sized = cachestore::detail::resize_buffer(buf, len, "fill", obj.object_key, "a chunk"); !sized)
            return sized;
        const std::int64_t at = key.index * obj.chunk_size;
        auto got = detail::guarded("fill", obj.object_key, [&] { return origin_.get(fctx, obj, at, std::span<std::byte>(buf)); });
        if (!got) return std::unexpected(std::move(got.error()));
        if (*got != buf.size()) return cachestore::detail::origin_length_error("fill", obj, key, *got);
        return {};
    }

    /// What belongs to one process: the flights (their fills run on this
    /// process's threads) and the threads. A child forked from a process
    /// using the engine gets its own on first use, empty; the parent's are
    /// left alone there, never used nor destroyed (fork_generation.hpp).
    /// (Destroyed in reverse: the fill threads end, then the commit thread
    /// (dropping what is queued), then the flights go.)
    struct proc {
        detail::flight_table<chunk_bytes> flights;
        detail::flight_table<object_meta> heads; ///< origin HEADs in flight, by metadata_cache::key_of
        std::unique_ptr<metadata_cache> meta;
        std::atomic<std::size_t> commit_bytes{0};     ///< on the commit queue, or being committed
        std::unique_ptr<pool_type> commits; ///< one thread, no queue timeout; null: commits run on the fill's thread
        std::unique_ptr<pool_type> pool;
    };
    void make_threads(proc& p) const {
        p.meta = std::make_unique<metadata_cache>(opt_.metadata_entries, opt_.metadata_ttl, opt_.metadata_negative_ttl);
        if (opt_.commit_queue_bytes > 0) p.commits = std::make_unique<pool_type>(1, pool_type::no_timeout);
        p.pool = std::make_unique<pool_type>(opt_.origin_cap, opt_.origin_queue_timeout);
    }
    proc& here() const {
        return proc_.get([this](proc&, proc& fresh) { make_threads(fresh); });
    }

    S& store_;
    O& origin_;
    const engine_options opt_;
    detail::engine_counters c_;
    mutable cachestore::detail::per_process<proc> proc_; // last: destroyed first, so its threads end before what they use
};

} // namespace cachestore::fill
