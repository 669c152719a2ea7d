// A bounded POSIX store (docs/operations.md shows the region between the
// [bounded] markers verbatim; tests/examples/check_snippets.py keeps them
// equal). main() opens one in a temp directory with a small bound and checks
// that filling past it evicts the least recently used chunk.
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <span>
#include <vector>

// [bounded]
#include <cachestore/posix_store.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

// A local chunk cache of at most `max_bytes` that keeps `min_free_bytes` free
// on its disk; least recently used chunks go first. Its own thread sweeps
// every minute (orphans too); puts that need room make it themselves.
cachestore::result<cachestore::posix_store> open_local_cache(const std::string& dir, std::int64_t max_bytes,
                                                            std::int64_t min_free_bytes) {
    using namespace std::chrono_literals;
    auto store = cachestore::posix_store::open(dir, {.max_bytes = max_bytes,
                                                     .min_free_bytes = min_free_bytes,
                                                     .sweep_interval = 60s});
    if (auto r = store ? store->last_sweep() : std::nullopt) { // open() swept once to learn the usage
        std::fprintf(stderr, "cache %s: %lld bytes in %lld chunks, %lld evicted, %lld orphans removed\n", dir.c_str(),
                     static_cast<long long>(r->bytes), static_cast<long long>(r->chunks),
                     static_cast<long long>(r->chunks_evicted), static_cast<long long>(r->orphans_removed));
    }
    return store;
}
// [/bounded]

int main() {
    char dir[] = "/tmp/cachestore-snippet-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return 1;
    int rc = 0;
    {
        auto store = open_local_cache(dir, std::int64_t{3} * 4096, 0);
        if (!store) {
            std::fprintf(stderr, "%s\n", store.error().to_string().c_str());
            return 1;
        }
        const std::vector<std::byte> chunk(4096, std::byte{7});
        for (int i = 0; i < 4; ++i) {
            const cachestore::chunk_key k{"dc1", "bucket", "object", "\"etag\"", 4096, i};
            if (!store->put_chunk({}, k, 4096, std::span<const std::byte>(chunk))) rc = 1;
        }
        const cachestore::chunk_key first{"dc1", "bucket", "object", "\"etag\"", 4096, 0};
        if (store->stat({}, first)) rc = 1;              // the least recently used went
        if (store->usage().value_or(-1) > std::int64_t{3} * 4096) rc = 1; // never over the bound
    }
    std::filesystem::remove_all(dir);
    std::puts(rc == 0 ? "posix_bounded snippet: the bound held" : "posix_bounded snippet: FAILED");
    return rc;
}
