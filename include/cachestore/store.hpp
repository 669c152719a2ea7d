// cachestore/store.hpp - the CacheStore concept, and the conveniences written
// once over it. See docs/concept.md for the requirement table.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"

namespace cachestore {

namespace detail {
// Archetypes: the weakest types a driver must accept. Declared, never defined.
struct archetype_sink {
    bool operator()(std::span<const std::byte>);
};
struct archetype_source {
    result<std::size_t> operator()(std::span<std::byte>);
};
} // namespace detail

/// A chunk store. Every driver satisfies this at compile time; callers write
/// `template <cachestore::CacheStore S>` and pay nothing for dispatch.
///
/// | expression                          | returns        | semantics (docs/concept.md) |
/// |-------------------------------------|----------------|-----------------------------|
/// | `s.get_chunk(ctx, key, off, n, sink)` | `result<>`   | bytes [off, off+n) to sink, exactly n or an error |
/// | `s.put_chunk(ctx, key, size, src)`  | `result<>`     | commit size bytes; commit_lost if present |
/// | `s.stat(ctx, key)`                  | `result<info>` | size and commit time |
/// | `s.remove(ctx, key)`                | `result<>`     | remove; absent is success |
/// | `s.self_test(ctx)`                  | `result<>`     | prove the backend fit for stat-then-put |
template <class S>
concept CacheStore = requires(S& s, const context& ctx, const chunk_key& key, std::int64_t off,
                              std::int64_t n, detail::archetype_sink& sink,
                              detail::archetype_source& src, std::span<const std::byte> bytes) {
    { s.get_chunk(ctx, key, off, n, sink) } -> std::same_as<result<>>;
    { s.put_chunk(ctx, key, n, src) } -> std::same_as<result<>>;
    { s.put_chunk(ctx, key, n, bytes) } -> std::same_as<result<>>;
    { s.stat(ctx, key) } -> std::same_as<result<info>>;
    { s.remove(ctx, key) } -> std::same_as<result<>>;
    { s.self_test(ctx) } -> std::same_as<result<>>;
};

/// Fills `out` with bytes [off, off + out.size()) of the chunk. Drivers that
/// can read straight into the caller's memory provide a member
/// `get_chunk_into(ctx, key, off, out)`, which this calls; otherwise the bytes
/// are copied once, from the driver's receive buffer into `out`.
template <CacheStore S>
result<> get_chunk(S& s, const context& ctx, const chunk_key& key, std::int64_t off, std::span<std::byte> out) {
    if constexpr (requires { { s.get_chunk_into(ctx, key, off, out) } -> std::same_as<result<>>; }) {
        return s.get_chunk_into(ctx, key, off, out);
    } else {
        span_sink sink(out);
        return s.get_chunk(ctx, key, off, static_cast<std::int64_t>(out.size()), sink);
    }
}

namespace detail {
/// A SHA-256 digest spelled as 64 lowercase hex digits.
inline result<> check_sha256_hex(std::string_view hex) {
    bool ok = hex.size() == 64;
    for (const char c : hex) ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    if (!ok) return fail(errc::invalid_argument, "put_chunk", {}, "the payload digest must be 64 lowercase hex digits");
    return {};
}
} // namespace detail

/// put_chunk for bytes whose SHA-256 the caller already has (64 lowercase hex
/// digits), typically hashed while they arrived from the origin. A driver
/// that hashes what it uploads provides a member `put_chunk_prehashed(ctx,
/// key, bytes, sha256_hex)`, which this calls, and so skips hashing the bytes
/// again; the others ignore the digest. A digest that does not match the bytes
/// is a caller bug: a driver may refuse the commit (S3 does, and the server
/// checks it) but never commits anything but `bytes`.
template <CacheStore S>
result<> put_chunk_prehashed(S& s, const context& ctx, const chunk_key& key, std::span<const std::byte> bytes,
                             std::string_view sha256_hex) {
    if constexpr (requires { { s.put_chunk_prehashed(ctx, key, bytes, sha256_hex) } -> std::same_as<result<>>; }) {
        return s.put_chunk_prehashed(ctx, key, bytes, sha256_hex); // checks the digest itself
    } else {
        if (auto d = detail::check_sha256_hex(sha256_hex); !d) return d;
        return s.put_chunk(ctx, key, static_cast<std::int64_t>(bytes.size()), bytes);
    }
}

/// Common argument checks every driver performs before any I/O.
namespace detail {
inline result<> check_get_args(const chunk_key& key, std::int64_t off, std::int64_t n) {
    if (auto v = validate(key, "get_chunk"); !v) return v;
    if (off < 0) return fail(errc::invalid_argument, "get_chunk", {}, "offset must be >= 0, got " + std::to_string(off));
    if (n <= 0) return fail(errc::invalid_argument, "get_chunk", {}, "length must be > 0, got " + std::to_string(n));
    if (off > key.chunk_size || n > key.chunk_size - off)
        return fail(errc::out_of_range, "get_chunk", {},
                    "range [" + std::to_string(off) + ", +" + std::to_string(n) + ") exceeds chunk_size " +
                        std::to_string(key.chunk_size));
    return {};
}

inline result<> check_put_args(const chunk_key& key, std::int64_t size) {
    if (auto v = validate(key, "put_chunk"); !v) return v;
    if (size <= 0) return fail(errc::invalid_argument, "put_chunk", {}, "size must be > 0, got " + std::to_string(size));
    if (size > key.chunk_size)
        return fail(errc::invalid_argument, "put_chunk", {},
                    "size " + std::to_string(size) + " exceeds chunk_size " + std::to_string(key.chunk_size));
    return {};
}

template <class Src>
result<> check_source_size(const Src& src, std::int64_t size) {
    if constexpr (!source_function<std::remove_cvref_t<Src>>) {
        const std::span<const std::byte> b(src);
        if (static_cast<std::int64_t>(b.size()) != size)
            return fail(errc::invalid_argument, "put_chunk", {},
                        "buffer holds " + std::to_string(b.size()) + " bytes but size is " + std::to_string(size));
    }
    return {};
}
} // namespace detail

} // namespace cachestore
