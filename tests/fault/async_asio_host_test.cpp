// The S3 async engine driven by the host's loop (docs/async.md, "Own loop
// and host loop"): an s3::async_store made with own_thread = false, run by an
// asio::io_context through cachestore::asio::host_loop, against the fault
// server. No thread of the store's exists; every sink and completion runs on
// the io_context's thread; Asio's completion tokens and cancellation work
// over it; a host-driven store is also driven by hand (run_for, fd,
// next_timeout), as an nginx or libuv loop would.
#include "fault_harness.hpp"

#include <poll.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>

#include "cachestore/asio.hpp"
#include "cachestore/asio/host_loop.hpp"
#include "cachestore/s3/async.hpp"

using namespace fault_harness;

namespace {

s3::async_store host_driven(const s3::config& cfg, std::size_t conns = 8) {
    auto a = s3::async_store::create(cfg, {.max_connections = conns, .own_thread = false});
    INFO((a ? std::string() : a.error().to_string()));
    REQUIRE(a.has_value());
    return std::move(*a);
}

} // namespace

TEST_CASE("asio host loop: 200 reads in flight on the io_context's one thread, no thread of the store's",
          "[async][asio]") {
    scenario sc(1 * MiB);
    const std::size_t tasks0 = count_dir("/proc/self/task");
    {
        ::asio::io_context io;
        s3::async_store a = host_driven(sc.cfg);
        cachestore::asio::host_loop driver(io.get_executor(), a);
        CHECK(count_dir("/proc/self/task") == tasks0); // nothing started a thread
        constexpr int n = 200;
        int done = 0, wrong = 0, off_thread = 0;
        const auto main_id = std::this_thread::get_id();
        std::vector<checking_sink> sinks(n);
        for (int i = 0; i < n; ++i) {
            const std::int64_t off = std::int64_t{i} * 1237;
            sinks[static_cast<std::size_t>(i)] = checking_sink{std::span<const std::byte>(sc.data), off};
            // The handler bound to the io_context (else Asio runs it on its system executor).
            cachestore::asio::async_get_chunk(
                a, context::with_timeout(20s), sc.key, off, 32 * KiB,
                [&s = sinks[static_cast<std::size_t>(i)], &off_thread, main_id](std::span<const std::byte> b) {
                    if (std::this_thread::get_id() != main_id) ++off_thread;
                    return s(b);
                },
                ::asio::bind_executor(io, [&](cachestore::result<> r) {
                    if (std::this_thread::get_id() != main_id) ++off_thread;
                    if (!r) {
                        UNSCOPED_INFO(r.error().to_string());
                        ++wrong;
                    }
                    if (++done == n + 1) io.stop();
                }));
        }
        // A coroutine on the same thread: stat, then read, with use_awaitable.
        bool coro_ok = false;
        ::asio::co_spawn(
            io,
            [&]() -> ::asio::awaitable<void> {
                auto st = co_await cachestore::asio::async_stat(a, context::with_timeout(10s), sc.key,
                                                                ::asio::use_awaitable);
                std::vector<std::byte> out(4096);
                auto r = co_await cachestore::asio::async_get_chunk(a, context::with_timeout(10s), sc.key, 100, 4096,
                                                                    cachestore::span_sink(out),
                                                                    ::asio::use_awaitable);
                coro_ok = st && st->size == static_cast<std::int64_t>(sc.data.size()) && r &&
                          std::memcmp(out.data(), sc.data.data() + 100, out.size()) == 0;
                if (++done == n + 1) io.stop();
            },
            ::asio::detached);
        io.run_for(20s); // until the last completion stops it
        CHECK(done == n + 1);
        CHECK(wrong == 0);
        CHECK(off_thread == 0);
        CHECK(coro_ok);
        for (const auto& s : sinks) CHECK_FALSE(s.wrong);
        CHECK(count_dir("/proc/self/task") == tasks0);
        CHECK(sc.log("GET").size() == n + 1);
    }
    sc.finish();
}

TEST_CASE("asio host loop: a cancellation signal ends a stalled read; the deadline fires through the timer",
          "[async][asio]") {
    scenario sc;
    ::asio::io_context io;
    s3::async_store a = host_driven(sc.cfg);
    cachestore::asio::host_loop driver(io.get_executor(), a);
    script(json::array({sc.rule("GET", "stall", "always", {{"seconds", 5}})}));
    ::asio::cancellation_signal cancel;
    std::optional<cachestore::result<>> stopped, expired;
    sclock::time_point cancelled_at{};
    cachestore::asio::async_get_chunk(a, context::with_timeout(10s), sc.key, 0, 1000,
                                      [](std::span<const std::byte>) { return true; },
                                      ::asio::bind_cancellation_slot(cancel.slot(), [&](cachestore::result<> r) {
                                          stopped = std::move(r);
                                          if (expired) io.stop();
                                      }));
    const auto ctx = context::with_timeout(400ms);
    cachestore::asio::async_get_chunk(a, ctx, sc.key, 0, 1000, [](std::span<const std::byte>) { return true; },
                                      [&](cachestore::result<> r) {
                                          expired = std::move(r);
                                          if (stopped) io.stop();
                                      });
    ::asio::steady_timer t(io, 200ms);
    t.async_wait([&](const std::error_code&) {
        cancelled_at = sclock::now();
        cancel.emit(::asio::cancellation_type::terminal);
    });
    io.run_for(5s);
    REQUIRE(stopped.has_value());
    REQUIRE_FALSE(stopped->has_value());
    CHECK(stopped->error().code == errc::cancelled);
    REQUIRE(expired.has_value());
    REQUIRE_FALSE(expired->has_value());
    CHECK(expired->error().code == errc::deadline_exceeded);
    CHECK(std::chrono::duration<double, std::milli>(sclock::now() - ctx.deadline()).count() < 5000.0);
}

TEST_CASE("host-driven store by hand: poll fd() and next_timeout(), call run_for(0)", "[async]") {
    scenario sc;
    s3::async_store a = host_driven(sc.cfg);
    std::optional<cachestore::result<cachestore::info>> got;
    a.async_stat(context::with_timeout(10s), sc.key, [&](cachestore::result<cachestore::info> r) { got = std::move(r); });
    CHECK_FALSE(got.has_value()); // never inline
    const auto t0 = sclock::now();
    while (!got && ms_since(t0) < 10000) {
        pollfd p{a.fd(), POLLIN, 0};
        const auto wait = a.next_timeout();
        ::poll(&p, 1, static_cast<int>(wait.count() < 0 ? 1000 : std::min<long>(wait.count(), 1000)));
        a.run_for(std::chrono::milliseconds(0));
    }
    REQUIRE(got.has_value());
    REQUIRE(got->has_value());
    CHECK((*got)->size == static_cast<std::int64_t>(sc.data.size()));
}
