// The async API over a blocking store (docs/async.md shows the region between
// the [async] markers verbatim; tests/examples/check_snippets.py keeps them
// equal). main() serves one chunk to a "client" that can take 64 KiB at a
// time: the sink pauses after each span, and the client's writable callback
// (here a thread) resumes the read.
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include <cachestore/async/waiting.hpp>
#include <cachestore/memory_store.hpp>

// [async]
#include <cachestore/async/pooled.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>

// One code path for every store: pooled_async gives a blocking store (memory,
// POSIX, a layer stack) the AsyncCacheStore face; the S3 driver has its
// own (s3::async_store). `write` hands the bytes to the client and says
// whether it can take more now; when it cannot, the read pauses until
// `resume()`.
struct client_writer {
    std::function<bool(std::span<const std::byte>, const cachestore::resume_handle&)> write;
    cachestore::sink_verdict operator()(std::span<const std::byte> b, const cachestore::resume_handle& h) const {
        return write(b, h) ? cachestore::sink_verdict::proceed : cachestore::sink_verdict::pause;
    }
};

template <cachestore::AsyncCacheStore A>
void serve(A& store, const cachestore::chunk_key& key, std::int64_t off, std::int64_t n, client_writer to,
           std::function<void(cachestore::result<>)> done) {
    // Returns at once. `done` runs exactly once, later, on the store's thread:
    // with success after exactly n bytes, or the error (cancelled when the
    // context's stop token fires or the store is destroyed first).
    store.async_get_chunk(cachestore::context::with_timeout(std::chrono::seconds(30)), key, off, n, std::move(to),
                          std::move(done));
}
// [/async]

int main() {
    cachestore::pooled_async<cachestore::memory_store> store(std::in_place, {.threads = 4});
    const cachestore::chunk_key key{"snippet", "bucket", "model.bin", "\"v1\"", std::int64_t{1} << 20, 0};
    std::vector<std::byte> chunk(std::size_t{1} << 20);
    for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<std::byte>(i % 251);
    if (!cachestore::waiting<decltype(store)&>(store).put_chunk({}, key, std::int64_t{1} << 20,
                                                                std::span<const std::byte>(chunk)))
        return 1;

    std::mutex mu;
    std::vector<std::byte> received;
    std::optional<cachestore::resume_handle> paused;
    std::size_t window = 0; // what the client can take before it must drain
    int pauses = 0;
    std::optional<cachestore::result<>> result;
    client_writer to{[&](std::span<const std::byte> b, const cachestore::resume_handle& h) {
        const std::lock_guard lk(mu);
        received.insert(received.end(), b.begin(), b.end());
        window += b.size();
        if (window < (std::size_t{64} << 10)) return true;
        paused = h;
        ++pauses;
        return false;
    }};
    serve(store, key, 0, std::int64_t{1} << 20, std::move(to), [&](cachestore::result<> r) {
        const std::lock_guard lk(mu);
        result = std::move(r);
    });
    for (;;) { // the client's event loop: drains its window, then resumes
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        const std::lock_guard lk(mu);
        if (result) break;
        if (paused) {
            window = 0;
            std::exchange(paused, std::nullopt)->resume();
        }
    }
    const bool ok = *result && received == chunk && pauses >= 15;
    std::printf("async: %zu bytes, %d pauses: %s\n", received.size(), pauses, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
