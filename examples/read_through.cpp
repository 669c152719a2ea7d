// read_through - a miniature origin cache: serves a byte range of an origin
// object chunk by chunk through a cachestore.
//
// Each chunk's slice of the range goes through cachestore::read_range: a hit
// is read from the store; on not_found (a miss) the whole chunk is read from
// the origin, its length checked against expected_len(object size), committed
// (commit_lost means another filler won: the stored chunk is byte-identical,
// so it is served like a hit), and the slice served. A store that fails is
// bypassed for that chunk (served from the origin, reported). Several worker
// threads fetch chunks ahead of the one being served; the output stays in order.
//
// The origin is a local file (--origin-file). It can be made to behave like a
// remote object store with --origin-latency-ms and --origin-mibps, so the
// difference between a cold and a warm cache shows on one machine.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <chrono>
#include <climits>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cachestore/cachestore.hpp"
#include "cachestore/s3.hpp"
#include "common.hpp"
#include "store_url.hpp"

namespace {

namespace cs = cachestore;
namespace ex = cachestore::examples;
using json = nlohmann::json;
using bytes = std::vector<std::byte>;

struct options {
    ex::store_spec spec;
    std::string origin_file;
    cs::chunk_key base; ///< index unused
    cs::origin_object object; ///< base and the origin's size: what read_range serves
    std::int64_t offset = 0;
    std::optional<std::int64_t> length;
    int threads = 4;
    int read_ahead = 8;
    std::optional<std::string> out;
    std::optional<std::string> json_file;
    std::optional<std::string> metrics_file; ///< --metrics: Prometheus text of the store's calls, at exit
    bool hedge = false;                       ///< --hedge: reads through cachestore::hedged
    bool verify = false;
    bool json = false;
    bool evict = false;
    bool self_test = true;
    bool progress = true;
    int origin_latency_ms = 0;
    double origin_mibps = 0;
    std::chrono::seconds timeout{60};
};

struct counters {
    std::atomic<std::int64_t> hits{0}, misses{0}, won{0}, lost{0};
    std::atomic<std::int64_t> from_store{0}, from_origin{0};
    std::atomic<std::int64_t> store_errors{0}; ///< store failures served from the origin
    std::mutex mu;
    std::optional<cs::error> first_store_error; ///< under mu
};

/// The origin: a local file read with pread (thread-safe), optionally slowed
/// down to look like a remote object store (first-byte latency, per-stream rate).
class origin_file {
public:
    ~origin_file() {
        if (fd_ >= 0) ::close(fd_);
    }
    cs::result<> open(const std::string& path, int latency_ms, double mibps) {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) {
            const int err = errno;
            return cs::fail(cs::errc::invalid_argument, "origin", {}, "cannot open " + path + ": " + ex::errno_text(err));
        }
        struct ::stat st {};
        if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode))
            return cs::fail(cs::errc::invalid_argument, "origin", {}, path + " is not a regular file");
        size_ = static_cast<std::int64_t>(st.st_size);
        mtime_ns_ = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
        latency_ = std::chrono::milliseconds(latency_ms);
        mibps_ = mibps;
        return {};
    }
    [[nodiscard]] std::int64_t size() const noexcept { return size_; }
    /// An ETag for the file as it is now, like a web server's: size and mtime.
    [[nodiscard]] std::string etag() const {
        char buf[64];
        std::snprintf(buf, sizeof buf, "\"%llx-%llx\"", static_cast<unsigned long long>(size_),
                      static_cast<unsigned long long>(mtime_ns_));
        return buf;
    }
    /// Reads up to out.size() bytes at `at` (what a ranged origin GET returns); the count read.
    cs::result<std::size_t> read(const cs::context& ctx, std::int64_t at, std::span<std::byte> out, bool simulate) const {
        if (simulate) {
            auto wait = latency_;
            if (mibps_ > 0)
                wait += std::chrono::microseconds(static_cast<std::int64_t>(static_cast<double>(out.size()) / (mibps_ * 1048576.0) * 1e6));
            if (wait.count() > 0) {
                std::mutex m;
                std::condition_variable_any cv;
                std::unique_lock lock(m);
                cv.wait_for(lock, ctx.stop_token(), wait, [] { return false; });
                if (auto c = ctx.check("origin"); !c) return std::unexpected(std::move(c.error()));
            }
        }
        std::size_t got = 0;
        while (got < out.size()) {
            const ssize_t r = ::pread(fd_, out.data() + got, out.size() - got, static_cast<off_t>(at) + static_cast<off_t>(got));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                const int err = errno;
                return cs::fail(cs::errc::io_error, "origin", {}, std::string("reading the origin: ") + ex::errno_text(err));
            }
            if (r == 0) break;
            got += static_cast<std::size_t>(r);
        }
        return got;
    }

private:
    int fd_ = -1;
    std::int64_t size_ = 0, mtime_ns_ = 0;
    std::chrono::microseconds latency_{0};
    double mibps_ = 0;
};

/// Serves the slice of one chunk that the range needs through cachestore::read_range:
/// a hit, or a miss filled from the origin (length-checked, committed once).
template <cs::CacheStore S>
cs::result<bytes> fetch_chunk(S& store, const options& o, const origin_file& origin, counters& n, std::int64_t index,
                              std::int64_t range_len, const std::stop_token& stop) {
    const cs::chunk_slice slice = cs::slice_in_chunk(o.object.chunk_size, index, o.offset, range_len);
    bytes out(static_cast<std::size_t>(slice.length));
    const auto ctx = cs::context::with_timeout(o.timeout, stop);
    auto fetch = [&](std::int64_t at, std::span<std::byte> buf) { return origin.read(ctx, at, buf, true); };
    auto r = cs::read_range(store, ctx, o.object, index * o.object.chunk_size + slice.offset, std::span<std::byte>(out), fetch);
    if (!r) return std::unexpected(std::move(r.error()));
    n.hits.fetch_add(r->chunks_hit);
    n.misses.fetch_add(r->chunks_missed);
    n.won.fetch_add(r->commits);
    n.lost.fetch_add(r->commits_lost); // identical bytes are stored: ours were served
    n.from_store.fetch_add(r->chunks_hit != 0 ? r->served : 0);
    n.from_origin.fetch_add(r->origin_bytes);
    if (auto& e = r->store_error) { // served from the origin anyway; reported at the end
        n.store_errors.fetch_add(r->store_errors);
        std::lock_guard lock(n.mu);
        if (!n.first_store_error) n.first_store_error = std::move(*e);
    }
    return out;
}

/// The counters of the tiered store inside `s` (a stack of layers over it), if it is one.
template <class S>
std::optional<cs::tiered_snapshot> tiered_counts(const S& s) {
    if constexpr (requires { { s.snapshot() } -> std::same_as<cs::tiered_snapshot>; }) return s.snapshot();
    else if constexpr (requires { s.inner(); }) return tiered_counts(s.inner());
    else return std::nullopt;
}

struct outcome {
    bool ok = true;
    std::optional<cs::error> err;
    std::string verify_failure; ///< non-empty when --verify found a difference
    std::int64_t served = 0;
    std::int64_t verified = 0;
    double seconds = 0;
};

/// Serves [offset, offset+length) in order through `store`.
template <cs::CacheStore S>
outcome serve(S& store, const options& o, const origin_file& origin, counters& n, std::int64_t length, int out_fd,
              const std::stop_token& outer_stop) {
    outcome res;
    const auto span = *cs::chunks_for_range(o.base.chunk_size, o.offset, length);
    const auto t0 = std::chrono::steady_clock::now();

    std::stop_source abort;
    std::stop_callback forward(outer_stop, [&] { abort.request_stop(); });
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::int64_t, bytes> ready;
    std::int64_t next_claim = span.first, next_emit = span.first;
    bool failed = false;
    auto set_failure = [&](cs::error e) { // under mu
        if (!failed) {
            failed = true;
            res.err = std::move(e);
            abort.request_stop();
        }
        cv.notify_all();
    };

    auto worker = [&] {
        for (;;) {
            std::int64_t idx;
            {
                std::unique_lock lock(mu);
                cv.wait(lock, [&] { return failed || next_claim > span.last || next_claim < next_emit + o.read_ahead; });
                if (failed || next_claim > span.last) return;
                idx = next_claim++;
            }
            auto r = fetch_chunk(store, o, origin, n, idx, length, abort.get_token());
            std::lock_guard lock(mu);
            if (!r) {
                set_failure(std::move(r.error()));
                return;
            }
            ready.emplace(idx, std::move(*r));
            cv.notify_all();
        }
    };
    std::vector<std::jthread> workers;
    workers.reserve(static_cast<std::size_t>(o.threads));
    for (int i = 0; i < o.threads; ++i) workers.emplace_back(worker);

    ex::progress_bar bar("read_through", length, o.progress && !(o.out && *o.out == "-"));
    bytes check;
    for (std::int64_t idx = span.first; idx <= span.last; ++idx) {
        bytes data;
        {
            std::unique_lock lock(mu);
            cv.wait(lock, [&] { return failed || ready.contains(idx); });
            if (failed) break;
            auto it = ready.find(idx);
            data = std::move(it->second);
            ready.erase(it);
            next_emit = idx + 1;
            cv.notify_all();
        }
        const std::int64_t at = std::max(o.offset, idx * o.base.chunk_size); // object offset of data[0]
        if (out_fd >= 0) {
            const std::byte* p = data.data();
            std::size_t left = data.size();
            while (left != 0) {
                const ssize_t w = ::write(out_fd, p, left);
                if (w < 0 && errno == EINTR) continue;
                if (w < 0) {
                    const int err = errno;
                    std::lock_guard lock(mu);
                    set_failure(cs::fail(cs::errc::io_error, "serve", {}, std::string("writing the output: ") + ex::errno_text(err)).error());
                    break;
                }
                p += w;
                left -= static_cast<std::size_t>(w);
            }
            if (left != 0) break;
        }
        if (o.verify) {
            check.resize(data.size());
            auto got = origin.read(cs::context(abort.get_token()), at, check, false);
            if (!got || *got != data.size()) {
                res.verify_failure = "could not read the origin back at byte " + std::to_string(at) + " to verify";
            } else if (std::memcmp(check.data(), data.data(), data.size()) != 0) {
                std::size_t i = 0;
                while (check[i] == data[i]) ++i;
                char msg[200];
                std::snprintf(msg, sizeof msg,
                              "byte %" PRId64 " of the object differs: served 0x%02x, the origin has 0x%02x (chunk %" PRId64 ")",
                              at + static_cast<std::int64_t>(i), static_cast<unsigned>(data[i]), static_cast<unsigned>(check[i]),
                              idx);
                res.verify_failure = msg;
            }
            if (!res.verify_failure.empty()) {
                std::lock_guard lock(mu);
                set_failure(cs::fail(cs::errc::protocol, "verify", {}, res.verify_failure).error());
                break;
            }
            res.verified += static_cast<std::int64_t>(data.size());
        }
        res.served += static_cast<std::int64_t>(data.size());
        bar.add(static_cast<std::int64_t>(data.size()));
    }
    workers.clear(); // join
    bar.finish();
    res.seconds = ex::seconds_since(t0);
    res.ok = !res.err.has_value();
    return res;
}

template <cs::CacheStore S>
int run(S& store, const options& o, ex::store_holder& holder, const std::stop_token& stop) {
    origin_file origin;
    if (auto r = origin.open(o.origin_file, o.origin_latency_ms, o.origin_mibps); !r) {
        std::cerr << "read_through: " << r.error().message << "\n";
        return ex::exit_usage;
    }
    options opt = o;
    if (opt.base.object_key.empty()) {
        std::error_code ec;
        auto abs = std::filesystem::absolute(opt.origin_file, ec);
        opt.base.object_key = ec ? opt.origin_file : abs.lexically_normal().string();
    }
    if (opt.base.etag.empty()) opt.base.etag = origin.etag();
    if (auto v = cs::validate(opt.base, "key"); !v) {
        std::cerr << "read_through: " << v.error().message << "\n";
        return ex::exit_usage;
    }
    if (origin.size() == 0) {
        std::cerr << "read_through: the origin file is empty: nothing to serve\n";
        return ex::exit_usage;
    }
    opt.object = cs::origin_object{opt.base.origin_id, opt.base.bucket, opt.base.object_key, opt.base.etag,
                                   origin.size(), opt.base.chunk_size};
    const std::int64_t length = o.length.value_or(origin.size() - o.offset);
    if (o.offset >= origin.size() || length <= 0 || o.offset + length > origin.size()) {
        std::cerr << "read_through: the range [" << o.offset << ", +" << length << ") is not inside the " << origin.size()
                  << "-byte origin\n";
        return ex::exit_usage;
    }
    auto print_error = [&](const cs::error& e, const char* what) {
        const int code = ex::exit_code_for(e.code);
        if (o.json) std::cout << json{{"ok", false}, {"error", ex::error_json(e)}, {"exit_code", code}}.dump() << std::endl;
        std::cerr << "read_through: " << what << ": " << e.to_string() << "\n";
        return code;
    };
    if (o.self_test) {
        if (auto r = store.self_test(cs::context::with_timeout(std::chrono::seconds(60), stop)); !r)
            return print_error(r.error(), "the store failed its self-test");
    }
    const auto span = *cs::chunks_for_range(opt.base.chunk_size, o.offset, length);
    if (o.evict) {
        for (std::int64_t i = span.first; i <= span.last; ++i) {
            cs::chunk_key k = opt.base;
            k.index = i;
            if (auto r = store.remove(cs::context::with_timeout(o.timeout, stop), k); !r)
                return print_error(r.error(), "evicting");
        }
    }

    int out_fd = -1;
    if (o.out) {
        if (*o.out == "-") out_fd = STDOUT_FILENO;
        else {
            out_fd = ::open(o.out->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (out_fd < 0) {
                const int err = errno;
                std::cerr << "read_through: cannot create " << *o.out << ": " << ex::errno_text(err) << "\n";
                return ex::exit_other;
            }
        }
    }
    counters n;
    outcome res = serve(store, opt, origin, n, length, out_fd, stop);
    if (out_fd >= 0 && out_fd != STDOUT_FILENO) ::close(out_fd);

    const std::int64_t chunks = span.count();
    const double rate = ex::mib_per_s(static_cast<double>(res.served), res.seconds);
    const double hit_rate = chunks > 0 ? static_cast<double>(n.hits.load() + n.lost.load()) / static_cast<double>(chunks) : 0;
    const std::string path0 = [&] {
        cs::chunk_key k = opt.base;
        k.index = span.first;
        return *cs::storage_path(k);
    }();
    json j = {{"ok", res.ok},
              {"store", std::string(ex::driver_name(o.spec))},
              {"atomic_commit", holder.atomic_commit()},
              {"origin_file", o.origin_file},
              {"object_key", opt.base.object_key},
              {"etag", opt.base.etag},
              {"object_size", origin.size()},
              {"offset", o.offset},
              {"length", length},
              {"chunk_size", opt.base.chunk_size},
              {"chunks", chunks},
              {"first_chunk_path", path0},
              {"hits", n.hits.load()},
              {"misses", n.misses.load()},
              {"commits_won", n.won.load()},
              {"commits_lost", n.lost.load()},
              {"hit_rate", hit_rate},
              {"bytes_served", res.served},
              {"bytes_from_store", n.from_store.load()},
              {"bytes_from_origin", n.from_origin.load()},
              {"store_errors", n.store_errors.load()},
              {"seconds", res.seconds},
              {"mib_per_s", rate},
              {"threads", o.threads},
              {"read_ahead", o.read_ahead},
              {"origin_latency_ms", o.origin_latency_ms},
              {"origin_mibps", o.origin_mibps},
              {"verify", o.verify},
              {"verified_bytes", res.verified}};
    if (n.first_store_error) j["first_store_error"] = ex::error_json(*n.first_store_error);
    // A tiered store: which tier answered (promotions run in the background:
    // those still queued at exit are dropped, and counted by no one).
    const auto tiers = tiered_counts(store);
    if (tiers) {
        j["tiers"] = {{"near_hits", tiers->get_hits[static_cast<int>(cs::tier::near)]},
                      {"far_hits", tiers->get_hits[static_cast<int>(cs::tier::far)]},
                      {"promotions_done", tiers->promotions_done},
                      {"promotions_skipped", tiers->promotions_skipped},
                      {"promotions_failed", tiers->promotions_failed},
                      {"near_errors", tiers->near_errors},
                      {"near_put_failures", tiers->near_put_failures},
                      {"bypassed", tiers->bypassed}};
    }
    int code = ex::exit_ok;
    if (res.err) {
        const cs::error& e = *res.err;
        code = res.verify_failure.empty() ? ex::exit_code_for(e.code) : ex::exit_other;
        j["error"] = ex::error_json(e);
        j["exit_code"] = code;
        if (!res.verify_failure.empty()) j["verify_failure"] = res.verify_failure;
        std::cerr << "read_through: " << (res.verify_failure.empty() ? "FAILED: " + e.to_string()
                                                                      : "VERIFY FAILED: " + res.verify_failure)
                  << "\n";
    }
    if (o.json_file && !ex::write_file(*o.json_file, j.dump() + "\n")) {
        std::cerr << "read_through: cannot write " << *o.json_file << "\n";
        if (code == ex::exit_ok) code = ex::exit_other;
    }
    if (o.json) {
        std::cout << j.dump() << std::endl;
        return code;
    }
    FILE* txt = (o.out && *o.out == "-") ? stderr : stdout; // keep stdout for the bytes
    std::fprintf(txt, "read_through: %s bytes [%" PRId64 ", %" PRId64 ") of %s (%s, %" PRId64 " chunk%s of %s) through the %s store\n",
                 res.ok ? "served" : "FAILED after serving part of", o.offset, o.offset + length, o.origin_file.c_str(),
                 ex::format_bytes(static_cast<double>(length)).c_str(), chunks, chunks == 1 ? "" : "s",
                 ex::format_bytes(static_cast<double>(opt.base.chunk_size)).c_str(), std::string(ex::driver_name(o.spec)).c_str());
    std::fprintf(txt, "  hits %" PRId64 ", misses %" PRId64 " (commits won %" PRId64 ", lost %" PRId64 "), hit rate %.0f%%\n",
                 n.hits.load(), n.misses.load(), n.won.load(), n.lost.load(), hit_rate * 100);
    std::fprintf(txt, "  from the store %s, from the origin %s\n", ex::format_bytes(static_cast<double>(n.from_store.load())).c_str(),
                 ex::format_bytes(static_cast<double>(n.from_origin.load())).c_str());
    if (tiers)
        std::fprintf(txt, "  tiers: near hits %" PRIu64 ", far hits %" PRIu64 ", promotions %" PRIu64 " done, %" PRIu64
                          " skipped, %" PRIu64 " failed\n",
                     tiers->get_hits[static_cast<int>(cs::tier::near)], tiers->get_hits[static_cast<int>(cs::tier::far)],
                     tiers->promotions_done, tiers->promotions_skipped, tiers->promotions_failed);
    if (n.first_store_error)
        std::fprintf(txt, "  store errors %" PRId64 " (served from the origin instead), the first: %s\n", n.store_errors.load(),
                     n.first_store_error->to_string().c_str());
    std::fprintf(txt, "  %s in %.3f s: %.1f MiB/s (%d threads, read-ahead %d chunks", ex::format_bytes(static_cast<double>(res.served)).c_str(),
                 res.seconds, rate, o.threads, o.read_ahead);
    if (o.origin_latency_ms > 0 || o.origin_mibps > 0)
        std::fprintf(txt, "; origin simulated: %d ms first byte, %.0f MiB/s per stream", o.origin_latency_ms, o.origin_mibps);
    std::fprintf(txt, ")\n");
    if (o.verify && res.ok)
        std::fprintf(txt, "  verify: all %" PRId64 " served bytes match the origin\n", res.verified);
    return code;
}

} // namespace

int run_main(int argc, char** argv) {
    ex::arg_parser p("read_through --store URL --origin-file PATH [OPTIONS]",
                     "A miniature origin cache: serve a byte range of an origin object chunk by chunk\n"
                     "through a cachestore with cachestore::read_range. Hit: read from the store. Miss:\n"
                     "read the chunk from the origin, check its length against expected_len, commit it\n"
                     "(commit_lost = another filler won; served like a hit), serve the slice. A failing\n"
                     "store is bypassed and reported. Prints hits, misses, commits won and lost, bytes\n"
                     "and throughput. Run it twice to see a cold and then a warm cache.");
    p.section("Store and origin");
    p.flag("--store", "URL", "mem:, file:///dir, s3://bucket/prefix?... or tiered:NEAR|FAR (one in\nfront of another; cachestore --help describes them; default: $CACHESTORE_URL)");
    p.flag("--origin-file", "PATH", "the origin object: a local file (required)");
    p.flag("--origin-latency-ms", "MS", "simulate a remote origin: wait MS before each origin read (default 0)");
    p.flag("--origin-mibps", "RATE", "simulate a remote origin: RATE MiB/s per origin read (default: unlimited)");
    p.section("Chunk key (origin_id, bucket, object key and ETag name the object)");
    p.flag("--origin", "ID", "origin_id (default read-through)");
    p.flag("--bucket", "NAME", "the origin bucket (default local)");
    p.flag("--key", "KEY", "the object key (default: the origin file's absolute path)");
    p.flag("--etag", "ETAG", "the object's ETag (default: \"<size>-<mtime>\" of the file, in hex,\nso a changed file is a new object)");
    p.flag("--chunk-size", "SIZE", "chunk size, e.g. 8M (default 8M)");
    p.section("Range and serving");
    p.flag("--offset", "N", "first byte of the range (default 0)");
    p.flag("--length", "N", "bytes in the range (default: to the end of the object)");
    p.flag("--threads", "N", "worker threads fetching chunks (default 4)");
    p.flag("--read-ahead", "N", "chunks fetched ahead of the one being served (default 2 x threads)");
    p.flag("--out", "FILE", "write the served bytes to FILE ('-' = stdout; default: discard)");
    p.flag("--verify", "", "compare every served byte with the origin; exit 1 on a mismatch");
    p.flag("--evict", "", "remove the range's chunks from the store first (a cold start)");
    p.flag("--no-self-test", "", "skip the store's self-test at start (it turns on If-None-Match\ncommits on S3 servers that enforce them)");
    p.flag("--timeout", "SECONDS", "deadline of each store or origin operation (default 60)");
    p.flag("--json", "", "print one JSON object with the results on stdout");
    p.flag("--json-file", "FILE", "also write that JSON object to FILE");
    p.flag("--no-progress", "", "no progress bar (drawn on stderr only when it is a terminal)");
    p.flag("--metrics", "FILE", "write the store's metrics (Prometheus text: calls by outcome, latency\nand first-byte histograms, bytes) to FILE at exit");
    p.flag("--hedge", "", "hedge slow reads: a second GET when the first has not answered within\nthe p95 of recent first bytes, at most ~10 % extra (docs/layers.md)");
    p.epilog(std::string(ex::exit_code_help));

    options o;
    const bool json_early = ex::wants_json(argc, argv, 1);
    std::string url;
    try {
        if (!ex::parse_store_flags(p, argc, argv, 1, url)) return ex::exit_ok; // --help was printed
        o.origin_file = p.require("--origin-file");
        o.base.origin_id = p.get_or("--origin", "read-through");
        o.base.bucket = p.get_or("--bucket", "local");
        o.base.object_key = p.get_or("--key", "");
        o.base.etag = p.get_or("--etag", "");
        o.base.chunk_size = p.size_or("--chunk-size", 8 << 20);
        if (o.base.chunk_size <= 0) throw ex::usage_error("--chunk-size must be at least 1");
        o.offset = p.size_or("--offset", 0);
        if (p.has("--length")) o.length = p.size_or("--length", 0);
        o.threads = static_cast<int>(p.int_or("--threads", 4, 1, 256));
        o.read_ahead = static_cast<int>(p.int_or("--read-ahead", std::int64_t{2} * o.threads, 1, 4096));
        o.out = p.get("--out");
        o.verify = p.has("--verify");
        o.json = p.has("--json");
        o.json_file = p.get("--json-file");
        o.evict = p.has("--evict");
        o.self_test = !p.has("--no-self-test");
        o.progress = !p.has("--no-progress");
        o.metrics_file = p.get("--metrics");
        o.hedge = p.has("--hedge");
        o.origin_latency_ms = static_cast<int>(p.int_or("--origin-latency-ms", 0, 0, 600000));
        o.origin_mibps = static_cast<double>(p.int_or("--origin-mibps", 0, 0, 1 << 20));
        o.timeout = std::chrono::seconds(p.int_or("--timeout", 60, 1, 86400));
    } catch (const ex::usage_error& e) {
        return ex::report_usage("read_through", json_early, e.what());
    }
    auto spec = ex::parse_store_url(url);
    if (!spec) {
        if (spec.error().code == cs::errc::invalid_argument)
            return ex::report_usage("read_through", json_early, spec.error().to_string());
        if (o.json) std::cout << json{{"ok", false}, {"error", ex::error_json(spec.error())}, {"exit_code", ex::exit_code_for(spec.error().code)}}.dump() << std::endl;
        std::cerr << "read_through: " << spec.error().to_string() << "\n";
        return ex::exit_code_for(spec.error().code);
    }
    o.spec = *spec;
    ex::signal_stop signals;
    ex::store_holder holder;
    if (auto r = holder.open(o.spec); !r) {
        if (o.json) std::cout << json{{"ok", false}, {"error", ex::error_json(r.error())}, {"exit_code", ex::exit_code_for(r.error().code)}}.dump() << std::endl;
        std::cerr << "read_through: " << r.error().to_string() << "\n";
        return ex::exit_code_for(r.error().code);
    }
    // Every call goes through cachestore::metered (its counters are what
    // --metrics writes), and with --hedge through cachestore::hedged below it:
    // the store's type stays a template parameter, resolved at compile time.
    auto with_metrics = [&](auto& stack) {
        const int code = run(stack, o, holder, signals.token());
        if (o.metrics_file) {
            std::string text;
            cs::write_layer_metrics(text, stack);
            if (!ex::write_file(*o.metrics_file, text)) {
                std::cerr << "read_through: cannot write the metrics to " << *o.metrics_file << "\n";
                return code != 0 ? code : ex::exit_other;
            }
        }
        return code;
    };
    const int rc = holder.visit([&]<cs::CacheStore S>(S& s) {
        if (o.hedge) {
            cs::hedge_options h;
            h.name = "read_through";
            cs::metered<cs::hedged<S&>> stack(cs::hedged<S&>(s, h), cs::metered_options{"read_through"});
            return with_metrics(stack);
        }
        cs::metered<S&> stack(s, cs::metered_options{"read_through"});
        return with_metrics(stack);
    });
    return signals.received() != 0 && rc != 0 ? 128 + signals.received() : rc;
}

int main(int argc, char** argv) { return ex::guarded_main("read_through", run_main, argc, argv); }
