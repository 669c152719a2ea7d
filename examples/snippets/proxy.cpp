// The lines a proxy needs (docs/getting-started.md shows the regions between
// the [serve] and [object] markers verbatim; tests/examples/check_snippets.py
// keeps them equal).
// main() below runs it against a POSIX store twice, cold then warm, with
// ranges inside the object, across its end and wholly past it.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>

// [serve]
#include <cachestore/cachestore.hpp>

// Streams object bytes [offset, offset + length) to the client, one chunk at a
// time, through the store; returns how many it sent, fewer only when the range
// runs past the end of the object. fetch(at, out) reads origin bytes
// [at, at + out.size()) into out and returns how many it read (see read_range);
// send(bytes) passes bytes on to the client and returns false if it went away.
template <cachestore::CacheStore Store, class Fetch, class Send>
cachestore::result<std::int64_t> serve_range(Store& store, const cachestore::context& ctx,
                                             const cachestore::origin_object& obj, std::int64_t offset,
                                             std::int64_t length, Fetch&& fetch, Send&& send) {
    if (obj.chunk_size <= 0 || offset < 0)
        return cachestore::fail(cachestore::errc::invalid_argument, "serve_range", {}, "chunk_size <= 0 or offset < 0");
    std::vector<std::byte> buf(static_cast<std::size_t>(obj.chunk_size));
    std::int64_t sent = 0;
    while (sent < length) {
        const std::int64_t at = offset + sent; // up to the next chunk boundary: one chunk per call
        const std::int64_t want = std::min(length - sent, obj.chunk_size - at % obj.chunk_size);
        auto got = cachestore::read_range(store, ctx, obj, at, std::span(buf).first(static_cast<std::size_t>(want)), fetch);
        if (!got) return std::unexpected(got.error()); // the origin failed, or the request ended
        if (const auto& e = got->store_error) std::fprintf(stderr, "%s\n", e->to_string().c_str()); // served anyway
        if (got->served == 0) break;                    // the end of the object
        if (!send(std::span<const std::byte>(buf).first(static_cast<std::size_t>(got->served))))
            return cachestore::fail(cachestore::errc::cancelled, "send", {}, "the client went away");
        sent += got->served;
    }
    return sent;
}
// [/serve]

// [object]
// The object as the origin's response described it. Designated initializers
// follow the declaration's order: size comes before chunk_size.
cachestore::origin_object object_of(std::string etag, std::int64_t size) {
    return {.origin_id = "dc1",                   // this deployment
            .bucket = "datasets",                 // the origin bucket
            .object_key = "shards/a.tar",         // the origin object key
            .etag = std::move(etag),              // the ETag header's value as sent, quotes included
            .size = size,                         // the object's size, from the same response
            .chunk_size = std::int64_t{8} << 20}; // 8 MiB, the same on every replica
}
// [/object]

int main() {
    char dir[] = "/tmp/cachestore-snippet-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return 1;
    auto store = cachestore::posix_store::open(dir);
    if (!store) return 1;

    std::vector<std::byte> origin(1000);
    for (std::size_t i = 0; i < origin.size(); ++i) origin[i] = static_cast<std::byte>(i * 7);
    int origin_reads = 0;
    bool origin_misused = false;
    auto fetch = [&](std::int64_t at, std::span<std::byte> out) -> cachestore::result<std::size_t> {
        ++origin_reads;
        if (at < 0 || at + static_cast<std::int64_t>(out.size()) > static_cast<std::int64_t>(origin.size()))
            origin_misused = true; // the helper never asks for bytes the object does not have
        const auto n = std::min(out.size(), origin.size() - std::min(origin.size(), static_cast<std::size_t>(at)));
        std::memcpy(out.data(), origin.data() + at, n);
        return n;
    };
    cachestore::origin_object obj = object_of("\"etag\"", static_cast<std::int64_t>(origin.size()));
    obj.chunk_size = 64; // 16 chunks, the last one short
    struct range {
        std::int64_t offset, length, served; // served: what the client must get
    };
    const range ranges[] = {{100, 850, 850}, {950, 100, 50}, {999, 64, 1}, {1000, 10, 0}, {5000, 64, 0}, {0, 1000, 1000}};
    for (int run = 0; run < 2; ++run) {
        for (const range& r : ranges) {
            std::vector<std::byte> got;
            auto send = [&](std::span<const std::byte> b) {
                got.insert(got.end(), b.begin(), b.end());
                return true;
            };
            auto sent = serve_range(*store, cachestore::context::with_timeout(std::chrono::seconds(10)), obj, r.offset,
                                    r.length, fetch, send);
            if (!sent || *sent != r.served || got.size() != static_cast<std::size_t>(r.served) ||
                (r.served != 0 && std::memcmp(got.data(), origin.data() + r.offset, got.size()) != 0)) {
                std::fprintf(stderr, "run %d, range %lld+%lld failed: %s\n", run, static_cast<long long>(r.offset),
                             static_cast<long long>(r.length), sent ? "wrong bytes" : sent.error().to_string().c_str());
                return 1;
            }
        }
    }
    std::printf("proxy snippet: ok (%d origin reads for the 16 chunks of the object, served twice)\n", origin_reads);
    std::filesystem::remove_all(dir);
    return origin_reads == 16 && !origin_misused ? 0 : 1;
}
