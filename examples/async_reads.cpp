// async_reads - keeps N chunk reads in flight on ONE thread against an S3
// store, the way an event-driven proxy would (docs/async.md).
//
// The S3 driver's async engine (s3::async_store, own_thread = false) is
// driven by an asio::io_context through cachestore::asio::host_loop: every
// transfer, sink and completion runs on the main thread, and the store starts
// no thread of its own. The program stores one chunk (blocking, before the
// loop starts), then reads ranges of it for --seconds with --in-flight reads
// outstanding (each completion starts the next), and prints throughput,
// latency percentiles, the connections used and the process's thread count.
// Exits non-zero on any failed read or wrong byte.
#include <asio/bind_executor.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include <unistd.h>

#include "cachestore/asio.hpp"
#include "cachestore/asio/host_loop.hpp"
#include "cachestore/s3/async.hpp"
#include "common.hpp"
#include "store_url.hpp"

namespace cs = cachestore;
namespace ex = cachestore::examples;
using clk = std::chrono::steady_clock;

namespace {

struct options {
    int in_flight = 256;
    double seconds = 3;
    std::int64_t size = 4096;
    std::size_t max_connections = 16;
};

std::size_t threads_now() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
    return n;
}

double percentile(std::vector<double>& v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

/// The reads: `in_flight` at a time until `until`, each completion starting
/// the next; all on the io_context's thread.
struct reader {
    asio::io_context& io;
    cs::s3::async_store& store;
    const cs::chunk_key& key;
    const std::vector<std::byte>& chunk;
    options o;
    clk::time_point until;
    std::vector<std::vector<std::byte>> bufs;
    std::vector<double> latency_ms;
    std::int64_t reads = 0, failed = 0, wrong = 0;
    std::size_t outstanding = 0; ///< slots still reading
    std::mt19937_64 rng{42}; // NOLINT(cert-msc51-cpp): the same ranges every run, on purpose

    void start(std::size_t slot) {
        const std::int64_t span = static_cast<std::int64_t>(chunk.size()) - o.size;
        const std::int64_t off = span > 0 ? static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(span + 1)) : 0;
        const auto t0 = clk::now();
        // Bound to the io_context: the handler runs on its thread (a plain
        // callable would run on Asio's system executor).
        cs::asio::async_get_chunk(store, cs::context::with_timeout(std::chrono::seconds(30)), key, off, o.size,
                                  cs::span_sink(bufs[slot]), asio::bind_executor(io, [this, slot, off, t0](cs::result<> r) {
                                      latency_ms.push_back(std::chrono::duration<double, std::milli>(clk::now() - t0).count());
                                      if (!r) {
                                          if (failed++ == 0) std::cerr << "async_reads: " << r.error().to_string() << "\n";
                                      } else if (std::memcmp(bufs[slot].data(), chunk.data() + off, bufs[slot].size()) != 0) {
                                          ++wrong;
                                      }
                                      ++reads;
                                      if (clk::now() < until) {
                                          start(slot);
                                      } else if (--outstanding == 0) {
                                          io.stop(); // the host_loop's waits would keep run() going
                                      }
                                  }));
    }
};

} // namespace

int run_main(int argc, char** argv) {
    ex::arg_parser p("async_reads --store s3://BUCKET[/PREFIX][?endpoint=...] [options]",
                     "Keeps N chunk reads in flight on one thread (the S3 async engine on an Asio io_context)\n"
                     "and prints throughput, latency percentiles, connections and the thread count.");
    p.flag("--store", "URL", "an s3:// store URL (as for the other examples; credentials from the environment)");
    p.flag("--in-flight", "N", "reads outstanding at once (default 256)");
    p.flag("--seconds", "S", "how long to read (default 3)");
    p.flag("--size", "BYTES", "bytes per read (default 4096; suffixes K, M)");
    p.flag("--max-connections", "N", "the store's connection bound (default 16)");
    p.epilog(std::string(ex::exit_code_help));
    options o;
    std::string url;
    try {
        if (!ex::parse_store_flags(p, argc, argv, 1, url)) return ex::exit_ok;
        o.in_flight = static_cast<int>(p.int_or("--in-flight", 256, 1, 100000));
        o.seconds = static_cast<double>(p.int_or("--seconds", 3, 1, 3600));
        o.size = p.size_or("--size", 4096);
        o.max_connections = static_cast<std::size_t>(p.int_or("--max-connections", 16, 1, 4096));
        if (o.size <= 0 || o.size > (1 << 20)) throw ex::usage_error("--size must be between 1 and 1M");
    } catch (const ex::usage_error& e) {
        return ex::report_usage("async_reads", false, e.what());
    }
    auto spec = ex::parse_store_url(url);
    if (!spec) {
        std::cerr << "async_reads: " << spec.error().to_string() << "\n";
        return ex::exit_code_for(spec.error().code);
    }
    auto* s3 = std::get_if<ex::s3_spec>(&*spec);
    if (s3 == nullptr)
        return ex::report_usage("async_reads", false, "--store must be an s3:// URL (the async engine is the S3 driver's)");
    auto made = cs::s3::async_store::create(s3->cfg, {.max_connections = o.max_connections, .own_thread = false});
    if (!made) {
        std::cerr << "async_reads: " << made.error().to_string() << "\n";
        return ex::exit_code_for(made.error().code);
    }
    cs::s3::async_store& store = *made;

    // One 1 MiB chunk to read from, stored before the loop starts.
    std::vector<std::byte> chunk(std::size_t{1} << 20);
    std::mt19937_64 fill(7); // NOLINT(cert-msc51-cpp): any bytes will do; the reads check them
    for (auto& b : chunk) b = static_cast<std::byte>(fill() & 0xff);
    const cs::chunk_key key{"async-reads", "example", "chunk-" + std::to_string(::getpid()), "\"e1\"",
                            static_cast<std::int64_t>(chunk.size()), 0};
    const auto ctx = cs::context::with_timeout(std::chrono::seconds(30));
    if (auto r = store.blocking().put_chunk(ctx, key, static_cast<std::int64_t>(chunk.size()),
                                            std::span<const std::byte>(chunk));
        !r && r.error().code != cs::errc::commit_lost) {
        std::cerr << "async_reads: storing the chunk: " << r.error().to_string() << "\n";
        return ex::exit_code_for(r.error().code);
    }

    asio::io_context io;
    cs::asio::host_loop driver(io.get_executor(), store);
    reader rd{io, store, key, chunk, o, {}, {}, {}, 0, 0, 0, 0, std::mt19937_64{42}}; // NOLINT(cert-msc51-cpp): the same ranges every run
    rd.bufs.assign(static_cast<std::size_t>(o.in_flight), std::vector<std::byte>(static_cast<std::size_t>(o.size)));
    const auto t0 = clk::now();
    rd.until = t0 + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(o.seconds));
    rd.outstanding = rd.bufs.size();
    for (std::size_t i = 0; i < rd.bufs.size(); ++i) rd.start(i);
    std::size_t threads_during = 0;
    asio::steady_timer probe(io, std::chrono::milliseconds(200));
    probe.async_wait([&](const std::error_code&) { threads_during = threads_now(); });
    io.run();
    const double secs = std::chrono::duration<double>(clk::now() - t0).count();

    (void)store.blocking().remove(ctx, key);
    const double rate = static_cast<double>(rd.reads) / secs;
    std::printf("async_reads: %lld reads of %lld bytes, %d in flight on 1 thread, max_connections %zu\n",
                static_cast<long long>(rd.reads), static_cast<long long>(o.size), o.in_flight, o.max_connections);
    std::printf("  throughput  %.0f reads/s, %.1f MiB/s\n", rate, rate * static_cast<double>(o.size) / (1 << 20));
    std::printf("  latency     p50 %.2f ms, p99 %.2f ms, max %.2f ms (initiation to completion)\n",
                percentile(rd.latency_ms, 0.50), percentile(rd.latency_ms, 0.99), percentile(rd.latency_ms, 1.0));
    std::printf("  threads     %zu in the process while reading (the store started none)\n", threads_during);
    std::printf("  errors      %lld failed, %lld wrong bytes\n", static_cast<long long>(rd.failed),
                static_cast<long long>(rd.wrong));
    return rd.failed == 0 && rd.wrong == 0 && rd.reads > 0 ? ex::exit_ok : 1;
}

int main(int argc, char** argv) { return ex::guarded_main("async_reads", run_main, argc, argv); }
