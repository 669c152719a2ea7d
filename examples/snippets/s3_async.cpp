// The S3 driver's async engine on a proxy's own Asio io_context (docs/async.md
// shows the region between the [s3_async] markers verbatim;
// tests/examples/check_snippets.py keeps them equal). main() stores a 1 MiB
// chunk in the local Ceph RGW's bucket (CACHESTORE_RGW_*), reads it back as
// 16 ranges at once on one thread, and checks every byte. Without RGW it
// fails under CI=true and says so otherwise.
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "rgw_env.hpp"

// [s3_async]
#include <asio/bind_executor.hpp>
#include <asio/io_context.hpp>
#include <cachestore/asio.hpp>
#include <cachestore/asio/host_loop.hpp>
#include <cachestore/s3/async.hpp>

// The store was made with own_thread = false: it has no thread, and every
// transfer, sink and completion runs on the thread running `io`. Reads
// reads.size() consecutive ranges of `key` at once, each into its buffer;
// returns how many failed.
int read_ranges(asio::io_context& io, cachestore::s3::async_store& store, const cachestore::chunk_key& key,
                std::vector<std::vector<std::byte>>& reads) {
    cachestore::asio::host_loop driver(io.get_executor(), store); // watches store.fd(), store.next_timeout()
    std::size_t left = reads.size();
    int failed = 0;
    std::int64_t off = 0;
    for (auto& buf : reads) {
        const auto n = static_cast<std::int64_t>(buf.size());
        cachestore::asio::async_get_chunk(store, cachestore::context::with_timeout(std::chrono::seconds(10)), key, off,
                                          n, cachestore::span_sink(buf),
                                          // bound to io: a plain callable would run on Asio's system executor
                                          asio::bind_executor(io, [&](cachestore::result<> r) {
                                              if (!r) ++failed;
                                              if (--left == 0) io.stop(); // else the driver's waits keep run() going
                                          }));
        off += n;
    }
    io.run();
    return failed;
}
// [/s3_async]

namespace {

int run() {
    int no_server = 0;
    const auto rgw = snippet::rgw_config("s3_async snippet", no_server);
    if (!rgw) return no_server;
    const cachestore::s3::config& cfg = *rgw;
    auto store = cachestore::s3::async_store::create(cfg, {.own_thread = false});
    if (!store) {
        std::fprintf(stderr, "%s\n", store.error().to_string().c_str());
        return 1;
    }
    std::vector<std::byte> chunk(std::size_t{1} << 20);
    for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<std::byte>(i * 7 % 251);
    const cachestore::chunk_key key{"snippet-s3-async", "b", "object-" + cachestore::s3::detail::random_hex(6), "\"e\"",
                                    static_cast<std::int64_t>(chunk.size()), 0};
    const auto ctx = cachestore::context::with_timeout(std::chrono::seconds(30));
    if (auto put = store->blocking().put_chunk(ctx, key, static_cast<std::int64_t>(chunk.size()),
                                               std::span<const std::byte>(chunk));
        !put) {
        std::fprintf(stderr, "%s\n", put.error().to_string().c_str());
        return 1;
    }
    asio::io_context io;
    std::vector<std::vector<std::byte>> reads(16, std::vector<std::byte>(chunk.size() / 16));
    const int failed = read_ranges(io, *store, key, reads);
    bool same = failed == 0;
    for (std::size_t i = 0; i < reads.size(); ++i)
        same = same && std::memcmp(reads[i].data(), chunk.data() + i * reads[i].size(), reads[i].size()) == 0;
    (void)store->blocking().remove(ctx, key);
    std::printf("s3_async snippet: 16 ranges read at once on one thread: %s\n",
                same ? "every byte right" : "FAILED");
    return same ? 0 : 1;
}

} // namespace

int main() {
    try {
        return run();
    } catch (...) {
        std::fputs("s3_async snippet: unexpected exception\n", stderr);
        return 1;
    }
}
