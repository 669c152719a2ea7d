// A C++20 coroutine over the Asio adapter (docs/async.md shows the region
// between the [coroutine] markers verbatim; tests/examples/check_snippets.py
// keeps them equal). Needs standalone Asio (libasio-dev). main() stores a
// chunk, then runs the coroutine on an io_context: a hit, then a miss.
#include <cstdio>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <cachestore/async/waiting.hpp>
#include <cachestore/memory_store.hpp>

// [coroutine]
#include <cachestore/asio.hpp>
#include <cachestore/async/pooled.hpp>

#include <asio/awaitable.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

// Reads a whole chunk into memory, or nothing on a miss. Errors come back as
// values (result<>), never as exceptions; the coroutine resumes on its own
// executor, and cancelling it (Asio's cancellation slot) stops the read.
template <cachestore::AsyncCacheStore A>
asio::awaitable<std::optional<std::vector<std::byte>>> load(A& store, cachestore::chunk_key key) {
    const auto ctx = cachestore::context::with_timeout(std::chrono::seconds(5));
    auto st = co_await cachestore::asio::async_stat(store, ctx, key, asio::use_awaitable);
    if (!st) co_return std::nullopt; // not_found, or the store's error
    std::vector<std::byte> bytes(static_cast<std::size_t>(st->size));
    auto r = co_await cachestore::asio::async_get_chunk(store, ctx, key, 0, st->size, cachestore::span_sink(bytes),
                                                        asio::use_awaitable);
    if (!r) co_return std::nullopt;
    co_return bytes;
}
// [/coroutine]

int main() try {
    cachestore::pooled_async<cachestore::memory_store> store(std::in_place, {});
    const cachestore::chunk_key hit{"snippet", "bucket", "model.bin", "\"v1\"", 8192, 0};
    const cachestore::chunk_key miss{"snippet", "bucket", "model.bin", "\"v1\"", 8192, 1};
    const std::vector<std::byte> chunk(5000, std::byte{7});
    if (!cachestore::waiting<decltype(store)&>(store).put_chunk({}, hit, 5000, std::span<const std::byte>(chunk)))
        return 1;
    asio::io_context io;
    std::string outcome;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto a = co_await load(store, hit);
            auto b = co_await load(store, miss);
            outcome = (a && *a == chunk && !b) ? "ok" : "FAILED";
        },
        [&](const std::exception_ptr& e) {
            if (e) outcome = "threw";
        });
    io.run();
    std::printf("coroutine: a hit and a miss: %s\n", outcome.c_str());
    return outcome == "ok" ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "coroutine: %s\n", e.what());
    return 1;
}
