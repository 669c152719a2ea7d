// The Asio adapter (<cachestore/asio.hpp>) over pooled_async: completion
// tokens (a callback, use_future, use_awaitable in a coroutine), handlers run
// on their associated executor, io_context::run() kept busy while an
// operation is in flight, and cancellation through Asio's cancellation slots.
#include <catch2/catch.hpp>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <future>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "cachestore/asio.hpp"
#include "cachestore/async/pooled.hpp"
#include "cachestore/async/waiting.hpp"
#include "cachestore/memory_store.hpp"

using namespace std::chrono_literals;
using cachestore::errc;

namespace {

cachestore::chunk_key key_of(int i) { return {"asio-test", "bucket", "obj/" + std::to_string(i), "\"e\"", 4096, 0}; }

const std::vector<std::byte>& chunk() {
    static const std::vector<std::byte> c = [] {
        std::vector<std::byte> v(4096);
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::byte>(i % 253);
        return v;
    }();
    return c;
}

asio::awaitable<std::string> read_back(cachestore::pooled_async<cachestore::memory_store>& store) {
    auto put = co_await cachestore::asio::async_put_chunk(store, {}, key_of(3), 4096,
                                                          std::span<const std::byte>(chunk()), asio::use_awaitable);
    if (!put) co_return "put: " + put.error().to_string();
    auto st = co_await cachestore::asio::async_stat(store, {}, key_of(3), asio::use_awaitable);
    if (!st || st->size != 4096) co_return "stat";
    std::vector<std::byte> got;
    auto r = co_await cachestore::asio::async_get_chunk(
        store, {}, key_of(3), 0, 4096,
        [&got](std::span<const std::byte> b) {
            got.insert(got.end(), b.begin(), b.end());
            return true;
        },
        asio::use_awaitable);
    if (!r || got != chunk()) co_return "get";
    auto rm = co_await cachestore::asio::async_remove(store, {}, key_of(3), asio::use_awaitable);
    co_return rm ? "ok" : "remove";
}

} // namespace

TEST_CASE("a callback runs on the handler's executor; run() waits for it") {
    cachestore::pooled_async<cachestore::memory_store> store(std::in_place, {.threads = 2});
    asio::io_context io;
    std::optional<cachestore::result<>> put;
    std::thread::id ran_on;
    cachestore::asio::async_put_chunk(store, {}, key_of(1), 4096, std::span<const std::byte>(chunk()),
                                      asio::bind_executor(io, [&](cachestore::result<> r) {
                                          put = std::move(r);
                                          ran_on = std::this_thread::get_id();
                                      }));
    io.run(); // returns only after the handler ran: the operation kept it busy
    REQUIRE(put.has_value());
    CHECK(put->has_value());
    CHECK(ran_on == std::this_thread::get_id());
}

TEST_CASE("use_future gives a future of the result; errors arrive as values") {
    cachestore::pooled_async<cachestore::memory_store> store(std::in_place, {});
    std::future<cachestore::result<cachestore::info>> f =
        cachestore::asio::async_stat(store, {}, key_of(2), asio::use_future);
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    auto r = f.get();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::not_found);
}

TEST_CASE("use_awaitable: a coroutine puts, stats, reads and removes") {
    cachestore::pooled_async<cachestore::memory_store> store(std::in_place, {});
    asio::io_context io;
    std::string outcome;
    asio::co_spawn(io, read_back(store),
                   [&](const std::exception_ptr& e, std::string s) { outcome = e ? "threw" : std::move(s); });
    io.run();
    CHECK(outcome == "ok");
}

TEST_CASE("a cancellation signal ends a paused read with cancelled") {
    cachestore::pooled_async<cachestore::memory_store> store(std::in_place, {.threads = 2});
    REQUIRE(cachestore::waiting<decltype(store)&>(store).put_chunk({}, key_of(4), 4096,
                                                                   std::span<const std::byte>(chunk())));
    asio::io_context io;
    asio::cancellation_signal cancel;
    std::optional<cachestore::result<>> got;
    std::atomic<bool> paused{false};
    cachestore::asio::async_get_chunk(
        store, {}, key_of(4), 0, 4096,
        [&](std::span<const std::byte>, const cachestore::resume_handle&) {
            paused = true;
            return cachestore::sink_verdict::pause; // never resumed
        },
        asio::bind_executor(
            io, asio::bind_cancellation_slot(cancel.slot(), [&](cachestore::result<> r) { got = std::move(r); })));
    asio::steady_timer t(io, 20ms);
    t.async_wait([&](const asio::error_code&) {
        CHECK(paused.load());
        cancel.emit(asio::cancellation_type::terminal);
    });
    const auto t0 = std::chrono::steady_clock::now();
    io.run();
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
    REQUIRE(got.has_value());
    REQUIRE_FALSE(got->has_value());
    CHECK(got->error().code == errc::cancelled);
}
