// cachestore/info.hpp - what stat() reports about a committed chunk.
#pragma once

#include <chrono>
#include <cstdint>

namespace cachestore {

/// The result of a successful stat(): the stored size and when the chunk was
/// committed (the stored object's last-modified time; an age signal for eviction).
struct info {
    std::int64_t size = 0;
    std::chrono::system_clock::time_point committed{};
    friend bool operator==(const info&, const info&) = default;
};

} // namespace cachestore
