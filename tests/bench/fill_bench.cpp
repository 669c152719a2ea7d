// tests/bench/fill_bench.cpp - the read-through engine's benchmark (issue 18,
// docs/fill.md), each figure against a baseline run side by side in this run:
//   herd    R readers of one cold object, each reading it chunk by chunk,
//           through read_range (the baseline: every reader fills every chunk
//           it misses) and through fill::engine (one fill per chunk): origin
//           fetches, origin bytes and wall time; ratio = engine / read_range.
//   ahead   one cold reader streaming the whole object (fill::engine::stream)
//           with read-ahead 8 against read-ahead 0 (one chunk at a time):
//           throughput ratio (target >= 5).
//   commit  one cold reader over a store whose commit takes C ms: its time
//           through the engine (commit after serve) and through read_range
//           (commit before the next chunk), each against the same chunks read
//           straight from the origin; ratio = reader time / origin time
//           (target <= 1.1 for the engine).
// The origin is in memory, made to behave like a remote object store: a
// first-byte delay per request and a per-stream rate. Every byte each reader
// gets is compared with the object. Timings are never asserted; --smoke runs
// small sizes and fails only when a read fails, a byte differs, or the
// engine makes other than one origin fetch per chunk (a correctness bound).
//
// Usage: fill_bench [--smoke] [--readers R] [--chunk-mib N] [--chunks K]
//                   [--first-byte-ms T] [--mib-per-s M] [--commit-ms C]
#include <cachestore/fill/engine.hpp>
#include <cachestore/memory_store.hpp>
#include <cachestore/read_range.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace cs = cachestore;
using clock_type = std::chrono::steady_clock;

double secs_since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

struct params {
    int readers = 64;
    std::int64_t chunk = std::int64_t{8} << 20;
    std::int64_t chunks = 8;
    int first_byte_ms = 50;
    double mib_per_s = 100; ///< per stream; 0: no limit
    int commit_ms = 200;
    bool smoke = false;
};

/// The object's bytes, and an origin serving them like a remote store.
struct sim_origin {
    const std::vector<std::byte>* object = nullptr;
    params p;
    std::atomic<std::int64_t> fetches{0}, bytes{0};
    std::atomic<int> in_flight{0}, peak{0};

    cs::result<std::size_t> get(const cs::context& ctx, const cs::origin_object&, std::int64_t offset,
                                std::span<std::byte> out) {
        ++fetches;
        const int now = ++in_flight;
        for (int seen = peak.load(); now > seen && !peak.compare_exchange_weak(seen, now);) {
        }
        struct leave {
            std::atomic<int>& n;
            ~leave() { --n; }
        } const on_return{in_flight};
        auto wait = std::chrono::duration<double>(p.first_byte_ms / 1000.0);
        if (p.mib_per_s > 0)
            wait += std::chrono::duration<double>(static_cast<double>(out.size()) / (p.mib_per_s * 1048576.0));
        const auto until = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(wait);
        while (clock_type::now() < until) {
            if (ctx.stop_requested()) return cs::fail(cs::errc::cancelled, "origin GET", {}, "stopped");
            std::this_thread::sleep_for(std::min<clock_type::duration>(until - clock_type::now(), std::chrono::milliseconds(5)));
        }
        const auto n = std::min<std::int64_t>(static_cast<std::int64_t>(out.size()),
                                              static_cast<std::int64_t>(object->size()) - offset);
        std::memcpy(out.data(), object->data() + offset, static_cast<std::size_t>(n));
        bytes += n;
        return static_cast<std::size_t>(n);
    }
};
static_assert(cs::fill::Origin<sim_origin>);

/// A memory store whose commits take `commit_ms` (a slow shared store).
struct slow_commit_store {
    cs::memory_store inner;
    int commit_ms = 0;
    template <class Sink>
    cs::result<> get_chunk(const cs::context& ctx, const cs::chunk_key& k, std::int64_t off, std::int64_t n, Sink&& sink) {
        return inner.get_chunk(ctx, k, off, n, std::forward<Sink>(sink));
    }
    template <class Src>
    cs::result<> put_chunk(const cs::context& ctx, const cs::chunk_key& k, std::int64_t size, Src&& src) {
        std::this_thread::sleep_for(std::chrono::milliseconds(commit_ms));
        return inner.put_chunk(ctx, k, size, std::forward<Src>(src));
    }
    cs::result<cs::info> stat(const cs::context& ctx, const cs::chunk_key& k) { return inner.stat(ctx, k); }
    cs::result<> remove(const cs::context& ctx, const cs::chunk_key& k) { return inner.remove(ctx, k); }
    cs::result<> self_test(const cs::context& ctx) { return inner.self_test(ctx); }
};
static_assert(cs::CacheStore<slow_commit_store>);

cs::origin_object object_named(const params& p, const std::string& name) {
    return cs::origin_object{"bench", "bucket", name, "\"" + name + "\"", p.chunk * p.chunks, p.chunk};
}

struct run_result {
    double secs = 0;
    std::int64_t fetches = 0, bytes = 0;
    int failed = 0; ///< reads that failed or bytes that differed
};

/// `readers` threads each read the object chunk by chunk through `read`.
template <class Read>
run_result readers_run(const params& p, const std::vector<std::byte>& object, sim_origin& o, int readers, Read read) {
    std::atomic<int> failed{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(readers));
    for (int t = 0; t < readers; ++t)
        threads.emplace_back([&] {
            std::vector<std::byte> buf(static_cast<std::size_t>(p.chunk));
            while (!go.load()) std::this_thread::yield();
            for (std::int64_t i = 0; i < p.chunks; ++i) {
                auto r = read(i * p.chunk, std::span<std::byte>(buf));
                if (!r || std::memcmp(buf.data(), object.data() + i * p.chunk, buf.size()) != 0) {
                    if (!r) std::fprintf(stderr, "read failed: %s\n", r.error().to_string().c_str());
                    ++failed;
                    return;
                }
            }
        });
    const auto t0 = clock_type::now();
    go = true;
    for (auto& t : threads) t.join();
    return {secs_since(t0), o.fetches.load(), o.bytes.load(), failed.load()};
}

bool herd(const params& p, const std::vector<std::byte>& object) {
    std::printf("## herd: %d readers of one cold %lld MiB object (%lld chunks of %lld KiB), origin %d ms to first "
                "byte%s\n\n",
                p.readers, static_cast<long long>((p.chunk * p.chunks) >> 20), static_cast<long long>(p.chunks),
                static_cast<long long>(p.chunk >> 10), p.first_byte_ms,
                p.mib_per_s > 0 ? (", " + std::to_string(static_cast<int>(p.mib_per_s)) + " MiB/s per stream").c_str() : "");
    run_result base, eng;
    {
        cs::memory_store store;
        sim_origin o{&object, p};
        const auto obj = object_named(p, "herd-read-range");
        base = readers_run(p, object, o, p.readers, [&](std::int64_t at, std::span<std::byte> out) {
            return cs::read_range(store, {}, obj, at, out, [&](std::int64_t off, std::span<std::byte> b) {
                return o.get({}, obj, off, b);
            });
        });
    }
    {
        cs::memory_store store;
        sim_origin o{&object, p};
        cs::fill::engine e(store, o);
        const auto obj = object_named(p, "herd-engine");
        eng = readers_run(p, object, o, p.readers,
                          [&](std::int64_t at, std::span<std::byte> out) { return e.read({}, obj, at, out); });
    }
    const auto mib = [](std::int64_t b) { return static_cast<double>(b) / 1048576.0; };
    std::printf("| path | origin fetches | origin MiB | wall s | failed reads |\n|---|---|---|---|---|\n");
    std::printf("| read_range (baseline) | %lld | %.0f | %.2f | %d |\n", static_cast<long long>(base.fetches),
                mib(base.bytes), base.secs, base.failed);
    std::printf("| fill::engine | %lld | %.0f | %.2f | %d |\n", static_cast<long long>(eng.fetches), mib(eng.bytes),
                eng.secs, eng.failed);
    std::printf("| ratio engine / read_range | %.3f | %.3f | %.2f | |\n\n",
                static_cast<double>(eng.fetches) / static_cast<double>(std::max<std::int64_t>(base.fetches, 1)),
                mib(eng.bytes) / std::max(mib(base.bytes), 1e-9), eng.secs / std::max(base.secs, 1e-9));
    const bool ok = base.failed == 0 && eng.failed == 0 && eng.fetches == p.chunks;
    if (eng.fetches != p.chunks)
        std::printf("FAIL: the engine made %lld origin fetches for %lld chunks\n", static_cast<long long>(eng.fetches),
                    static_cast<long long>(p.chunks));
    return ok;
}

bool read_ahead(const params& p, const std::vector<std::byte>& object) {
    std::printf("## read-ahead: one cold reader streams the object through fill::engine::stream\n\n");
    std::printf("| read-ahead | origin fetches | most at once | s | MiB/s | failed |\n|---|---|---|---|---|---|\n");
    double base_rate = 0;
    bool ok = true;
    for (const std::int64_t ra : {std::int64_t{0}, std::int64_t{8}}) {
        cs::memory_store store;
        sim_origin o{&object, p};
        cs::fill::engine_options opt;
        opt.readahead = ra;
        cs::fill::engine e(store, o, opt);
        const auto obj = object_named(p, "ahead-" + std::to_string(ra));
        std::int64_t pos = 0;
        bool same = true;
        const auto t0 = clock_type::now();
        auto r = e.stream({}, obj, 0, obj.size, [&](std::span<const std::byte> b) {
            same = same && std::memcmp(b.data(), object.data() + pos, b.size()) == 0;
            pos += static_cast<std::int64_t>(b.size());
            return true;
        });
        const double secs = secs_since(t0);
        const bool good = r && same && pos == obj.size;
        if (!r) std::fprintf(stderr, "stream failed: %s\n", r.error().to_string().c_str());
        const double rate = static_cast<double>(obj.size) / 1048576.0 / secs;
        if (ra == 0) base_rate = rate;
        std::printf("| %lld%s | %lld | %d | %.3f | %.0f | %d |\n", static_cast<long long>(ra),
                    ra == 0 ? " (baseline)" : "", static_cast<long long>(o.fetches.load()), o.peak.load(), secs, rate,
                    good ? 0 : 1);
        if (ra != 0 && base_rate > 0) std::printf("| ratio %lld / 0 | | | | %.2f | |\n", static_cast<long long>(ra), rate / base_rate);
        ok = ok && good;
    }
    std::printf("\n");
    return ok && base_rate > 0;
}

bool commit_after_serve(const params& p, const std::vector<std::byte>& object) {
    std::printf("## commit after serve: one cold reader, a store whose commit takes %d ms\n\n", p.commit_ms);
    run_result direct, base, eng;
    {
        sim_origin o{&object, p};
        const auto obj = object_named(p, "commit-direct");
        direct = readers_run(p, object, o, 1, [&](std::int64_t at, std::span<std::byte> out) {
            auto r = o.get({}, obj, at, out);
            return r ? cs::result<>{} : cs::result<>(std::unexpected(r.error()));
        });
    }
    {
        slow_commit_store store;
        store.commit_ms = p.commit_ms;
        sim_origin o{&object, p};
        const auto obj = object_named(p, "commit-read-range");
        base = readers_run(p, object, o, 1, [&](std::int64_t at, std::span<std::byte> out) {
            return cs::read_range(store, {}, obj, at, out, [&](std::int64_t off, std::span<std::byte> b) {
                return o.get({}, obj, off, b);
            });
        });
    }
    {
        slow_commit_store store;
        store.commit_ms = p.commit_ms;
        sim_origin o{&object, p};
        cs::fill::engine e(store, o);
        const auto obj = object_named(p, "commit-engine");
        eng = readers_run(p, object, o, 1,
                          [&](std::int64_t at, std::span<std::byte> out) { return e.read({}, obj, at, out); });
    } // the engine waits here for its commits: not part of the reader's time
    std::printf("| path | reader s | ratio to the origin alone |\n|---|---|---|\n");
    std::printf("| the origin alone (baseline) | %.3f | 1.00 |\n", direct.secs);
    std::printf("| read_range (commit, then the next chunk) | %.3f | %.2f |\n", base.secs, base.secs / direct.secs);
    std::printf("| fill::engine (commit after serve) | %.3f | %.2f |\n\n", eng.secs, eng.secs / direct.secs);
    return direct.failed == 0 && base.failed == 0 && eng.failed == 0;
}

} // namespace

int main(int argc, char** argv) {
    try {
        params p;
        for (int i = 1; i < argc; ++i) {
            const std::string_view a = argv[i];
            auto num = [&](const char* what) {
                if (i + 1 >= argc) throw std::invalid_argument(std::string(what) + " needs a number");
                return std::stod(argv[++i]);
            };
            if (a == "--smoke") p.smoke = true;
            else if (a == "--readers") p.readers = static_cast<int>(num("--readers"));
            else if (a == "--chunk-mib") p.chunk = static_cast<std::int64_t>(num("--chunk-mib") * 1048576);
            else if (a == "--chunks") p.chunks = static_cast<std::int64_t>(num("--chunks"));
            else if (a == "--first-byte-ms") p.first_byte_ms = static_cast<int>(num("--first-byte-ms"));
            else if (a == "--mib-per-s") p.mib_per_s = num("--mib-per-s");
            else if (a == "--commit-ms") p.commit_ms = static_cast<int>(num("--commit-ms"));
            else {
                std::fprintf(stderr, "usage: fill_bench [--smoke] [--readers R] [--chunk-mib N] [--chunks K] "
                                     "[--first-byte-ms T] [--mib-per-s M] [--commit-ms C]\n");
                return 2;
            }
        }
        if (p.smoke) {
            p.readers = 8;
            p.chunk = 256 << 10;
            p.first_byte_ms = 5;
            p.mib_per_s = 0;
            p.commit_ms = 20;
        }
        if (p.readers < 1 || p.chunk < 1 || p.chunks < 1 || p.first_byte_ms < 0 || p.commit_ms < 0) {
            std::fprintf(stderr, "fill_bench: readers, chunk and chunks must be >= 1, delays >= 0\n");
            return 2;
        }
        std::vector<std::byte> object(static_cast<std::size_t>(p.chunk * p.chunks));
        std::uint64_t x = 0x9e3779b97f4a7c15ULL;
        for (auto& b : object) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b = static_cast<std::byte>(x);
        }
        std::printf("# Read-through engine benchmark%s\n\n", p.smoke ? " (smoke sizes)" : "");
        bool ok = herd(p, object);
        ok = read_ahead(p, object) && ok;
        ok = commit_after_serve(p, object) && ok;
        return ok ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fill_bench: %s\n", e.what());
        return 1;
    }
}
