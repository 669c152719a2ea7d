// A bounded soak run: T threads x N mixed operations against one S3 store.
// Every chunk's bytes are a pure function of its key, so every successful
// read is verified byte for byte; every failure must be one of the classes a
// proxy expects under load and injected faults. Prints operations, errors by
// class, p50/p99 latency and RSS at the start, middle and end.
//
//   soak --server RGW|FAULT [--threads 16] [--ops 20000] [--keys 256] [--seconds 600] [--json]
//
// The store comes from CACHESTORE_<SERVER>_ENDPOINT/_ACCESS_KEY/_SECRET_KEY/
// _BUCKET/_REGION (tests/servers/with-servers.sh exports them for RGW).
// Exit status: 0 clean, 1 a wrong byte / an unexpected error class / RSS
// growth beyond the limit, 2 usage or setup.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "cachestore/s3.hpp"

namespace {

using namespace cachestore;
using clock_type = std::chrono::steady_clock;

constexpr std::int64_t chunk_size = 64 * 1024;

std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/// The byte at `off` of chunk `id`: what any writer of that chunk writes.
std::byte expected_byte(std::uint64_t id, std::int64_t off) {
    return static_cast<std::byte>(mix(id * 1000003ULL + static_cast<std::uint64_t>(off) / 8) >> ((off % 8) * 8));
}

std::int64_t chunk_len(std::uint64_t id) { return chunk_size - static_cast<std::int64_t>(mix(id) % 4096); }

long rss_kib() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

struct stats {
    std::mutex mu;
    std::map<std::string, long> outcomes; // "op:result"
    std::vector<double> latency_us;
    long wrong_bytes = 0;
    long unexpected = 0;
    std::vector<std::string> samples;
};

} // namespace

int main(int argc, char** argv) {
    std::string server = "RGW";
    int threads = 16;
    long ops = 20000;
    int keys = 256;
    long seconds = 600;
    bool json = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "soak: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--server") server = next();
        else if (a == "--threads") threads = std::atoi(next());
        else if (a == "--ops") ops = std::atol(next());
        else if (a == "--keys") keys = std::atoi(next());
        else if (a == "--seconds") seconds = std::atol(next());
        else if (a == "--json") json = true;
        else {
            std::fprintf(stderr, "usage: soak --server RGW|FAULT [--threads N] [--ops N] [--keys N] [--seconds N] [--json]\n");
            return 2;
        }
    }
    if (threads < 1 || ops < 1 || keys < 1) {
        std::fprintf(stderr, "soak: --threads, --ops and --keys must be positive\n");
        return 2;
    }
    auto env = [&](const char* field) {
        const std::string name = "CACHESTORE_" + server + "_" + field;
        const char* v = std::getenv(name.c_str());
        return std::string(v == nullptr ? "" : v);
    };
    s3::config cfg;
    cfg.endpoint = env("ENDPOINT");
    cfg.bucket = env("BUCKET");
    cfg.region = env("REGION").empty() ? "us-east-1" : env("REGION");
    cfg.creds.access_key_id = env("ACCESS_KEY");
    cfg.creds.secret_access_key = env("SECRET_KEY");
    if (cfg.endpoint.empty()) {
        // Never a silent skip: fatal under CI, a loud warning (Meson's "skipped") otherwise.
        const char* ci = std::getenv("CI");
        const bool under_ci = ci != nullptr && std::string(ci) == "true";
        std::fprintf(stderr, "soak: %sCACHESTORE_%s_ENDPOINT is not set (run through tests/servers/with-servers.sh)\n",
                     under_ci ? "" : "WARNING, NOT TESTED: ", server.c_str());
        return under_ci ? 2 : 77;
    }
    cfg.retry.max_attempts = 4;
    cfg.retry.base_delay = std::chrono::milliseconds(5);
    cfg.timeouts.operation = std::chrono::seconds(20);
    auto made = s3::store::create(cfg);
    if (!made) {
        std::fprintf(stderr, "soak: %s\n", made.error().to_string().c_str());
        return 2;
    }
    s3::store& store = *made;
    if (auto t = store.self_test(context::with_timeout(std::chrono::seconds(30))); !t) {
        std::fprintf(stderr, "soak: self_test: %s\n", t.error().to_string().c_str());
        return 2;
    }
    const std::string run = s3::detail::random_hex(6);
    auto key_of = [&](std::uint64_t id) {
        return chunk_key{"soak-" + run, "b", "object-" + std::to_string(id / 4), "\"e\"", chunk_size,
                         static_cast<std::int64_t>(id % 4)};
    };

    stats st;
    std::atomic<long> next_op{0};
    const long rss_start = rss_kib();
    std::atomic<long> rss_mid{-1};
    const auto t0 = clock_type::now();
    const auto stop_at = t0 + std::chrono::seconds(seconds);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(t) * 7919 + 1);
            std::vector<std::byte> buf(static_cast<std::size_t>(chunk_size));
            std::vector<double> lat;
            std::map<std::string, long> local;
            long wrong = 0, unexpected = 0;
            std::vector<std::string> samples;
            for (;;) {
                const long op_no = next_op.fetch_add(1);
                if (op_no >= ops || clock_type::now() >= stop_at) break;
                if (op_no == ops / 2) rss_mid = rss_kib();
                const std::uint64_t id = rng() % static_cast<std::uint64_t>(keys);
                const chunk_key k = key_of(id);
                const std::int64_t len = chunk_len(id);
                const int dice = static_cast<int>(rng() % 100);
                const char* op;
                result<> r;
                const auto start = clock_type::now();
                auto ctx = context::with_timeout(std::chrono::seconds(30));
                if (dice < 55) {
                    op = "get";
                    const std::int64_t off = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len));
                    const std::int64_t n = 1 + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len - off));
                    r = get_chunk(store, ctx, k, off, std::span<std::byte>(buf.data(), static_cast<std::size_t>(n)));
                    if (r)
                        for (std::int64_t i = 0; i < n; ++i)
                            if (buf[static_cast<std::size_t>(i)] != expected_byte(id, off + i)) {
                                ++wrong;
                                break;
                            }
                } else if (dice < 85) {
                    op = "put";
                    for (std::int64_t i = 0; i < len; ++i) buf[static_cast<std::size_t>(i)] = expected_byte(id, i);
                    r = store.put_chunk(ctx, k, len, std::span<const std::byte>(buf.data(), static_cast<std::size_t>(len)));
                } else if (dice < 97) {
                    op = "stat";
                    auto s = store.stat(ctx, k);
                    if (s && s->size != len) ++wrong;
                    r = s ? result<>{} : result<>(std::unexpected(s.error()));
                } else {
                    op = "remove";
                    r = store.remove(ctx, k);
                }
                lat.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - start).count());
                const std::string outcome = r ? "ok" : std::string(to_string(r.error().code));
                ++local[std::string(op) + ":" + outcome];
                if (!r) {
                    const errc c = r.error().code;
                    const bool fine = c == errc::not_found || c == errc::commit_lost || c == errc::transient;
                    if (!fine) {
                        ++unexpected;
                        if (samples.size() < 3) samples.push_back(r.error().to_string());
                    }
                }
            }
            std::lock_guard lock(st.mu);
            for (auto& [name, n] : local) st.outcomes[name] += n;
            st.latency_us.insert(st.latency_us.end(), lat.begin(), lat.end());
            st.wrong_bytes += wrong;
            st.unexpected += unexpected;
            for (auto& s : samples) st.samples.push_back(s);
        });
    for (auto& th : pool) th.join();
    const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    const long rss_end = rss_kib();
    std::sort(st.latency_us.begin(), st.latency_us.end());
    auto pct = [&](double p) {
        if (st.latency_us.empty()) return 0.0;
        return st.latency_us[static_cast<std::size_t>(p * static_cast<double>(st.latency_us.size() - 1))];
    };
    const long done = static_cast<long>(st.latency_us.size());
    // RSS must stay flat after warm-up: allow 64 MiB of slack for pools and allocator caches.
    const long mid = rss_mid.load() > 0 ? rss_mid.load() : rss_start;
    const bool rss_ok = rss_end - mid < 64 * 1024;
    if (json) {
        std::printf("{\"server\":\"%s\",\"threads\":%d,\"operations\":%ld,\"seconds\":%.2f,\"ops_per_s\":%.0f,"
                    "\"p50_us\":%.0f,\"p99_us\":%.0f,\"rss_kib\":[%ld,%ld,%ld],\"connections\":%zu,"
                    "\"wrong_bytes\":%ld,\"unexpected_errors\":%ld,\"outcomes\":{",
                    server.c_str(), threads, done, secs, static_cast<double>(done) / secs, pct(0.5), pct(0.99), rss_start,
                    mid, rss_end, store.connections_created(), st.wrong_bytes, st.unexpected);
        bool first = true;
        for (auto& [name, n] : st.outcomes) {
            std::printf("%s\"%s\":%ld", first ? "" : ",", name.c_str(), n);
            first = false;
        }
        std::printf("}}\n");
    } else {
        std::printf("soak: %s, %d threads, %ld operations in %.1f s (%.0f ops/s)\n", server.c_str(), threads, done, secs,
                    static_cast<double>(done) / secs);
        std::printf("latency: p50 %.0f us, p99 %.0f us\n", pct(0.5), pct(0.99));
        std::printf("rss: start %ld KiB, middle %ld KiB, end %ld KiB; connections created: %zu\n", rss_start, mid, rss_end,
                    store.connections_created());
        for (auto& [name, n] : st.outcomes) std::printf("  %-22s %ld\n", name.c_str(), n);
        std::printf("wrong bytes: %ld, unexpected errors: %ld\n", st.wrong_bytes, st.unexpected);
    }
    for (auto& s : st.samples) std::fprintf(stderr, "soak: unexpected: %s\n", s.c_str());
    if (!rss_ok) std::fprintf(stderr, "soak: RSS grew by %ld KiB after the first half\n", rss_end - mid);
    return st.wrong_bytes == 0 && st.unexpected == 0 && rss_ok ? 0 : 1;
}
