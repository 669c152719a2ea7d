// A tiered store (docs/tiered.md shows the region between the [tiered] markers
// verbatim; tests/examples/check_snippets.py keeps them equal). main() puts a
// bounded POSIX near tier in front of a far tier (a memory store standing in
// for the shared S3 store, so the snippet runs without a server), reads a
// chunk only the far tier has, and checks that it was promoted.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <thread>
#include <vector>

#include <cachestore/memory_store.hpp>

// [tiered]
#include <cachestore/cachestore.hpp>

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

// A bounded local disk in front of a shared store: hits are served from the
// disk; a far hit is served, then copied to the disk off the caller's path.
template <cachestore::CacheStore Far>
cachestore::result<cachestore::tiered<cachestore::posix_store, Far>> with_local_disk(Far&& far, const std::string& dir,
                                                                                      std::int64_t max_bytes) {
    auto near = cachestore::posix_store::open(dir, {.max_bytes = max_bytes});
    if (!near) return std::unexpected(near.error());
    cachestore::tiered_options o; // promotions: 2 threads, 256 MiB queued at most
    o.name = "tiered";
    return cachestore::tiered<cachestore::posix_store, Far>(std::move(*near), std::forward<Far>(far), std::move(o));
}
// [/tiered]

int main() {
    char dir[] = "/tmp/cachestore-snippet-tiered-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return 1;
    int rc = 0;
    {
        cachestore::memory_store shared; // stands in for s3::store
        auto store = with_local_disk<cachestore::memory_store&>(shared, dir, std::int64_t{64} << 20);
        if (!store) {
            std::fprintf(stderr, "%s\n", store.error().to_string().c_str());
            return 1;
        }
        const cachestore::chunk_key key{"snippet", "bucket", "model.bin", "\"v1\"", 4096, 0};
        const std::vector<std::byte> chunk(4096, std::byte{42});
        if (!shared.put_chunk({}, key, 4096, std::span<const std::byte>(chunk))) rc = 1;
        std::vector<std::byte> out(4096);
        if (!cachestore::get_chunk(*store, {}, key, 0, out) || out != chunk) rc = 1; // a far hit
        for (int i = 0; i < 500 && store->snapshot().promotions_done == 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (!store->near().stat({}, key)) rc = 1;                                     // promoted
        if (!cachestore::get_chunk(*store, {}, key, 0, out) || out != chunk) rc = 1; // a near hit
        const auto s = store->snapshot();
        if (s.get_hits[static_cast<int>(cachestore::tier::far)] != 1 || s.get_hits[static_cast<int>(cachestore::tier::near)] != 1)
            rc = 1;
        std::string metrics;
        cachestore::write_layer_metrics(metrics, *store);
        if (metrics.find("cachestore_tier_hits_total{store=\"tiered\",op=\"get_chunk\",tier=\"near\"} 1") == std::string::npos)
            rc = 1;
        std::printf("%s", rc == 0 ? "tiered: far hit promoted, then a near hit\n" : "tiered: FAILED\n");
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    return rc;
}
