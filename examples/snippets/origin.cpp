// The read-through engine over an S3 origin (docs/fill.md shows the region
// between the [origin] markers verbatim; tests/examples/check_snippets.py
// keeps them equal). main() puts an object into the local Ceph RGW's bucket
// (CACHESTORE_RGW_*), serves ranges of it through the engine with a POSIX
// store, cold then warm, and checks every byte. Without RGW it fails under
// CI=true and says so otherwise.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <cachestore/s3/store.hpp> // main() puts the origin object

#include "rgw_env.hpp"

// [origin]
#include <cachestore/fill/engine.hpp>
#include <cachestore/posix_store.hpp>
#include <cachestore/s3/origin.hpp>

// One engine per process, over the cache and the origin bucket; every
// request thread calls head() then stream() (or read()).
cachestore::result<cachestore::read_stats> serve(cachestore::fill::engine<cachestore::posix_store, cachestore::s3::origin>& e,
                                                 const cachestore::context& ctx, const std::string& key,
                                                 std::int64_t offset, std::int64_t length,
                                                 std::vector<std::byte>& out) {
    auto meta = e.head(ctx, {"dc1", "", key}); // one origin HEAD per object per TTL
    if (!meta) return std::unexpected(meta.error());
    const auto obj = cachestore::fill::object_at({"dc1", "", key}, *meta, 8 << 20);
    return e.stream(ctx, obj, offset, length, [&out](std::span<const std::byte> b) {
        out.insert(out.end(), b.begin(), b.end()); // a proxy writes to its client here
        return true;
    });
}
// [/origin]

namespace {

int run() {
    int no_server = 0;
    const auto rgw = snippet::rgw_config("origin snippet", no_server);
    if (!rgw) return no_server;
    const cachestore::s3::config& cfg = *rgw;
    auto bucket = cachestore::s3::store::create(cfg); // only to put the origin object
    auto origin = cachestore::s3::origin::create(cfg);
    if (!bucket || !origin) return 1;
    std::vector<std::byte> body(20 << 20);
    for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<std::byte>(i * 7 % 251);
    const std::string key = "snippet-origin/object-" + cachestore::s3::detail::random_hex(6);
    const auto hash = cachestore::s3::detail::hex_lower(
        cachestore::s3::detail::sha256(std::string_view(reinterpret_cast<const char*>(body.data()), body.size())));
    if (auto put = bucket->debug_put_with_payload_hash({}, key, body, hash); !put) {
        std::fprintf(stderr, "%s\n", put.error().to_string().c_str());
        return 1;
    }
    const auto dir = std::filesystem::temp_directory_path() / ("snippet-origin-" + cachestore::s3::detail::random_hex(6));
    cachestore::posix_options po;
    po.create_root = true;
    auto cache = cachestore::posix_store::open(dir.string(), po);
    if (!cache) return 1;
    int rc = 0;
    {
        cachestore::fill::engine e(*cache, *origin);
        for (const char* pass : {"cold", "warm"}) {
            std::vector<std::byte> out;
            auto r = serve(e, cachestore::context::with_timeout(std::chrono::seconds(60)), key, 1000, 17 << 20, out);
            const bool same = r && out.size() == (17u << 20) && std::equal(out.begin(), out.end(), body.begin() + 1000);
            std::printf("origin snippet: %s: %s, %lld chunks hit, %lld missed\n", pass,
                        same ? "every byte right" : (r ? "WRONG BYTES" : r.error().to_string().c_str()),
                        r ? static_cast<long long>(r->chunks_hit) : 0LL, r ? static_cast<long long>(r->chunks_missed) : 0LL);
            if (!same) rc = 1;
        }
    }
    std::filesystem::remove_all(dir);
    return rc;
}

} // namespace

int main() {
    try {
        return run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "origin snippet: %s\n", e.what());
        return 1;
    }
}
