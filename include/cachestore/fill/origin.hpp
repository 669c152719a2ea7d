// cachestore/fill/origin.hpp - the Origin concept: the proxy's upstream, as
// the read-through engine reads it (docs/fill.md).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/read_range.hpp"

namespace cachestore::fill {

/// An origin object, by name: what a proxy knows from a client's request.
struct object_ref {
    std::string origin_id;  ///< names the deployment (chunk_key::origin_id)
    std::string bucket;     ///< origin bucket (may be empty)
    std::string object_key; ///< origin object key
};

/// An origin object's metadata: one version of it.
struct object_meta {
    std::int64_t size = 0;     ///< bytes
    std::string etag;          ///< strong ETag exactly as sent, quotes included
    std::string last_modified; ///< the origin's Last-Modified (an HTTP date) as sent; may be empty
};

/// The object version `meta` describes, read in chunks of `chunk_size`.
[[nodiscard]] inline origin_object object_at(const object_ref& ref, const object_meta& meta, std::int64_t chunk_size) {
    return origin_object{ref.origin_id, ref.bucket, ref.object_key, meta.etag, meta.size, chunk_size};
}

/// `o.get(ctx, obj, offset, out)` reads origin bytes `[offset, offset +
/// out.size())` of the object version `obj` names (its ETag sent as
/// `If-Match`) into `out` and returns how many bytes the origin produced:
/// exactly `out.size()`, or another count (more than asked is returned as
/// such), which the engine refuses as `protocol`. A changed object (the ETag
/// no longer matches) is `errc::changed`; a missing one `not_found`. Called
/// from the engine's fill threads, several at once, never for the same bytes
/// twice at once; `ctx` is the fill's (the engine's ceiling and shutdown),
/// not a caller's.
template <class O>
concept Origin = requires(O& o, const context& ctx, const origin_object& obj, std::int64_t offset,
                          std::span<std::byte> out) {
    { o.get(ctx, obj, offset, out) } -> std::convertible_to<result<std::size_t>>;
};

/// An Origin that can also tell an object's metadata: `o.head(ctx, ref)`
/// gives its `size` and `etag`, `not_found` for a missing object. (The
/// engine checks the ETag: an empty or weak one is `misconfigured`.) What
/// `engine::head` and its metadata cache need.
template <class O>
concept MetadataOrigin = Origin<O> && requires(O& o, const context& ctx, const object_ref& ref) {
    { o.head(ctx, ref) } -> std::convertible_to<result<object_meta>>;
};

namespace detail {
struct no_head {};
} // namespace detail

/// An Origin over callables the proxy already has:
/// `get(ctx, obj, offset, out) -> result<std::size_t>` and, optionally,
/// `head(ctx, ref) -> result<object_meta>` (then it is a MetadataOrigin).
template <class Get, class Head = detail::no_head>
class origin_function {
public:
    explicit origin_function(Get get) : get_(std::move(get)) {}
    origin_function(Get get, Head head) : get_(std::move(get)), head_(std::move(head)) {}
    result<std::size_t> get(const context& ctx, const origin_object& obj, std::int64_t offset,
                            std::span<std::byte> out) {
        return get_(ctx, obj, offset, out);
    }
    result<object_meta> head(const context& ctx, const object_ref& ref)
        requires(!std::is_same_v<Head, detail::no_head>)
    {
        return head_(ctx, ref);
    }

private:
    Get get_;
    [[no_unique_address]] Head head_;
};

template <class Get>
origin_function(Get) -> origin_function<Get>;
template <class Get, class Head>
origin_function(Get, Head) -> origin_function<Get, Head>;

} // namespace cachestore::fill
