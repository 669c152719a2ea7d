// Fuzz target: chunk identity and range arithmetic (chunk_key.hpp,
// chunk_range.hpp, detail/sha256.hpp).
//
// Input: six lines (origin_id, bucket, object_key, etag, chunk_size, index;
// escapes as in fuzz_support.hpp), then free bytes that feed the numbers of
// the range checks.
//
// Invariants:
//  - validate() accepts exactly the keys the design allows (an independent
//    restatement of the rules), and storage_path() succeeds exactly then;
//  - the path is origin_id "/" 64 lowercase hex "/" decimal index, and the hex
//    is the SHA-256 of the length-prefixed fields (computed here with a
//    one-shot digest of the whole encoding, against the library's streamed
//    one; with OpenSSL available, against OpenSSL too);
//  - moving one byte across a field boundary changes the hash (the length
//    prefixes make the encoding injective);
//  - chunks_for_range accepts exactly chunk_size > 0, offset >= 0,
//    length > 0 without overflow; its slices are non-empty, lie inside their
//    chunks, are contiguous and add up to the range; chunks just outside the
//    span give empty slices; no signed overflow anywhere (UBSan);
//  - expected_len is within [0, chunk_size] and the chunks of an object add
//    up to its size;
//  - range_in_object accepts exactly chunk_size > 0, object_size >= 0,
//    offset >= 0, length >= 0; its length is the range clamped to the object
//    (0 at or past the end), never overflowing; its chunks are those of the
//    clamped range, and each of their slices lies within its chunk's
//    expected_len.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "cachestore/chunk_key.hpp"
#include "cachestore/chunk_range.hpp"
#include "cachestore/detail/sha256.hpp"
#include "fuzz_support.hpp"

#if defined(CACHESTORE_FUZZ_OPENSSL)
#include <openssl/sha.h>
#endif

namespace cs = cachestore;
using i64 = std::int64_t;
__extension__ typedef __int128 i128; // NOLINT(modernize-use-using): __extension__ needs typedef (-Wpedantic)

namespace {

constexpr i64 i64_max = std::numeric_limits<i64>::max();

i64 parse_num(const std::string& s) {
    // Saturating decimal with an optional sign; anything else is 0.
    std::size_t i = 0;
    const bool neg = !s.empty() && s[0] == '-';
    if (neg) ++i;
    i128 v = 0;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i)
        if (v < (i128{1} << 64)) v = v * 10 + (s[i] - '0');
    if (neg) v = -v;
    if (v > i64_max) return i64_max;
    if (v < std::numeric_limits<i64>::min()) return std::numeric_limits<i64>::min();
    return static_cast<i64>(v);
}

void le64(std::string& out, std::uint64_t x) {
    for (int i = 0; i < 8; ++i) out += static_cast<char>(x >> (8 * i));
}

std::string encoding(const cs::chunk_key& k) {
    std::string e;
    for (const std::string* f : {&k.origin_id, &k.bucket, &k.object_key, &k.etag}) {
        le64(e, f->size());
        e += *f;
    }
    le64(e, static_cast<std::uint64_t>(k.chunk_size));
    return e;
}

std::string hex(const cs::detail::sha256::digest& d) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    for (const auto b : d) {
        s += digits[b >> 4];
        s += digits[b & 15];
    }
    return s;
}

bool rules_allow(const cs::chunk_key& k) {
    return !k.origin_id.empty() && k.origin_id.find('/') == std::string::npos &&
           k.origin_id.find('\0') == std::string::npos && k.origin_id != "." && k.origin_id != ".." &&
           !k.object_key.empty() && !k.etag.empty() && k.chunk_size > 0 && k.index >= 0;
}

std::string path_hash(const cs::chunk_key& k) {
    const auto p = cs::storage_path(k);
    FUZZ_CHECK(p.has_value());
    return p->substr(k.origin_id.size() + 1, 64);
}

void check_key(const cs::chunk_key& k) {
    const bool allowed = rules_allow(k);
    const auto v = cs::validate(k);
    FUZZ_CHECK(v.has_value() == allowed);
    const auto p = cs::storage_path(k);
    FUZZ_CHECK(p.has_value() == allowed);
    if (!allowed) {
        FUZZ_CHECK(v.error().code == cs::errc::invalid_argument);
        FUZZ_CHECK(p.error().code == cs::errc::invalid_argument);
        FUZZ_CHECK(p.error().op == "storage_path");
        return;
    }
    const std::string& path = *p;
    const std::string idx = std::to_string(k.index);
    FUZZ_CHECK(path.size() == k.origin_id.size() + 1 + 64 + 1 + idx.size());
    FUZZ_CHECK(path.compare(0, k.origin_id.size(), k.origin_id) == 0);
    FUZZ_CHECK(path[k.origin_id.size()] == '/');
    FUZZ_CHECK(path[k.origin_id.size() + 65] == '/');
    FUZZ_CHECK(path.substr(k.origin_id.size() + 66) == idx);

    // The hash: one-shot over the whole encoding vs the library's streamed updates.
    const std::string enc = encoding(k);
    cs::detail::sha256 one;
    one.update(enc);
    const std::string want = hex(one.finish());
    FUZZ_CHECK(path.substr(k.origin_id.size() + 1, 64) == want);
#if defined(CACHESTORE_FUZZ_OPENSSL)
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(enc.data()), enc.size(), md);
    cs::detail::sha256::digest d{};
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = md[i];
    FUZZ_CHECK(hex(d) == want);
#endif
    FUZZ_CHECK(k.expected_len(0) == 0);
}

/// The library's SHA-256 fed in pieces whose sizes come from `cuts`.
void check_sha256_pieces(std::string_view msg, fuzz::bytes_reader cuts) {
    cs::detail::sha256 whole;
    whole.update(msg);
    cs::detail::sha256 pieces;
    std::string_view rest = msg;
    while (!rest.empty()) {
        const std::size_t n = std::min<std::size_t>(rest.size(), std::max<std::size_t>(1, cuts.byte()));
        pieces.update(rest.substr(0, n));
        rest.remove_prefix(n);
    }
    const auto a = whole.finish();
    FUZZ_CHECK(pieces.finish() == a);
#if defined(CACHESTORE_FUZZ_OPENSSL)
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), md);
    for (std::size_t i = 0; i < a.size(); ++i) FUZZ_CHECK(a[i] == md[i]);
#endif
}

void check_slice(i64 cs_, i64 index, i64 off, i64 len, i128& covered, i128& next_begin) {
    const auto s = cs::slice_in_chunk(cs_, index, off, len);
    FUZZ_CHECK(s.index == index);
    FUZZ_CHECK(s.length > 0);
    FUZZ_CHECK(s.offset >= 0 && s.offset < cs_);
    FUZZ_CHECK(s.length <= cs_ - s.offset);
    const i128 begin = i128{index} * cs_ + s.offset;
    if (next_begin >= 0) FUZZ_CHECK(begin == next_begin);
    next_begin = begin + s.length;
    covered += s.length;
}

void check_range(i64 chunk_size, i64 off, i64 len) {
    const auto span = cs::chunks_for_range(chunk_size, off, len);
    const bool ok = chunk_size > 0 && off >= 0 && len > 0 && i128{off} + len <= i64_max;
    FUZZ_CHECK(span.has_value() == ok);
    if (!ok) {
        FUZZ_CHECK(span.error().code == cs::errc::invalid_argument);
        return;
    }
    FUZZ_CHECK(span->first == off / chunk_size);
    FUZZ_CHECK(span->last == (off + len - 1) / chunk_size);
    FUZZ_CHECK(span->count() >= 1);
    i128 covered = 0, next_begin = i128{off};
    if (span->count() <= 64) {
        for (i64 i = span->first; i <= span->last; ++i) check_slice(chunk_size, i, off, len, covered, next_begin);
        FUZZ_CHECK(covered == len);
        FUZZ_CHECK(next_begin == i128{off} + len);
    } else {
        // The two ends: the first slice starts at off, the last ends at off + len.
        check_slice(chunk_size, span->first, off, len, covered, next_begin);
        next_begin = -1;
        check_slice(chunk_size, span->last, off, len, covered, next_begin);
        FUZZ_CHECK(next_begin == i128{off} + len);
    }
    // Just outside the span: empty.
    if (span->first > 0) FUZZ_CHECK(cs::slice_in_chunk(chunk_size, span->first - 1, off, len).length == 0);
    if (span->last < i64_max / chunk_size)
        FUZZ_CHECK(cs::slice_in_chunk(chunk_size, span->last + 1, off, len).length == 0);
}

void check_expected_len(i64 chunk_size, i64 object_size, i64 index) {
    cs::chunk_key k;
    k.chunk_size = chunk_size;
    k.index = index;
    const i64 n = k.expected_len(object_size);
    FUZZ_CHECK(n >= 0);
    if (chunk_size > 0) FUZZ_CHECK(n <= chunk_size);
    if (chunk_size <= 0 || index < 0 || object_size == 0) {
        FUZZ_CHECK(n == 0);
        return;
    }
    if (object_size < 0) { // unknown size: the most a chunk holds (upstream parity)
        FUZZ_CHECK(n == chunk_size);
        return;
    }
    const i128 start = i128{index} * chunk_size;
    const i128 want = start >= object_size ? 0 : std::min<i128>(chunk_size, object_size - start);
    FUZZ_CHECK(n == want);
    const i64 chunks = (object_size - 1) / chunk_size + 1;
    if (chunks <= 64) {
        i128 total = 0;
        for (i64 i = 0; i <= chunks; ++i) {
            k.index = i;
            total += k.expected_len(object_size);
        }
        FUZZ_CHECK(total == object_size);
    }
}

void check_object_range(i64 chunk_size, i64 object_size, i64 off, i64 len) {
    const auto r = cs::range_in_object(chunk_size, object_size, off, len);
    const bool ok = chunk_size > 0 && object_size >= 0 && off >= 0 && len >= 0;
    FUZZ_CHECK(r.has_value() == ok);
    if (!ok) {
        FUZZ_CHECK(r.error().code == cs::errc::invalid_argument);
        return;
    }
    const i128 end = std::min<i128>(i128{off} + len, object_size);
    const i128 want = end > off ? end - off : 0;
    FUZZ_CHECK(r->offset == off);
    FUZZ_CHECK(r->length == want);
    FUZZ_CHECK(r->empty() == (want == 0));
    if (want == 0) {
        FUZZ_CHECK(r->chunks.count() == 0);
        return;
    }
    const auto span = cs::chunks_for_range(chunk_size, r->offset, r->length);
    FUZZ_CHECK(span.has_value());
    FUZZ_CHECK(span->first == r->chunks.first && span->last == r->chunks.last);
    cs::chunk_key k;
    k.chunk_size = chunk_size;
    for (const i64 i : {r->chunks.first, r->chunks.last}) {
        k.index = i;
        const auto s = cs::slice_in_chunk(chunk_size, i, r->offset, r->length);
        FUZZ_CHECK(s.length > 0);
        FUZZ_CHECK(s.offset + s.length <= k.expected_len(object_size));
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in = fuzz::as_view(data, size);
    auto l = fuzz::lines(in.substr(0, std::min<std::size_t>(in.size(), 4096)));
    if (l.size() < 6) l.resize(6);

    cs::chunk_key k{l[0], l[1], l[2], l[3], parse_num(l[4]), parse_num(l[5])};
    check_key(k);

    // Moving a byte across each field boundary changes the hash.
    if (rules_allow(k)) {
        const std::string h = path_hash(k);
        std::string* fields[] = {&k.origin_id, &k.bucket, &k.object_key, &k.etag};
        for (std::size_t f = 0; f + 1 < 4; ++f) {
            cs::chunk_key m = k;
            std::string* mf[] = {&m.origin_id, &m.bucket, &m.object_key, &m.etag};
            if (fields[f]->empty()) continue;
            mf[f + 1]->insert(mf[f + 1]->begin(), mf[f]->back());
            mf[f]->pop_back();
            if (rules_allow(m)) FUZZ_CHECK_MSG(path_hash(m) != h, "field boundary shift kept the hash");
        }
        cs::chunk_key other_size = k;
        other_size.chunk_size = k.chunk_size == i64_max ? 1 : k.chunk_size + 1;
        FUZZ_CHECK(path_hash(other_size) != h);
        cs::chunk_key other_index = k;
        other_index.index = k.index == i64_max ? 0 : k.index + 1;
        FUZZ_CHECK(path_hash(other_index) == h); // the index is not hashed, only appended
    }

    // Numbers for the range checks: raw 64-bit values and small ones.
    fuzz::bytes_reader br(in.size() > 4096 ? in.substr(4096) : in);
    const auto a = static_cast<i64>(br.u64());
    const auto b = static_cast<i64>(br.u64());
    const auto c = static_cast<i64>(br.u64());
    check_range(a, b, c);
    check_range(a & 0xffff, b & 0xfffff, c & 0xfffff);
    check_range((a & 0xff) + 1, i64_max - (b & 0xffff), (c & 0xffff) + 1);
    check_range(a, i64_max - (b & 0xffff), (c & 0xffff) + 1);
    check_expected_len(a, b, c);
    const auto d = static_cast<i64>(br.u64());
    check_object_range(a, b, c, d);
    check_object_range((a & 0xff) + 1, b & 0xfffff, c & 0xfffff, d & 0xfffff);
    check_object_range((a & 0xff) + 1, i64_max - (b & 0xff), i64_max - (c & 0xffff), d);
    check_expected_len(a & 0xff, b & 0xffff, c & 0xff);
    check_sha256_pieces(in, fuzz::bytes_reader(in));
    return 0;
}
