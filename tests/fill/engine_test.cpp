// The read-through engine (docs/fill.md) against a scripted origin, over a
// memory store and a POSIX store: one origin fetch per cold chunk however many
// readers ask, each reader on its own context, fills that outlive their
// callers, exact lengths, the origin cap and its queue timeout.
#include "cachestore/fill/engine.hpp"
#include "cachestore/fill/metrics.hpp"

#include <catch2/catch.hpp>

#include "cachestore/memory_store.hpp"
#include "cachestore/posix_store.hpp"
#include "layers/prom_check.hpp"
#include "temp_dir.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace cachestore;
using namespace std::chrono_literals;

namespace {

std::byte byte_at(std::int64_t i) { return static_cast<std::byte>((i * 131 + 7) % 251); }

/// An origin serving byte_at(i) for an object of `size` bytes, slowly if asked,
/// counting calls and the most at once; `short_by` bytes short when set.
struct scripted_origin {
    std::int64_t size = 0;
    std::chrono::milliseconds delay{0};
    std::int64_t short_by = 0;
    std::optional<errc> fails;
    int transient_first = 0; ///< the first this many calls fail `transient`
    std::atomic<int> calls{0}, in_flight{0}, peak{0};
    std::atomic<std::int64_t> bytes{0};

    result<std::size_t> get(const context& ctx, const origin_object&, std::int64_t offset, std::span<std::byte> out) {
        const int call = ++calls;
        const int now = ++in_flight;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        const auto until = std::chrono::steady_clock::now() + delay;
        while (std::chrono::steady_clock::now() < until && !ctx.stop_requested()) std::this_thread::sleep_for(1ms);
        --in_flight;
        if (fails) return fail(*fails, "origin GET", "bucket/obj", "injected");
        if (call <= transient_first) return fail(errc::transient, "origin GET", "bucket/obj", "503 Slow Down");
        const auto n = std::min<std::int64_t>(static_cast<std::int64_t>(out.size()), size - offset) - short_by;
        for (std::int64_t i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = byte_at(offset + i);
        bytes += n;
        return static_cast<std::size_t>(n);
    }
};
static_assert(fill::Origin<scripted_origin>);

origin_object object_of(std::int64_t chunk_size, std::int64_t size, const std::string& name) {
    return origin_object{"dc1", "bucket", name, "\"etag-" + name + "\"", size, chunk_size};
}

bool exact(const std::vector<std::byte>& out, std::int64_t from, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i)
        if (out[static_cast<std::size_t>(i)] != byte_at(from + i)) return false;
    return true;
}

/// Waits until the engine has no flight left (its commits done) and no fill
/// thread busy (one ends just after its flight), at most 10 s.
template <class E>
bool settled(const E& e) {
    const auto idle = [&] {
        const auto g = e.origin_gauges();
        return e.flights() == 0 && g.running == 0 && g.queued == 0;
    };
    for (int i = 0; i < 1000 && !idle(); ++i) std::this_thread::sleep_for(10ms);
    return idle();
}

template <class S>
void readers_of_one_cold_object(S& store) {
    constexpr std::int64_t cs = 8192, size = 8 * cs;
    constexpr int readers = 16;
    scripted_origin o;
    o.size = size;
    o.delay = 20ms;
    fill::engine<S, scripted_origin> e(store, o);
    const auto obj = object_of(cs, size, "one-cold-object");
    std::atomic<bool> go{false};
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    threads.reserve(readers);
    for (int t = 0; t < readers; ++t)
        threads.emplace_back([&] {
            std::vector<std::byte> out(static_cast<std::size_t>(size));
            while (!go.load()) std::this_thread::yield();
            auto r = e.read(context::with_timeout(30s), obj, 0, out);
            if (!r || r->served != size || !exact(out, 0, size)) ++wrong;
        });
    go = true;
    for (auto& t : threads) t.join();
    CHECK(wrong == 0);
    CHECK(o.calls == 8); // one origin fetch per chunk, whatever the readers
    CHECK(o.bytes == size);
    REQUIRE(settled(e));
    const auto st = e.stats();
    CHECK(st.fills_started == 8);
    CHECK(st.origin_bytes == size);
    CHECK(st.commits == 8);
    CHECK(st.commits_failed == 0);
    for (std::int64_t i = 0; i < 8; ++i) CHECK(store.stat({}, obj.chunk(i))->size == cs);
    // Warm: hits only.
    std::vector<std::byte> out(static_cast<std::size_t>(size));
    auto r = e.read({}, obj, 0, out);
    REQUIRE(r.has_value());
    CHECK(r->chunks_hit == 8);
    CHECK(o.calls == 8);
}

} // namespace

TEST_CASE("engine: 16 readers of one cold object make one origin fetch per chunk (memory store)", "[fill][engine]") {
    memory_store s;
    readers_of_one_cold_object(s);
}

TEST_CASE("engine: 16 readers of one cold object make one origin fetch per chunk (POSIX store)", "[fill][engine]") {
    const test_support::temp_dir dir("cachestore-fill-engine");
    auto s = posix_store::open(dir.path);
    REQUIRE(s.has_value());
    readers_of_one_cold_object(*s);
}

TEST_CASE("engine: a reader that leaves changes nothing for the others; the fill and its commit outlive every caller",
          "[fill][engine]") {
    memory_store s;
    constexpr std::int64_t cs = 4096;
    scripted_origin o;
    o.size = cs;
    o.delay = 2s;
    fill::engine<memory_store, scripted_origin> e(s, o);
    const auto obj = object_of(cs, cs, "leaving");
    std::stop_source leader_stop;
    std::atomic<int> leader_cancelled{0}, joiner_ok{0};
    std::thread leader([&] {
        std::vector<std::byte> out(cs);
        auto r = e.read(context(leader_stop.get_token()), obj, 0, out);
        if (!r && r.error().code == errc::cancelled) ++leader_cancelled;
    });
    while (o.calls.load() == 0) std::this_thread::sleep_for(1ms); // the leader's fill is at the origin
    std::thread joiner([&] {
        std::vector<std::byte> out(cs);
        auto r = e.read(context::with_timeout(10s), obj, 0, out);
        if (r && exact(out, 0, cs)) ++joiner_ok;
    });
    std::this_thread::sleep_for(20ms);
    const auto t0 = std::chrono::steady_clock::now();
    leader_stop.request_stop();
    leader.join();
    CHECK(std::chrono::steady_clock::now() - t0 < 1s); // at once, not when the fill ends (2 s)
    CHECK(leader_cancelled == 1);
    joiner.join();
    CHECK(joiner_ok == 1);
    CHECK(o.calls == 1);

    // Every caller gone: a second object whose only reader leaves at once.
    const auto lone = object_of(cs, cs, "lone");
    std::vector<std::byte> out(cs);
    auto r = e.read(context::with_timeout(10ms), lone, 0, out);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::deadline_exceeded);
    REQUIRE(settled(e));
    CHECK(o.calls == 2);
    CHECK(s.stat({}, lone.chunk(0))->size == cs); // committed anyway
}

TEST_CASE("engine: a short or failing origin fails every waiter, commits nothing, and is not replayed",
          "[fill][engine]") {
    memory_store s;
    constexpr std::int64_t cs = 4096;
    scripted_origin o;
    o.size = cs;
    o.delay = 50ms;
    fill::engine<memory_store, scripted_origin> e(s, o);
    for (const bool short_body : {true, false}) {
        INFO((short_body ? "short body" : "origin error"));
        const auto obj = object_of(cs, cs, short_body ? "short" : "failing");
        o.short_by = short_body ? 10 : 0;
        o.fails = short_body ? std::nullopt : std::optional<errc>(errc::auth); // final: not tried again
        const int before = o.calls.load();
        std::atomic<int> right_error{0};
        std::vector<std::thread> threads;
        threads.reserve(6);
        for (int t = 0; t < 6; ++t)
            threads.emplace_back([&] {
                std::vector<std::byte> out(cs);
                auto r = e.read(context::with_timeout(10s), obj, 0, out);
                if (!r && r.error().code == (short_body ? errc::protocol : errc::auth)) ++right_error;
            });
        for (auto& t : threads) t.join();
        CHECK(right_error == 6);
        CHECK(o.calls - before == 1);
        REQUIRE(settled(e));
        CHECK(s.stat({}, obj.chunk(0)).error().code == errc::not_found);
        // Healed origin: the next reader fills again, and gets the bytes.
        o.short_by = 0;
        o.fails.reset();
        std::vector<std::byte> out(cs);
        auto r = e.read(context::with_timeout(10s), obj, 0, out);
        REQUIRE(r.has_value());
        CHECK(exact(out, 0, cs));
        CHECK(o.calls - before == 2);
    }
    CHECK(e.stats().fills_failed == 2);
}

TEST_CASE("engine: the origin cap is never exceeded, and a fill that waits past the queue timeout is unavailable",
          "[fill][engine]") {
    memory_store s;
    constexpr std::int64_t cs = 1024, size = 8 * cs;
    scripted_origin o;
    o.size = size;
    o.delay = 1s;
    fill::engine_options opt;
    opt.origin_cap = 2;
    opt.origin_queue_timeout = 100ms;
    fill::engine<memory_store, scripted_origin> e(s, o, opt);
    const auto obj = object_of(cs, size, "capped");
    std::atomic<int> ok{0}, unavailable{0}, other{0};
    std::vector<std::thread> threads;
    threads.reserve(8);
    for (int i = 0; i < 8; ++i)
        threads.emplace_back([&, i] {
            std::vector<std::byte> out(cs);
            auto r = e.read(context::with_timeout(10s), obj, i * cs, out);
            if (r && exact(out, i * cs, cs)) ++ok;
            else if (!r && r.error().code == errc::unavailable) ++unavailable;
            else ++other;
        });
    for (auto& t : threads) t.join();
    CHECK(o.peak <= 2);
    CHECK(e.origin_peak() <= 2);
    CHECK(ok == 2); // the first two took the slots for 1 s; the other six waited 100 ms
    CHECK(unavailable == 6);
    CHECK(other == 0);
    CHECK(e.stats().origin_queue_timeouts == 6);
    const auto wait = e.snapshot().origin_queue_wait;
    CHECK(wait.count() == 8); // 2 that ran at once, 6 that waited the timeout
    CHECK(wait.quantile_bound(0.5) >= 100ms); // the six waited at least the 100 ms timeout
    CHECK(wait.sum_seconds >= 0.6);
}

TEST_CASE("engine: shutting down with fills queued and running ends every waiter", "[fill][engine]") {
    memory_store s;
    constexpr std::int64_t cs = 1024, size = 4 * cs;
    scripted_origin o;
    o.size = size;
    o.delay = 2s; // interrupted by the engine's stop token
    std::atomic<int> ended{0};
    std::vector<std::thread> threads;
    {
        fill::engine_options opt;
        opt.origin_cap = 1;
        fill::engine<memory_store, scripted_origin> e(s, o, opt);
        const auto obj = object_of(cs, size, "shutdown");
        threads.reserve(4);
        for (int i = 0; i < 4; ++i)
            threads.emplace_back([&, i] {
                std::vector<std::byte> out(cs);
                auto r = e.read(context::with_timeout(1s), obj, i * cs, out); // 1 s: none waits for the 2 s origin
                (void)r;
                ++ended;
            });
        while (o.calls.load() == 0) std::this_thread::sleep_for(1ms);
        for (auto& t : threads) t.join();
    } // the engine's destructor: the running fill sees its stop token, the queued ones end cancelled
    CHECK(ended == 4);
    CHECK(o.calls == 1);
}

TEST_CASE("engine: an origin the proxy already has, as a callable (origin_function)", "[fill][engine]") {
    memory_store s;
    constexpr std::int64_t cs = 100, size = 250;
    std::atomic<int> calls{0};
    fill::origin_function origin([&](const context&, const origin_object& obj, std::int64_t offset,
                                     std::span<std::byte> out) -> result<std::size_t> {
        ++calls;
        if (obj.object_key != "callable") return fail(errc::not_found, "origin GET", obj.object_key, "no such object");
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = byte_at(offset + static_cast<std::int64_t>(i));
        return out.size();
    });
    static_assert(fill::Origin<decltype(origin)>);
    fill::engine e(s, origin);
    std::vector<std::byte> out(120);
    auto r = e.read({}, object_of(cs, size, "callable"), 90, out); // [90, 210): chunks 0, 1 and 2 (of 50 bytes)
    REQUIRE(r.has_value());
    CHECK(r->served == 120);
    CHECK(r->chunks_missed == 3);
    CHECK(exact(out, 90, 120));
    CHECK(calls == 3);
    auto missing = e.read({}, object_of(cs, size, "missing"), 0, out);
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code == errc::not_found); // the origin's own error, unchanged
    CHECK(missing.error().path == "missing");
}

TEST_CASE("engine: a transient origin error is tried again before any waiter sees it; other errors are final",
          "[fill][engine]") {
    memory_store s;
    constexpr std::int64_t cs = 512;
    scripted_origin o;
    o.size = cs;
    fill::engine_options opt;
    opt.origin_backoff_initial = std::chrono::milliseconds(0); // no pause: the test is about counts
    fill::engine<memory_store, scripted_origin> e(s, o, opt);
    std::vector<std::byte> out(cs);
    SECTION("two 503s, then the bytes: one fill, three tries, the readers never see the 503s") {
        o.transient_first = 2;
        o.delay = 20ms;
        std::atomic<int> ok{0};
        std::vector<std::thread> threads;
        threads.reserve(4);
        for (int t = 0; t < 4; ++t)
            threads.emplace_back([&] {
                std::vector<std::byte> mine(cs);
                auto r = e.read(context::with_timeout(10s), object_of(cs, cs, "two-503s"), 0, mine);
                if (r && exact(mine, 0, cs)) ++ok;
            });
        for (auto& t : threads) t.join();
        CHECK(ok == 4);
        CHECK(o.calls == 3);
        CHECK(e.stats().origin_retries == 2);
        CHECK(e.stats().fills_started == 1);
    }
    SECTION("503s past the attempts: the last error, with the tries counted") {
        o.transient_first = 100;
        auto r = e.read({}, object_of(cs, cs, "always-503"), 0, out);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::transient);
        CHECK(r.error().attempts == 3);
        CHECK(o.calls == 3);
    }
    SECTION("not_found, auth and a wrong length are not tried again") {
        for (const errc code : {errc::not_found, errc::auth}) {
            o.fails = code;
            const int before = o.calls.load();
            auto r = e.read({}, object_of(cs, cs, std::string("final-") + std::string(to_string(code))), 0, out);
            REQUIRE_FALSE(r.has_value());
            CHECK(r.error().code == code);
            CHECK(o.calls - before == 1);
        }
        o.fails.reset();
        o.short_by = 1;
        auto r = e.read({}, object_of(cs, cs, "short-once"), 0, out);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::protocol);
        CHECK(e.stats().origin_retries == 0);
    }
}

TEST_CASE("engine: no try starts after the retry budget", "[fill][engine]") {
    memory_store s;
    constexpr std::int64_t cs = 512;
    scripted_origin o;
    o.size = cs;
    o.transient_first = 100;
    o.delay = 60ms;
    fill::engine_options opt;
    opt.origin_attempts = 100;
    opt.origin_backoff_initial = std::chrono::milliseconds(0);
    opt.origin_retry_budget = std::chrono::milliseconds(1000);
    fill::engine<memory_store, scripted_origin> e(s, o, opt);
    std::vector<std::byte> out(cs);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = e.read(context::with_timeout(10s), object_of(cs, cs, "budget"), 0, out);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::transient);
    CHECK(o.calls >= 2);
    CHECK(o.calls <= 17); // a try takes at least 60 ms: at most 17 start within the 1 s budget
    CHECK(std::chrono::steady_clock::now() - t0 < 3s); // the budget, not 100 attempts (6 s)
}

namespace {

/// Collects what a stream delivers; stops after `stop_after` bytes when set.
struct collector {
    std::vector<std::byte> got;
    std::int64_t stop_after = -1;
    bool operator()(std::span<const std::byte> b) {
        got.insert(got.end(), b.begin(), b.end());
        return stop_after < 0 || static_cast<std::int64_t>(got.size()) < stop_after;
    }
};

bool exact_bytes(const std::vector<std::byte>& got, std::int64_t from) {
    for (std::size_t i = 0; i < got.size(); ++i)
        if (got[i] != byte_at(from + static_cast<std::int64_t>(i))) return false;
    return true;
}

/// A memory store with the faults a test turns on: commits that take
/// `commit`; a get_chunk of chunk `break_index` that delivers half the bytes
/// asked for, then fails `transient` (a store connection reset midway).
struct test_store {
    memory_store inner;
    std::chrono::milliseconds commit{0};
    std::int64_t break_index = -1;
    template <class Sink>
    result<> get_chunk(const context& ctx, const chunk_key& k, std::int64_t off, std::int64_t n, Sink&& sink) {
        if (k.index != break_index) return inner.get_chunk(ctx, k, off, n, std::forward<Sink>(sink));
        std::vector<std::byte> all(static_cast<std::size_t>(n));
        if (auto r = cachestore::get_chunk(inner, ctx, k, off, std::span<std::byte>(all)); !r) return r;
        if (!sink(std::span<const std::byte>(all).first(all.size() / 2)))
            return fail(errc::cancelled, "get_chunk", {}, "sink");
        return fail(errc::transient, "get_chunk", {}, "connection reset midway");
    }
    template <class Src>
    result<> put_chunk(const context& ctx, const chunk_key& k, std::int64_t size, Src&& src) {
        const auto until = std::chrono::steady_clock::now() + commit;
        while (std::chrono::steady_clock::now() < until && !ctx.stop_requested()) std::this_thread::sleep_for(1ms);
        return inner.put_chunk(ctx, k, size, std::forward<Src>(src));
    }
    result<info> stat(const context& ctx, const chunk_key& k) { return inner.stat(ctx, k); }
    result<> remove(const context& ctx, const chunk_key& k) { return inner.remove(ctx, k); }
    result<> self_test(const context& ctx) { return inner.self_test(ctx); }
};
static_assert(CacheStore<test_store>);

} // namespace

TEST_CASE("engine: stream delivers every range in order, each byte once, cold and warm, at every read-ahead",
          "[fill][engine][stream]") {
    constexpr std::int64_t cs = 64, size = 4 * cs + 8; // chunks 0..3 of 64 bytes, chunk 4 of 8
    const std::vector<std::pair<std::int64_t, std::int64_t>> ranges = {
        {0, size}, {0, 1}, {63, 2}, {64, 64}, {100, 200}, {255, 9}, {256, 8}, {263, 1}, {0, size + 100}, {200, 1000}};
    for (const std::int64_t ra : {0, 1, 8}) {
        memory_store s;
        scripted_origin o;
        o.size = size;
        fill::engine_options opt;
        opt.readahead = ra;
        fill::engine<memory_store, scripted_origin> e(s, o, opt);
        int n = 0;
        for (const auto& [off, len] : ranges) {
            for (int pass = 0; pass < 2; ++pass) { // a new (cold) object, then the same (warm)
                INFO("readahead " << ra << ", range [" << off << ", +" << len << "), pass " << pass);
                const auto obj = object_of(cs, size, "stream-" + std::to_string(ra) + "-" + std::to_string(n));
                if (pass == 1) REQUIRE(settled(e)); // the first pass's commits have landed
                const int calls_before = o.calls.load();
                collector c;
                auto r = e.stream(context::with_timeout(10s), obj, off, len, c);
                REQUIRE(r.has_value());
                const std::int64_t want = std::max<std::int64_t>(0, std::min(len, size - off));
                CHECK(r->served == want);
                CHECK(static_cast<std::int64_t>(c.got.size()) == want);
                CHECK(exact_bytes(c.got, off));
                if (pass == 1) {
                    CHECK(r->chunks_missed == 0);
                    CHECK(o.calls == calls_before);
                }
            }
            ++n;
        }
        CHECK(settled(e));
    }
    // Past the end: nothing, and no origin call.
    memory_store s;
    scripted_origin o;
    o.size = size;
    fill::engine<memory_store, scripted_origin> e(s, o);
    collector c;
    auto r = e.stream({}, object_of(cs, size, "past"), size, 10, c);
    REQUIRE(r.has_value());
    CHECK(r->served == 0);
    CHECK(c.got.empty());
    CHECK(o.calls == 0);
}

TEST_CASE("engine: stream keeps readahead chunks in flight, under the origin cap", "[fill][engine][stream]") {
    constexpr std::int64_t cs = 1024, size = 8 * cs;
    for (const std::int64_t ra : {0, 8}) {
        INFO("readahead " << ra);
        memory_store s;
        scripted_origin o;
        o.size = size;
        o.delay = 50ms;
        fill::engine_options opt;
        opt.readahead = ra;
        opt.origin_cap = 4;
        fill::engine<memory_store, scripted_origin> e(s, o, opt);
        collector c;
        auto r = e.stream(context::with_timeout(10s), object_of(cs, size, "ahead"), 0, size, c);
        REQUIRE(r.has_value());
        CHECK(exact_bytes(c.got, 0));
        CHECK(o.calls == 8);
        if (ra == 0) CHECK(o.peak == 1);
        else CHECK(o.peak > 1);
        CHECK(o.peak <= 4); // the cap holds for read-ahead too
    }
}

TEST_CASE("engine: stream's first chunk is resolved before any byte goes out; a later failure ends it after a prefix",
          "[fill][engine][stream]") {
    constexpr std::int64_t cs = 256, size = 3 * cs;
    memory_store s;
    scripted_origin o;
    o.size = size;
    o.fails = errc::auth;
    fill::engine_options opt;
    opt.readahead = 0;
    fill::engine<memory_store, scripted_origin> e(s, o, opt);
    collector c;
    auto r = e.stream({}, object_of(cs, size, "first-fails"), 10, size, c);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::auth);
    CHECK(c.got.empty()); // a proxy can still answer with an error status
    // Chunk 0 stored, the origin failing for the rest: the prefix, then the error.
    const auto obj = object_of(cs, size, "later-fails");
    o.fails.reset();
    std::vector<std::byte> out(cs);
    REQUIRE(e.read({}, obj, 0, out).has_value());
    o.fails = errc::auth;
    collector c2;
    r = e.stream({}, obj, 10, size, c2);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::auth);
    CHECK(c2.got.size() == cs - 10);
    CHECK(exact_bytes(c2.got, 10));
}

TEST_CASE("engine: a sink that stops ends the stream cancelled; the fills it started still commit",
          "[fill][engine][stream]") {
    constexpr std::int64_t cs = 256, size = 6 * cs;
    memory_store s;
    scripted_origin o;
    o.size = size;
    o.delay = 10ms;
    fill::engine<memory_store, scripted_origin> e(s, o);
    const auto obj = object_of(cs, size, "sink-stops");
    collector c;
    c.stop_after = cs + 1; // inside chunk 1
    auto r = e.stream(context::with_timeout(10s), obj, 0, size, c);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::cancelled);
    CHECK(exact_bytes(c.got, 0));
    REQUIRE(settled(e));
    for (std::int64_t i = 0; i < 6; ++i) CHECK(s.stat({}, obj.chunk(i))->size == cs); // read-ahead had started them all
    CHECK(o.calls == 6);
}

TEST_CASE("engine: a store that fails midway through a chunk: the rest comes from the origin, no byte twice",
          "[fill][engine][stream]") {
    constexpr std::int64_t cs = 256, size = 4 * cs;
    test_store s;
    s.break_index = 2;
    scripted_origin o;
    o.size = size;
    fill::engine<test_store, scripted_origin> e(s, o);
    const auto obj = object_of(cs, size, "midway");
    std::vector<std::byte> out(size);
    REQUIRE(e.read({}, obj, 0, out).has_value()); // all four stored (the span read fills chunk 2 from the origin)
    REQUIRE(settled(e));
    const int before = o.calls.load();
    collector c;
    auto r = e.stream({}, obj, 0, size, c);
    REQUIRE(r.has_value());
    CHECK(static_cast<std::int64_t>(c.got.size()) == size);
    CHECK(exact_bytes(c.got, 0));
    CHECK(r->chunks_hit == 3);
    CHECK(r->chunks_missed == 1);
    CHECK(r->store_errors == 1);
    CHECK(o.calls - before == 1);
}


TEST_CASE("engine: commits wait on a bounded queue; one that does not fit is dropped, never a reader's wait (R7)",
          "[fill][engine]") {
    constexpr std::int64_t cs = 4096, size = 6 * cs;
    test_store s;
    s.commit = 1s;
    scripted_origin o;
    o.size = size;
    fill::engine_options opt;
    opt.commit_queue_bytes = 2 * cs; // the running commit's chunk counts until it is done
    fill::engine<test_store, scripted_origin> e(s, o, opt);
    const auto obj = object_of(cs, size, "queued");
    std::vector<std::byte> out(size);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = e.read(context::with_timeout(10s), obj, 0, out);
    const auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE(r.has_value());
    CHECK(exact(out, 0, size));
    CHECK(took < 1s); // no reader waits for a commit (each takes 1 s): the counts below rely on it
    REQUIRE(settled(e));
    const auto st = e.stats();
    CHECK(st.commits == 2); // the first two to finish their fill fitted; the others came while both were queued or running
    CHECK(st.commits_dropped == 4);
    int stored = 0;
    for (std::int64_t i = 0; i < 6; ++i) {
        auto info = s.stat({}, obj.chunk(i));
        if (info && info->size == cs) ++stored;
        else CHECK(info.error().code == errc::not_found);
    }
    CHECK(stored == 2);
    // The next read fills the dropped ones again (one origin fetch each), and commits them as room allows.
    const int before = o.calls.load();
    REQUIRE(e.read(context::with_timeout(10s), obj, 0, out).has_value());
    CHECK(o.calls - before == 4);
    CHECK(exact(out, 0, size));
}

TEST_CASE("engine: commit_queue_bytes 0 commits on the fill's thread, every chunk", "[fill][engine]") {
    constexpr std::int64_t cs = 4096, size = 4 * cs;
    test_store s;
    s.commit = 20ms;
    scripted_origin o;
    o.size = size;
    fill::engine_options opt;
    opt.commit_queue_bytes = 0;
    fill::engine<test_store, scripted_origin> e(s, o, opt);
    const auto obj = object_of(cs, size, "inline");
    std::vector<std::byte> out(size);
    REQUIRE(e.read(context::with_timeout(10s), obj, 0, out).has_value());
    REQUIRE(settled(e));
    CHECK(e.stats().commits == 4);
    CHECK(e.stats().commits_dropped == 0);
    for (std::int64_t i = 0; i < 4; ++i) CHECK(s.stat({}, obj.chunk(i))->size == cs);
}

TEST_CASE("engine: its metrics in the Prometheus text parse back and agree with its counters", "[fill][engine][prometheus]") {
    constexpr std::int64_t cs = 512, size = 4 * cs;
    memory_store s;
    scripted_origin o;
    o.size = size;
    fill::engine_options opt;
    opt.name = "edge \"1\"";
    opt.origin_backoff_initial = std::chrono::milliseconds(0);
    fill::engine<memory_store, scripted_origin> e(s, o, opt);
    std::vector<std::byte> out(size);
    REQUIRE(e.read({}, object_of(cs, size, "metrics"), 0, out).has_value()); // 4 fills
    o.fails = errc::auth;
    REQUIRE_FALSE(e.read({}, object_of(cs, size, "metrics-denied"), 0, out).has_value()); // 1 fill fails: auth
    REQUIRE(settled(e));
    const auto snap = e.snapshot();
    std::string text;
    fill::write_prometheus(text, snap);
    INFO(text);
    const auto p = layertest::parse_prometheus(text);
    for (const auto& problem : p.problems) FAIL_CHECK(problem);
    const std::map<std::string, std::string> l{{"engine", "edge \"1\""}};
    auto with = [&](const char* k, const char* v) {
        auto m = l;
        m[k] = v;
        return m;
    };
    CHECK(p.value("cachestore_fill_started_total", l) == 5);
    CHECK(p.value("cachestore_fill_joined_total", l) == 0);
    CHECK(p.value("cachestore_fill_origin_bytes_total", l) == size);
    CHECK(p.value("cachestore_fill_failed_total", with("class", "auth")) == 1);
    CHECK(p.value("cachestore_fill_failed_total", with("class", "transient")) == 0);
    CHECK(p.value("cachestore_fill_commits_total", with("outcome", "ok")) == 4);
    CHECK(p.value("cachestore_fill_commits_total", with("outcome", "dropped")) == 0);
    CHECK(p.value("cachestore_fill_flights", l) == 0);
    CHECK(p.value("cachestore_fill_origin_inflight", l) == 0);
    CHECK(p.value("cachestore_fill_commit_queue_bytes", l) == 0);
    CHECK(p.value("cachestore_fill_origin_queue_wait_seconds_count", l) == 5); // every fill waited for a slot, if briefly
    CHECK(p.value("cachestore_fill_origin_queue_wait_seconds_bucket", with("le", "+Inf")) == 5);
    CHECK(snap.origin_queue_wait.count() == 5);
    CHECK(snap.stats.fills_failed == 1);
}

TEST_CASE("engine: a chunk stored shorter than expected is served from the origin and replaced", "[fill][engine]") {
    constexpr std::int64_t cs = 1024, size = 3 * cs;
    memory_store s;
    scripted_origin o;
    o.size = size;
    fill::engine<memory_store, scripted_origin> e(s, o);
    const auto obj = object_of(cs, size, "damaged");
    // Chunk 1 committed under a wrong object size: 100 bytes where 1024 belong.
    std::vector<std::byte> short_bytes(100);
    for (std::int64_t i = 0; i < 100; ++i) short_bytes[static_cast<std::size_t>(i)] = byte_at(cs + i);
    REQUIRE(s.put_chunk({}, obj.chunk(1), 100, std::span<const std::byte>(short_bytes)).has_value());
    for (const bool streamed : {false, true}) {
        INFO((streamed ? "stream" : "read"));
        std::vector<std::byte> out(static_cast<std::size_t>(size));
        if (streamed) {
            out.clear();
            auto r = e.stream({}, obj, 0, size, [&](std::span<const std::byte> b) {
                out.insert(out.end(), b.begin(), b.end());
                return true;
            });
            REQUIRE(r.has_value());
        } else {
            REQUIRE(e.read({}, obj, 0, out).has_value());
        }
        CHECK(out.size() == static_cast<std::size_t>(size));
        CHECK(exact(out, 0, size));
        REQUIRE(settled(e));
        CHECK(s.stat({}, obj.chunk(1))->size == cs); // replaced by the first read; the second finds it whole
    }
    CHECK(e.stats().damaged_removed == 1);
    CHECK(o.calls == 3); // chunks 0, 2 and the damaged 1, once each
}
