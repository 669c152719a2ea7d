// tests/bench/tiered_rows.hpp - the tiered store's rows against RGW (issue 20,
// docs/tiered.md), part of bench.cpp's translation unit (included after its
// machinery). The near tier is a bounded posix_store in a fresh temp
// directory (fsync off), the far tier the benchmark's S3 store on RGW:
//
//   - a far hit through tiered<posix_store, store>, which serves the chunk and
//     promotes it into the near tier off the caller's path, against the same
//     read from the store alone (ratio rows, target >= 0.95), 4 KiB, 1 MiB and
//     8 MiB chunks, two rows each: the caller's path alone (each promotion
//     waited for, untimed, before the next read) and promotions overlapping
//     the next reads (on this machine the promotions share its cores with
//     RGW). Every measured tiered read is a far hit: each reads a chunk of a
//     pool uploaded for the rows, and the near copies are removed
//     (near().remove), untimed, after each read or when the pool is used up;
//   - the next read of a promoted chunk is a near hit (measurement, with the
//     latencies of the far read, of the promotion and of the near hit);
//   - a Zipf(1.0) stream over a working set in RGW, through a near tier bounded
//     at 10 % of it: the near tier's hit ratio and the far-tier requests saved
//     against the same stream with no near tier, from the tiered snapshot and a
//     metered<store> around the far tier (measurement); once over full 64 KiB
//     chunks, once over 64 KiB objects under an 8 MiB chunk size (each object
//     one chunk shorter than the chunk size, whose promotion asks the far tier
//     for the chunk's size: a HEAD).
//
// Against RGW over http only (--target rgw: tests/bench/run.sh --rgw, and the
// bench-smoke-rgw-tiered smoke pass); --only tiered selects these rows alone.
#pragma once

#include <cachestore/layers/metered.hpp>
#include <cachestore/layers/tiered.hpp>
#include <cachestore/posix_store.hpp>

#include <filesystem>
#include <list>
#include <random>
#include <unordered_map>

#include "lru_model.hpp"

namespace bench {

/// A fresh directory for a near tier, removed afterwards.
struct near_dir {
    std::string path;
    near_dir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "cachestore-bench-near-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) die("mkdtemp for a near tier failed");
        path = tmpl;
    }
    ~near_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    near_dir(const near_dir&) = delete;
    near_dir& operator=(const near_dir&) = delete;
};

/// A bounded near tier, fsync off; `granularity`: its recency_granularity
/// (the Zipf rows use 0: their near tier turns over in well under a second,
/// against the default 60 s, which would make its eviction order FIFO).
inline cachestore::posix_store open_near(const near_dir& d, std::int64_t max_bytes,
                                         std::chrono::milliseconds granularity = std::chrono::milliseconds(60'000)) {
    auto s = cachestore::posix_store::open(
        d.path, {.fsync = false, .max_bytes = max_bytes, .recency_granularity = granularity});
    if (!s) die("posix_store::open " + d.path + ": " + s.error().to_string());
    return std::move(*s);
}

/// `n` chunks of `size` bytes uploaded to the far store (8 threads): chunks
/// 0..n-1 of one object, or with `objects`, chunk 0 of n objects of `size`
/// bytes each under a chunk size of `chunk_size` (a small object: one chunk,
/// shorter than the chunk size).
inline std::vector<cachestore::chunk_key> upload_chunks(fixture& f, const std::string& object, std::int64_t size,
                                                        std::int64_t n, bool objects = false,
                                                        std::int64_t chunk_size = 0) {
    std::vector<cachestore::chunk_key> keys;
    for (std::int64_t i = 0; i < n; ++i)
        keys.push_back(
            objects ? cachestore::chunk_key{"bench", "origin-bucket", "tiered/" + object + "/" + std::to_string(i),
                                            "\"etag-1\"", chunk_size, 0}
                    : cachestore::chunk_key{"bench", "origin-bucket", "tiered/" + object, "\"etag-1\"", size, i});
    const auto body = pattern(size, 7);
    std::atomic<std::size_t> next{0};
    g_pool->run(8, [&](int) {
        for (std::size_t i = next++; i < keys.size(); i = next++) {
            auto r = f.st.put_chunk(f.ctx, keys[i], size, std::span<const std::byte>(body));
            if (!r && r.error().code != cachestore::errc::commit_lost)
                report_failure("put_chunk " + object, r.error().to_string());
        }
    });
    return keys;
}

inline void remove_chunks(fixture& f, const std::vector<cachestore::chunk_key>& keys) {
    std::atomic<std::size_t> next{0};
    g_pool->run(8, [&](int) {
        for (std::size_t i = next++; i < keys.size(); i = next++) (void)f.st.remove(f.ctx, keys[i]);
    });
}

/// Waits until no promotion is queued or running; false after 60 s.
template <class Tiered>
bool promotions_settled(Tiered& t) {
    const auto until = clk::now() + std::chrono::seconds(60);
    while (t.snapshot().promotion_queue_bytes != 0) {
        if (clk::now() > until) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return true;
}

using tiered_rgw = cachestore::tiered<cachestore::posix_store, s3::store&>;

/// The next read of a promoted chunk: `n` chunks read once (far hit), the
/// promotion waited for, then read again, which must be a near hit.
inline void next_read_measurement(fixture& f, tiered_rgw& t, const std::vector<cachestore::chunk_key>& keys,
                                  std::vector<std::byte>& buf, const std::string& size, const std::string& row_counts) {
    std::vector<double> far_ms, promote_ms, near_ms, bare_ms, far_cpu, bare_cpu, promote_cpu;
    std::uint64_t near_hits = 0;
    const std::size_t n = std::min<std::size_t>(keys.size(), g_opt.smoke ? 2 : 16);
    for (std::size_t i = 0; i < n; ++i) {
        if (!promotions_settled(t)) return report_failure("tiered next read", "promotions did not settle in 60 s");
        (void)t.near().remove(f.ctx, keys[i]);
        // The same chunk from the store alone, then through the tiered store (a far hit): wall and caller CPU.
        const double c0 = thread_cpu_seconds();
        const auto b0 = clk::now();
        auto r = cachestore::get_chunk(f.st, f.ctx, keys[i], 0, std::span<std::byte>(buf));
        bare_ms.push_back(std::chrono::duration<double, std::milli>(clk::now() - b0).count());
        bare_cpu.push_back((thread_cpu_seconds() - c0) * 1e6);
        if (!r) return report_failure("get_chunk (far read)", r.error().to_string());
        const auto s0 = t.snapshot();
        const double c1 = thread_cpu_seconds();
        const auto t0 = clk::now();
        r = cachestore::get_chunk(t, f.ctx, keys[i], 0, std::span<std::byte>(buf));
        const auto t1 = clk::now();
        far_cpu.push_back((thread_cpu_seconds() - c1) * 1e6);
        if (!r) return report_failure("tiered get_chunk (far hit)", r.error().to_string());
        // The promotion's CPU: the process's, less this thread's (which only polls), until it settled.
        const double p0 = process_cpu_seconds(), w0 = thread_cpu_seconds();
        if (!promotions_settled(t)) return report_failure("tiered next read", "the promotion did not settle in 60 s");
        promote_cpu.push_back(((process_cpu_seconds() - p0) - (thread_cpu_seconds() - w0)) * 1e6);
        const auto t2 = clk::now();
        r = cachestore::get_chunk(t, f.ctx, keys[i], 0, std::span<std::byte>(buf));
        const auto t3 = clk::now();
        if (!r) return report_failure("tiered get_chunk (next read)", r.error().to_string());
        const auto s1 = t.snapshot();
        if (s1.get_hits[1] - s0.get_hits[1] != 1 || s1.promotions_done - s0.promotions_done != 1)
            report_failure("tiered next read", "the first read was not a promoted far hit");
        near_hits += s1.get_hits[0] - s0.get_hits[0];
        far_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        promote_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
        near_ms.push_back(std::chrono::duration<double, std::milli>(t3 - t2).count());
    }
    if (near_hits != n)
        report_failure("tiered next read",
                       std::to_string(near_hits) + " of " + std::to_string(n) + " next reads were near hits");
    g_meas.push_back(
        {"tiered<posix_store, store>: the next read of a chunk promoted by a " + size + " far hit (" +
             std::to_string(n) + " chunks, medians)",
         std::to_string(near_hits) + " of " + std::to_string(n) +
             " next reads were near hits: " + fmt("%.3f ms", median(near_ms)),
         "the far hit: " + fmt("%.2f ms", median(far_ms)) + " (caller CPU " + fmt("%.0f µs", median(far_cpu)) +
             "), the same read from the store alone " + fmt("%.2f ms", median(bare_ms)) + " (" +
             fmt("%.0f µs", median(bare_cpu)) + "); the promotion landed " + fmt("%.2f ms", median(promote_ms)) +
             " after the far hit returned and took " + fmt("%.0f µs", median(promote_cpu)) +
             " of CPU on a promotion thread",
         (near_hits == n ? fmt("next read %.0fx", median(far_ms) / median(near_ms)) + " faster than the far hit"
                         : std::string("NOT ALL NEAR HITS")) +
             "; " + row_counts});
}

/// Far hits with promotion against bare far reads, whole chunks of `size`
/// bytes, two rows: with `overlap`, the promotions run while the next reads
/// do (on this machine they share its cores with RGW); without, each read's
/// promotion is waited for (untimed) before the next read: the caller's path
/// alone.
inline void far_hit_row(fixture& f, tiered_rgw& t, const std::vector<cachestore::chunk_key>& keys,
                        const std::string& sz, bool overlap, const budget& b, std::vector<std::byte>& ours_buf,
                        std::vector<std::byte>& base_buf, std::string& counts) {
    const std::string name =
        "GET " + sz + " far hit via tiered<posix_store, store>: " +
        (overlap ? "promotions overlapping the reads" : "the caller's path (each promotion awaited, untimed)");
    const std::string baseline = "the same store alone";
    if (!selected(name + " vs " + baseline)) return;
    std::size_t next = 0, base_next = 0;
    long ours_ops = 0;
    bool settled = true;
    auto ours = side{1, [&](int, clk::duration& untimed) {
                         if (next == keys.size()) { // every chunk promoted: settle and forget them, untimed
                             const auto u0 = clk::now();
                             settled = promotions_settled(t) && settled;
                             for (const auto& k : keys) (void)t.near().remove(f.ctx, k);
                             next = 0;
                             untimed += clk::now() - u0;
                         }
                         const auto& key = keys[next++];
                         auto r = cachestore::get_chunk(t, f.ctx, key, 0, std::span<std::byte>(ours_buf));
                         if (!r) report_failure("tiered get_chunk (far hit)", r.error().to_string());
                         ++ours_ops;
                         if (!overlap) {
                             const auto u0 = clk::now();
                             settled = promotions_settled(t) && settled;
                             (void)t.near().remove(f.ctx, key);
                             untimed += clk::now() - u0;
                         }
                         return r.has_value();
                     }};
    auto base = side{1, [&](int, clk::duration&) {
                         auto r = cachestore::get_chunk(f.st, f.ctx, keys[base_next++ % keys.size()], 0,
                                                        std::span<std::byte>(base_buf));
                         if (!r) report_failure("get_chunk (far read)", r.error().to_string());
                         return r.has_value();
                     }};
    const auto s0 = t.snapshot();
    run_row({name, baseline, static_cast<double>(keys.front().chunk_size), 0.95, b, ours, base});
    settled = promotions_settled(t) && settled;
    for (const auto& k : keys) (void)t.near().remove(f.ctx, k);
    const auto s1 = t.snapshot();
    const auto near = s1.get_hits[0] - s0.get_hits[0], far = s1.get_hits[1] - s0.get_hits[1];
    const auto done = s1.promotions_done - s0.promotions_done, skipped = s1.promotions_skipped - s0.promotions_skipped,
               failed = s1.promotions_failed - s0.promotions_failed;
    if (!settled) report_failure(name, "promotions did not settle in 60 s");
    if (near != 0 || far != static_cast<std::uint64_t>(ours_ops) || done != far || failed != 0)
        report_failure(name, "expected every tiered read to be a promoted far hit: " + std::to_string(ours_ops) +
                                 " reads, " + std::to_string(far) + " far hits, " + std::to_string(near) +
                                 " near hits, promotions " + std::to_string(done) + " done, " +
                                 std::to_string(skipped) + " skipped, " + std::to_string(failed) + " failed");
    counts += (counts.empty() ? "" : "; ") + std::string(overlap ? "overlapping" : "awaited") +
              " row: " + std::to_string(ours_ops) + " tiered reads, " + std::to_string(far) + " far hits, " +
              std::to_string(near) + " near hits, " + std::to_string(done) + " promoted";
}

/// The far-hit rows of one chunk size, over a pool of `pool` chunks uploaded
/// for them, and the next-read measurement.
inline void far_hit_rows(fixture& f, std::int64_t size, std::int64_t pool, const budget& b) {
    const std::string sz = size >= MiB ? std::to_string(size / MiB) + " MiB" : std::to_string(size / KiB) + " KiB";
    if (!selected("GET " + sz + " far hit via tiered")) return;
    const auto keys = upload_chunks(f, "far-hit-" + std::to_string(size), size, g_opt.smoke ? 3 : pool);
    near_dir dir;
    tiered_rgw t(open_near(dir, 4 * pool * size), f.st, cachestore::tiered_options{.name = "bench"});
    std::vector<std::byte> ours_buf(static_cast<std::size_t>(size), std::byte{1}), base_buf = ours_buf;
    std::string counts;
    far_hit_row(f, t, keys, sz, false, b, ours_buf, base_buf, counts);
    far_hit_row(f, t, keys, sz, true, b, ours_buf, base_buf, counts);
    next_read_measurement(f, t, keys, ours_buf, sz, counts);
    remove_chunks(f, keys);
}

/// The Zipf(1.0) stream: `requests` indices into `nkeys` keys by inverse CDF,
/// popularity shuffled over the keys (the same stream every run).
inline std::vector<std::size_t> zipf_stream(std::size_t nkeys, std::size_t requests) {
    std::mt19937_64 g(12); // NOLINT(cert-msc51-cpp): one fixed stream, the same for every run and baseline
    std::vector<double> cdf(nkeys);
    double sum = 0;
    for (std::size_t i = 0; i < nkeys; ++i) cdf[i] = (sum += 1.0 / static_cast<double>(i + 1));
    for (auto& c : cdf) c /= sum;
    std::vector<std::size_t> perm(nkeys);
    for (std::size_t i = 0; i < nkeys; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), g);
    std::vector<std::size_t> stream(requests);
    for (auto& k : stream) {
        const double u = std::uniform_real_distribution<double>(0, 1)(g);
        const auto rank = static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
        k = perm[std::min(nkeys - 1, rank)];
    }
    return stream;
}

/// A Zipf(1.0) stream of whole-chunk GETs over a working set in RGW, through
/// a near tier bounded at 10 % of it, against the same stream with no near
/// tier. With `small_objects`, each key is a 64 KiB object under an 8 MiB
/// chunk size (one chunk, shorter than the chunk size), else a full 64 KiB
/// chunk. `base_s`: the no-near-tier run's time, measured by the first call.
inline void zipf_measurement(fixture& f, bool small_objects, double& base_s) {
    const std::string what = small_objects ? "tiered Zipf(1.0), 64 KiB objects under an 8 MiB chunk size"
                                           : "tiered Zipf(1.0), full 64 KiB chunks";
    if (!selected(what)) return;
    const std::int64_t size = 64 * KiB;
    const std::size_t nkeys = g_opt.smoke ? 50 : 2000, requests = g_opt.smoke ? 200 : 20000;
    const std::size_t capacity = nkeys / 10;
    std::fprintf(stderr, "bench: %s: %zu keys, %zu requests ...\n", what.c_str(), nkeys, requests);
    const auto keys = small_objects
                          ? upload_chunks(f, "zipf-objects", size, static_cast<std::int64_t>(nkeys), true, 8 * MiB)
                          : upload_chunks(f, "zipf", size, static_cast<std::int64_t>(nkeys));
    const auto stream = zipf_stream(nkeys, requests);
    std::vector<std::byte> buf(static_cast<std::size_t>(size));
    auto run = [&](auto& store, const char* op) {
        const auto t0 = clk::now();
        for (const auto k : stream) {
            auto r = cachestore::get_chunk(store, f.ctx, keys[k], 0, std::span<std::byte>(buf));
            if (!r) {
                report_failure(op, r.error().to_string());
                break;
            }
        }
        return std::chrono::duration<double>(clk::now() - t0).count();
    };
    near_dir dir;
    using far_type = cachestore::metered<s3::store&>; // counts the far tier's requests
    cachestore::tiered<cachestore::posix_store, far_type> t(
        open_near(dir, static_cast<std::int64_t>(capacity) * size, std::chrono::milliseconds(0)), far_type(f.st),
        cachestore::tiered_options{.name = "bench"});
    const double tiered_s = run(t, "tiered get_chunk (Zipf)");
    if (!promotions_settled(t)) report_failure(what, "promotions did not settle in 60 s");
    const auto s = t.snapshot();
    const auto m = t.far().snapshot();
    if (base_s <= 0) base_s = run(f.st, "get_chunk (Zipf, no near tier)");
    const std::uint64_t far_gets = m[cachestore::store_op::get_chunk].calls(),
                        far_stats = m[cachestore::store_op::stat].calls();
    const std::uint64_t far_requests = far_gets + far_stats;
    const std::uint64_t near = s.get_hits[0], far = s.get_hits[1], none = s.get_hits[2];
    if (near + far + none != requests || none != 0 || s.promotions_failed != 0)
        report_failure(what, "the snapshot does not add up: " + std::to_string(near) + " near + " +
                                 std::to_string(far) + " far + " + std::to_string(none) + " none for " +
                                 std::to_string(requests) + " requests, " + std::to_string(s.promotions_failed) +
                                 " promotions failed");
    auto usage = t.near().measure();
    if (usage && usage->bytes > static_cast<std::int64_t>(capacity) * size)
        report_failure(what, "the near tier holds " + std::to_string(usage->bytes) + " bytes, over its bound");
    const std::size_t lru = exact_lru_hits(stream, capacity);
    const double rq = static_cast<double>(requests);
    const auto saved =
        static_cast<long long>(requests) - static_cast<long long>(far_requests); // < 0: more than without
    g_meas.push_back({what + ": " + std::to_string(requests) + " GETs of whole chunks, 1 thread, over " +
                          std::to_string(nkeys) + " keys in RGW; near tier: a posix_store bounded at 10 % (" +
                          std::to_string(capacity) + " chunks, recency_granularity 0)",
                      "near hit ratio " + fmt("%.4f", static_cast<double>(near) / rq) + " (" + std::to_string(near) +
                          " near, " + std::to_string(far) + " far hits; promotions " +
                          std::to_string(s.promotions_done) + " done, " + std::to_string(s.promotions_skipped) +
                          " skipped, " + std::to_string(s.promotions_failed) + " failed); far-tier requests " +
                          std::to_string(far_requests) + " (" + std::to_string(far_gets) + " GET, " +
                          std::to_string(far_stats) + " HEAD); " + fmt("%.2f s", tiered_s) + ", " +
                          fmt("%.0f req/s", rq / tiered_s),
                      "no near tier (the store alone, the same stream" +
                          std::string(small_objects ? " over full chunks" : "") + "): " + std::to_string(requests) +
                          " far-tier requests; " + fmt("%.2f s", base_s) + ", " + fmt("%.0f req/s", rq / base_s) +
                          "; an exact LRU of the same capacity (simulated, filled at once) would hit " +
                          fmt("%.4f", static_cast<double>(lru) / rq),
                      "far-tier requests saved: " + std::to_string(saved) + " (" +
                          fmt("%.1f %%", 100.0 * static_cast<double>(saved) / rq) +
                          (saved < 0 ? " : more far requests than with no near tier" : "") +
                          "); wall time tiered / no near tier " + fmt("%.2f", tiered_s / base_s)});
    remove_chunks(f, keys);
}

inline void tiered_rows(fixture& f) {
    if (f.sv.name != "rgw") return; // the far tier of these rows is RGW over http
    // The rows upload their own chunks: not the fixture's objects.
    const auto prepare = std::exchange(g_prepare, {});
    far_hit_rows(f, 4 * KiB, 256, budget{g_opt.seconds, 20});
    far_hit_rows(f, 1 * MiB, 64, budget{g_opt.seconds, 8});
    far_hit_rows(f, 8 * MiB, 16, budget{g_opt.seconds, 4});
    if (g_opt.measurements) {
        double base_s = 0;
        zipf_measurement(f, false, base_s);
        zipf_measurement(f, true, base_s);
    }
    g_prepare = prepare;
}

} // namespace bench
