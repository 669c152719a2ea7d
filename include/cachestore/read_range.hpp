// cachestore/read_range.hpp - read-through: serving a byte range of an origin
// object through a store, written once over the CacheStore concept.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachestore/chunk_key.hpp"
#include "cachestore/chunk_range.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/store.hpp"

namespace cachestore {

/// One version of an origin object as the cache names it: the chunk_key
/// fields but the index, and the object's size.
struct origin_object {
    std::string origin_id;       ///< names the deployment (chunk_key::origin_id)
    std::string bucket;          ///< origin bucket (may be empty)
    std::string object_key;      ///< origin object key
    std::string etag;            ///< the origin's ETag exactly as sent, quotes included; a strong one (not `W/...`)
    std::int64_t size = 0;       ///< the object's size in bytes, from the same response as the ETag
    std::int64_t chunk_size = 0; ///< the deployment's chunk size (part of the chunk's identity)

    /// The key of chunk `index` of this object.
    [[nodiscard]] chunk_key chunk(std::int64_t index) const {
        return chunk_key{origin_id, bucket, object_key, etag, chunk_size, index};
    }
};

/// The caller's origin read: `fetch(offset, out)` reads origin bytes
/// `[offset, offset + out.size())` of the same object version (send the ETag
/// as `If-Match`) into `out` and returns how many bytes the origin produced.
/// Anything but exactly `out.size()` is a broken origin: if it sent more than
/// asked (a ranged GET answered with the whole object, an object that grew),
/// return that larger count, or an error. Its errors are returned to the
/// caller of read_range unchanged.
template <class F>
concept origin_fetch = std::invocable<F&, std::int64_t, std::span<std::byte>> &&
                       std::convertible_to<std::invoke_result_t<F&, std::int64_t, std::span<std::byte>>,
                                           result<std::size_t>>;

/// What one read_range call did, for the caller's log and metrics.
struct read_stats {
    std::int64_t served = 0;         ///< bytes written to the front of `out`: the range clamped to the object
    std::int64_t chunks_hit = 0;     ///< chunks read from the store
    std::int64_t chunks_missed = 0;  ///< chunks read whole from the origin (not_found, or a failed store read)
    std::int64_t commits = 0;        ///< misses this call committed
    std::int64_t commits_lost = 0;   ///< misses another filler had committed first: the same bytes, a hit for the store
    std::int64_t damaged_replaced = 0; ///< damaged chunks (stored shorter than expected_len) removed and committed again; each is also a miss and a commit
    std::int64_t origin_bytes = 0;   ///< bytes read from the origin (whole chunks)
    std::int64_t store_errors = 0;   ///< store reads (other than not_found) and commits (other than commit_lost) that failed
    std::optional<error> store_error; ///< the first of those, to log; the read itself still succeeded
};

namespace detail {
/// Store failures after which read_range stops: the caller's own request is
/// over (cancelled, deadline) or malformed. Every other store failure falls
/// back to the origin.
[[nodiscard]] constexpr bool ends_read(errc e) noexcept {
    return e == errc::cancelled || e == errc::deadline_exceeded || e == errc::invalid_argument;
}

inline void note_store_error(read_stats& st, error&& e) {
    ++st.store_errors;
    if (!st.store_error) st.store_error = std::move(e);
}

/// What read_range does with a chunk's origin bytes besides serving them.
enum class fill_action : std::uint8_t {
    serve,   ///< nothing: the store failed, or changed under us
    commit,  ///< a miss: put_chunk
    replace, ///< a damaged chunk: remove, then put_chunk
};

/// The checks every read-through call makes before any I/O (a valid key, a
/// strong ETag), and the range clamped to the object; errors name `op` and
/// the object key.
[[nodiscard]] inline result<object_range> checked_range(const origin_object& obj, std::int64_t offset,
                                                        std::int64_t length, std::string_view op) {
    if (auto v = validate(obj.chunk(0), op); !v) return std::unexpected(std::move(v.error()));
    if (obj.etag.starts_with("W/"))
        return fail(errc::invalid_argument, std::string(op), obj.object_key,
                    "weak ETag " + obj.etag + ": it does not promise byte-identical content; serve the object "
                                              "from the origin without caching it");
    auto range = range_in_object(obj.chunk_size, obj.size, offset, length);
    if (!range) {
        range.error().op = op;
        range.error().path = obj.object_key;
    }
    return range;
}

/// An origin that produced `got` bytes of chunk `key.index` instead of its
/// expected_len: `protocol`, nothing committed.
[[nodiscard]] inline std::unexpected<error> origin_length_error(std::string_view op, const origin_object& obj,
                                                                const chunk_key& key, std::size_t got) {
    const std::int64_t at = key.index * obj.chunk_size;
    return fail(errc::protocol, std::string(op), obj.object_key,
                "the origin produced " + std::to_string(got) + " bytes for chunk " + std::to_string(key.index) +
                    " (object bytes " + std::to_string(at) + "..), expected " +
                    std::to_string(key.expected_len(obj.size)) + " of a " + std::to_string(obj.size) +
                    "-byte object: it changed or broke; nothing committed");
}

/// The read-through loop, one for read_range and fill::engine: the range's
/// chunks in order, hits read straight into `out`; for any other outcome
/// (unless it ends the read) `miss(key, slice, dst, error, stats)` fills
/// `dst` (the slice's place in `out`) or returns the read's error.
template <CacheStore S, class Miss>
result<read_stats> read_chunks(S& store, const context& ctx, const origin_object& obj, std::int64_t offset,
                               std::span<std::byte> out, std::string_view op, Miss&& miss) {
    auto range = checked_range(obj, offset, static_cast<std::int64_t>(out.size()), op);
    if (!range) return std::unexpected(std::move(range.error()));
    read_stats st;
    chunk_key key = obj.chunk(0);
    std::size_t pos = 0; // bytes of `out` filled so far
    for (key.index = range->chunks.first; key.index <= range->chunks.last; ++key.index) {
        const chunk_slice slice = slice_in_chunk(obj.chunk_size, key.index, range->offset, range->length);
        const std::span<std::byte> dst = out.subspan(pos, static_cast<std::size_t>(slice.length));
        pos += dst.size();
        auto hit = get_chunk(store, ctx, key, slice.offset, dst);
        if (hit) {
            ++st.chunks_hit;
            continue;
        }
        if (ends_read(hit.error().code)) return std::unexpected(std::move(hit.error()));
        if (auto m = miss(std::as_const(key), slice, dst, std::move(hit.error()), st); !m)
            return std::unexpected(std::move(m.error()));
    }
    st.served = range->length;
    return st;
}

} // namespace detail

/// Serves bytes `[offset, offset + out.size())` of `obj` into `out` through
/// `store`, chunk by chunk, and returns what it did. Only origin bytes of this
/// object version ever reach `out` or the store:
///
/// - The range is clamped to the object, like `pread`: `stats.served` bytes at
///   the front of `out` are the object's, the rest of `out` is untouched.
///   Starting at or past the end (or an empty object, or an empty `out`)
///   serves 0 bytes and is not an error; the caller decides whether that is
///   an HTTP 416.
/// - A hit is read from the store straight into `out`.
/// - A miss (`not_found`) reads the whole chunk, exactly
///   `expected_len(obj.size)` bytes, with `fetch` (straight into `out` when the
///   range covers the chunk, else into one scratch buffer of that length),
///   commits it and serves the slice. `commit_lost` means another filler
///   committed the same bytes first: counted in `commits_lost`, served like a hit.
/// - A damaged chunk, one the store holds shorter than `expected_len(obj.size)`
///   (committed under a wrong object size; its key names the ETag, which is
///   strong, so its length is known), is found when a read reaches past its
///   end: the store answers `out_of_range` and `stat` gives another length.
///   It is read whole from the origin like a miss, served, then removed and
///   committed again (counted in `damaged_replaced`), so the next read is a
///   hit. Only after the origin produced exactly `expected_len` bytes: a
///   caller's wrong `obj.size` fails the read (`protocol`) and removes
///   nothing. A failed remove or commit is counted in `store_errors`, never
///   returned. Bytes it holds are read from it until then.
/// - A miss (or failed store read) that the range covers only in part, of a
///   chunk longer than 1 TiB (detail::max_buffer_bytes) or than the memory
///   left, ends the read with `io_error` naming the length, before the origin
///   is asked: never std::bad_alloc. (Hits read just the range and need no
///   buffer; a fill does, since only whole chunks are committed.)
/// - A store that fails in any other way does not fail the read when the
///   origin can serve it: a failed store read (transient, auth, ...) is served
///   from the origin without a commit, a failed commit is served from the
///   origin bytes in hand; each is counted in `store_errors` and the first is
///   kept in `store_error` for the log. Only `cancelled`, `deadline_exceeded`
///   and `invalid_argument` from the store end the read.
/// - An origin that fails, or produces fewer or more bytes than asked, ends
///   the read with an error (its own, or `protocol` for a wrong length) and
///   nothing from that fetch is committed.
///
/// On any error the contents of `out` are unspecified: serve none of them.
/// `invalid_argument` for an invalid key (see validate()), `obj.size < 0`,
/// `offset < 0` or a weak ETag (`W/"..."`: it does not promise byte-identical
/// content, so chunks filled at different times could mix two
/// representations; serve such objects from the origin, uncached).
/// Thread-safe as the store is: many threads may read (and fill) the same
/// chunks at once; each gets exact origin bytes.
template <CacheStore S, origin_fetch F>
result<read_stats> read_range(S& store, const context& ctx, const origin_object& obj, std::int64_t offset,
                              std::span<std::byte> out, F&& fetch) {
    std::vector<std::byte> scratch; // one chunk, for misses the range covers only in part
    auto miss = [&](const chunk_key& key, const chunk_slice& slice, std::span<std::byte> dst, error&& hit_error,
                    read_stats& st) -> result<> {
        const std::int64_t len = key.expected_len(obj.size);
        detail::fill_action action = detail::fill_action::serve;
        std::int64_t stored = 0; // a damaged chunk's length
        if (hit_error.code == errc::not_found) {
            action = detail::fill_action::commit;
        } else if (hit_error.code == errc::out_of_range) {
            // The slice lies within expected_len (<= chunk_size), so the stored
            // chunk is shorter than this object's chunk: damaged, if stat agrees.
            auto info = store.stat(ctx, key);
            if (info) {
                stored = info->size;
                if (stored != len) action = detail::fill_action::replace;
                // else another filler replaced it since the read: serve the origin's bytes this once
            } else if (info.error().code == errc::not_found) {
                action = detail::fill_action::commit; // removed since the read: a miss
            } else if (detail::ends_read(info.error().code)) {
                return std::unexpected(std::move(info.error()));
            } else {
                detail::note_store_error(st, std::move(info.error()));
            }
        } else {
            detail::note_store_error(st, std::move(hit_error));
        }

        // A miss: the whole chunk from the origin, exactly expected_len bytes.
        std::span<std::byte> chunk = dst;
        if (slice.offset != 0 || slice.length != len) {
            if (auto sized = detail::resize_buffer(scratch, len, "read_range", obj.object_key,
                                                   "chunk " + std::to_string(key.index) +
                                                       ", to fill it for a read of part of it (use a smaller chunk_size, "
                                                       "or read whole chunks into your own buffer)");
                !sized)
                return sized;
            chunk = std::span<std::byte>(scratch);
        }
        if (auto c = ctx.check("read_range", obj.object_key); !c) return c;
        const std::int64_t at = key.index * obj.chunk_size; // < obj.size: no overflow
        result<std::size_t> got = fetch(at, chunk);
        if (!got) return std::unexpected(std::move(got.error()));
        if (*got != chunk.size()) return detail::origin_length_error("read_range", obj, key, *got);
        ++st.chunks_missed;
        st.origin_bytes += len;
        const bool damaged = action == detail::fill_action::replace;
        auto replacing = [&](error&& e) {
            e.message += " (replacing damaged chunk " + std::to_string(key.index) + ": " + std::to_string(stored) +
                         " bytes stored, " + std::to_string(len) + " expected)";
            detail::note_store_error(st, std::move(e));
        };
        if (damaged) {
            // The origin produced exactly len bytes of this (strong) ETag: the
            // stored chunk is proven damaged. A put onto it would be commit_lost.
            if (auto rm = store.remove(ctx, key); rm) action = detail::fill_action::commit;
            else replacing(std::move(rm.error()));
        }
        if (action == detail::fill_action::commit) {
            auto put = store.put_chunk(ctx, key, len, std::span<const std::byte>(chunk));
            if (put) {
                ++st.commits;
                if (damaged) ++st.damaged_replaced;
            } else if (put.error().code == errc::commit_lost) {
                ++st.commits_lost;
            } else if (damaged) {
                replacing(std::move(put.error()));
            } else {
                detail::note_store_error(st, std::move(put.error()));
            }
        }
        if (chunk.data() != dst.data()) std::memcpy(dst.data(), chunk.data() + slice.offset, dst.size());
        return {};
    };
    return detail::read_chunks(store, ctx, obj, offset, out, "read_range", miss);
}

} // namespace cachestore
