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

/// The chunks covering object bytes `[offset, offset + length)`.
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

} // namespace cachestore
