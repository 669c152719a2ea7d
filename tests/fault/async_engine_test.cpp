// The S3 driver's async engine (s3::async_store, docs/async.md) against the
// fault server: what the fault matrix (run through it as
// fault-injection-async) cannot show. Many operations on one loop thread over
// bounded connections; a store destroyed with 100 operations in every state;
// pausing sinks; throwing sinks and completions; the rules (never inline, on
// the loop thread, exactly once); argument errors; resume() after the end.
#include "fault_harness.hpp"

#include <algorithm>
#include <condition_variable>
#include <future>
#include <set>

#include "../async/pause_cases.hpp"
#include "cachestore/async/waiting.hpp"
#include "cachestore/s3/async.hpp"

using namespace fault_harness;

namespace {

thread_local bool initiating = false; // true while this thread is inside an initiating call

s3::async_store open_async(const s3::config& cfg, s3::async_options o = {}) {
    auto a = s3::async_store::create(cfg, std::move(o));
    INFO((a ? std::string() : a.error().to_string()));
    REQUIRE(a.has_value());
    return std::move(*a);
}

/// Counts completions per operation and what they were called with.
struct tally {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<int> calls;
    std::vector<errc> codes;
    std::size_t done = 0;
    int inline_calls = 0;
    std::set<std::thread::id> threads;

    explicit tally(std::size_t n) : calls(n, 0), codes(n, errc::io_error) {}
    template <class T>
    void record(std::size_t i, const result<T>& r) {
        const std::lock_guard lock(mu);
        if (initiating) ++inline_calls;
        threads.insert(std::this_thread::get_id());
        ++calls[i];
        codes[i] = r ? errc{} : r.error().code;
        ++done;
        cv.notify_all();
    }
    bool wait_all(std::chrono::milliseconds limit) {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, limit, [&] { return done >= calls.size(); });
    }
};

} // namespace

static_assert(AsyncCacheStore<s3::async_store>);

TEST_CASE("async engine: 300 reads in flight on one loop thread, exact, over bounded connections", "[async]") {
    scenario sc(1 * MiB);
    std::size_t max_fds = 0;
    {
        s3::async_store a = open_async(sc.cfg, {.max_connections = 6});
        constexpr std::size_t n = 300;
        tally t(n);
        std::vector<checking_sink> sinks(n);
        const std::size_t fds_before = count_dir("/proc/self/fd");
        for (std::size_t i = 0; i < n; ++i) {
            const std::int64_t off = static_cast<std::int64_t>(i * 2999 % (std::size_t{512} * 1024));
            sinks[i] = checking_sink{std::span<const std::byte>(sc.data), off};
            initiating = true;
            a.async_get_chunk(context::with_timeout(20s), sc.key, off, 64 * KiB,
                              [&s = sinks[i]](std::span<const std::byte> b) { return s(b); },
                              [&t, i](result<> r) { t.record(i, r); });
            initiating = false;
        }
        while (!t.wait_all(5ms)) max_fds = std::max(max_fds, count_dir("/proc/self/fd") - fds_before);
        CHECK(t.inline_calls == 0);
        CHECK(t.threads.size() == 1); // every completion on the loop thread
        for (std::size_t i = 0; i < n; ++i) {
            INFO(i);
            CHECK(t.calls[i] == 1);
            CHECK(t.codes[i] == errc{});
            CHECK(sinks[i].received == 64 * KiB);
            CHECK_FALSE(sinks[i].wrong);
        }
        CHECK(a.stats().in_flight == 0);
        CHECK(a.stats().transfers == n);
    }
    // The bound holds on the wire: at most 6 sockets at once (an eventfd and
    // an epoll descriptor are the engine's own, made before the count).
    CHECK(max_fds <= 6);
    CHECK(sc.log("GET").size() == 300);
    sc.finish();
}

TEST_CASE("async engine: destroyed with 100 operations in flight, each completes once with cancelled", "[async]") {
    scenario sc(256 * KiB);
    sc.cfg.retry.base_delay = 5000ms; // a failed attempt waits in back-off
    sc.cfg.retry.max_delay = 5000ms;
    sc.cfg.retry.max_attempts = 5;
    sc.open();
    chunk_key other = sc.key; // read by the pausing sinks: not stalled
    other.object_key += "-other";
    REQUIRE(sc.store().put_chunk(context::with_timeout(10s), other, 256 * KiB, std::span<const std::byte>(sc.data)));
    constexpr std::size_t n = 100, pausing = 4;
    tally t(n);
    std::vector<resume_handle> paused;
    std::mutex pmu;
    std::condition_variable pcv;
    {
        s3::async_store a = open_async(sc.cfg, {.max_connections = 8});
        // Paused by their sinks (4 slots), then stalled GETs and DELETEs,
        // HEADs in back-off after a 503, and the rest queued for the other 4.
        script(json::array({sc.rule("GET", "stall", "always", {{"seconds", 5}}),
                            sc.rule("DELETE", "stall", "always", {{"seconds", 5}, {"phase", "status"}}),
                            sc.rule("HEAD", "status", "always", {{"status", 503}, {"code", "SlowDown"}})}));
        for (std::size_t i = 0; i < pausing; ++i)
            a.async_get_chunk(context::with_timeout(30s), other, 0, 256 * KiB,
                              [&](std::span<const std::byte>, const resume_handle& h) {
                                  const std::lock_guard lock(pmu);
                                  paused.push_back(h);
                                  pcv.notify_all();
                                  return sink_verdict::pause;
                              },
                              [&t, i](result<> r) { t.record(i, r); });
        {
            std::unique_lock lock(pmu);
            REQUIRE(pcv.wait_for(lock, 5s, [&] { return paused.size() >= pausing; }));
        }
        for (std::size_t i = pausing; i < n; ++i) {
            const auto ctx = context::with_timeout(30s);
            auto done = [&t, i](auto r) { t.record(i, r); };
            switch (i % 3) {
            case 0:
                a.async_get_chunk(ctx, sc.key, 0, 1000, [](std::span<const std::byte>) { return true; }, done);
                break;
            case 1:
                a.async_stat(ctx, sc.key, done);
                break;
            default:
                a.async_remove(ctx, sc.key, done);
                break;
            }
        }
        std::this_thread::sleep_for(300ms);
        CHECK(t.done == 0);
        CHECK(a.stats().in_flight == n);
    } // destroyed here
    REQUIRE(t.wait_all(0ms));
    for (std::size_t i = 0; i < n; ++i) {
        INFO(i);
        CHECK(t.calls[i] == 1);
        CHECK(t.codes[i] == errc::cancelled);
    }
    {
        const std::lock_guard lock(pmu);
        for (auto& h : paused) h.resume(); // the store is gone: nothing happens
    }
    sc.finish(); // every descriptor and thread of the engine is gone
}

TEST_CASE("async engine: a pausing sink gets every byte once; deadline and stop end a pause", "[async][pause]") {
    scenario sc(1 * MiB);
    s3::async_store a = open_async(sc.cfg);
    SECTION("resumed from another thread after each 64 KiB") {
        std::vector<std::byte> got;
        std::atomic<int> calls_while_paused{0};
        std::atomic<bool> is_paused{false};
        std::size_t largest = 0; // a pausing sink's transfer gets the small receive buffer
        std::vector<std::jthread> resumers;
        std::mutex mu;
        std::promise<result<>> p;
        a.async_get_chunk(
            context::with_timeout(20s), sc.key, 3, 1 * MiB - 3,
            [&](std::span<const std::byte> b, const resume_handle& h) {
                if (is_paused.load()) ++calls_while_paused;
                largest = std::max(largest, b.size());
                const std::size_t before = got.size();
                got.insert(got.end(), b.begin(), b.end());
                if (before / (64 * KiB) == got.size() / (64 * KiB)) return sink_verdict::proceed;
                is_paused = true;
                const std::lock_guard lock(mu);
                resumers.emplace_back([h, &is_paused] {
                    std::this_thread::sleep_for(20ms);
                    is_paused = false;
                    h.resume();
                });
                return sink_verdict::pause;
            },
            [&](result<> r) { p.set_value(std::move(r)); });
        auto r = p.get_future().get();
        INFO(r);
        REQUIRE(r.has_value());
        CHECK(calls_while_paused.load() == 0);
        CHECK(largest <= static_cast<std::size_t>(CURL_MAX_WRITE_SIZE));
        REQUIRE(got.size() == sc.data.size() - 3);
        CHECK(std::memcmp(got.data(), sc.data.data() + 3, got.size()) == 0);
        const std::lock_guard lock(mu);
        resumers.clear();
    }
    SECTION("a stale handle's resume() wakes no later pause") {
        pause_cases::stale_handle_resumes_nothing(a, sc.key, static_cast<std::int64_t>(sc.data.size()));
    }
    SECTION("the deadline passes while paused") {
        std::promise<result<>> p;
        const auto ctx = context::with_timeout(300ms);
        a.async_get_chunk(ctx, sc.key, 0, 1 * MiB,
                          [](std::span<const std::byte>, const resume_handle&) { return sink_verdict::pause; },
                          [&](result<> r) { p.set_value(std::move(r)); });
        auto r = p.get_future().get();
        const double late = std::chrono::duration<double, std::milli>(sclock::now() - ctx.deadline()).count();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::deadline_exceeded);
        CHECK(late < 100.0);
    }
    SECTION("a stop request while paused") {
        std::promise<result<>> p;
        std::stop_source stop;
        a.async_get_chunk(context(stop.get_token(), sclock::now() + 20s), sc.key, 0, 1 * MiB,
                          [](std::span<const std::byte>, const resume_handle&) { return sink_verdict::pause; },
                          [&](result<> r) { p.set_value(std::move(r)); });
        std::this_thread::sleep_for(100ms);
        const auto t0 = sclock::now();
        stop.request_stop();
        auto r = p.get_future().get();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::cancelled);
        CHECK(ms_since(t0) < 100.0);
    }
}

TEST_CASE("async engine: throwing sinks and completions reach the hook; the loop keeps running", "[async][throw]") {
    scenario sc;
    std::atomic<int> hooked{0};
    s3::async_store a = open_async(sc.cfg, {.on_callback_exception = [&](const std::exception_ptr&) { ++hooked; }});
    {
        std::promise<result<>> p;
        a.async_get_chunk(
            context::with_timeout(10s), sc.key, 0, 100000,
            [](std::span<const std::byte>) -> bool { throw std::runtime_error("sink"); },
            [&](result<> r) { p.set_value(std::move(r)); });
        auto r = p.get_future().get();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::cancelled);
    }
    {
        std::promise<void> ran;
        a.async_stat(context::with_timeout(10s), sc.key, [&](result<info>) {
            ran.set_value();
            throw std::runtime_error("completion");
        });
        ran.get_future().get();
    }
    waiting<s3::async_store&> w(a);
    auto st = w.stat(context::with_timeout(10s), sc.key); // the loop still runs
    REQUIRE(st.has_value());
    CHECK(st->size == static_cast<std::int64_t>(sc.data.size()));
    CHECK(hooked.load() == 2);
    CHECK(a.stats().callback_exceptions == 2);
}

TEST_CASE("async engine: argument errors complete later, never inline", "[async][args]") {
    scenario sc;
    s3::async_store a = open_async(sc.cfg);
    tally t(4);
    initiating = true;
    a.async_get_chunk({}, sc.key, -1, 10, [](std::span<const std::byte>) { return true; },
                      [&](result<> r) { t.record(0, r); });
    a.async_get_chunk({}, sc.key, 0, sc.key.chunk_size + 1, [](std::span<const std::byte>) { return true; },
                      [&](result<> r) { t.record(1, r); });
    chunk_key bad = sc.key;
    bad.chunk_size = 0;
    a.async_stat({}, bad, [&](result<info> r) { t.record(2, r); });
    a.async_remove({}, bad, [&](result<> r) { t.record(3, r); });
    initiating = false;
    REQUIRE(t.wait_all(5000ms));
    CHECK(t.inline_calls == 0);
    CHECK(t.codes[0] == errc::invalid_argument);
    CHECK(t.codes[1] == errc::out_of_range);
    CHECK(t.codes[2] == errc::invalid_argument);
    CHECK(t.codes[3] == errc::invalid_argument);
}

TEST_CASE("async engine: waiting<> inside a completion refuses rather than deadlock", "[async]") {
    scenario sc;
    s3::async_store a = open_async(sc.cfg);
    std::promise<result<info>> p;
    a.post([&] {
        CHECK(a.on_own_thread());
        p.set_value(waiting<s3::async_store&>(a).stat({}, sc.key));
    });
    auto r = p.get_future().get();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::misconfigured);
    CHECK_FALSE(a.on_own_thread());
}
