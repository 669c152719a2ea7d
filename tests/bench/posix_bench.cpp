// tests/bench/posix_bench.cpp - the bounded POSIX store's benchmark (issue 12).
//
// Every figure is printed against a baseline measured side by side in the
// same run:
//   hit rate  the store, bounded at 10 % of the key space, serving a Zipf(1.0)
//             key stream (a miss is filled with put_chunk), against an exact
//             LRU cache of the same capacity simulated on the same stream:
//             ratio = store hits / exact-LRU hits (target >= 0.9).
//   scan      the time to walk a tree of N chunks: measure() (du), open() of
//             a bounded store (its start-up sweep), and sweep() evicting ~15 %,
//             against nftw(FTW_PHYS) visiting every entry with its stat: the
//             least any walk that learns sizes and access times can do.
//   tiered    warm near-tier hits of cachestore::tiered<posix_store, memory_store>
//             (issue 20, docs/tiered.md), the near tier a bounded posix_store,
//             against the same posix_store read directly, alternating in one
//             run: ratio = ops/s tiered / ops/s bare (target >= 0.95).
// Timings are never asserted; --smoke runs small sizes and fails only when an
// operation fails, the hit-rate ratio is below 0.9 (a correctness bound) or a
// tiered read was not a near hit.
//
// Usage: posix_bench [--smoke] [--dir DIR] [--keys K] [--requests N]
//                    [--scan-chunks N]... [--skip-hitrate] [--skip-scan]
//                    [--skip-tiered] [--runs N] [--seconds S]
//   --dir DIR         where the trees go (default: the system temp directory)
//   --scan-chunks N   a tree size to time (repeatable; default 100000; the
//                     docs' 1,000,000-chunk figure is --scan-chunks 1000000)
//   --runs N          alternating runs per tiered row (default 7)
//   --seconds S       time per side per tiered run (default 0.3; 4 interleaved slices)
#include <cachestore/layers/tiered.hpp>
#include <cachestore/memory_store.hpp>
#include <cachestore/posix_store.hpp>

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <list>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "lru_model.hpp"

namespace {

namespace cs = cachestore;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

double secs_since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

/// A failed operation or a bad argument: main() reports it and returns `code`.
struct bench_error : std::runtime_error {
    int code;
    bench_error(const std::string& what, int c) : std::runtime_error(what), code(c) {}
};

/// A fresh directory, removed afterwards.
struct scratch_dir {
    std::string path;
    explicit scratch_dir(const std::string& parent) {
        std::string tmpl = (fs::path(parent) / "cachestore-posix-bench-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) throw bench_error("mkdtemp under " + parent + " failed", 1);
        path = tmpl;
    }
    ~scratch_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    scratch_dir(const scratch_dir&) = delete;
    scratch_dir& operator=(const scratch_dir&) = delete;
};

cs::chunk_key key_of(std::int64_t i, std::int64_t chunk_size) {
    return cs::chunk_key{"bench", "bucket", "obj/" + std::to_string(i / 4), "\"e\"", chunk_size, i % 4};
}

[[noreturn]] void die(const std::string& what, const cs::error& e) { throw bench_error(what + ": " + e.to_string(), 1); }

// ---- hit rate --------------------------------------------------------------------

/// Zipf(s) over ranks 0..n-1 by inverse CDF.
class zipf {
public:
    zipf(std::size_t n, double s) : cdf_(n) {
        double sum = 0;
        for (std::size_t i = 0; i < n; ++i) cdf_[i] = (sum += 1.0 / std::pow(static_cast<double>(i + 1), s));
        for (auto& c : cdf_) c /= sum;
    }
    template <class G>
    std::size_t operator()(G& g) {
        const double u = std::uniform_real_distribution<double>(0, 1)(g);
        return static_cast<std::size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
    }

private:
    std::vector<double> cdf_;
};

using bench::exact_lru_hits;

struct hit_row {
    std::size_t hits = 0;
    std::int64_t evicted = 0;
    double seconds = 0;
};

/// The bounded store on the stream: a hit is a successful read, a miss is
/// filled (put_chunk makes room by evicting the least recently used).
hit_row store_hits(const std::string& dir, const std::vector<std::int64_t>& stream, std::int64_t chunk,
                   std::int64_t bound, std::chrono::milliseconds granularity) {
    scratch_dir root(dir);
    auto s = cs::posix_store::open(root.path, {.fsync = false, .max_bytes = bound, .recency_granularity = granularity});
    if (!s) die("open", s.error());
    std::vector<std::byte> buf(static_cast<std::size_t>(chunk), std::byte{0x42});
    hit_row row;
    const auto t0 = clock_type::now();
    for (const auto k : stream) {
        const auto key = key_of(k, chunk);
        auto r = s->get_chunk_into({}, key, 0, std::span<std::byte>(buf));
        if (r) {
            ++row.hits;
            continue;
        }
        if (r.error().code != cs::errc::not_found) die("get_chunk", r.error());
        auto w = s->put_chunk({}, key, chunk, std::span<const std::byte>(buf));
        if (!w && w.error().code != cs::errc::commit_lost) die("put_chunk", w.error());
    }
    row.seconds = secs_since(t0);
    auto m = s->measure();
    if (!m) die("measure", m.error());
    if (m->bytes > bound)
        throw bench_error("usage " + std::to_string(m->bytes) + " over the bound " + std::to_string(bound), 1);
    return row;
}

bool bench_hit_rate(const std::string& dir, std::size_t keys, std::size_t requests, bool smoke) {
    constexpr std::int64_t chunk = 4096;
    const std::size_t capacity = keys / 10;
    const auto bound = static_cast<std::int64_t>(capacity) * chunk;
    std::mt19937_64 g(12); // NOLINT(cert-msc51-cpp): one fixed stream, the same for every run and baseline
    zipf z(keys, 1.0);
    std::vector<std::int64_t> perm(keys);
    for (std::size_t i = 0; i < keys; ++i) perm[i] = static_cast<std::int64_t>(i);
    std::shuffle(perm.begin(), perm.end(), g); // popularity unrelated to names
    std::vector<std::int64_t> stream(requests);
    for (auto& k : stream) k = perm[z(g)];

    const auto t0 = clock_type::now();
    const std::size_t lru = exact_lru_hits(stream, capacity);
    const double lru_s = secs_since(t0);
    std::printf("## Hit rate: Zipf(1.0) over %zu keys of %lld bytes, %zu requests, bound %zu chunks (10 %%)\n\n", keys,
                static_cast<long long>(chunk), requests, capacity);
    std::printf("| cache | recency granularity | hits | hit rate | vs exact LRU | time |\n|---|---|---|---|---|---|\n");
    std::printf("| exact LRU (simulated, baseline) | - | %zu | %.4f | 1.000 | %.2f s |\n", lru,
                static_cast<double>(lru) / static_cast<double>(requests), lru_s);
    bool ok = true;
    std::vector<std::chrono::milliseconds> grans{std::chrono::milliseconds(0)};
    if (!smoke) grans.insert(grans.end(), {std::chrono::milliseconds(10), std::chrono::milliseconds(100)});
    for (const auto gran : grans) {
        const auto row = store_hits(dir, stream, chunk, bound, gran);
        const double ratio = static_cast<double>(row.hits) / static_cast<double>(lru);
        std::printf("| bounded posix_store | %lld ms | %zu | %.4f | %.3f | %.2f s |\n", static_cast<long long>(gran.count()),
                    row.hits, static_cast<double>(row.hits) / static_cast<double>(requests), ratio, row.seconds);
        std::fflush(stdout);
        if (gran.count() == 0 && ratio < 0.9) ok = false;
    }
    std::printf("\nThe granularity rows show the one tuning rule: recency is exact while the atime granularity is\n"
                "small against the cache's turnover time (here the whole cache turns over in well under a second).\n\n");
    return ok;
}

// ---- scan and sweep --------------------------------------------------------------

std::int64_t nftw_entries = 0;
int count_entry(const char*, const struct stat*, int, struct FTW*) {
    ++nftw_entries;
    return 0;
}

bool bench_scan(const std::string& dir, std::int64_t n) {
    constexpr std::int64_t chunk = 64;
    scratch_dir root(dir);
    {
        auto plain = cs::posix_store::open(root.path, {.fsync = false});
        if (!plain) die("open", plain.error());
        const std::vector<std::byte> bytes(chunk, std::byte{1});
        const auto t0 = clock_type::now();
        for (std::int64_t i = 0; i < n; ++i) {
            auto r = plain->put_chunk({}, key_of(i, chunk), chunk, std::span<const std::byte>(bytes));
            if (!r) die("put_chunk", r.error());
        }
        std::fprintf(stderr, "posix_bench: %lld chunks written in %.1f s\n", static_cast<long long>(n), secs_since(t0));
    }
    auto time_nftw = [&] {
        nftw_entries = 0;
        const auto t0 = clock_type::now();
        // NOLINTNEXTLINE(concurrency-mt-unsafe): the benchmark walks on its only thread
        if (::nftw(root.path.c_str(), count_entry, 64, FTW_PHYS) != 0) throw bench_error("nftw failed", 1);
        return secs_since(t0);
    };
    auto time_measure = [&](std::int64_t& bytes) {
        auto s = cs::posix_store::open(root.path);
        if (!s) die("open", s.error());
        const auto t0 = clock_type::now();
        auto m = s->measure();
        if (!m) die("measure", m.error());
        bytes = m->bytes;
        return secs_since(t0);
    };
    std::int64_t usage = 0;
    (void)time_measure(usage); // warm the caches once
    (void)time_nftw();
    const double base1 = time_nftw();
    const double meas = time_measure(usage);
    const double base2 = time_nftw();
    const double base = std::min(base1, base2);
    // open() of a bound the tree is under: the start-up sweep, nothing evicted.
    auto t0 = clock_type::now();
    double open_s = 0;
    {
        auto s = cs::posix_store::open(root.path, {.fsync = false, .max_bytes = usage});
        if (!s) die("open", s.error());
        open_s = secs_since(t0);
    }
    // A sweep that must evict: the bound lowered to 95 % of the usage, so down to 85.5 %.
    auto low = cs::posix_store::open(root.path, {.fsync = false, .max_bytes = usage * 95 / 100, .sweep_on_open = false});
    if (!low) die("open", low.error());
    t0 = clock_type::now();
    auto rep = low->sweep();
    if (!rep) die("sweep", rep.error());
    const double sweep_s = secs_since(t0);
    // The steady state: a periodic sweep with nothing to evict (the best of
    // two: the first may still wait on the disk writing back the evictions).
    double steady_s = 1e9;
    for (int i = 0; i < 2; ++i) {
        auto again = low->sweep();
        if (!again) die("sweep", again.error());
        steady_s = std::min(steady_s, std::chrono::duration<double>(again->total_time).count());
    }

    std::printf("## Scan and sweep: %lld chunks (%lld entries)\n\n", static_cast<long long>(n),
                static_cast<long long>(nftw_entries));
    std::printf("| walk | time | per chunk | vs nftw |\n|---|---|---|---|\n");
    auto row = [&](const char* what, double t) {
        std::printf("| %s | %.3f s | %.2f us | %.2f |\n", what, t, t * 1e6 / static_cast<double>(n), t / base);
    };
    row("nftw(FTW_PHYS), stat of every entry (baseline)", base);
    row("measure() (cachestore du)", meas);
    row("open() with max_bytes: start-up sweep", open_s);
    char evict_label[160];
    std::snprintf(evict_label, sizeof evict_label, "sweep() evicting %lld chunks (%d walk%s)",
                  static_cast<long long>(rep->chunks_evicted), rep->passes, rep->passes == 1 ? "" : "s");
    row(evict_label, sweep_s);
    row("sweep(), nothing to evict (steady state)", steady_s);
    std::printf("\n");
    std::fflush(stdout);
    return rep->chunks_evicted > 0 && rep->bytes <= usage * 95 / 100;
}

// ---- tiered store: warm near-tier hits --------------------------------------------

double thread_cpu_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct rate_sample {
    double ops = 0, secs = 0, cpu = 0; ///< operations, wall seconds, CPU seconds of the threads doing them
};

/// Runs op(tid) on `threads` threads until `seconds` pass (and each did at least min_ops).
rate_sample run_for(int threads, double seconds, long min_ops, const std::function<bool(int)>& op) {
    std::atomic<long> ops{0};
    std::atomic<long long> cpu_ns{0};
    std::atomic<bool> failed{false};
    const auto limit = std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
    auto body = [&](int tid) {
        long n = 0;
        const double c0 = thread_cpu_seconds();
        const auto t0 = clock_type::now();
        while (!failed.load(std::memory_order_relaxed)) {
            if (!op(tid)) {
                failed = true;
                break;
            }
            ++n;
            if (n >= min_ops && clock_type::now() - t0 >= limit) break;
        }
        ops += n;
        cpu_ns += static_cast<long long>((thread_cpu_seconds() - c0) * 1e9);
    };
    const auto t0 = clock_type::now();
    if (threads == 1) {
        body(0);
    } else {
        std::vector<std::jthread> ts;
        ts.reserve(static_cast<std::size_t>(threads));
        for (int i = 0; i < threads; ++i) ts.emplace_back(body, i);
    }
    rate_sample r{static_cast<double>(ops.load()), secs_since(t0), static_cast<double>(cpu_ns.load()) * 1e-9};
    if (failed) throw bench_error("a tiered row's operation failed (see above)", 1);
    return r;
}

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct tier_row {
    std::string name, baseline;
    std::int64_t chunk = 0;
    int threads = 1;
    double target = 0; ///< ours/baseline must be >= this (0: informational)
};

struct tier_timing {
    int runs = 7;
    double seconds = 0.3;
    bool smoke = false;
};

/// The same store read bare and through the tiered store, alternating: each
/// run interleaves 4 slices per side (the side going first flips every
/// slice), so load from elsewhere on the machine hits both. Prints one
/// table row (ratio = ours / baseline ops/s: median, min, max over the runs).
bool tiered_row(const tier_row& row, const tier_timing& tm, const std::function<bool(int)>& ours,
                const std::function<bool(int)>& base) {
    const int runs = tm.smoke ? 1 : tm.runs, slices = tm.smoke ? 1 : 4;
    const double slice_s = tm.smoke ? 0.0 : tm.seconds / slices;
    const long min_ops = tm.smoke ? 20 : 50;
    std::fprintf(stderr, "posix_bench: %s vs %s ...\n", row.name.c_str(), row.baseline.c_str());
    (void)run_for(row.threads, 0.0, 20, ours); // warm-up: page cache, atimes, allocator
    (void)run_for(row.threads, 0.0, 20, base);
    std::vector<double> o_rate, b_rate, ratio, o_cpu, b_cpu;
    for (int i = 0; i < runs; ++i) {
        rate_sample o, b;
        for (int k = 0; k < slices; ++k) {
            for (int pass = 0; pass < 2; ++pass) {
                const bool ours_now = (pass == 0) == ((i + k) % 2 == 0);
                const rate_sample x = run_for(row.threads, slice_s, min_ops, ours_now ? ours : base);
                rate_sample& acc = ours_now ? o : b;
                acc.ops += x.ops;
                acc.secs += x.secs;
                acc.cpu += x.cpu;
            }
        }
        o_rate.push_back(o.ops / o.secs);
        b_rate.push_back(b.ops / b.secs);
        ratio.push_back(o_rate.back() / b_rate.back());
        o_cpu.push_back(o.cpu / o.ops * 1e6);
        b_cpu.push_back(b.cpu / b.ops * 1e6);
    }
    const double med = median_of(ratio);
    char target[32] = "";
    if (row.target > 0) std::snprintf(target, sizeof target, "≥ %.2f", row.target);
    auto rate = [&](double ops) {
        return row.chunk >= (std::int64_t{1} << 20)
                   ? std::to_string(static_cast<long long>(ops * static_cast<double>(row.chunk) / (1 << 20))) + " MiB/s"
                   : std::to_string(static_cast<long long>(ops)) + " req/s";
    };
    std::printf("| %s | %s | %s | %s | %.2f | %.2f | %.2f | %s | %s | %.1f : %.1f µs |\n", row.name.c_str(),
                row.baseline.c_str(), rate(median_of(o_rate)).c_str(), rate(median_of(b_rate)).c_str(), med,
                *std::min_element(ratio.begin(), ratio.end()), *std::max_element(ratio.begin(), ratio.end()), target,
                tm.smoke            ? "smoke pass"
                : row.target <= 0   ? "info"
                : med >= row.target ? "met"
                                    : "**missed**",
                median_of(o_cpu), median_of(b_cpu));
    std::fflush(stdout);
    return true;
}

/// Warm near-tier hits: a bounded posix_store holding every chunk read, with
/// a memory_store as the far tier (which a hit never reaches), read through
/// tiered<posix_store&, memory_store&> and directly.
bool bench_tiered(const std::string& dir, const tier_timing& tm) {
    constexpr std::int64_t set = 64; // chunks each row cycles through, all in the near tier
    scratch_dir root(dir);
    std::int64_t largest = 1 << 20;
    auto near = cs::posix_store::open(root.path, {.fsync = false, .max_bytes = 2 * set * largest});
    if (!near) die("open", near.error());
    cs::memory_store far;
    cs::tiered<cs::posix_store&, cs::memory_store&> tiered(*near, far, cs::tiered_options{.name = "bench"});
    const cs::context ctx;
    std::printf("## Tiered store: warm near-tier hits%s\n\n", tm.smoke ? " -- SMOKE PASS, numbers meaningless" : "");
    std::printf(
        "tiered<posix_store&, memory_store&> (near: a bounded posix_store, fsync off, holding the %lld chunks each\n"
        "row cycles through; far: a memory_store, never reached on a hit) against the same posix_store read\n"
        "directly. Ratio = ops/s tiered / ops/s bare, median (min-max) over %d alternating runs of %.1f s per side\n"
        "(4 interleaved slices). CPU/op: CPU time of the reading threads per read, median over the runs.\n\n",
        static_cast<long long>(set), tm.smoke ? 1 : tm.runs, tm.smoke ? 0.0 : tm.seconds);
    std::printf(
        "| row | baseline | ours | baseline rate | ratio median | min | max | target | | CPU/op ours : baseline |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n");
    struct variant {
        std::int64_t chunk;
        int threads;
        bool sink; ///< get_chunk through a sink, not get_chunk_into a span
    };
    const variant variants[] = {{4096, 1, false}, {4096, 2, false}, {4096, 1, true}, {1 << 20, 1, false}};
    bool ok = true;
    for (const auto& v : variants) {
        for (std::int64_t i = 0; i < set; ++i) { // warm: every chunk in both tiers (a put reaches both)
            const std::vector<std::byte> bytes(static_cast<std::size_t>(v.chunk), static_cast<std::byte>(i));
            auto r = tiered.put_chunk(ctx, key_of(i, v.chunk), v.chunk, std::span<const std::byte>(bytes));
            if (!r && r.error().code != cs::errc::commit_lost) die("tiered put_chunk", r.error());
        }
        std::vector<std::vector<std::byte>> bufs(static_cast<std::size_t>(v.threads),
                                                 std::vector<std::byte>(static_cast<std::size_t>(v.chunk)));
        std::vector<std::int64_t> next(static_cast<std::size_t>(v.threads), 0);
        auto read = [&](auto& store, int tid, const char* what) {
            auto& buf = bufs[static_cast<std::size_t>(tid)];
            auto& at = next[static_cast<std::size_t>(tid)];
            const auto key = key_of((at++ + std::int64_t{17} * tid) % set, v.chunk);
            cs::result<> r;
            if (v.sink) {
                std::size_t got = 0;
                r = store.get_chunk(ctx, key, 0, v.chunk, [&](std::span<const std::byte> b) {
                    std::memcpy(buf.data() + got, b.data(), b.size());
                    got += b.size();
                    return true;
                });
            } else {
                r = cs::get_chunk(store, ctx, key, 0, std::span<std::byte>(buf));
            }
            if (!r) std::fprintf(stderr, "posix_bench: %s: %s\n", what, r.error().to_string().c_str());
            return r.has_value();
        };
        const auto before = tiered.snapshot();
        const std::string size =
            v.chunk >= (1 << 20) ? std::to_string(v.chunk >> 20) + " MiB" : std::to_string(v.chunk >> 10) + " KiB";
        tier_row row{"near hit " + size + (v.sink ? " through a sink (get_chunk)" : " into a span") + ", " +
                         std::to_string(v.threads) + (v.threads == 1 ? " thread" : " threads") +
                         ", tiered<posix_store, memory_store>",
                     "the same bounded posix_store alone", v.chunk, v.threads, 0.95};
        ok = tiered_row(
                 row, tm, [&](int tid) { return read(tiered, tid, "tiered get_chunk"); },
                 [&](int tid) { return read(*near, tid, "posix_store get_chunk"); }) &&
             ok;
        const auto after = tiered.snapshot();
        const auto far_reads = after.get_hits[1] - before.get_hits[1], misses = after.get_hits[2] - before.get_hits[2];
        if (far_reads != 0 || misses != 0 || after.near_errors != before.near_errors) {
            std::fprintf(stderr, "posix_bench: %s: %llu reads reached the far tier, %llu missed, %llu near errors\n",
                         row.name.c_str(), static_cast<unsigned long long>(far_reads),
                         static_cast<unsigned long long>(misses),
                         static_cast<unsigned long long>(after.near_errors - before.near_errors));
            ok = false;
        }
    }
    const auto s = tiered.snapshot();
    std::printf(
        "\nEvery tiered read was a near hit (snapshot: %llu near, %llu far, %llu not found; %llu bypassed).\n\n",
        static_cast<unsigned long long>(s.get_hits[0]), static_cast<unsigned long long>(s.get_hits[1]),
        static_cast<unsigned long long>(s.get_hits[2]), static_cast<unsigned long long>(s.bypassed));
    return ok;
}

} // namespace

int run(int argc, char** argv) {
    bool smoke = false, hit = true, scan = true, tiered = true;
    tier_timing tm;
    std::string dir = fs::temp_directory_path().string();
    std::size_t keys = 20000, requests = 400000;
    std::vector<std::int64_t> scans;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw bench_error(std::string(argv[i]) + " needs a value", 2);
            return argv[++i];
        };
        auto number = [&]() {
            const std::string v = value();
            char* end = nullptr;
            const long long n = std::strtoll(v.c_str(), &end, 10);
            if (end == v.c_str() || *end != '\0' || n <= 0) throw bench_error("not a positive number: " + v, 2);
            return static_cast<std::int64_t>(n);
        };
        if (a == "--smoke") smoke = true;
        else if (a == "--dir") dir = value();
        else if (a == "--keys") keys = static_cast<std::size_t>(number());
        else if (a == "--requests") requests = static_cast<std::size_t>(number());
        else if (a == "--scan-chunks") scans.push_back(number());
        else if (a == "--skip-hitrate") hit = false;
        else if (a == "--skip-scan") scan = false;
        else if (a == "--skip-tiered") tiered = false;
        else if (a == "--runs") tm.runs = static_cast<int>(std::min<std::int64_t>(number(), 1000));
        else if (a == "--seconds") {
            const std::string v = value();
            char* end = nullptr;
            tm.seconds = std::strtod(v.c_str(), &end);
            if (end == v.c_str() || *end != '\0' || !(tm.seconds >= 0) || tm.seconds > 3600)
                throw bench_error("--seconds needs a number of seconds, got " + v, 2);
        } else {
            std::fprintf(stderr, "usage: posix_bench [--smoke] [--dir DIR] [--keys K] [--requests N] "
                                 "[--scan-chunks N]... [--skip-hitrate] [--skip-scan] [--skip-tiered] [--runs N] [--seconds S]\n");
            return 2;
        }
    }
    tm.smoke = smoke;
    if (smoke) {
        keys = std::min<std::size_t>(keys, 1000);
        requests = std::min<std::size_t>(requests, 10000);
        if (scans.empty()) scans.push_back(5000);
    }
    if (scans.empty()) scans.push_back(100000);
    std::printf("# Bounded POSIX store benchmark%s\n\n", smoke ? " (smoke sizes)" : "");
    bool ok = true;
    if (hit) ok = bench_hit_rate(dir, keys, requests, smoke) && ok;
    if (scan)
        for (const auto n : scans) ok = bench_scan(dir, n) && ok;
    if (tiered) ok = bench_tiered(dir, tm) && ok;
    if (!ok)
        std::fprintf(stderr, "posix_bench: a check failed (hit-rate ratio under 0.9 at granularity 0, a sweep evicted nothing, "
                             "or a tiered read was not a near hit)\n");
    return ok ? 0 : 1;
}

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const bench_error& e) {
        std::fprintf(stderr, "posix_bench: %s\n", e.what());
        return e.code;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "posix_bench: %s\n", e.what());
        return 1;
    }
}
