// The read-through engine in a proxy (README.md and docs/getting-started.md
// show the region between the [engine] markers verbatim;
// tests/examples/check_snippets.py keeps them equal). main() serves a 40 MiB
// object from 16 threads at once through a memory store, its origin two
// callables over bytes in memory, and checks every byte and the origin's
// request count: one HEAD, one GET per chunk.
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include <cachestore/memory_store.hpp>

// [engine]
#include <cachestore/fill.hpp> // the engine; <cachestore/s3.hpp> for s3::store and s3::origin

// One engine per process, over the store and the origin; every request thread
// calls serve(). However many clients ask for a cold chunk at once, the origin
// is asked once; each client waits on its own deadline; the chunk is committed
// after they have it; the chunks ahead are fetched while one streams.
template <cachestore::CacheStore Store, cachestore::fill::MetadataOrigin Origin, cachestore::chunk_sink Sink>
cachestore::result<cachestore::read_stats> serve(cachestore::fill::engine<Store, Origin>& engine,
                                                 const cachestore::fill::object_ref& ref, std::int64_t offset,
                                                 std::int64_t length, Sink&& write_to_client) {
    const auto ctx = cachestore::context::with_timeout(std::chrono::seconds(30));
    auto meta = engine.head(ctx, ref); // size and ETag: one origin HEAD per object per TTL
    if (!meta) return std::unexpected(meta.error()); // 404, 502, ...: nothing sent yet
    const auto obj = cachestore::fill::object_at(ref, *meta, 8 << 20); // 8 MiB chunks
    return engine.stream(ctx, obj, offset, length, write_to_client); // the first chunk resolved before any byte
}
// [/engine]

int main() {
    constexpr std::int64_t size = 40 << 20; // 5 chunks
    std::vector<std::byte> object(size);
    for (std::size_t i = 0; i < object.size(); ++i) object[i] = static_cast<std::byte>(i * 31 % 251);
    std::atomic<int> heads{0}, gets{0};
    cachestore::fill::origin_function origin(
        [&](const cachestore::context&, const cachestore::origin_object& obj, std::int64_t at,
            std::span<std::byte> out) -> cachestore::result<std::size_t> { // a ranged GET with If-Match
            ++gets;
            if (obj.etag != "\"v1\"") return cachestore::fail(cachestore::errc::changed, "GET", obj.object_key, "412");
            const auto n = std::min<std::size_t>(out.size(), object.size() - static_cast<std::size_t>(at));
            std::memcpy(out.data(), object.data() + at, n);
            return n;
        },
        [&](const cachestore::context&, const cachestore::fill::object_ref&) -> cachestore::result<cachestore::fill::object_meta> {
            ++heads; // a HEAD
            return cachestore::fill::object_meta{size, "\"v1\"", ""};
        });
    cachestore::memory_store store;
    cachestore::fill::engine engine(store, origin);
    std::atomic<int> wrong{0};
    std::vector<std::thread> clients;
    clients.reserve(16);
    for (int c = 0; c < 16; ++c)
        clients.emplace_back([&, c] {
            const std::int64_t offset = std::int64_t{c} * 1000;
            std::int64_t at = offset;
            auto r = serve(engine, {"dc1", "models", "llama.bin"}, offset, size - offset, [&](std::span<const std::byte> b) {
                if (std::memcmp(b.data(), object.data() + at, b.size()) != 0) ++wrong;
                at += static_cast<std::int64_t>(b.size());
                return true;
            });
            if (!r || at != size) ++wrong;
        });
    for (auto& t : clients) t.join();
    std::printf("engine snippet: 16 clients, %d wrong; the origin saw %d HEAD and %d GETs for 5 chunks\n", wrong.load(),
                heads.load(), gets.load());
    return wrong == 0 && heads == 1 && gets == 5 ? 0 : 1;
}
