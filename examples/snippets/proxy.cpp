// The lines a proxy needs (docs/getting-started.md shows the region between
// the [serve] markers verbatim; tests/examples/check_snippets.py keeps them equal).
// main() below runs it against a POSIX store twice: cold, then warm.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

// [serve]
#include <cachestore/cachestore.hpp>

// Serves object bytes [offset, offset + length) through the store, chunk by chunk.
// fetch(begin, out) reads origin bytes [begin, begin + out.size()) into out;
// send(bytes) passes bytes on to the client. Both return false on failure.
template <cachestore::CacheStore Store, class Fetch, class Send>
cachestore::result<> serve_range(Store& store, const cachestore::context& ctx, cachestore::chunk_key key,
                                 std::int64_t object_size, std::int64_t offset, std::int64_t length,
                                 Fetch&& fetch, Send&& send) {
    auto chunks = cachestore::chunks_for_range(key.chunk_size, offset, length);
    if (!chunks) return std::unexpected(chunks.error());
    std::vector<std::byte> buf(static_cast<std::size_t>(key.chunk_size));
    for (key.index = chunks->first; key.index <= chunks->last; ++key.index) {
        const auto slice = cachestore::slice_in_chunk(key.chunk_size, key.index, offset, length);
        auto out = std::span(buf).first(static_cast<std::size_t>(slice.length));
        auto hit = cachestore::get_chunk(store, ctx, key, slice.offset, out);
        if (!hit && hit.error().code != cachestore::errc::not_found) return hit; // a real failure
        if (!hit) {                                                               // a miss: fill it
            const std::int64_t len = key.expected_len(object_size);
            auto whole = std::span(buf).first(static_cast<std::size_t>(len));
            if (!fetch(key.index * key.chunk_size, whole))
                return cachestore::fail(cachestore::errc::transient, "origin", {}, "origin read failed");
            auto put = store.put_chunk(ctx, key, len, std::span<const std::byte>(whole));
            if (!put && put.error().code != cachestore::errc::commit_lost) return put; // lost: same bytes stored
            out = whole.subspan(static_cast<std::size_t>(slice.offset), out.size());
        }
        if (!send(std::span<const std::byte>(out)))
            return cachestore::fail(cachestore::errc::cancelled, "send", {}, "the client went away");
    }
    return {};
}
// [/serve]

int main() {
    char dir[] = "/tmp/cachestore-snippet-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return 1;
    auto store = cachestore::posix_store::open(dir);
    if (!store) return 1;

    std::vector<std::byte> origin(1000);
    for (std::size_t i = 0; i < origin.size(); ++i) origin[i] = static_cast<std::byte>(i * 7);
    int origin_reads = 0;
    auto fetch = [&](std::int64_t begin, std::span<std::byte> out) {
        ++origin_reads;
        std::memcpy(out.data(), origin.data() + begin, out.size());
        return true;
    };
    const cachestore::chunk_key key{"dc1", "bucket", "object", "\"etag\"", 64, 0};
    for (int run = 0; run < 2; ++run) {
        std::vector<std::byte> got;
        auto send = [&](std::span<const std::byte> b) {
            got.insert(got.end(), b.begin(), b.end());
            return true;
        };
        auto r = serve_range(*store, cachestore::context::with_timeout(std::chrono::seconds(10)), key,
                             static_cast<std::int64_t>(origin.size()), 100, 850, fetch, send);
        if (!r || got.size() != 850 || std::memcmp(got.data(), origin.data() + 100, 850) != 0) {
            std::fprintf(stderr, "run %d failed: %s\n", run, r ? "wrong bytes" : r.error().to_string().c_str());
            return 1;
        }
    }
    std::printf("proxy snippet: ok (%d origin reads for 14 chunks served twice)\n", origin_reads);
    std::filesystem::remove_all(dir);
    return origin_reads == 14 ? 0 : 1;
}
