// read_range (include/cachestore/read_range.hpp) over every driver, in the
// conformance style: include after conformance.hpp, which provides the
// fixtures' contract, CONFORMANCE_SETUP and fresh_key.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cachestore/read_range.hpp"

namespace read_range_test {

using namespace cachestore;

/// A fresh object version of `size` bytes, chunked by `chunk_size`.
inline origin_object fresh_object(std::int64_t chunk_size, std::int64_t size) {
    const chunk_key k = conformance::fresh_key(chunk_size);
    return origin_object{k.origin_id, k.bucket, k.object_key, k.etag, size, chunk_size};
}

/// The origin: serves [at, at + out.size()) of `data`, exactly as a ranged GET
/// would (fewer bytes at the end), and records every call.
struct origin {
    explicit origin(const std::vector<std::byte>& d, std::chrono::microseconds latency = {}) : data(&d), delay(latency) {}
    const std::vector<std::byte>* data;
    std::chrono::microseconds delay; ///< first-byte latency, to widen races
    std::mutex mu;
    std::vector<std::pair<std::int64_t, std::size_t>> calls; // (offset, length asked)

    result<std::size_t> operator()(std::int64_t at, std::span<std::byte> out) {
        {
            std::lock_guard lock(mu);
            calls.emplace_back(at, out.size());
        }
        if (delay.count() != 0) std::this_thread::sleep_for(delay);
        const auto size = static_cast<std::int64_t>(data->size());
        const std::size_t n = at >= size ? 0 : std::min(out.size(), static_cast<std::size_t>(size - at));
        if (n != 0) std::memcpy(out.data(), data->data() + at, n);
        return n;
    }
};

/// Every chunk of `obj` that is stored holds exactly its origin bytes.
template <class S>
void check_stored_chunks(S& s, const origin_object& obj, const std::vector<std::byte>& data) {
    for (std::int64_t i = 0; i * obj.chunk_size < obj.size; ++i) {
        const chunk_key k = obj.chunk(i);
        auto st = s.stat({}, k);
        if (!st) {
            CHECK(st.error().code == errc::not_found);
            continue;
        }
        const std::int64_t len = k.expected_len(obj.size);
        INFO("chunk " << i);
        REQUIRE(st->size == len);
        auto got = conformance::read(s, {}, k, 0, len);
        REQUIRE(got.has_value());
        CHECK(std::equal(got->begin(), got->end(), data.begin() + i * obj.chunk_size));
    }
}

/// A store that forwards to another but fails reads, commits and/or removes with `code`.
template <class S>
struct failing_store {
    S* inner;
    errc get_fails = errc::not_found;    ///< not_found: forward
    errc put_fails = errc::not_found;    ///< not_found: forward
    errc remove_fails = errc::not_found; ///< not_found: forward
    template <class Sink>
    result<> get_chunk(const context& ctx, const chunk_key& k, std::int64_t off, std::int64_t n, Sink&& sink) {
        if (get_fails != errc::not_found) return fail(get_fails, "get_chunk", {}, "injected");
        return inner->get_chunk(ctx, k, off, n, std::forward<Sink>(sink));
    }
    template <class Src>
    result<> put_chunk(const context& ctx, const chunk_key& k, std::int64_t size, Src&& src) {
        if (put_fails != errc::not_found) return fail(put_fails, "put_chunk", {}, "injected");
        return inner->put_chunk(ctx, k, size, std::forward<Src>(src));
    }
    result<info> stat(const context& ctx, const chunk_key& k) { return inner->stat(ctx, k); }
    result<> remove(const context& ctx, const chunk_key& k) {
        if (remove_fails != errc::not_found) return fail(remove_fails, "remove", {}, "injected");
        return inner->remove(ctx, k);
    }
    result<> self_test(const context& ctx) { return inner->self_test(ctx); }
};

/// Commits `bytes` as chunk `index` of `obj` directly, whatever its expected_len:
/// a chunk committed under a wrong object size.
template <class S>
void commit_damaged(S& s, const origin_object& obj, std::int64_t index, std::span<const std::byte> bytes) {
    REQUIRE(s.put_chunk({}, obj.chunk(index), static_cast<std::int64_t>(bytes.size()), bytes).has_value());
    REQUIRE(s.stat({}, obj.chunk(index))->size == static_cast<std::int64_t>(bytes.size()));
}

/// `readers` threads started together, each reading `[from(t), size)` of
/// `obj` through read_range: the stats of those that got exactly the
/// origin's bytes, and how many did not (a failure or another byte).
template <class S, class From>
std::pair<std::vector<read_stats>, int> race_readers(S& s, const origin_object& obj, const std::vector<std::byte>& data,
                                                     origin& o, int readers, From from) {
    std::atomic<bool> go{false};
    std::atomic<int> wrong{0};
    std::vector<read_stats> stats(static_cast<std::size_t>(readers));
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(readers));
    for (int t = 0; t < readers; ++t)
        threads.emplace_back([&, t] {
            const std::int64_t at = from(t);
            std::vector<std::byte> out(static_cast<std::size_t>(obj.size));
            while (!go.load()) std::this_thread::yield();
            auto r = read_range(s, {}, obj, at, out, o);
            if (!r || r->served != obj.size - at ||
                !std::equal(out.begin(), out.begin() + (obj.size - at), data.begin() + at))
                ++wrong;
            else stats[static_cast<std::size_t>(t)] = *r;
        });
    go = true;
    for (auto& t : threads) t.join();
    return {std::move(stats), wrong.load()};
}

} // namespace read_range_test

TEMPLATE_LIST_TEST_CASE("read_range: ranges at every edge of every chunk, past the end, cold and warm",
                        "[conformance][read_range]", conformance_fixtures) {
    CONFORMANCE_SETUP();
    using namespace read_range_test;
    constexpr std::int64_t cs = 16, size = 50; // chunks 0..2 whole, chunk 3 holds 2 bytes
    const auto data = pattern(size, 11);
    // Every chunk edge, one byte either side, the object's end and beyond.
    const std::vector<std::int64_t> edges{0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 49, 50, 51, 64, 100};
    for (const std::int64_t from : edges)
        for (const std::int64_t to : edges) {
            if (to < from) continue;
            const std::int64_t len = to - from;
            const std::int64_t want = std::max<std::int64_t>(0, std::min(to, size) - from);
            INFO("range [" << from << ", " << to << ")");
            const auto obj = fresh_object(cs, size);
            const auto first = from / cs, last = (from + want - 1) / cs;
            const std::int64_t touched = want == 0 ? 0 : last - first + 1;
            for (const bool warm : {false, true}) {
                INFO((warm ? "warm" : "cold"));
                origin o(data);
                std::vector<std::byte> out(static_cast<std::size_t>(len) + 8, std::byte{0xEE});
                auto r = read_range(s, {}, obj, from, std::span(out).first(static_cast<std::size_t>(len)), o);
                REQUIRE(r.has_value());
                CHECK(r->served == want);
                CHECK(std::equal(out.begin(), out.begin() + want, data.begin() + from));
                CHECK(std::all_of(out.begin() + want, out.end(), [](std::byte b) { return b == std::byte{0xEE}; }));
                CHECK(r->chunks_hit == (warm ? touched : 0));
                CHECK(r->chunks_missed == (warm ? 0 : touched));
                CHECK(r->commits == (warm ? 0 : touched));
                CHECK(r->commits_lost == 0);
                CHECK(r->store_errors == 0);
                CHECK(r->origin_bytes == (warm || want == 0 ? 0 : std::min(size, (last + 1) * cs) - first * cs));
                // Each miss asked the origin for exactly its whole chunk.
                REQUIRE(o.calls.size() == static_cast<std::size_t>(warm ? 0 : touched));
                for (std::size_t i = 0; i < o.calls.size(); ++i) {
                    const auto k = obj.chunk(first + static_cast<std::int64_t>(i));
                    CHECK(o.calls[i].first == k.index * cs);
                    CHECK(static_cast<std::int64_t>(o.calls[i].second) == k.expected_len(size));
                }
            }
            check_stored_chunks(s, obj, data);
        }
}

TEMPLATE_LIST_TEST_CASE("read_range: an object of one chunk, of exact chunks, and of zero bytes",
                        "[conformance][read_range]", conformance_fixtures) {
    CONFORMANCE_SETUP();
    using namespace read_range_test;
    for (const std::int64_t size : {std::int64_t{0}, std::int64_t{1}, std::int64_t{7}, std::int64_t{64}}) {
        INFO("object size " << size);
        const auto data = pattern(static_cast<std::size_t>(size), 3);
        const auto obj = fresh_object(32, size);
        origin o(data);
        std::vector<std::byte> out(100, std::byte{0xEE});
        auto r = read_range(s, {}, obj, 0, out, o);
        REQUIRE(r.has_value());
        CHECK(r->served == size);
        CHECK(std::equal(out.begin(), out.begin() + size, data.begin()));
        CHECK(r->chunks_missed == (size + 31) / 32);
        auto warm = read_range(s, {}, obj, 0, out, o);
        REQUIRE(warm.has_value());
        CHECK(warm->served == size);
        CHECK(warm->chunks_hit == (size + 31) / 32);
        CHECK(o.calls.size() == static_cast<std::size_t>((size + 31) / 32));
        check_stored_chunks(s, obj, data);
        // Empty buffers and offsets far past the end serve nothing and touch nothing.
        CHECK(read_range(s, {}, obj, 0, std::span<std::byte>(), o)->served == 0);
        CHECK(read_range(s, {}, obj, std::int64_t{1} << 62, out, o)->served == 0);
        CHECK(o.calls.size() == static_cast<std::size_t>((size + 31) / 32));
    }
}

TEMPLATE_LIST_TEST_CASE("read_range: a short, long or failing origin is an error and commits nothing",
                        "[conformance][read_range]", conformance_fixtures) {
    CONFORMANCE_SETUP();
    using namespace read_range_test;
    constexpr std::int64_t cs = 100, size = 250;
    const auto data = pattern(size, 5);
    std::vector<std::byte> out(size);
    SECTION("short: the origin produced fewer bytes than the chunk holds") {
        const auto obj = fresh_object(cs, size);
        auto short_origin = [&](std::int64_t at, std::span<std::byte> o) -> result<std::size_t> {
            std::memcpy(o.data(), data.data() + at, o.size() - 1);
            return o.size() - 1;
        };
        auto r = read_range(s, {}, obj, 0, out, short_origin);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::protocol);
        for (std::int64_t i = 0; i < 3; ++i) conformance::require_absent(s, obj.chunk(i));
    }
    SECTION("long: the origin had more bytes than the object's size says (partial range, via the scratch buffer)") {
        const auto obj = fresh_object(cs, size);
        auto long_origin = [&](std::int64_t at, std::span<std::byte> o) -> result<std::size_t> {
            std::memcpy(o.data(), data.data() + at, o.size());
            return o.size() + 1;
        };
        auto r = read_range(s, {}, obj, 210, std::span(out).first(10), long_origin);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::protocol);
        CHECK(r.error().op == "read_range");
        CHECK(r.error().path == obj.object_key); // its own errors name the object (docs/errors.md)
        conformance::require_absent(s, obj.chunk(2));
    }
    SECTION("failing: the origin's own error comes back unchanged") {
        const auto obj = fresh_object(cs, size);
        int calls = 0;
        auto failing = [&](std::int64_t at, std::span<std::byte> o) -> result<std::size_t> {
            if (++calls == 2) return fail(errc::transient, "origin GET", "bucket/obj", "503 Slow Down");
            std::memcpy(o.data(), data.data() + at, o.size());
            return o.size();
        };
        auto r = read_range(s, {}, obj, 0, out, failing);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::transient);
        CHECK(r.error().op == "origin GET");
        CHECK(r.error().path == "bucket/obj"); // the fetch's own op and path, kept
        CHECK(r.error().message == "503 Slow Down");
        // The first chunk's origin bytes were good and are stored; the rest are not.
        CHECK(s.stat({}, obj.chunk(0))->size == cs);
        conformance::require_absent(s, obj.chunk(1));
        conformance::require_absent(s, obj.chunk(2));
        check_stored_chunks(s, obj, data);
    }
}

TEMPLATE_LIST_TEST_CASE("read_range: racing fillers each get the origin's bytes; each chunk is committed once",
                        "[conformance][read_range][concurrency]", conformance_fixtures) {
    CONFORMANCE_SETUP();
    using namespace read_range_test;
    constexpr std::int64_t cs = 4096, size = 5 * cs + 123; // 6 chunks, the last short
    constexpr int readers = 8;
    const auto data = pattern(size, 21);
    const auto obj = fresh_object(cs, size);
    origin o(data, 2ms);
    // Readers start at different points so fills overlap in several ways.
    const auto [stats, wrong] = race_readers(s, obj, data, o, readers, [](int t) { return t % 2 == 0 ? 0 : 100; });
    CHECK(wrong == 0);
    std::int64_t commits = 0, lost = 0, missed = 0, hit = 0, errors = 0;
    for (const auto& st : stats) {
        commits += st.commits;
        lost += st.commits_lost;
        missed += st.chunks_missed;
        hit += st.chunks_hit;
        errors += st.store_errors;
        CHECK(st.chunks_hit + st.chunks_missed == 6);
    }
    CHECK(errors == 0);
    CHECK(missed == commits + lost);
    CHECK(hit + missed == std::int64_t{6} * readers);
    if (fx.atomic_commit()) CHECK(commits == 6);
    else CHECK(commits >= 6); // stat-then-put: racers may each upload the same bytes
    check_stored_chunks(s, obj, data);
    for (std::int64_t i = 0; i < 6; ++i) CHECK(s.stat({}, obj.chunk(i)).has_value());
}

TEMPLATE_LIST_TEST_CASE("read_range: a failing store falls back to the origin; cancellation and bad arguments end it",
                        "[conformance][read_range]", conformance_fixtures) {
    CONFORMANCE_SETUP();
    using namespace read_range_test;
    using S = std::remove_cvref_t<decltype(s)>;
    constexpr std::int64_t cs = 64, size = 200;
    const auto data = pattern(size, 8);
    std::vector<std::byte> out(size);
    SECTION("failed reads: served from the origin, nothing committed, the first error kept") {
        failing_store<S> f{&s, errc::transient, errc::not_found};
        static_assert(CacheStore<failing_store<S>>);
        const auto obj = fresh_object(cs, size);
        origin o(data);
        auto r = read_range(f, {}, obj, 10, out, o);
        REQUIRE(r.has_value());
        CHECK(r->served == size - 10);
        CHECK(std::equal(out.begin(), out.begin() + (size - 10), data.begin() + 10));
        CHECK(r->chunks_missed == 4);
        CHECK(r->commits == 0);
        CHECK(r->store_errors == 4);
        REQUIRE(r->store_error.has_value());
        CHECK(r->store_error->code == errc::transient);
        for (std::int64_t i = 0; i < 4; ++i) conformance::require_absent(s, obj.chunk(i));
    }
    SECTION("failed commits: the origin bytes in hand are served") {
        failing_store<S> f{&s, errc::not_found, errc::auth};
        const auto obj = fresh_object(cs, size);
        origin o(data);
        auto r = read_range(f, {}, obj, 0, out, o);
        REQUIRE(r.has_value());
        CHECK(r->served == size);
        CHECK(std::equal(out.begin(), out.end(), data.begin()));
        CHECK(r->store_errors == 4);
        CHECK(r->store_error->code == errc::auth);
        CHECK(r->commits == 0);
    }
    SECTION("a stop request ends the read") {
        std::stop_source stop;
        stop.request_stop();
        const auto obj = fresh_object(cs, size);
        origin o(data);
        auto r = read_range(s, context(stop.get_token()), obj, 0, out, o);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::cancelled);
        CHECK(o.calls.empty());
    }
    SECTION("invalid arguments: checked before any I/O") {
        origin o(data);
        auto obj = fresh_object(cs, size);
        CHECK(read_range(s, {}, obj, -1, out, o).error().code == errc::invalid_argument);
        obj.size = -1;
        CHECK(read_range(s, {}, obj, 0, out, o).error().code == errc::invalid_argument);
        obj = fresh_object(cs, size);
        obj.etag = "W/\"abc\"";
        CHECK(read_range(s, {}, obj, 0, out, o).error().code == errc::invalid_argument);
        obj = fresh_object(0, size);
        CHECK(read_range(s, {}, obj, 0, out, o).error().code == errc::invalid_argument);
        obj = fresh_object(cs, size);
        obj.origin_id = "a/b";
        CHECK(read_range(s, {}, obj, 0, out, o).error().code == errc::invalid_argument);
        CHECK(o.calls.empty());
    }
}

TEMPLATE_LIST_TEST_CASE("read_range: a partial read of a missed chunk too large to hold is io_error, not an exception",
                        "[conformance][read_range]", conformance_fixtures) {
    CONFORMANCE_SETUP();
    using namespace read_range_test;
    // Chunk 0 is cs bytes long (about 4.6e18): no buffer can hold it. Chunk 1, the last, holds 100.
    constexpr std::int64_t cs = std::numeric_limits<std::int64_t>::max() / 2;
    const auto obj = fresh_object(cs, cs + 100);
    auto byte_at = [](std::int64_t at) {
        return static_cast<std::byte>((static_cast<std::uint64_t>(at) * 31 + 7) & 0xff);
    };
    int calls = 0;
    auto origin = [&](std::int64_t at, std::span<std::byte> o) -> result<std::size_t> {
        ++calls;
        for (std::size_t i = 0; i < o.size(); ++i) o[i] = byte_at(at + static_cast<std::int64_t>(i));
        return o.size();
    };
    std::vector<std::byte> out(16);
    result<read_stats> r;
    REQUIRE_NOTHROW(r = read_range(s, {}, obj, 1000, out, origin));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::io_error);
    CHECK(r.error().op == "read_range");
    CHECK(r.error().path == obj.object_key);
    CHECK(r.error().message.find(std::to_string(cs)) != std::string::npos); // names the size
    CHECK(calls == 0);                                                       // the origin was not asked
    conformance::require_absent(s, obj.chunk(0));
    // The rule is the missed chunk's length, not chunk_size: the short last chunk fills as usual.
    REQUIRE_NOTHROW(r = read_range(s, {}, obj, cs + 10, out, origin));
    REQUIRE(r.has_value());
    CHECK(r->served == 16);
    CHECK(r->commits == 1);
    CHECK(r->origin_bytes == 100);
    for (std::size_t i = 0; i < out.size(); ++i) CHECK(out[i] == byte_at(cs + 10 + static_cast<std::int64_t>(i)));
    CHECK(s.stat({}, obj.chunk(1))->size == 100);
}

TEMPLATE_LIST_TEST_CASE("read_range: a stored chunk shorter than its expected_len is replaced from the origin; later reads hit",
                        "[conformance][read_range]", conformance_fixtures) {
    CONFORMANCE_SETUP();
    using namespace read_range_test;
    constexpr std::int64_t cs = 64, size = 200; // chunks 0..2 of 64 bytes, chunk 3 of 8
    const auto data = pattern(size, 13);
    const auto bytes = [&](std::int64_t from, std::int64_t n) {
        return std::span<const std::byte>(data).subspan(static_cast<std::size_t>(from), static_cast<std::size_t>(n));
    };
    SECTION("whole-object reads: the damaged chunk is fetched once, replaced, then hit") {
        const auto obj = fresh_object(cs, size);
        commit_damaged(s, obj, 1, bytes(64, 40)); // chunk 1 as if committed for a 104-byte object
        origin o(data);
        constexpr int reads = 5;
        for (int n = 0; n < reads; ++n) {
            INFO("read " << n);
            std::vector<std::byte> out(size);
            auto r = read_range(s, {}, obj, 0, out, o);
            REQUIRE(r.has_value());
            CHECK(r->served == size);
            CHECK(std::equal(out.begin(), out.end(), data.begin()));
            CHECK(r->store_errors == 0);
            CHECK(r->chunks_hit == (n == 0 ? 0 : 4));
            CHECK(r->chunks_missed == (n == 0 ? 4 : 0));
            CHECK(r->commits == (n == 0 ? 4 : 0));
            CHECK(r->damaged_replaced == (n == 0 ? 1 : 0));
            CHECK(s.stat({}, obj.chunk(1))->size == cs);
        }
        CHECK(o.calls.size() == 4); // chunks 0..3 in the first read, nothing after
        check_stored_chunks(s, obj, data);
    }
    SECTION("partial reads: within the stored bytes a hit, past them a replacement through the scratch buffer") {
        const auto obj = fresh_object(cs, size);
        commit_damaged(s, obj, 3, bytes(192, 5)); // the last chunk holds 8 bytes; 5 stored
        origin o(data);
        std::vector<std::byte> out(8);
        // Bytes the short chunk holds are read from it: the damage is not seen.
        auto r = read_range(s, {}, obj, 192, std::span(out).first(2), o);
        REQUIRE(r.has_value());
        CHECK(r->chunks_hit == 1);
        CHECK(o.calls.empty());
        // A read past its end proves it damaged: origin bytes, replaced.
        r = read_range(s, {}, obj, 195, std::span(out).first(5), o);
        REQUIRE(r.has_value());
        CHECK(r->served == 5);
        CHECK(std::equal(out.begin(), out.begin() + 5, data.begin() + 195));
        CHECK(r->chunks_missed == 1);
        CHECK(r->commits == 1);
        CHECK(r->damaged_replaced == 1);
        CHECK(r->store_errors == 0);
        REQUIRE(o.calls.size() == 1);
        CHECK(o.calls[0] == std::pair<std::int64_t, std::size_t>{192, 8});
        CHECK(s.stat({}, obj.chunk(3))->size == 8);
        r = read_range(s, {}, obj, 195, std::span(out).first(5), o);
        REQUIRE(r.has_value());
        CHECK(r->chunks_hit == 1);
        CHECK(r->damaged_replaced == 0);
        CHECK(o.calls.size() == 1);
        check_stored_chunks(s, obj, data);
    }
    SECTION("the origin decides: a caller's too-large object size removes no good chunk") {
        const auto obj = fresh_object(cs, size);
        origin o(data);
        std::vector<std::byte> out(size + 10);
        REQUIRE(read_range(s, {}, obj, 0, std::span(out).first(size), o).has_value()); // all 4 chunks, right
        auto wrong = obj;
        wrong.size = size + 10; // chunk 3 would hold 18 bytes
        auto r = read_range(s, {}, wrong, 192, std::span(out).first(18), o);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::protocol); // the origin produced 8 bytes, not 18
        CHECK(s.stat({}, obj.chunk(3))->size == 8);
        check_stored_chunks(s, obj, data);
    }
}

TEMPLATE_LIST_TEST_CASE("read_range: a damaged chunk that cannot be replaced is served from the origin, the failure counted",
                        "[conformance][read_range]", conformance_fixtures) {
    CONFORMANCE_SETUP();
    using namespace read_range_test;
    using S = std::remove_cvref_t<decltype(s)>;
    constexpr std::int64_t cs = 64, size = 200;
    const auto data = pattern(size, 17);
    const auto damaged = std::span<const std::byte>(data).subspan(64, 40);
    std::vector<std::byte> out(cs);
    SECTION("the remove fails: the damaged chunk stays") {
        failing_store<S> f{&s, errc::not_found, errc::not_found, errc::transient};
        const auto obj = fresh_object(cs, size);
        commit_damaged(s, obj, 1, damaged);
        origin o(data);
        auto r = read_range(f, {}, obj, 64, out, o);
        REQUIRE(r.has_value());
        CHECK(r->served == cs);
        CHECK(std::equal(out.begin(), out.end(), data.begin() + 64));
        CHECK(r->chunks_missed == 1);
        CHECK(r->commits == 0);
        CHECK(r->damaged_replaced == 0);
        CHECK(r->store_errors == 1);
        REQUIRE(r->store_error.has_value());
        CHECK(r->store_error->code == errc::transient);
        CHECK(r->store_error->op == "remove");
        CHECK(r->store_error->message.find("replacing damaged chunk 1: 40 bytes stored, 64 expected") != std::string::npos);
        CHECK(s.stat({}, obj.chunk(1))->size == 40);
    }
    SECTION("the commit fails: the damaged chunk is gone, the next read fills it") {
        failing_store<S> f{&s, errc::not_found, errc::auth};
        const auto obj = fresh_object(cs, size);
        commit_damaged(s, obj, 1, damaged);
        origin o(data);
        auto r = read_range(f, {}, obj, 64, out, o);
        REQUIRE(r.has_value());
        CHECK(std::equal(out.begin(), out.end(), data.begin() + 64));
        CHECK(r->commits == 0);
        CHECK(r->damaged_replaced == 0);
        CHECK(r->store_errors == 1);
        REQUIRE(r->store_error.has_value());
        CHECK(r->store_error->code == errc::auth);
        CHECK(r->store_error->op == "put_chunk");
        conformance::require_absent(s, obj.chunk(1));
        r = read_range(s, {}, obj, 64, out, o);
        REQUIRE(r.has_value());
        CHECK(r->commits == 1);
        CHECK(o.calls.size() == 2);
        check_stored_chunks(s, obj, data);
    }
}

TEMPLATE_LIST_TEST_CASE("read_range: racing readers of a damaged chunk each get the origin's bytes; it ends replaced",
                        "[conformance][read_range][concurrency]", conformance_fixtures) {
    CONFORMANCE_SETUP();
    using namespace read_range_test;
    constexpr std::int64_t cs = 4096, size = 3 * cs; // chunk 1 damaged
    constexpr int readers = 6;
    const auto data = pattern(size, 23);
    const auto obj = fresh_object(cs, size);
    commit_damaged(s, obj, 1, std::span<const std::byte>(data).subspan(cs, 1000));
    origin o(data, 2ms);
    const auto [stats, wrong] = race_readers(s, obj, data, o, readers, [](int) { return std::int64_t{0}; });
    CHECK(wrong == 0);
    std::int64_t errors = 0, replaced = 0;
    for (const auto& st : stats) {
        errors += st.store_errors;
        replaced += st.damaged_replaced;
        CHECK(st.chunks_hit + st.chunks_missed == 3);
    }
    CHECK(errors == 0);
    // Not replaced >= 1: a racer that removed the damaged chunk can lose its
    // commit (commit_lost) to another that found it absent meanwhile; the
    // end state is what matters.
    CHECK(replaced <= readers);
    CHECK(s.stat({}, obj.chunk(1))->size == cs);
    check_stored_chunks(s, obj, data);
    // Now a hit for everyone.
    const auto before = o.calls.size();
    std::vector<std::byte> out(static_cast<std::size_t>(size));
    auto r = read_range(s, {}, obj, 0, out, o);
    REQUIRE(r.has_value());
    CHECK(r->chunks_hit == 3);
    CHECK(o.calls.size() == before);
}
