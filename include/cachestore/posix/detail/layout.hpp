// cachestore/posix/detail/layout.hpp - where things live under the root.
//
//     <root>/<origin_id>/<hash[0:2]>/<hash>/<index>       a committed chunk
//     <root>/<origin_id>/<hash[0:2]>/<hash>/.tmp-<index>-<16 hex>   a put in progress
//     <root>/.cachestore-open-<16 hex>                    open()'s writability probe
//     <root>/.cachestore-selftest/                        self_test()'s probes
//     <root>/.cachestore-sweep.lock                       one sweeper at a time (flock)
//
// Anything else under the root is foreign: the store never removes it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cachestore/chunk_key.hpp"

namespace cachestore::detail::posix {

inline constexpr std::size_t write_block = std::size_t{1} << 20; // put scratch buffer (upper bound)
inline constexpr std::size_t read_block = std::size_t{256} << 10; // get buffer, and the span between ctx checks
inline constexpr const char* selftest_dir = ".cachestore-selftest";
inline constexpr std::string_view open_probe_prefix = ".cachestore-open-";
inline constexpr std::string_view temp_prefix = ".tmp-";
inline constexpr const char* sweep_lock_name = ".cachestore-sweep.lock";

/// Where a chunk lives: the SPEC path (for errors) and its file under the root.
struct location {
    std::string path; ///< SPEC storage path: origin_id/hash/index
    std::string dir;  ///< origin_id/hh/hash, relative to the root
    std::string name; ///< decimal index
    [[nodiscard]] std::string rel() const { return dir + '/' + name; }
};

/// Precondition: validate(k) succeeded.
[[nodiscard]] inline location locate(const chunk_key& k) {
    location l;
    append_storage_path(l.path, k);
    const std::string_view hex(l.path.data() + k.origin_id.size() + 1, 64);
    l.dir.reserve(k.origin_id.size() + 2 + 3 + 64);
    l.dir += k.origin_id;
    l.dir += '/';
    l.dir += hex.substr(0, 2);
    l.dir += '/';
    l.dir += hex;
    l.name = std::to_string(k.index);
    return l;
}

/// A committed chunk's file name: a decimal index without leading zeros.
[[nodiscard]] constexpr bool is_chunk_name(std::string_view n) noexcept {
    if (n.empty() || n.size() > 19 || (n.size() > 1 && n[0] == '0')) return false;
    return std::ranges::all_of(n, [](char c) { return c >= '0' && c <= '9'; });
}

/// `n` is `len` lowercase hex digits (a fan-out or hash directory name).
[[nodiscard]] constexpr bool is_hex_name(std::string_view n, std::size_t len) noexcept {
    return n.size() == len && std::ranges::all_of(n, [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

} // namespace cachestore::detail::posix
