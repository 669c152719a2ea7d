// exact_lru_hits: the reference an LRU cache's measured hit ratio is compared
// with (posix_bench.cpp's bounded-store rows, tiered_rows.hpp's Zipf rows).
#pragma once

#include <cstddef>
#include <list>
#include <unordered_map>
#include <vector>

namespace bench {

/// Exact LRU over equal-sized items: hits of a stream at a capacity (a miss fills at once).
template <class Key>
std::size_t exact_lru_hits(const std::vector<Key>& stream, std::size_t capacity) {
    std::list<Key> order; // front: most recent
    std::unordered_map<Key, typename std::list<Key>::iterator> where;
    std::size_t hits = 0;
    for (const auto& k : stream) {
        if (auto it = where.find(k); it != where.end()) {
            ++hits;
            order.splice(order.begin(), order, it->second);
            continue;
        }
        order.push_front(k);
        where[k] = order.begin();
        if (order.size() > capacity) {
            where.erase(order.back());
            order.pop_back();
        }
    }
    return hits;
}

} // namespace bench
