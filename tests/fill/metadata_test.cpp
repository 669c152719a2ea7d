// Object metadata through the read-through engine (docs/fill.md, R14): one
// origin HEAD per object per TTL however many callers ask, each on its own
// context; TTLs, the negative TTL, the LRU bound; a changed object's entry
// dropped by the fill that found it changed.
#include "cachestore/fill/engine.hpp"
#include "cachestore/fill/metadata_cache.hpp"
#include "cachestore/fill/metrics.hpp"

#include <catch2/catch.hpp>

#include "cachestore/memory_store.hpp"
#include "layers/prom_check.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace cachestore;
using namespace std::chrono_literals;

namespace {

/// An origin of one object whose ETag the test can change; HEADs are slow
/// when asked and counted; a GET with a stale ETag is `changed`.
struct versioned_origin {
    std::int64_t size = 64;
    std::mutex mu;
    std::string etag = "\"v1\"";
    std::chrono::milliseconds head_delay{0};
    std::optional<errc> head_fails;
    std::atomic<int> heads{0}, gets{0};

    void change(std::string e) {
        const std::lock_guard lk(mu);
        etag = std::move(e);
    }
    std::string current() {
        const std::lock_guard lk(mu);
        return etag;
    }
    result<fill::object_meta> head(const context& ctx, const fill::object_ref& ref) {
        ++heads;
        const auto until = std::chrono::steady_clock::now() + head_delay;
        while (std::chrono::steady_clock::now() < until && !ctx.stop_requested()) std::this_thread::sleep_for(1ms);
        if (head_fails) return fail(*head_fails, "origin HEAD", ref.object_key, "injected");
        if (ref.object_key == "missing") return fail(errc::not_found, "origin HEAD", ref.object_key, "404");
        return fill::object_meta{size, current(), "Sat, 05 Dec 2026 12:00:00 GMT"};
    }
    result<std::size_t> get(const context&, const origin_object& obj, std::int64_t, std::span<std::byte> out) {
        ++gets;
        if (obj.etag != current()) return fail(errc::changed, "origin GET", obj.object_key, "412 PreconditionFailed");
        for (auto& b : out) b = std::byte{7};
        return out.size();
    }
};
static_assert(fill::MetadataOrigin<versioned_origin>);

const fill::object_ref ref{"dc1", "bucket", "obj"};

} // namespace

TEST_CASE("metadata cache: TTLs, the negative TTL, the LRU bound, drop", "[fill][metadata]") {
    using clock = fill::metadata_cache::clock;
    fill::metadata_cache c(2, 10s, 1s);
    const auto t0 = clock::now();
    const auto a = fill::metadata_cache::key_of({"dc1", "b", "a"}), b = fill::metadata_cache::key_of({"dc1", "b", "b"}),
               x = fill::metadata_cache::key_of({"dc1", "b", "x"});
    CHECK(a != fill::metadata_cache::key_of({"dc1", "ba", ""})); // the names cannot run into each other
    c.put(a, {10, "\"a\"", ""}, t0);
    c.put_negative(b, fail(errc::not_found, "head", "b", "404").error(), t0);
    REQUIRE(c.find(a, t0 + 9s).has_value());
    CHECK(c.find(a, t0 + 9s)->value().etag == "\"a\"");
    REQUIRE(c.find(b, t0 + 500ms).has_value());
    CHECK(c.find(b, t0 + 500ms)->error().code == errc::not_found);
    CHECK_FALSE(c.find(b, t0 + 1s).has_value()); // the negative TTL is shorter, and the expired entry goes
    CHECK(c.size() == 1);
    c.put(b, {20, "\"b\"", ""}, t0);
    REQUIRE(c.find(a, t0).has_value()); // a is now the most recently used
    c.put(x, {30, "\"x\"", ""}, t0); // the bound is 2: b, the least recently used, goes
    CHECK(c.size() == 2);
    CHECK_FALSE(c.find(b, t0).has_value());
    CHECK(c.find(x, t0).has_value());
    CHECK_FALSE(c.find(a, t0 + 10s).has_value()); // the TTL
    c.drop(x);
    CHECK(c.size() == 0);

    fill::metadata_cache none(10, 0s, 0s); // TTL 0: nothing kept
    none.put(a, {1, "\"a\"", ""});
    none.put_negative(b, fail(errc::not_found, "head", "b", "404").error());
    CHECK(none.size() == 0);
}

TEST_CASE("engine::head: one origin HEAD per object however many callers, then hits", "[fill][metadata]") {
    memory_store store;
    versioned_origin o;
    o.head_delay = 100ms;
    fill::engine e(store, o);
    std::atomic<bool> go{false};
    std::atomic<int> wrong{0};
    std::vector<std::thread> callers;
    callers.reserve(32);
    for (int t = 0; t < 32; ++t)
        callers.emplace_back([&] {
            while (!go.load()) std::this_thread::yield();
            auto m = e.head(context::with_timeout(10s), ref);
            if (!m || m->size != 64 || m->etag != "\"v1\"") ++wrong;
        });
    go = true;
    for (auto& t : callers) t.join();
    CHECK(wrong == 0);
    CHECK(o.heads == 1);
    auto again = e.head({}, ref);
    REQUIRE(again);
    CHECK(o.heads == 1);
    const auto st = e.stats();
    CHECK(st.metadata_heads == 1);
    CHECK(st.metadata_hits + st.metadata_misses == 33);
    CHECK(st.metadata_hits >= 1);
    CHECK(e.snapshot().metadata_entries == 1);
    std::string text;
    fill::write_prometheus(text, e.snapshot());
    const auto p = layertest::parse_prometheus(text);
    for (const auto& problem : p.problems) FAIL_CHECK(problem);
    CHECK(p.value("cachestore_fill_metadata_total", {{"result", "hit"}}) == st.metadata_hits);
    CHECK(p.value("cachestore_fill_metadata_total", {{"result", "miss"}}) == st.metadata_misses);
    CHECK(p.value("cachestore_fill_metadata_heads_total", {}) == 1);
    CHECK(p.value("cachestore_fill_metadata_entries", {}) == 1);
}

TEST_CASE("engine::head: a joiner's own deadline, the leader's answer unchanged", "[fill][metadata]") {
    memory_store store;
    versioned_origin o;
    o.head_delay = 300ms;
    fill::engine e(store, o);
    result<fill::object_meta> first = fail(errc::io_error, "", "", "");
    std::thread leader([&] { first = e.head(context::with_timeout(10s), ref); });
    while (e.stats().metadata_heads == 0) std::this_thread::sleep_for(1ms);
    const auto t0 = std::chrono::steady_clock::now();
    auto joiner = e.head(context::with_timeout(20ms), ref);
    CHECK(std::chrono::steady_clock::now() - t0 < 200ms);
    REQUIRE_FALSE(joiner);
    CHECK(joiner.error().code == errc::deadline_exceeded);
    leader.join();
    REQUIRE(first);
    CHECK(first->etag == "\"v1\"");
    // Every caller gone before the HEAD ends: the answer is still kept.
    o.change("\"v2\"");
    fill::engine_options opt;
    opt.metadata_ttl = 1h;
    fill::engine gone(store, o, opt);
    CHECK_FALSE(gone.head(context::with_timeout(10ms), ref));
    for (int i = 0; i < 100 && gone.snapshot().metadata_entries == 0; ++i) std::this_thread::sleep_for(10ms);
    auto later = gone.head({}, ref);
    REQUIRE(later);
    CHECK(later->etag == "\"v2\"");
    CHECK(gone.stats().metadata_heads == 1);
}

TEST_CASE("engine::head: TTL, negative TTL, errors not kept, a weak ETag refused", "[fill][metadata]") {
    memory_store store;
    versioned_origin o;
    fill::engine_options opt;
    opt.metadata_ttl = 100ms;
    opt.metadata_negative_ttl = 100ms;
    opt.origin_attempts = 1;
    fill::engine e(store, o, opt);
    REQUIRE(e.head({}, ref));
    REQUIRE(e.head({}, ref));
    CHECK(o.heads == 1);
    std::this_thread::sleep_for(150ms);
    REQUIRE(e.head({}, ref)); // expired: asked again
    CHECK(o.heads == 2);

    const fill::object_ref missing{"dc1", "bucket", "missing"};
    CHECK(e.head({}, missing).error().code == errc::not_found);
    CHECK(e.head({}, missing).error().code == errc::not_found);
    CHECK(o.heads == 3); // kept for the negative TTL
    std::this_thread::sleep_for(150ms);
    CHECK(e.head({}, missing).error().code == errc::not_found);
    CHECK(o.heads == 4);

    const fill::object_ref other{"dc1", "bucket", "other"};
    o.head_fails = errc::transient;
    CHECK(e.head({}, other).error().code == errc::transient);
    CHECK(e.head({}, other).error().code == errc::transient);
    CHECK(o.heads == 6); // a transient error is not kept
    o.head_fails.reset();

    const fill::object_ref weak{"dc1", "bucket", "weak"};
    o.change("W/\"v1\"");
    auto w = e.head({}, weak);
    REQUIRE_FALSE(w);
    CHECK(w.error().code == errc::misconfigured);
    CHECK(w.error().message.find("no strong ETag") != std::string::npos);
    CHECK(e.head({}, weak).error().code == errc::misconfigured);
    CHECK(o.heads == 7); // negative: kept
    o.change("");
    CHECK(e.head({}, fill::object_ref{"dc1", "bucket", "none"}).error().code == errc::misconfigured);
}

TEST_CASE("engine: a fill that finds the object changed drops its metadata; the next head sees the new version",
          "[fill][metadata]") {
    memory_store store;
    versioned_origin o;
    fill::engine e(store, o);
    auto m = e.head({}, ref);
    REQUIRE(m);
    const auto obj = fill::object_at(ref, *m, 16);
    o.change("\"v2\"");
    std::vector<std::byte> out(16);
    auto r = e.read({}, obj, 0, out);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::changed);
    CHECK(o.gets == 1); // never retried
    CHECK(e.stats().fills_failed_by[static_cast<std::size_t>(errc::changed)] == 1);
    auto fresh = e.head({}, ref);
    REQUIRE(fresh);
    CHECK(fresh->etag == "\"v2\"");
    CHECK(o.heads == 2);
    REQUIRE(e.read({}, fill::object_at(ref, *fresh, 16), 0, out));
}

TEST_CASE("engine::head over an origin_function with a head callable", "[fill][metadata]") {
    memory_store store;
    std::atomic<int> heads{0};
    fill::origin_function origin(
        [](const context&, const origin_object&, std::int64_t, std::span<std::byte> out) -> result<std::size_t> {
            return out.size();
        },
        [&](const context&, const fill::object_ref&) -> result<fill::object_meta> {
            ++heads;
            return fill::object_meta{5, "\"e\"", ""};
        });
    static_assert(fill::MetadataOrigin<decltype(origin)>);
    fill::engine e(store, origin);
    REQUIRE(e.head({}, ref));
    REQUIRE(e.head({}, ref));
    CHECK(heads == 1);
    fill::origin_function get_only(
        [](const context&, const origin_object&, std::int64_t, std::span<std::byte> out) -> result<std::size_t> {
            return out.size();
        });
    static_assert(fill::Origin<decltype(get_only)> && !fill::MetadataOrigin<decltype(get_only)>);
}
