// Chunk identity: the byte-exact storage path (golden vector from SPEC §2 plus
// vectors computed independently with Python's hashlib), validation, and the
// range helpers.
#include <catch2/catch.hpp>

#include <limits>

#include <string>

#include "cachestore/chunk_key.hpp"
#include "cachestore/chunk_range.hpp"
#include "cachestore/detail/sha256.hpp"

using namespace cachestore;
using namespace std::string_literals;

namespace {
std::string hex(const detail::sha256::digest& d) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    for (auto b : d) {
        s += digits[b >> 4];
        s += digits[b & 0xf];
    }
    return s;
}
std::string sha_hex(std::string_view s) {
    detail::sha256 h;
    h.update(s);
    return hex(h.finish());
}
} // namespace

TEST_CASE("sha256 matches FIPS 180-4 examples", "[key]") {
    CHECK(sha_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    // One million 'a', fed in uneven pieces to exercise the block buffer.
    detail::sha256 h;
    const std::string piece(997, 'a');
    std::size_t fed = 0;
    while (fed + piece.size() <= 1000000) {
        h.update(piece);
        fed += piece.size();
    }
    h.update(std::string(1000000 - fed, 'a'));
    CHECK(hex(h.finish()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("storage path matches the upstream layout byte for byte", "[key]") {
    struct vec {
        chunk_key key;
        std::string path;
    };
    const vec vectors[] = {
        // SPEC §2 golden vector.
        {{"aws-us-east-1-prod", "datasets", "shards/train-00001.tar", "\"9b2cf535f27731c974343645a3985328\"", 8388608, 3},
         "aws-us-east-1-prod/ff89713af401c8a03bfbc660db0bb49338d90c7090954f4e50af080bcff24b82/3"},
        // Minimal fields, empty bucket.
        {{"o", "", "k", "e", 1, 0}, "o/1f38174a415b85cd62474769d3b11c6a73b266f438714fba2e6d30ba7fcc4616/0"},
        // Non-ASCII key, largest index.
        {{"dc1", "b", "ключ/файл données 数据.bin", "\"abc-12\"", 4194304, 9223372036854775807},
         "dc1/69b6a847696ad00e3d4da58336ce7771600e25be4e5e9b71a60eeb18ed1707ba/9223372036854775807"},
        // Characters that would need escaping anywhere else are hashed raw.
        {{"dc1", "bucket with space", "a/../b//c?x=1&y=%2F+~", "W/\"weak\"", 1, 42},
         "dc1/fcde87692b99ccff6f6c663b58f2858f3cc4503cbb18ce26cd36d8c1de993222/42"},
        // Embedded NULs are length-prefixed, so they cannot collide.
        {{"x", "b\0nul"s, "k\0"s, "\0"s, 4611686018427387904, 1},
         "x/8c49944913212b80e8aa448959ae97d683ed541a431980a1a4169f6a9eeed06b/1"},
    };
    for (const auto& v : vectors) {
        auto p = storage_path(v.key);
        REQUIRE(p.has_value());
        CHECK(*p == v.path);
    }
}

TEST_CASE("the path changes with every hashed field", "[key]") {
    const chunk_key base{"o", "b", "k", "\"e\"", 1024, 0};
    const std::string p0 = *storage_path(base);
    auto changed = [&](auto mutate) {
        chunk_key k = base;
        mutate(k);
        return *storage_path(k);
    };
    CHECK(changed([](chunk_key& k) { k.bucket = "c"; }) != p0);
    CHECK(changed([](chunk_key& k) { k.object_key = "k2"; }) != p0);
    CHECK(changed([](chunk_key& k) { k.etag = "e"; }) != p0); // quotes matter
    CHECK(changed([](chunk_key& k) { k.chunk_size = 2048; }) != p0);
    // Moving a byte between adjacent fields must not collide (length prefixes).
    CHECK(*storage_path({"o", "bk", "x", "e", 1, 0}) != *storage_path({"o", "b", "kx", "e", 1, 0}));
    // The index is not hashed: chunks of one object share a directory.
    const std::string p7 = changed([](chunk_key& k) { k.index = 7; });
    CHECK(p7.substr(0, p7.size() - 1) == p0.substr(0, p0.size() - 1));
}

TEST_CASE("invalid keys are rejected, never turned into a path", "[key]") {
    const chunk_key good{"o", "b", "k", "e", 10, 0};
    auto rejects = [](const chunk_key& k) {
        auto p = storage_path(k);
        REQUIRE_FALSE(p.has_value());
        CHECK(p.error().code == errc::invalid_argument);
        CHECK_FALSE(p.error().message.empty());
    };
    REQUIRE(storage_path(good).has_value());
    auto with = [&](auto f) {
        chunk_key k = good;
        f(k);
        return k;
    };
    rejects(with([](chunk_key& k) { k.origin_id = ""; }));
    rejects(with([](chunk_key& k) { k.origin_id = "a/b"; }));
    rejects(with([](chunk_key& k) { k.origin_id = ".."; }));
    rejects(with([](chunk_key& k) { k.origin_id = "."; }));
    rejects(with([](chunk_key& k) { k.origin_id = "a\0b"s; }));
    rejects(with([](chunk_key& k) { k.object_key = ""; }));
    rejects(with([](chunk_key& k) { k.etag = ""; }));
    rejects(with([](chunk_key& k) { k.chunk_size = 0; }));
    rejects(with([](chunk_key& k) { k.chunk_size = -5; }));
    rejects(with([](chunk_key& k) { k.index = -1; }));
    CHECK(storage_path(with([](chunk_key& k) { k.bucket = ""; })).has_value());
}

TEST_CASE("expected_len: chunk size, remainder, or zero past the end", "[key]") {
    chunk_key k{"o", "b", "k", "e", 10, 0};
    CHECK(k.expected_len(25) == 10);
    k.index = 1;
    CHECK(k.expected_len(25) == 10);
    k.index = 2;
    CHECK(k.expected_len(25) == 5);
    k.index = 3;
    CHECK(k.expected_len(25) == 0);
    k.index = 2;
    CHECK(k.expected_len(30) == 10);
    CHECK(k.expected_len(0) == 0);
    k.index = 0;
    CHECK(k.expected_len(1) == 1);
    k.index = 9223372036854775807 / 10 + 1; // index * chunk_size would overflow
    CHECK(k.expected_len(9223372036854775807) == 0);
}

TEST_CASE("expected_len: upstream parity for an unknown size, not for an empty object", "[key]") {
    // Upstream's ExpectedLen returns ChunkSize for every size <= 0. We do for a
    // negative ("unknown") size, at any index; an empty object (0) has no
    // bytes in any chunk, so 0: nothing to fetch, nothing to commit
    // (put_chunk refuses size 0). docs/design.md, "expected_len".
    chunk_key k{"o", "b", "k", "e", 8388608, 0};
    CHECK(k.expected_len(-1) == 8388608);
    CHECK(k.expected_len(std::numeric_limits<std::int64_t>::min()) == 8388608);
    k.index = 7;
    CHECK(k.expected_len(-1) == 8388608);
    CHECK(k.expected_len(0) == 0);
    k.index = 0;
    CHECK(k.expected_len(0) == 0);
    k.chunk_size = 0;
    CHECK(k.expected_len(-1) == 0); // an invalid key has no length
}

TEST_CASE("walking a byte range chunk by chunk", "[key]") {
    auto s = chunks_for_range(10, 5, 20); // bytes 5..24
    REQUIRE(s.has_value());
    CHECK(s->first == 0);
    CHECK(s->last == 2);
    CHECK(s->count() == 3);
    CHECK(slice_in_chunk(10, 0, 5, 20).offset == 5);
    CHECK(slice_in_chunk(10, 0, 5, 20).length == 5);
    CHECK(slice_in_chunk(10, 1, 5, 20).offset == 0);
    CHECK(slice_in_chunk(10, 1, 5, 20).length == 10);
    CHECK(slice_in_chunk(10, 2, 5, 20).length == 5);
    CHECK(slice_in_chunk(10, 3, 5, 20).length == 0);
    auto one = chunks_for_range(10, 9, 1);
    CHECK((one->first == 0 && one->last == 0));
    auto edge = chunks_for_range(10, 10, 1);
    CHECK((edge->first == 1 && edge->last == 1));
    CHECK(chunks_for_range(0, 0, 1).error().code == errc::invalid_argument);
    CHECK(chunks_for_range(10, -1, 1).error().code == errc::invalid_argument);
    CHECK(chunks_for_range(10, 0, 0).error().code == errc::invalid_argument);
    CHECK(chunks_for_range(10, 9223372036854775807, 1).error().code == errc::invalid_argument);
}

TEST_CASE("range_in_object clamps a range to the object and names its chunks", "[key]") {
    constexpr std::int64_t max = 9223372036854775807;
    auto in = range_in_object(10, 25, 5, 10); // inside: bytes 5..14
    REQUIRE(in.has_value());
    CHECK((in->offset == 5 && in->length == 10 && in->chunks.first == 0 && in->chunks.last == 1));
    auto past = range_in_object(10, 25, 18, 100); // runs past the end: cut at byte 25
    REQUIRE(past.has_value());
    CHECK((past->length == 7 && past->chunks.first == 1 && past->chunks.last == 2));
    CHECK(slice_in_chunk(10, 2, past->offset, past->length).length == 5); // == expected_len of chunk 2
    for (auto [off, len] : {std::pair<std::int64_t, std::int64_t>{25, 1}, {26, 5}, {max, max}, {0, 0}, {3, 0}}) {
        INFO(off << "+" << len);
        auto e = range_in_object(10, 25, off, len);
        REQUIRE(e.has_value());
        CHECK(e->empty());
        CHECK(e->chunks.count() == 0);
    }
    CHECK(range_in_object(10, 0, 0, 10)->empty()); // an empty object
    auto huge = range_in_object(10, max, max - 1, max); // no overflow near INT64_MAX
    REQUIRE(huge.has_value());
    CHECK((huge->length == 1 && huge->chunks.first == (max - 1) / 10 && huge->chunks.last == (max - 1) / 10));
    CHECK(range_in_object(0, 25, 0, 1).error().code == errc::invalid_argument);
    CHECK(range_in_object(10, -1, 0, 1).error().code == errc::invalid_argument);
    CHECK(range_in_object(10, 25, -1, 1).error().code == errc::invalid_argument);
    CHECK(range_in_object(10, 25, 0, -1).error().code == errc::invalid_argument);
}

TEST_CASE("errors print with their context and a stable name", "[error]") {
    error e;
    e.code = errc::auth;
    e.op = "stat";
    e.path = "o/h/1";
    e.http_status = 403;
    e.s3_code = "SignatureDoesNotMatch";
    e.request_id = "tx1";
    e.message = "check the secret key";
    e.attempts = 2;
    CHECK(e.to_string() ==
          "cachestore: auth op=stat path=o/h/1 http=403 s3_code=SignatureDoesNotMatch request_id=tx1 attempts=2: check the secret key");
    CHECK(to_string(errc::commit_lost) == "commit_lost");
    CHECK(to_string(errc::deadline_exceeded) == "deadline_exceeded");
    CHECK(to_string(errc::unavailable) == "unavailable");
    CHECK_FALSE(is_retryable(errc::unavailable));
    CHECK(to_string(errc::changed) == "changed");
    CHECK_FALSE(is_retryable(errc::changed));
    CHECK(is_retryable(errc::transient));
    CHECK_FALSE(is_retryable(errc::not_found));
}
