// The README's first code block (README.md shows the region between the
// [proxy] markers verbatim; tests/examples/check_snippets.py keeps them equal).
// main() below runs it against a memory and a POSIX store, cold then warm,
// with ranges inside the object, across its end and wholly past it.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

// [proxy]
#include <cachestore/cachestore.hpp> // and <cachestore/s3.hpp> for s3::store
#include <cstdio>

// Fills `out` with object bytes [offset, offset + out.size()) through the cache. Hits
// are read straight into `out`; a miss reads the whole chunk from the origin with
// fetch(at, span) -> result<size_t>, checks its length, commits it and serves it.
// Returns the bytes served: fewer than out.size() only at the end of the object.
template <cachestore::CacheStore Store, class Fetch> // memory_store, posix_store, s3::store: resolved at compile time
cachestore::result<std::int64_t> serve(Store& store, const cachestore::origin_object& obj, std::int64_t offset,
                                       std::span<std::byte> out, Fetch&& fetch) {
    auto ctx = cachestore::context::with_timeout(std::chrono::seconds(2));
    auto r = cachestore::read_range(store, ctx, obj, offset, out, fetch);
    if (!r) return std::unexpected(r.error()); // the origin failed or the deadline passed: send nothing of `out`
    if (const auto& e = r->store_error) std::fprintf(stderr, "%s\n", e->to_string().c_str()); // served from the origin
    std::fprintf(stderr, "%lld chunks hit, %lld missed\n", static_cast<long long>(r->chunks_hit),
                 static_cast<long long>(r->chunks_missed));
    return r->served;
}
// [/proxy]

namespace {
template <cachestore::CacheStore Store>
bool run(Store& store, const char* name) {
    std::vector<std::byte> origin(300);
    for (std::size_t i = 0; i < origin.size(); ++i) origin[i] = static_cast<std::byte>(i * 13 + 1);
    auto fetch = [&](std::int64_t at, std::span<std::byte> out) -> cachestore::result<std::size_t> {
        const auto from = static_cast<std::size_t>(at);
        const std::size_t n = from >= origin.size() ? 0 : std::min(out.size(), origin.size() - from);
        if (n != 0) std::memcpy(out.data(), origin.data() + from, n);
        return n;
    };
    // The ETag exactly as the origin sent it, quotes included; size from the same response.
    const cachestore::origin_object obj{"dc1", "datasets", "shards/a.tar", "\"9b2c\"",
                                        static_cast<std::int64_t>(origin.size()), 64};
    struct range {
        std::int64_t offset, length, served;
    };
    const range ranges[] = {{10, 100, 100}, {250, 100, 50}, {300, 10, 0}, {0, 300, 300}, {1000, 1, 0}};
    for (int pass = 0; pass < 2; ++pass)
        for (const range& r : ranges) {
            std::vector<std::byte> out(static_cast<std::size_t>(r.length), std::byte{0xEE});
            auto got = serve(store, obj, r.offset, out, fetch);
            if (!got || *got != r.served ||
                (r.served != 0 && std::memcmp(out.data(), origin.data() + r.offset, static_cast<std::size_t>(r.served)) != 0)) {
                std::fprintf(stderr, "readme snippet: %s store, pass %d, range %lld+%lld: %s\n", name, pass,
                             static_cast<long long>(r.offset), static_cast<long long>(r.length),
                             got ? "wrong bytes" : got.error().to_string().c_str());
                return false;
            }
        }
    return true;
}
} // namespace

int main() {
    cachestore::memory_store memory;
    if (!run(memory, "memory")) return 1;
    char dir[] = "/tmp/cachestore-readme-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return 1;
    auto posix = cachestore::posix_store::open(dir);
    const bool ok = posix && run(*posix, "posix");
    std::filesystem::remove_all(dir);
    if (!ok) return 1;
    std::puts("readme snippet: ok");
    return 0;
}
