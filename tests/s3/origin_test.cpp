// s3::origin against Ceph RGW (docs/fill.md, "The origin concept"): HEAD for
// size and ETag, ranged GETs with If-Match, a changed object as
// errc::changed (412), odd keys; and the read-through engine over it with a
// POSIX store: one origin GET per cold chunk and one HEAD per object however
// many readers ask, counted by the origin's own observer.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "cachestore/fill/engine.hpp"
#include "cachestore/posix_store.hpp"
#include "cachestore/s3/origin.hpp"
#include "s3_fixture.hpp"
#include "temp_dir.hpp"

using namespace cachestore;
using namespace std::chrono_literals;

namespace {

struct counted {
    std::atomic<int> heads{0}, gets{0};
};

/// An RGW config, or a failed test under CI / a loud warning elsewhere.
std::optional<s3::config> rgw() {
    auto cfg = s3test::server_config("RGW");
    if (!cfg) {
        if (!s3test::env("CI").empty()) FAIL("Ceph RGW unavailable under CI: " << cfg.error());
        WARN("Ceph RGW unavailable, NOT TESTED: " << cfg.error());
        return std::nullopt;
    }
    return *cfg;
}

std::vector<std::byte> pattern(std::size_t n, int seed) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 131 + static_cast<std::size_t>(seed) * 7 + 3) % 251);
    return v;
}

/// Writes an origin object (the store's test hook: a plain signed PUT, no prefix).
void put_object(s3::store& st, const std::string& key, std::span<const std::byte> body) {
    const auto hash = s3::detail::hex_lower(
        s3::detail::sha256(std::string_view(reinterpret_cast<const char*>(body.data()), body.size())));
    auto r = st.debug_put_with_payload_hash({}, key, body, hash);
    REQUIRE(r.has_value());
}

s3::origin make_origin(s3::config cfg, counted* c) {
    if (c != nullptr)
        cfg.observer = [c](const s3::request_event& ev) {
            if (ev.method == "HEAD") ++c->heads;
            if (ev.method == "GET") ++c->gets;
        };
    auto o = s3::origin::create(std::move(cfg));
    REQUIRE(o.has_value());
    return std::move(*o);
}

std::string unique(const std::string& base) { return "origin-test/" + base + "-" + s3::detail::random_hex(6); }

} // namespace

TEST_CASE("s3::origin: HEAD gives size and ETag; ranged GETs with If-Match give the bytes", "[s3][origin]") {
    auto cfg = rgw();
    if (!cfg) return;
    auto st = s3::store::create(*cfg);
    REQUIRE(st.has_value());
    auto o = make_origin(*cfg, nullptr);
    for (const std::string name : {"plain.bin", "dir/a b+c%(d)&é.bin"}) {
        INFO(name);
        const auto key = unique(name);
        const auto body = pattern(100000, 1);
        put_object(*st, key, body);
        auto m = o.head({}, {"dc1", cfg->bucket, key});
        REQUIRE(m.has_value());
        CHECK(m->size == 100000);
        REQUIRE(m->etag.size() > 2);
        CHECK(m->etag.front() == '"');
        const origin_object obj{"dc1", cfg->bucket, key, m->etag, m->size, 65536};
        std::vector<std::byte> out(1000);
        auto g = o.get({}, obj, 99000, out);
        REQUIRE(g.has_value());
        CHECK(*g == 1000);
        CHECK(std::equal(out.begin(), out.end(), body.begin() + 99000));
        std::vector<std::byte> all(100000);
        REQUIRE(o.get({}, obj, 0, all).has_value());
        CHECK(all == body);
    }
}

TEST_CASE("s3::origin: an object rewritten under the reader is changed (412); missing is not_found", "[s3][origin]") {
    auto cfg = rgw();
    if (!cfg) return;
    auto st = s3::store::create(*cfg);
    REQUIRE(st.has_value());
    auto o = make_origin(*cfg, nullptr);
    const auto key = unique("rewritten");
    put_object(*st, key, pattern(5000, 1));
    auto m = o.head({}, {"dc1", "", key});
    REQUIRE(m.has_value());
    put_object(*st, key, pattern(5000, 2)); // a new version, a new ETag
    std::vector<std::byte> out(100);
    auto g = o.get({}, origin_object{"dc1", "", key, m->etag, m->size, 4096}, 0, out);
    REQUIRE_FALSE(g.has_value());
    CHECK(g.error().code == errc::changed);
    CHECK(g.error().http_status == 412);
    CHECK(g.error().op == "origin_get");
    CHECK(g.error().path == key);
    CHECK(g.error().attempts <= 1); // not retried

    const auto missing = unique("missing");
    auto h = o.head({}, {"dc1", "", missing});
    REQUIRE_FALSE(h.has_value());
    CHECK(h.error().code == errc::not_found);
    auto gm = o.get({}, origin_object{"dc1", "", missing, "\"x\"", 10, 4096}, 0, out);
    REQUIRE_FALSE(gm.has_value());
    CHECK(gm.error().code == errc::not_found);

    auto other = o.head({}, {"dc1", "another-bucket", key});
    REQUIRE_FALSE(other.has_value());
    CHECK(other.error().code == errc::invalid_argument);
    CHECK(o.get({}, origin_object{"dc1", "", key, "", 10, 4096}, 0, out).error().code == errc::invalid_argument);
}

TEST_CASE("engine over s3::origin and a POSIX store: one GET per cold chunk, one HEAD per object, for 16 readers",
          "[s3][origin][fill]") {
    auto cfg = rgw();
    if (!cfg) return;
    auto st = s3::store::create(*cfg);
    REQUIRE(st.has_value());
    counted c;
    auto o = make_origin(*cfg, &c);
    test_support::temp_dir dir("origin-engine");
    auto store = posix_store::open(dir.path);
    REQUIRE(store.has_value());
    constexpr std::int64_t cs = 65536, size = 8 * cs - 100;
    const auto key = unique("herd");
    const auto body = pattern(static_cast<std::size_t>(size), 3);
    put_object(*st, key, body);
    fill::engine e(*store, o);
    const fill::object_ref ref{"dc1", cfg->bucket, key};
    std::atomic<bool> go{false};
    std::atomic<int> wrong{0};
    std::vector<std::thread> readers;
    readers.reserve(16);
    for (int t = 0; t < 16; ++t)
        readers.emplace_back([&] {
            while (!go.load()) std::this_thread::yield();
            auto m = e.head(context::with_timeout(30s), ref);
            if (!m) {
                ++wrong;
                return;
            }
            std::vector<std::byte> out(static_cast<std::size_t>(size));
            auto r = e.read(context::with_timeout(30s), fill::object_at(ref, *m, cs), 0, out);
            if (!r || r->served != size || out != body) ++wrong;
        });
    go = true;
    for (auto& t : readers) t.join();
    CHECK(wrong == 0);
    CHECK(c.heads == 1);
    CHECK(c.gets == 8);

    // The object changes: the fill's 412 drops its metadata; the next head
    // sees the new version, whose chunks are new keys.
    put_object(*st, key, pattern(static_cast<std::size_t>(size), 4));
    auto stale = e.head({}, ref);
    REQUIRE(stale.has_value()); // still the old version: within the TTL
    std::vector<std::byte> out(static_cast<std::size_t>(size));
    auto dirty = fill::object_at(ref, *stale, cs);
    dirty.chunk_size = cs / 2; // chunks no store has yet: they must come from the origin
    auto r = e.read({}, dirty, 0, out);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::changed);
    auto fresh = e.head({}, ref);
    REQUIRE(fresh.has_value());
    CHECK(fresh->etag != stale->etag);
    CHECK(c.heads == 2);
    REQUIRE(e.read({}, fill::object_at(ref, *fresh, cs), 0, out).has_value());
    CHECK(out == pattern(static_cast<std::size_t>(size), 4));
}
