// tests/bench/async_rows.hpp - the async engine's rows (issue 22,
// docs/async.md), part of bench.cpp's translation unit (included after its
// machinery and layers_rows.hpp), against nginx:
//
//   - GET 4 KiB with 1,000 in flight from one thread (s3::async_store,
//     host-driven: the bench thread runs its loop) against the blocking API
//     on 8 threads: throughput >= 1.00, client CPU per GET printed for both
//     (the whole process's for the engine, the 8 threads' for the blocking
//     side); p50/p99 latency and the connections it opened; latency,
//     throughput and CPU with the store's own loop thread (a run alone);
//   - GET 8 MiB with 64 in flight into 64 caller buffers against the blocking
//     API on 8 threads: MiB/s >= 1.00;
//   - memory per in-flight operation: RSS with 1,000 paused reads minus idle.
#pragma once

#include <semaphore>

#include "cachestore/s3/async.hpp"

namespace bench {

inline s3::async_store make_async_store(const server& sv, std::size_t max_connections) {
    auto a = s3::async_store::create(bench_config(sv), {.max_connections = max_connections});
    if (!a) die("async_store::create: " + a.error().to_string());
    return std::move(*a);
}

/// Keeps `width` GETs in flight on an async store: each completion starts the
/// next one (on the loop thread) while fewer than `width` results wait for
/// next(), so the store goes quiet when nobody asks (between the slices of
/// the other side). Latencies are kept, from initiation to completion.
/// `drive`: the store is host-driven and next() runs its loop on the calling
/// thread (one thread in all); else next() waits for the store's own thread.
class async_pump {
public:
    async_pump(s3::async_store& a, const cachestore::chunk_key& key, std::int64_t off, std::int64_t n, int width,
               bool drive)
        : a_(a), key_(key), off_(off), n_(n), width_(width), drive_(drive), bufs_(static_cast<std::size_t>(width)) {
        for (auto& b : bufs_) b.assign(static_cast<std::size_t>(n), std::byte{1});
        for (int i = 0; i < width; ++i) free_.push_back(i);
    }
    async_pump(const async_pump&) = delete;
    async_pump& operator=(const async_pump&) = delete;
    ~async_pump() {
        {
            const std::lock_guard lock(mu_);
            stopping_ = true;
        }
        while (in_flight_.load() != 0) {
            if (drive_) {
                a_.run_for(std::chrono::milliseconds(100));
            } else {
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
        }
    }

    /// Returns once one more GET completed whole (false on a failed one).
    bool next() {
        top_up();
        if (drive_) {
            while (ready_.load() == 0) a_.run_for(std::chrono::milliseconds(100));
        } else {
            ready_sem_.acquire();
        }
        ready_.fetch_sub(1);
        return !failed_.load();
    }

    /// Latencies in ms, sorted (call when quiet).
    std::vector<double> latencies() {
        const std::lock_guard lock(mu_);
        std::vector<double> v = lat_;
        std::sort(v.begin(), v.end());
        return v;
    }

private:
    void top_up() {
        for (;;) {
            int i = -1;
            {
                const std::lock_guard lock(mu_);
                if (stopping_ || free_.empty() || in_flight_.load() + ready_.load() >= width_) return;
                i = free_.back();
                free_.pop_back();
                in_flight_.fetch_add(1);
            }
            start(i);
        }
    }

    void start(int i) {
        auto& buf = bufs_[static_cast<std::size_t>(i)];
        const auto t0 = clk::now();
        cachestore::async_get_chunk(a_, g_ctx_none, key_, off_, std::span<std::byte>(buf),
                                    [this, i, t0](cachestore::result<> r) { finished(i, t0, r); });
    }

    void finished(int i, clk::time_point t0, const cachestore::result<>& r) {
        const double ms = std::chrono::duration<double, std::milli>(clk::now() - t0).count();
        if (!r) {
            report_failure("async get_chunk", r.error().to_string());
            failed_ = true;
        }
        bool again = false;
        {
            const std::lock_guard lock(mu_);
            lat_.push_back(ms);
            ready_.fetch_add(1);
            in_flight_.fetch_sub(1);
            again = !stopping_ && in_flight_.load() + ready_.load() < width_;
            if (again) {
                in_flight_.fetch_add(1);
            } else {
                free_.push_back(i);
            }
        }
        if (!drive_) ready_sem_.release();
        if (again) start(i);
    }

    static inline const cachestore::context g_ctx_none{};
    s3::async_store& a_;
    cachestore::chunk_key key_;
    std::int64_t off_, n_;
    int width_;
    bool drive_;
    std::vector<std::vector<std::byte>> bufs_;
    std::mutex mu_;
    std::vector<int> free_;
    std::vector<double> lat_;
    std::atomic<int> in_flight_{0}, ready_{0};
    std::atomic<bool> failed_{false};
    bool stopping_ = false; // under mu_
    std::counting_semaphore<1 << 30> ready_sem_{0};
};

inline void async_rows(fixture& f) {
    if (f.sv.name != "nginx") return; // client-side costs: measured on nginx
    const budget small_b{g_opt.seconds, 50};
    const budget large_b{g_opt.seconds, 8};
    std::vector<std::vector<std::byte>> bufs8; // one per blocking thread, made before the row
    if (selected("GET 8 MiB, async engine"))
        for (int i = 0; i < 8; ++i) bufs8.emplace_back(static_cast<std::size_t>(8 * MiB), std::byte{1});
    auto blocking_large8 = side{8, [&f, &bufs8](int tid, clk::duration&) {
                                    auto r = cachestore::get_chunk(f.st, f.ctx, f.large8.key, 0,
                                                                   std::span<std::byte>(bufs8[static_cast<std::size_t>(tid)]));
                                    if (!r) report_failure("ours get_chunk 8 MiB", r.error().to_string());
                                    return r.has_value();
                                }};
    auto blocking_small8 = side{8, [&f](int tid, clk::duration&) { return ours_get_small(f, tid); }};
    std::optional<s3::async_store> own, hosted; // the store's own loop thread; driven by the bench thread
    std::unique_ptr<async_pump> pump;
    auto async_side = [&](bool drive, const object& o, std::int64_t off, std::int64_t n, int width) {
        side s{1, [&f, &own, &hosted, &pump, &o, drive, off, n, width](int, clk::duration&) {
                   auto& a = drive ? hosted : own;
                   if (!a) {
                       auto c = s3::async_store::create(bench_config(f.sv), {.max_connections = 32, .own_thread = !drive});
                       if (!c) die("async_store::create: " + c.error().to_string());
                       a.emplace(std::move(*c));
                   }
                   if (!pump) pump = std::make_unique<async_pump>(*a, o.key, off, n, width, drive);
                   return pump->next();
               }};
        s.process_cpu = true;
        return s;
    };
    // Latency from a run of its own (in the rows, operations wait while the
    // other side runs): 1 s, or 200 GETs in a smoke run.
    auto latency_note = [&](std::optional<s3::async_store>& a, bool drive, const char* what) {
        pump.reset();
        if (!a) return;
        async_pump p(*a, f.small.key, f.small_off, f.small_len, 1000, drive);
        const auto t0 = clk::now();
        const double cpu0 = process_cpu_seconds();
        long n = 0;
        while (p.next() && (g_opt.smoke ? n < 200 : clk::now() - t0 < std::chrono::seconds(1))) ++n;
        const double secs = std::chrono::duration<double>(clk::now() - t0).count();
        const double cpu_us = (process_cpu_seconds() - cpu0) / static_cast<double>(std::max(n, 1L)) * 1e6;
        const auto lat = p.latencies();
        g_meas.push_back({what, fmt("p50 %.2f ms", percentile(lat, 0.50)) + fmt(", p99 %.2f ms", percentile(lat, 0.99)),
                          "", fmt("%.0f GETs/s", static_cast<double>(n) / secs) + fmt(", %.1f us CPU per GET", cpu_us) +
                                  "; 968 of the 1,000 wait in the engine's queue for one of 32 connections"});
    };
    const auto ports0 = peer_ports(f.sv.port);
    run_row({"GET 4 KiB, async engine: 1,000 in flight, 1 thread (host-driven)", "ours, blocking, 8 threads", 0, 1.00,
             small_b, async_side(true, f.small, f.small_off, f.small_len, 1000), blocking_small8});
    if (pump) {
        const auto after = peer_ports(f.sv.port);
        latency_note(hosted, true, "async, host-driven: 4 KiB GET latency, 1,000 in flight");
        g_meas.push_back({"async: connections opened by the 4 KiB row",
                          fmt("%.0f", static_cast<double>(new_ports(ports0, after))), "",
                          "the engine's and the 8 blocking threads' (8), incl. TIME_WAIT; bound 32"});
    }
    // The store's own loop thread: not as a ratio row (its transfers would
    // go on during the other side's slices, and be counted), but a run of
    // its own for throughput and latency.
    if (selected("GET 4 KiB, async engine: 1,000 in flight")) {
        auto c = s3::async_store::create(bench_config(f.sv), {.max_connections = 32});
        if (!c) die("async_store::create: " + c.error().to_string());
        own.emplace(std::move(*c));
        latency_note(own, false, "async, own loop thread: 4 KiB GET latency, 1,000 in flight");
    }
    run_row({"GET 8 MiB, async engine: 64 in flight into 64 buffers, 1 thread", "ours, blocking, 8 threads", 8.0 * MiB,
             1.00, large_b, async_side(true, f.large8, 0, 8 * MiB, 64), blocking_large8});
    pump.reset();
    own.reset();
    hosted.reset();
    if (selected("async memory")) {
        // 1,000 reads of 1 MiB whose sinks pause at their first bytes and
        // never resume: max_connections transfers paused (each holding
        // libcurl's receive buffer), the rest queued.
        f.upload();
        for (const std::size_t conns : {std::size_t{32}, std::size_t{256}}) {
            std::atomic<int> paused{0}, done{0}; // before the store: its destruction completes the reads
            auto st = make_async_store(f.sv, conns);
            const long idle = status_kib("VmRSS");
            constexpr int n = 1000;
            for (int i = 0; i < n; ++i)
                st.async_get_chunk(cachestore::context{}, f.small.key, 0, f.small.size,
                                   [&paused](std::span<const std::byte>, const cachestore::resume_handle&) {
                                       ++paused;
                                       return cachestore::sink_verdict::pause;
                                   },
                                   [&done](cachestore::result<>) { ++done; });
            for (int w = 0; w < 5000 && paused.load() < static_cast<int>(conns); ++w)
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            const long held = status_kib("VmRSS");
            g_meas.push_back({fmt("async: RSS per in-flight read, max_connections %.0f", static_cast<double>(conns)),
                              fmt("%.2f KiB", static_cast<double>(held - idle) / n), "",
                              fmt("1,000 reads of 1 MiB held: %.0f transfers paused, the rest queued", paused.load())});
        }
    }
}

} // namespace bench
