// Singleflight (docs/fill.md R1-R5): one leader per key, each waiter on its
// own context, exactly the fill's outcome to every waiter, no replayed error.
#include "cachestore/fill/detail/flight.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace cachestore;
using namespace std::chrono_literals;
using bytes_ptr = std::shared_ptr<const std::vector<std::byte>>;
using table = fill::detail::flight_table<bytes_ptr>;

namespace {

bytes_ptr make_bytes(std::size_t n, std::byte v) { return std::make_shared<const std::vector<std::byte>>(n, v); }

/// Gives the waiters time to block in wait() (there is no hook inside it;
/// no assertion depends on their having reached it). Catch2's assertions are
/// made on the main thread only: threads count into atomics.
void settle() { std::this_thread::sleep_for(20ms); }

} // namespace

TEST_CASE("flight: one leader per key; every joiner gets the leader's bytes, the same buffer", "[fill][flight]") {
    table t;
    constexpr int callers = 16;
    std::atomic<int> leaders{0};
    std::vector<bytes_ptr> got(callers);
    std::vector<std::thread> threads;
    std::atomic<bool> go{false};
    std::shared_ptr<fill::detail::flight<bytes_ptr>> led;
    std::atomic<bool> led_ready{false};
    std::atomic<int> joined{0};
    threads.reserve(callers);
    for (int i = 0; i < callers; ++i)
        threads.emplace_back([&, i] {
            while (!go.load()) std::this_thread::yield();
            auto tk = t.join("origin/ab/cd/0");
            if (tk.leader) {
                ++leaders;
                led = tk.f;
                led_ready = true;
            }
            ++joined;
            auto r = tk.f->wait({}, "get", "origin/ab/cd/0");
            if (r) got[static_cast<std::size_t>(i)] = *r;
        });
    go = true;
    // Every caller has joined before the flight ends (one joining after it
    // would lead a new flight that nobody ends).
    while (joined.load() < callers) std::this_thread::yield();
    REQUIRE(led_ready.load());
    settle();
    CHECK(t.size() == 1);
    const auto bytes = make_bytes(1000, std::byte{7});
    t.finish("origin/ab/cd/0", led, bytes);
    for (auto& th : threads) th.join();
    CHECK(leaders == 1);
    for (const auto& g : got) CHECK(g == bytes); // one buffer, shared
    CHECK(t.size() == 0);
}

TEST_CASE("flight: different keys fly apart", "[fill][flight]") {
    table t;
    auto a = t.join("a");
    auto b = t.join("b");
    auto a2 = t.join("a");
    CHECK(a.leader);
    CHECK(b.leader);
    CHECK_FALSE(a2.leader);
    CHECK(a2.f == a.f);
    CHECK(t.size() == 2);
    t.finish("a", a.f, make_bytes(1, std::byte{1}));
    t.finish("b", b.f, make_bytes(1, std::byte{2}));
    CHECK((*a2.f->wait({}, "get", "a"))->front() == std::byte{1});
    CHECK(t.size() == 0);
}

TEST_CASE("flight: a waiter whose context ends leaves alone; the others get the outcome", "[fill][flight]") {
    table t;
    auto lead = t.join("k");
    REQUIRE(lead.leader);
    std::stop_source cancel;
    std::atomic<int> cancelled_ok{0}, deadline_ok{0}, served{0}, joined{0};
    std::vector<std::thread> threads;
    threads.reserve(6);
    threads.emplace_back([&] { // cancelled through its stop token
        auto tk = t.join("k");
        ++joined;
        const auto t0 = std::chrono::steady_clock::now();
        auto r = tk.f->wait(context(cancel.get_token()), "get", "k");
        if (!r && r.error().code == errc::cancelled && std::chrono::steady_clock::now() - t0 < 2s) ++cancelled_ok;
    });
    threads.emplace_back([&] { // its deadline passes
        auto tk = t.join("k");
        ++joined;
        const auto t0 = std::chrono::steady_clock::now();
        auto r = tk.f->wait(context::with_timeout(50ms), "get", "k");
        const auto took = std::chrono::steady_clock::now() - t0;
        if (!r && r.error().code == errc::deadline_exceeded && took >= 50ms && took < 2s) ++deadline_ok;
    });
    for (int i = 0; i < 4; ++i)
        threads.emplace_back([&] {
            auto tk = t.join("k");
            ++joined;
            auto r = tk.f->wait(context::with_timeout(30s), "get", "k");
            if (r && (*r)->size() == 10) ++served;
        });
    while (joined.load() < 6) std::this_thread::yield(); // all in the flight before it ends
    settle();
    cancel.request_stop();
    threads[0].join();
    threads[1].join();
    CHECK(cancelled_ok == 1);
    CHECK(deadline_ok == 1);
    CHECK(served == 0);  // nothing published yet
    CHECK(t.size() == 1); // the flight goes on
    t.finish("k", lead.f, make_bytes(10, std::byte{3}));
    for (std::size_t i = 2; i < threads.size(); ++i) threads[i].join();
    CHECK(served == 4);
}

TEST_CASE("flight: an error reaches every waiter and is never replayed to a later caller", "[fill][flight]") {
    table t;
    auto lead = t.join("k");
    std::vector<std::thread> threads;
    threads.reserve(4);
    std::atomic<int> saw_error{0}, joined{0};
    for (int i = 0; i < 4; ++i)
        threads.emplace_back([&] {
            auto tk = t.join("k");
            ++joined;
            auto r = tk.f->wait({}, "get", "k");
            if (!r && r.error().code == errc::transient && r.error().message == "503 Slow Down") ++saw_error;
        });
    while (joined.load() < 4) std::this_thread::yield(); // all in the flight before it ends
    settle();
    t.finish("k", lead.f, fail(errc::transient, "origin GET", "b/k", "503 Slow Down"));
    for (auto& th : threads) th.join();
    CHECK(saw_error == 4);
    // Out of the table before the waiters were released: the next caller leads a new fill.
    auto next = t.join("k");
    CHECK(next.leader);
    CHECK(next.f != lead.f);
    t.finish("k", next.f, make_bytes(2, std::byte{9}));
    CHECK((*next.f->wait({}, "get", "k"))->size() == 2);
}

TEST_CASE("flight: a caller that joins after the outcome and before it is collected still gets it", "[fill][flight]") {
    table t;
    auto lead = t.join("k");
    auto late = t.join("k"); // joined, not yet waiting
    t.finish("k", lead.f, make_bytes(4, std::byte{5}));
    auto r = late.f->wait(context::with_timeout(1ms), "get", "k"); // published: no wait, deadline irrelevant
    REQUIRE(r.has_value());
    CHECK((*r)->size() == 4);
    // A context that has already ended still collects a published outcome.
    std::stop_source s;
    s.request_stop();
    CHECK(late.f->wait(context(s.get_token()), "get", "k").has_value());
}

TEST_CASE("flight: publish is once; on_done runs once, now or at publish", "[fill][flight]") {
    fill::detail::flight<int> f;
    std::atomic<int> calls{0}, seen{0};
    f.on_done([&](const result<int>& r) {
        ++calls;
        seen = r ? *r : -1;
    });
    CHECK(calls == 0);
    CHECK_FALSE(f.peek().has_value());
    f.publish(42);
    f.publish(43); // ignored
    CHECK(calls == 1);
    CHECK(seen == 42);
    f.on_done([&](const result<int>& r) { seen = r ? *r + 1 : -1; }); // already published: runs now
    CHECK(seen == 43);
    REQUIRE(f.peek().has_value());
    CHECK(**f.peek() == 42);
}

TEST_CASE("flight: many keys, many callers, repeated (TSan)", "[fill][flight][concurrency]") {
    table t;
    constexpr int threads_n = 8, rounds = 200, keys = 4;
    std::atomic<int> wrong{0};
    std::atomic<long> fills{0};
    std::vector<std::thread> threads;
    threads.reserve(threads_n);
    for (int i = 0; i < threads_n; ++i)
        threads.emplace_back([&, i] {
            for (int r = 0; r < rounds; ++r) {
                const std::string key = "k" + std::to_string((i + r) % keys);
                auto tk = t.join(key);
                if (tk.leader) {
                    ++fills;
                    const auto v = static_cast<std::byte>(key.back());
                    if (r % 5 == 0) t.finish(key, tk.f, fail(errc::transient, "origin GET", key, "injected"));
                    else t.finish(key, tk.f, make_bytes(8, v));
                }
                auto got = tk.f->wait(context::with_timeout(10s), "get", key);
                if (got && (*got)->front() != static_cast<std::byte>(key.back())) ++wrong;
                if (!got && got.error().code != errc::transient) ++wrong;
            }
        });
    for (auto& th : threads) th.join();
    CHECK(wrong == 0);
    CHECK(fills >= keys);
    CHECK(t.size() == 0);
}
