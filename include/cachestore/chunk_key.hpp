// cachestore/chunk_key.hpp - chunk identity, validation and the storage path.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "cachestore/detail/sha256.hpp"
#include "cachestore/error.hpp"

namespace cachestore {

/// Identifies one fixed-size chunk of one version of an origin object.
/// `index = byte / chunk_size`. A new `etag` means a new logical object.
struct chunk_key {
    std::string origin_id;  ///< names a deployment; readable prefix of the path
    std::string bucket;     ///< origin bucket (may be empty)
    std::string object_key; ///< origin object key
    std::string etag;       ///< origin ETag, hashed exactly as given (quotes included)
    std::int64_t chunk_size = 0;
    std::int64_t index = 0;

    /// Length of this chunk for an origin object of `object_size` bytes: the
    /// chunk size, the remainder for the last chunk, or 0 past the end (and
    /// for an empty object). A negative `object_size` means "size unknown":
    /// then, as upstream's ExpectedLen, the chunk size (the most the chunk can
    /// hold). docs/design.md, "expected_len", says why 0 differs from upstream.
    [[nodiscard]] constexpr std::int64_t expected_len(std::int64_t object_size) const noexcept {
        if (chunk_size <= 0 || index < 0) return 0;
        if (object_size < 0) return chunk_size;
        if (object_size == 0) return 0;
        if (index > (object_size - 1) / chunk_size) return 0;
        const std::int64_t start = index * chunk_size; // no overflow: start < object_size
        const std::int64_t left = object_size - start;
        return left < chunk_size ? left : chunk_size;
    }

    friend bool operator==(const chunk_key&, const chunk_key&) = default;
};

/// Checks a key before it becomes a path: empty origin_id/object_key/etag, a
/// `/` (or NUL, or a `.`/`..` name) in origin_id, chunk_size <= 0 and
/// index < 0 are `invalid_argument`.
[[nodiscard]] inline result<> validate(const chunk_key& k, std::string_view op = "validate") {
    auto bad = [&](std::string msg) { return fail(errc::invalid_argument, std::string(op), {}, std::move(msg)); };
    if (k.origin_id.empty()) return bad("chunk key: empty origin_id");
    if (k.origin_id.find('/') != std::string::npos) return bad("chunk key: origin_id contains '/'");
    if (k.origin_id.find('\0') != std::string::npos) return bad("chunk key: origin_id contains NUL");
    if (k.origin_id == "." || k.origin_id == "..") return bad("chunk key: origin_id is '.' or '..'");
    if (k.object_key.empty()) return bad("chunk key: empty object_key");
    if (k.etag.empty()) return bad("chunk key: empty etag");
    if (k.chunk_size <= 0) return bad("chunk key: chunk_size must be > 0, got " + std::to_string(k.chunk_size));
    if (k.index < 0) return bad("chunk key: index must be >= 0, got " + std::to_string(k.index));
    return {};
}

namespace detail {

inline void hash_le64(sha256& h, std::uint64_t x) noexcept {
    std::uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(x >> (8 * i));
    h.update(b, 8);
}

inline void hash_lp(sha256& h, std::string_view s) noexcept {
    hash_le64(h, s.size());
    h.update(s);
}

/// Lowercase hex of sha256(LP(origin_id) || LP(bucket) || LP(object_key) || LP(etag) || LE64(chunk_size)).
/// Precondition: validate(k) succeeded.
inline void object_hash_hex(const chunk_key& k, char out[64]) noexcept {
    sha256 h;
    hash_lp(h, k.origin_id);
    hash_lp(h, k.bucket);
    hash_lp(h, k.object_key);
    hash_lp(h, k.etag);
    hash_le64(h, static_cast<std::uint64_t>(k.chunk_size));
    const auto d = h.finish();
    static constexpr char digits[] = "0123456789abcdef";
    for (std::size_t i = 0; i < d.size(); ++i) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 0xf];
    }
}

/// object_hash_hex, remembering this thread's last answer: the index is not
/// hashed, so every chunk of one object version shares the hash, and callers
/// touch the chunks of an object in runs (and each chunk many times).
inline void object_hash_hex_memo(const chunk_key& k, char out[64]) {
    struct memo {
        std::string origin_id, bucket, object_key, etag;
        std::int64_t chunk_size = 0;
        char hex[64] = {};
        bool valid = false;
    };
    thread_local memo m;
    if (!(m.valid && m.chunk_size == k.chunk_size && m.object_key == k.object_key && m.etag == k.etag &&
          m.bucket == k.bucket && m.origin_id == k.origin_id)) {
        m.valid = false; // stays false if an assignment below throws
        object_hash_hex(k, m.hex);
        m.origin_id = k.origin_id;
        m.bucket = k.bucket;
        m.object_key = k.object_key;
        m.etag = k.etag;
        m.chunk_size = k.chunk_size;
        m.valid = true;
    }
    std::memcpy(out, m.hex, 64);
}

/// Appends `origin_id/hex/index` to `out`. Precondition: validate(k) succeeded.
inline void append_storage_path(std::string& out, const chunk_key& k) {
    char hex[64];
    object_hash_hex_memo(k, hex);
    out.reserve(out.size() + k.origin_id.size() + 66 + 20);
    out += k.origin_id;
    out += '/';
    out.append(hex, 64);
    out += '/';
    out += std::to_string(k.index);
}

} // namespace detail

/// The byte-exact storage path shared with the upstream Go driver:
/// `origin_id + "/" + hex(sha256(...)) + "/" + decimal(index)` (SPEC §2).
[[nodiscard]] inline result<std::string> storage_path(const chunk_key& k) {
    if (auto v = validate(k, "storage_path"); !v) return std::unexpected(std::move(v.error()));
    std::string out;
    detail::append_storage_path(out, k);
    return out;
}

} // namespace cachestore
