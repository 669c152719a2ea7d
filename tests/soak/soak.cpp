// A bounded soak run: T threads x N mixed operations against one S3 store.
// Every chunk's bytes are a pure function of its key, so every successful
// read is verified byte for byte; every failure must be one of the classes a
// proxy expects under load and injected faults. Prints operations, outcomes
// by class, p50/p99 latency and RSS at the start, middle and end.
//
//   soak --server RGW|FAULT [--verify-server RGW] [--threads 16] [--ops 20000]
//        [--keys 256] [--seconds 600] [--json]
//
// The store comes from CACHESTORE_<SERVER>_ENDPOINT/_ACCESS_KEY/_SECRET_KEY/
// _BUCKET/_REGION (tests/servers/with-servers.sh exports them for RGW).
//
// FAULT: the endpoint is tests/fault/fault_server.py in proxy mode in front
// of a real server (tests/soak/run-fault-soak.sh starts it). Faults are
// paused during self_test, the proxy's counters are zeroed before the run and
// printed after it (injected faults by kind next to the client's outcomes).
// With --verify-server, every chunk of the run is then read back from that
// server directly (not through the proxy): a chunk that exists must have its
// full size and exact bytes (no partial commit).
//
// Allowed failures: not_found (a chunk not yet written or just removed),
// commit_lost (another writer, or our own commit whose answer a fault lost)
// and transient (retries exhausted). The proxy's stalls (0.5 s) are far
// shorter than the deadline, so deadline_exceeded is not allowed.
//
// Exit status: 0 clean, 1 a wrong byte / an unexpected error class / RSS
// growth beyond the limit / a partial or corrupt object, 2 usage or setup,
// 77 no endpoint outside CI.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <curl/curl.h>

#include "cachestore/cachestore.hpp"
#include "cachestore/s3.hpp"
#include "../proc_status.hpp"

namespace {

using namespace cachestore;
using clock_type = std::chrono::steady_clock;

constexpr std::int64_t chunk_size = std::int64_t{64} * 1024;

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

template <class T>
std::optional<T> to_number(std::string_view s) {
    T v{};
    const auto* end = s.data() + s.size();
    auto [p, ec] = std::from_chars(s.data(), end, v);
    if (ec != std::errc{} || p != end) return std::nullopt;
    return v;
}

long rss_kib() { return test_support::status_kib("VmRSS"); }

std::string getenv_string(const std::string& name) {
    // NOLINTNEXTLINE(concurrency-mt-unsafe): only called from main before any thread starts
    const char* v = std::getenv(name.c_str());
    return v == nullptr ? std::string() : std::string(v);
}

struct stats {
    std::mutex mu;
    std::map<std::string, long> outcomes; // "op:result"
    std::vector<double> latency_us;
    long wrong_bytes = 0;
    long unexpected = 0;
    long failed_attempts = 0; ///< attempts spent by the calls that failed
    std::vector<std::string> samples;
};

std::size_t collect(char* d, std::size_t s, std::size_t n, void* out) {
    static_cast<std::string*>(out)->append(d, s * n);
    return s * n;
}

/// A request to the fault proxy's control endpoints (plain libcurl, no signing).
std::optional<std::string> control(const std::string& endpoint, const char* method, const char* path) {
    s3::detail::curl_global();
    CURL* c = curl_easy_init();
    if (c == nullptr) return std::nullopt;
    std::string body;
    std::string url = endpoint;
    while (!url.empty() && url.back() == '/') url.pop_back();
    url += path;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (std::string_view(method) == "POST") curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    const CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || status != 200) return std::nullopt;
    return body;
}

/// The `"name": number` pairs of a flat JSON object (the proxy's stats).
std::map<std::string, double> flat_numbers(std::string_view json) {
    std::map<std::string, double> out;
    std::size_t i = 0;
    while ((i = json.find('"', i)) != std::string_view::npos) {
        const std::size_t end = json.find('"', i + 1);
        if (end == std::string_view::npos) break;
        const std::string name(json.substr(i + 1, end - i - 1));
        std::size_t j = end + 1;
        while (j < json.size() && (json[j] == ' ' || json[j] == ':')) ++j;
        std::size_t k = j;
        while (k < json.size() && json[k] != ',' && json[k] != '}') ++k;
        if (auto v = to_number<double>(json.substr(j, k - j))) out[name] = *v;
        i = k;
    }
    return out;
}

struct options {
    std::string server = "RGW";
    std::string verify_server;
    int threads = 16;
    long ops = 20000;
    int keys = 256;
    long seconds = 600;
    bool json = false;
};

const char* const usage =
    "usage: soak --server RGW|FAULT [--verify-server NAME] [--threads N] [--ops N] [--keys N] [--seconds N] [--json]\n";

/// Parses the command line; nullopt (after a message) on a usage error.
std::optional<options> parse_args(std::span<char* const> args) {
    options o;
    for (std::size_t i = 1; i < args.size(); ++i) {
        const std::string_view a = args[i];
        const bool has_value = i + 1 < args.size();
        const std::string_view v = has_value ? std::string_view(args[i + 1]) : std::string_view();
        auto number = [&]<class T>(T& into) {
            auto n = has_value ? to_number<T>(v) : std::nullopt;
            if (!n || *n < 1) {
                std::fprintf(stderr, "soak: %s needs a positive integer\n", std::string(a).c_str());
                return false;
            }
            into = *n;
            ++i;
            return true;
        };
        bool ok = true;
        if (a == "--json") o.json = true;
        else if (a == "--threads") ok = number(o.threads);
        else if (a == "--ops") ok = number(o.ops);
        else if (a == "--keys") ok = number(o.keys);
        else if (a == "--seconds") ok = number(o.seconds);
        else if ((a == "--server" || a == "--verify-server") && has_value) {
            (a == "--server" ? o.server : o.verify_server) = std::string(v);
            ++i;
        } else {
            std::fputs(usage, stderr);
            return std::nullopt;
        }
        if (!ok) return std::nullopt;
    }
    return o;
}

bool under_ci() { return getenv_string("CI") == "true"; }

/// The store of CACHESTORE_<server>_*; nullopt (after a message) when the
/// endpoint is missing (`missing` is then 2 under CI, 77 otherwise) or invalid.
std::optional<s3::config> config_of(const std::string& server, int& missing) {
    auto env = [&](const char* field) { return getenv_string("CACHESTORE_" + server + "_" + field); };
    s3::config cfg;
    cfg.endpoint = env("ENDPOINT");
    cfg.bucket = env("BUCKET");
    cfg.region = env("REGION").empty() ? "us-east-1" : env("REGION");
    cfg.creds.access_key_id = env("ACCESS_KEY");
    cfg.creds.secret_access_key = env("SECRET_KEY");
    if (cfg.endpoint.empty()) {
        // Never a silent skip: fatal under CI, a loud warning (Meson's "skipped") otherwise.
        const bool ci = under_ci();
        std::fprintf(stderr, "soak: %sCACHESTORE_%s_ENDPOINT is not set (run through tests/servers/with-servers.sh)\n",
                     ci ? "" : "WARNING, NOT TESTED: ", server.c_str());
        missing = ci ? 2 : 77;
        return std::nullopt;
    }
    cfg.retry.max_attempts = 4;
    cfg.retry.base_delay = std::chrono::milliseconds(5);
    cfg.timeouts.operation = std::chrono::seconds(20);
    return cfg;
}

/// What reading every chunk of the run back directly found.
struct verify_report {
    long present = 0;
    long absent = 0;
    long partial = 0; ///< stored with the wrong size
    long corrupt = 0; ///< full size, a wrong byte
    long errors = 0;  ///< stat/get failed with anything but not_found
};

} // namespace

int main(int argc, char** argv) {
    const auto parsed = parse_args(std::span<char* const>(argv, static_cast<std::size_t>(argc)));
    if (!parsed) return 2;
    const options& opt = *parsed;
    const bool fault_mode = opt.server == "FAULT";
    int missing = 2;
    auto cfg = config_of(opt.server, missing);
    if (!cfg) return missing;
    std::optional<s3::config> verify_cfg;
    if (!opt.verify_server.empty()) {
        verify_cfg = config_of(opt.verify_server, missing);
        if (!verify_cfg) return missing;
    }
    auto made = s3::store::create(*cfg);
    if (!made) {
        std::fprintf(stderr, "soak: %s\n", made.error().to_string().c_str());
        return 2;
    }
    s3::store& store = *made;
    // The setup is not what is soaked: no faults during self_test (which also
    // decides the commit mode).
    if (fault_mode && !control(cfg->endpoint, "POST", "/_fault/pause")) {
        std::fprintf(stderr, "soak: %s/_fault/pause failed: is it fault_server.py --upstream?\n", cfg->endpoint.c_str());
        return 2;
    }
    if (auto t = store.self_test(context::with_timeout(std::chrono::seconds(30))); !t) {
        std::fprintf(stderr, "soak: self_test: %s\n", t.error().to_string().c_str());
        return 2;
    }
    if (fault_mode &&
        (!control(cfg->endpoint, "POST", "/_fault/stats/reset") || !control(cfg->endpoint, "POST", "/_fault/resume"))) {
        std::fprintf(stderr, "soak: could not reset / resume the fault proxy\n");
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
    const auto stop_at = t0 + std::chrono::seconds(opt.seconds);
    std::vector<std::thread> pool;
    pool.reserve(static_cast<std::size_t>(opt.threads));
    for (int t = 0; t < opt.threads; ++t)
        pool.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(t) * 7919 + 1);
            std::vector<std::byte> buf(static_cast<std::size_t>(chunk_size));
            std::vector<double> lat;
            std::map<std::string, long> local;
            long wrong = 0;
            long unexpected = 0;
            long failed_attempts = 0;
            std::vector<std::string> samples;
            for (;;) {
                const long op_no = next_op.fetch_add(1);
                if (op_no >= opt.ops || clock_type::now() >= stop_at) break;
                if (op_no == opt.ops / 2) rss_mid = rss_kib();
                const std::uint64_t id = rng() % static_cast<std::uint64_t>(opt.keys);
                const chunk_key k = key_of(id);
                const std::int64_t len = chunk_len(id);
                const int dice = static_cast<int>(rng() % 100);
                const char* op = nullptr;
                result<> r;
                const auto start = clock_type::now();
                auto ctx = context::with_timeout(std::chrono::seconds(30));
                if (dice < 55) {
                    op = "get";
                    const auto off = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len));
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
                    failed_attempts += std::max(r.error().attempts, 1);
                    const errc c = r.error().code;
                    const bool fine = c == errc::not_found || c == errc::commit_lost || c == errc::transient;
                    if (!fine) {
                        ++unexpected;
                        if (samples.size() < 3) samples.push_back(r.error().to_string());
                    }
                }
            }
            const std::lock_guard lock(st.mu);
            for (auto& [name, n] : local) st.outcomes[name] += n;
            st.latency_us.insert(st.latency_us.end(), lat.begin(), lat.end());
            st.wrong_bytes += wrong;
            st.unexpected += unexpected;
            st.failed_attempts += failed_attempts;
            for (auto& s : samples) st.samples.push_back(s);
        });
    for (auto& th : pool) th.join();
    const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    const long rss_end = rss_kib();

    // The proxy's counters for the run (then no more faults: the run is over).
    std::string proxy_json;
    std::map<std::string, double> proxy;
    if (fault_mode) {
        auto s = control(cfg->endpoint, "GET", "/_fault/stats");
        (void)control(cfg->endpoint, "POST", "/_fault/pause");
        if (!s) {
            std::fprintf(stderr, "soak: could not read %s/_fault/stats\n", cfg->endpoint.c_str());
            return 2;
        }
        proxy_json = *s;
        proxy = flat_numbers(proxy_json);
    }

    // Every chunk of the run, read back from the server directly.
    verify_report vr;
    if (verify_cfg) {
        auto direct = s3::store::create(*verify_cfg);
        if (!direct) {
            std::fprintf(stderr, "soak: %s\n", direct.error().to_string().c_str());
            return 2;
        }
        std::vector<std::byte> buf(static_cast<std::size_t>(chunk_size));
        for (int i = 0; i < opt.keys; ++i) {
            const auto id = static_cast<std::uint64_t>(i);
            const chunk_key k = key_of(id);
            const std::int64_t len = chunk_len(id);
            auto ctx = context::with_timeout(std::chrono::seconds(30));
            auto s = direct->stat(ctx, k);
            if (!s) {
                if (s.error().code == errc::not_found) ++vr.absent;
                else {
                    ++vr.errors;
                    std::fprintf(stderr, "soak: verify: %s\n", s.error().to_string().c_str());
                }
                continue;
            }
            ++vr.present;
            if (s->size != len) {
                ++vr.partial;
                std::fprintf(stderr, "soak: verify: chunk %d stored with %lld bytes, expected %lld\n", i,
                             static_cast<long long>(s->size), static_cast<long long>(len));
                continue;
            }
            auto g = get_chunk(*direct, ctx, k, 0, std::span<std::byte>(buf.data(), static_cast<std::size_t>(len)));
            if (!g) {
                ++vr.errors; // nothing else runs now: even not_found after a good stat is an error
                std::fprintf(stderr, "soak: verify: %s\n", g.error().to_string().c_str());
                continue;
            }
            for (std::int64_t j = 0; j < len; ++j)
                if (buf[static_cast<std::size_t>(j)] != expected_byte(id, j)) {
                    ++vr.corrupt;
                    std::fprintf(stderr, "soak: verify: chunk %d differs at byte %lld\n", i, static_cast<long long>(j));
                    break;
                }
        }
    }

    std::sort(st.latency_us.begin(), st.latency_us.end());
    auto pct = [&](double p) {
        if (st.latency_us.empty()) return 0.0;
        return st.latency_us[static_cast<std::size_t>(p * static_cast<double>(st.latency_us.size() - 1))];
    };
    const long done = static_cast<long>(st.latency_us.size());
    // RSS must stay flat after warm-up: allow 64 MiB of slack for pools and allocator caches.
    const long mid = rss_mid.load() > 0 ? rss_mid.load() : rss_start;
    const bool rss_ok = rss_end - mid < 64L * 1024;
    // Without faults a get is one GET, a stat one HEAD, a remove one DELETE and
    // a put one HEAD (+ one PUT when absent): the proxy's surplus of GET, HEAD
    // and DELETE requests is the retries, resumed GETs and libcurl replays.
    // (PUTs are left out: how many puts upload depends on the races.)
    auto ops_of = [&](const char* op) {
        long n = 0;
        for (auto& [name, count] : st.outcomes)
            if (name.rfind(std::string(op) + ":", 0) == 0) n += count;
        return n;
    };
    auto requests_of = [&](const char* method) {
        const auto it = proxy.find(std::string("requests.") + method);
        return it == proxy.end() ? 0L : static_cast<long>(it->second);
    };
    const long proxy_requests = proxy.contains("requests") ? static_cast<long>(proxy["requests"]) : 0;
    const long extra_requests = fault_mode ? (requests_of("GET") - ops_of("get")) + (requests_of("DELETE") - ops_of("remove")) +
                                                 (requests_of("HEAD") - ops_of("stat") - ops_of("put"))
                                           : 0;
    const bool verify_ok = vr.partial == 0 && vr.corrupt == 0 && vr.errors == 0;
    if (opt.json) {
        std::printf("{\"server\":\"%s\",\"threads\":%d,\"operations\":%ld,\"seconds\":%.2f,\"ops_per_s\":%.0f,"
                    "\"p50_us\":%.0f,\"p99_us\":%.0f,\"rss_kib\":[%ld,%ld,%ld],\"connections\":%zu,"
                    "\"commit\":\"%s\",\"wrong_bytes\":%ld,\"unexpected_errors\":%ld,\"failed_call_attempts\":%ld,"
                    "\"outcomes\":{",
                    opt.server.c_str(), opt.threads, done, secs, static_cast<double>(done) / secs, pct(0.5), pct(0.99),
                    rss_start, mid, rss_end, store.connections_created(),
                    store.conditional_commit() ? "if_none_match" : "stat_then_put", st.wrong_bytes, st.unexpected,
                    st.failed_attempts);
        bool first = true;
        for (auto& [name, n] : st.outcomes) {
            std::printf("%s\"%s\":%ld", first ? "" : ",", name.c_str(), n);
            first = false;
        }
        std::printf("}");
        if (fault_mode) std::printf(",\"extra_requests\":%ld,\"proxy\":%s", extra_requests, proxy_json.c_str());
        if (verify_cfg)
            std::printf(",\"verify\":{\"server\":\"%s\",\"present\":%ld,\"absent\":%ld,\"partial\":%ld,\"corrupt\":%ld,"
                        "\"errors\":%ld}",
                        opt.verify_server.c_str(), vr.present, vr.absent, vr.partial, vr.corrupt, vr.errors);
        std::printf("}\n");
    } else {
        std::printf("soak: %s, %d threads, %ld operations in %.1f s (%.0f ops/s), commit %s\n", opt.server.c_str(),
                    opt.threads, done, secs, static_cast<double>(done) / secs,
                    store.conditional_commit() ? "if_none_match" : "stat_then_put");
        std::printf("latency: p50 %.0f us, p99 %.0f us\n", pct(0.5), pct(0.99));
        std::printf("rss: start %ld KiB, middle %ld KiB, end %ld KiB; connections created: %zu\n", rss_start, mid,
                    rss_end, store.connections_created());
        std::printf("outcomes (operation:class):\n");
        for (auto& [name, n] : st.outcomes) std::printf("  %-24s %ld\n", name.c_str(), n);
        std::printf("attempts spent by failed calls: %ld\n", st.failed_attempts);
        if (fault_mode) {
            std::printf("proxy: %ld requests (GET %ld, HEAD %ld, PUT %ld, DELETE %ld) for %ld operations; "
                        "%.0f forwarded, %.0f faults injected (%.0f drawn but not applicable), %.0f upstream errors\n",
                        proxy_requests, requests_of("GET"), requests_of("HEAD"), requests_of("PUT"),
                        requests_of("DELETE"), done, proxy["forwarded"], proxy["injected"], proxy["not_applicable"],
                        proxy["upstream_errors"]);
            std::printf("extra GET/HEAD/DELETE requests (retries, resumed GETs, libcurl replays): %ld\n",
                        extra_requests);
            std::printf("injected faults by kind:\n");
            for (auto& [name, n] : proxy)
                if (name.rfind("fault.", 0) == 0) std::printf("  %-24s %.0f\n", name.c_str() + 6, n);
            std::printf("  (PUT commits whose answer was reset: %.0f)\n", proxy["committed_then_reset"]);
        }
        if (verify_cfg)
            std::printf("verify through %s directly: %ld chunks present, %ld absent, %ld partial, %ld corrupt, "
                        "%ld errors\n",
                        opt.verify_server.c_str(), vr.present, vr.absent, vr.partial, vr.corrupt, vr.errors);
        std::printf("wrong bytes: %ld, unexpected errors: %ld\n", st.wrong_bytes, st.unexpected);
    }
    for (auto& s : st.samples) std::fprintf(stderr, "soak: unexpected: %s\n", s.c_str());
    if (!rss_ok) std::fprintf(stderr, "soak: RSS grew by %ld KiB after the first half\n", rss_end - mid);
    if (fault_mode && proxy["upstream_errors"] > 0)
        std::fprintf(stderr, "soak: the upstream itself failed %.0f times (not an injected fault)\n",
                     proxy["upstream_errors"]);
    return st.wrong_bytes == 0 && st.unexpected == 0 && rss_ok && verify_ok ? 0 : 1;
}
