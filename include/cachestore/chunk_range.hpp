// cachestore/chunk_range.hpp - walking an object byte range chunk by chunk.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include "cachestore/error.hpp"

namespace cachestore {

/// The chunks a byte range touches: indices first..last, inclusive.
struct chunk_span {
    std::int64_t first = 0;
    std::int64_t last = 0;
    [[nodiscard]] constexpr std::int64_t count() const noexcept { return last - first + 1; }
};

/// The part of a byte range that lies in one chunk, relative to the chunk.
struct chunk_slice {
    std::int64_t index = 0;  ///< chunk index
    std::int64_t offset = 0; ///< first byte inside the chunk
    std::int64_t length = 0; ///< bytes inside the chunk
};

/// The chunks covering object bytes `[offset, offset + length)`: arithmetic
/// only, for a range already known to lie inside the object. It is not told
/// the object's size, so it cannot clamp: to serve a range a client asked
/// for, use range_in_object below (or read_range in read_range.hpp).
/// `invalid_argument` for chunk_size <= 0, offset < 0, length <= 0 or overflow.
[[nodiscard]] inline result<chunk_span> chunks_for_range(std::int64_t chunk_size, std::int64_t offset,
                                                         std::int64_t length) {
    if (chunk_size <= 0 || offset < 0 || length <= 0 ||
        offset > std::numeric_limits<std::int64_t>::max() - length)
        return fail(errc::invalid_argument, "chunks_for_range", {},
                    "need chunk_size > 0, offset >= 0, length > 0 and no overflow (chunk_size=" +
                        std::to_string(chunk_size) + " offset=" + std::to_string(offset) +
                        " length=" + std::to_string(length) + ")");
    return chunk_span{offset / chunk_size, (offset + length - 1) / chunk_size};
}

/// The slice of object range `[offset, offset + length)` inside chunk `index`
/// (length 0 when the chunk is outside the range, or when the arguments break
/// the preconditions of chunks_for_range). Never overflows: the last chunk of
/// a range ending near INT64_MAX may itself extend past INT64_MAX.
[[nodiscard]] constexpr chunk_slice slice_in_chunk(std::int64_t chunk_size, std::int64_t index,
                                                   std::int64_t offset, std::int64_t length) noexcept {
    if (chunk_size <= 0 || offset < 0 || length <= 0 || offset > std::numeric_limits<std::int64_t>::max() - length)
        return {index, 0, 0};
    const std::int64_t range_end = offset + length;
    // Outside [first, last] of the range: empty (and index * chunk_size might overflow).
    if (index < offset / chunk_size || index > (range_end - 1) / chunk_size) return {index, 0, 0};
    const std::int64_t chunk_begin = index * chunk_size; // <= range_end - 1: no overflow
    const std::int64_t begin = offset > chunk_begin ? offset : chunk_begin;
    // chunk_begin + chunk_size may exceed INT64_MAX: compare the distances instead.
    const std::int64_t end = range_end - chunk_begin <= chunk_size ? range_end : chunk_begin + chunk_size;
    return {index, begin - chunk_begin, end - begin};
}

/// A byte range clamped to an object: the part of `[offset, offset + length)`
/// that lies inside an object of `object_size` bytes, and its chunks.
struct object_range {
    std::int64_t offset = 0;  ///< first byte, as asked
    std::int64_t length = 0;  ///< bytes inside the object: 0 when the range starts at or past its end
    chunk_span chunks{0, -1}; ///< the chunks holding those bytes; count() == 0 when length == 0

    [[nodiscard]] constexpr bool empty() const noexcept { return length == 0; }
};

/// The range walker for serving: `[offset, offset + length)` of an object of
/// `object_size` bytes, clamped to the object, with the chunks it touches.
/// A range running past the end is cut at the end; one starting at or past
/// the end (or of length 0, or in an empty object) is empty, not an error,
/// like `pread` at end of file. Walk it with slice_in_chunk(chunk_size, index,
/// r.offset, r.length): every slice then lies within its chunk's
/// `expected_len(object_size)`. `invalid_argument` for chunk_size <= 0,
/// object_size < 0, offset < 0 or length < 0.
///
/// Prefer this to chunks_for_range, which does not know the object's size:
/// a range past the end of the object gives it chunks that do not exist.
[[nodiscard]] inline result<object_range> range_in_object(std::int64_t chunk_size, std::int64_t object_size,
                                                          std::int64_t offset, std::int64_t length) {
    if (chunk_size <= 0 || object_size < 0 || offset < 0 || length < 0)
        return fail(errc::invalid_argument, "range_in_object", {},
                    "need chunk_size > 0, object_size >= 0, offset >= 0 and length >= 0 (chunk_size=" +
                        std::to_string(chunk_size) + " object_size=" + std::to_string(object_size) +
                        " offset=" + std::to_string(offset) + " length=" + std::to_string(length) + ")");
    object_range r;
    r.offset = offset;
    if (offset >= object_size || length == 0) return r;
    r.length = length < object_size - offset ? length : object_size - offset; // no overflow: compared, not added
    r.chunks = chunk_span{offset / chunk_size, (offset + r.length - 1) / chunk_size};
    return r;
}

} // namespace cachestore
