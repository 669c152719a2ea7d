// tests/bench/layers_rows.hpp - the rows of the layers (issue 10, docs/layers.md),
// part of bench.cpp's translation unit (included after its machinery):
//
//   - metered<store> against the same store undecorated, on the small-GET rows
//     (ratio rows, target >= 0.98);
//   - get_chunk latency behind tests/fault/fault_server.py in proxy mode,
//     stalling 5 % of requests for 200 ms before the first byte: p50, p99 and
//     p99.9 undecorated and through hedged<store> (target: p99 at most a fifth,
//     at most 10 % extra requests);
//   - with the server refusing connections: the time per call through an open
//     breaker<store> against the undecorated store's retry budget (target <= 1 ms).
#pragma once

#include "../fault/fault_process.hpp"

namespace bench {

inline void layer_ratio_rows(fixture& f) {
    if (f.sv.name != "nginx") return; // client-side costs: measured once, on nginx
    const budget small_b{g_opt.seconds, 50};
    cachestore::metered<s3::store&> m(f.st, cachestore::metered_options{"bench"});
    auto undecorated = side{1, [&f](int tid, clk::duration&) { return ours_get_small(f, tid); }};
    auto metered = side{1, [&f, &m](int tid, clk::duration&) {
                            auto& buf = f.small_bufs[static_cast<std::size_t>(tid)];
                            auto r = cachestore::get_chunk(m, f.ctx, f.small.key, f.small_off, std::span<std::byte>(buf));
                            if (!r) report_failure("metered get_chunk 4 KiB", r.error().to_string());
                            return r.has_value();
                        }};
    run_row({"GET 4 KiB, 1 thread, metered<store>", "the same store undecorated", 0, 0.98, small_b, metered, undecorated});
    run_row({"GET 4 KiB, 8 threads, metered<store>", "the same store undecorated", 0, 0.98, small_b,
             side{8, metered.op}, side{8, undecorated.op}});
    // What the other layers cost when there is nothing to do (informational).
    cachestore::breaker<s3::store&> b(f.st);
    cachestore::hedged<s3::store&> h(f.st);
    cachestore::hedge_options late;
    late.delay = std::chrono::milliseconds(50);
    cachestore::hedged<s3::store&> h_late(f.st, late);
    cachestore::metered<cachestore::breaker<cachestore::hedged<s3::store&>>> stack(
        cachestore::breaker<cachestore::hedged<s3::store&>>(cachestore::hedged<s3::store&>(f.st)));
    auto through = [&f](auto& store, const char* what) {
        return side{1, [&f, &store, what](int tid, clk::duration&) {
                        auto& buf = f.small_bufs[static_cast<std::size_t>(tid)];
                        auto r = cachestore::get_chunk(store, f.ctx, f.small.key, f.small_off, std::span<std::byte>(buf));
                        if (!r) report_failure(what, r.error().to_string());
                        return r.has_value();
                    }};
    };
    run_row({"GET 4 KiB, 1 thread, breaker<store> (closed)", "the same store undecorated", 0, 0, small_b,
             through(b, "breaker get_chunk"), undecorated});
    run_row({"GET 4 KiB, 1 thread, hedged<store>, 50 ms delay (no hedge fires)", "the same store undecorated", 0, 0,
             small_b, through(h_late, "hedged get_chunk"), undecorated});
    run_row({"GET 4 KiB, 1 thread, hedged<store>, adaptive delay", "the same store undecorated", 0, 0, small_b,
             through(h, "hedged get_chunk"), undecorated});
    {
        const auto hs = h.snapshot().get_chunk;
        std::fprintf(stderr, "bench: hedged<store>, adaptive, no stalls: %llu calls, %llu hedged, delay now %.2f ms\n",
                     static_cast<unsigned long long>(hs.calls), static_cast<unsigned long long>(hs.hedges),
                     static_cast<double>(hs.delay.count()) * 1e-6);
    }
    run_row({"GET 4 KiB, 1 thread, metered<breaker<hedged<store>>>", "the same store undecorated", 0, 0, small_b,
             through(stack, "stacked get_chunk"), undecorated});
}

/// p-th percentile (0..1) of sorted values, nearest rank.
inline double percentile(const std::vector<double>& sorted, double p) {
    if (sorted.empty()) return 0;
    const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
    return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

#if defined(CACHESTORE_BENCH_FAULT_SERVER) && defined(CACHESTORE_BENCH_PYTHON3)

/// A control request to the proxy; a failure is reported (and ends the run non-zero).
inline void proxy_control(const faultproc::fault_process& p, const char* method, const std::string& path) {
    const auto a = p.control(method, path);
    if (a.status != 200) report_failure("fault proxy " + path, "HTTP " + std::to_string(a.status) + " " + a.body);
}

inline long proxy_stat(const faultproc::fault_process& p, const std::string& name) {
    const auto a = p.control("GET", "/_fault/stats");
    const auto at = a.body.find("\"" + name + "\": ");
    if (a.status != 200 || at == std::string::npos) return -1;
    return parse_number<long>(std::string_view(a.body).substr(at + name.size() + 4), false).value_or(-1);
}

inline void layer_tail_rows(fixture& f) {
    if (f.sv.name != "nginx" || !selected("hedged")) return;
    f.upload();
    std::fprintf(stderr, "bench: hedged tail latency behind the fault proxy ...\n");
    faultproc::fault_process proxy(CACHESTORE_BENCH_PYTHON3, CACHESTORE_BENCH_FAULT_SERVER,
                                   {"--upstream", f.sv.endpoint, "--fault-rate", "0.05", "--faults", "stall",
                                    "--stall-seconds", "0.2", "--seed", "1"});
    if (proxy.port() <= 0) {
        report_failure("fault_server.py (proxy)", proxy.problem());
        return;
    }
    server psv = f.sv;
    psv.endpoint = proxy.endpoint();
    auto plain = make_store(psv);
    cachestore::hedged<s3::store> hedged(make_store(psv), cachestore::hedge_options{});
    constexpr int threads = 4;
    const long per_side = g_opt.smoke ? 40 : 4000, slice = g_opt.smoke ? 20 : 500;
    std::vector<std::vector<double>> lat_plain(threads), lat_hedged(threads);
    auto run = [&](auto& store, std::vector<std::vector<double>>* lat, long calls) {
        std::atomic<long> next{0};
        g_pool->run(threads, [&](int tid) {
            auto& buf = f.small_bufs[static_cast<std::size_t>(tid)];
            while (next.fetch_add(1) < calls) {
                const auto t0 = clk::now();
                auto r = cachestore::get_chunk(store, f.ctx, f.small.key, f.small_off, std::span<std::byte>(buf));
                const double ms = std::chrono::duration<double, std::milli>(clk::now() - t0).count();
                if (!r) report_failure("get_chunk behind the fault proxy", r.error().to_string());
                if (lat != nullptr) (*lat)[static_cast<std::size_t>(tid)].push_back(ms);
            }
        });
    };
    // Warm-up without faults: connections, and the hedged store's delay estimate.
    proxy_control(proxy, "POST", "/_fault/pause");
    run(plain, nullptr, 100);
    run(hedged, nullptr, 100);
    proxy_control(proxy, "POST", "/_fault/resume");
    const auto h0 = hedged.snapshot().get_chunk;
    long stalls_plain = 0, stalls_hedged = 0, gets_hedged = 0;
    for (long done = 0; done < per_side; done += slice) {
        for (int pass = 0; pass < 2; ++pass) {
            const bool plain_now = (pass == 0) == ((done / slice) % 2 == 0);
            proxy_control(proxy, "POST", "/_fault/stats/reset");
            if (plain_now) run(plain, &lat_plain, slice);
            else run(hedged, &lat_hedged, slice);
            (plain_now ? stalls_plain : stalls_hedged) += proxy_stat(proxy, "fault.stall");
            if (!plain_now) gets_hedged += proxy_stat(proxy, "requests.GET");
        }
    }
    const auto h1 = hedged.snapshot().get_chunk;
    auto merge = [](std::vector<std::vector<double>>& per) {
        std::vector<double> all;
        for (auto& v : per) all.insert(all.end(), v.begin(), v.end());
        std::sort(all.begin(), all.end());
        return all;
    };
    const auto p = merge(lat_plain), h = merge(lat_hedged);
    const double calls = static_cast<double>(h1.calls - h0.calls);
    const double extra = calls > 0 ? static_cast<double>(h1.hedges - h0.hedges) / calls : 0;
    const double extra_seen = calls > 0 ? (static_cast<double>(gets_hedged) - calls) / calls : 0;
    const double p99 = percentile(p, 0.99), h99 = percentile(h, 0.99);
    auto fmt3 = [](const std::vector<double>& v) {
        return fmt("p50 %.2f ms, ", percentile(v, 0.50)) + fmt("p99 %.1f ms, ", percentile(v, 0.99)) +
               fmt("p99.9 %.1f ms", percentile(v, 0.999));
    };
    const bool met = h99 <= p99 / 5 && extra <= 0.10;
    g_meas.push_back(
        {"get_chunk 4 KiB latency, " + std::to_string(threads) + " threads, " + std::to_string(per_side) +
             " calls per side, behind fault_server.py stalling 5 % of requests 200 ms before the first byte",
         "hedged<store> (adaptive delay, now " +
             fmt("%.2f ms", static_cast<double>(h1.delay.count()) * 1e-6) + "): " + fmt3(h) +
             fmt("; extra requests %.1f %%", 100 * extra) + fmt(" (the proxy saw %.1f %%)", 100 * extra_seen) +
             fmt("; second attempt won %.0f %% of its races", h1.hedges > h0.hedges
                                                             ? 100.0 * static_cast<double>(h1.hedge_wins - h0.hedge_wins) /
                                                                   static_cast<double>(h1.hedges - h0.hedges)
                                                             : 0.0),
         "undecorated: " + fmt3(p) + "; requests stalled: " + std::to_string(stalls_plain) + " undecorated, " +
             std::to_string(stalls_hedged) + " hedged",
         fmt("p99 hedged/undecorated = %.3f", p99 > 0 ? h99 / p99 : 0) + " (target <= 0.20), extra requests <= 10 %: " +
             (g_opt.smoke ? "smoke pass" : met ? "met" : "MISSED")});
}

inline void layer_breaker_rows(fixture& f) {
    if (f.sv.name != "nginx" || !selected("breaker")) return;
    std::fprintf(stderr, "bench: breaker fail-fast against refused connections ...\n");
    const int port = faultproc::refused_port();
    if (port <= 0) {
        report_failure("breaker row", "no free port");
        return;
    }
    server dead = f.sv;
    dead.endpoint = "http://127.0.0.1:" + std::to_string(port);
    auto plain = make_store(dead); // the default retry policy: 4 attempts, jittered back-off
    cachestore::breaker<s3::store> b(make_store(dead));
    auto once = [&f](auto& store) {
        std::byte out[16];
        auto r = cachestore::get_chunk(store, f.ctx, f.small.key, 0, out);
        return r ? cachestore::errc{} : r.error().code;
    };
    const int plain_calls = g_opt.smoke ? 2 : 20;
    const auto t0 = clk::now();
    for (int i = 0; i < plain_calls; ++i)
        if (once(plain) != cachestore::errc::transient) report_failure("breaker row", "the dead server did not fail transient");
    const double plain_ms = std::chrono::duration<double, std::milli>(clk::now() - t0).count() / plain_calls;
    for (int i = 0; i < 10 && b.state() != cachestore::breaker_state::open; ++i) (void)once(b);
    if (b.state() != cachestore::breaker_state::open) {
        report_failure("breaker row", "10 refused calls did not open the breaker");
        return;
    }
    const long open_calls = g_opt.smoke ? 100 : 100000;
    const auto created = b.inner().connections_created();
    const auto t1 = clk::now();
    long refused = 0;
    for (long i = 0; i < open_calls; ++i) refused += once(b) == cachestore::errc::unavailable ? 1 : 0;
    const double open_us = std::chrono::duration<double, std::micro>(clk::now() - t1).count() / static_cast<double>(open_calls);
    if (refused != open_calls || b.inner().connections_created() != created)
        report_failure("breaker row", "an open breaker let a call through");
    g_meas.push_back({"time per get_chunk with the server refusing connections (" + std::to_string(open_calls) +
                          " calls through the open breaker; " + std::to_string(plain_calls) + " undecorated)",
                      fmt("breaker<store>, open: %.2f µs per call", open_us) + " (errc::unavailable, no I/O)",
                      fmt("undecorated: %.1f ms per call", plain_ms) + " (4 attempts with jittered back-off, then transient)",
                      fmt("%.0fx faster; target <= 1 ms: ", plain_ms * 1000 / open_us) + (open_us <= 1000 ? "met" : "MISSED")});
}

#else

inline void layer_tail_rows(fixture& f) {
    if (f.sv.name == "nginx" && selected("hedged"))
        g_meas.push_back({"hedged tail latency", "n/a", "n/a", "built without python3 (fault_server.py)"});
}
inline void layer_breaker_rows(fixture& f) {
    if (f.sv.name == "nginx" && selected("breaker"))
        g_meas.push_back({"breaker fail-fast", "n/a", "n/a", "built without python3"});
}

#endif

} // namespace bench
