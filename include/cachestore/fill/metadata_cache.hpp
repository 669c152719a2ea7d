// cachestore/fill/metadata_cache.hpp - origin object metadata, kept for a
// TTL: (origin_id, bucket, key) -> {size, etag}, bounded in entries (LRU),
// with a shorter TTL for answers that say there is nothing to read
// (docs/fill.md, R14). The engine puts its own singleflight in front.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "cachestore/error.hpp"
#include "cachestore/fill/origin.hpp"

namespace cachestore::fill {

class metadata_cache {
public:
    using clock = std::chrono::steady_clock;

    /// `ttl` for metadata, `negative_ttl` for not-found and a missing or weak
    /// ETag; a TTL <= 0 keeps nothing of that kind; at most `max_entries`
    /// objects (0: nothing is kept), the least recently used going first.
    metadata_cache(std::size_t max_entries, clock::duration ttl, clock::duration negative_ttl)
        : max_(max_entries), ttl_(ttl), negative_ttl_(negative_ttl) {}

    /// The cache key of an object: its three names, NUL-separated (no name
    /// can hold a NUL that reaches an origin).
    [[nodiscard]] static std::string key_of(const object_ref& r) {
        std::string k;
        k.reserve(r.origin_id.size() + r.bucket.size() + r.object_key.size() + 2);
        k.append(r.origin_id).push_back('\0');
        k.append(r.bucket).push_back('\0');
        k.append(r.object_key);
        return k;
    }

    /// The answer kept for `key`, if one is and has not expired (an expired
    /// one is dropped); a hit becomes the most recently used.
    std::optional<result<object_meta>> find(const std::string& key, clock::time_point now = clock::now()) {
        const std::lock_guard lk(mu_);
        const auto it = index_.find(key);
        if (it == index_.end()) return std::nullopt;
        if (now >= it->second->expires) {
            lru_.erase(it->second);
            index_.erase(it);
            return std::nullopt;
        }
        lru_.splice(lru_.begin(), lru_, it->second);
        return it->second->value;
    }

    /// Keeps `meta` for `ttl`.
    void put(const std::string& key, object_meta meta, clock::time_point now = clock::now()) {
        keep(key, std::move(meta), ttl_, now);
    }
    /// Keeps a negative answer (not_found, no strong ETag) for `negative_ttl`.
    void put_negative(const std::string& key, error e, clock::time_point now = clock::now()) {
        keep(key, std::unexpected(std::move(e)), negative_ttl_, now);
    }

    /// Forgets `key` (its object changed).
    void drop(const std::string& key) {
        const std::lock_guard lk(mu_);
        if (const auto it = index_.find(key); it != index_.end()) {
            lru_.erase(it->second);
            index_.erase(it);
        }
    }

    [[nodiscard]] std::size_t size() const {
        const std::lock_guard lk(mu_);
        return index_.size();
    }

private:
    struct entry {
        std::string key;
        result<object_meta> value;
        clock::time_point expires;
    };

    void keep(const std::string& key, result<object_meta> value, clock::duration ttl, clock::time_point now) {
        if (ttl <= clock::duration::zero() || max_ == 0) return;
        const std::lock_guard lk(mu_);
        if (const auto it = index_.find(key); it != index_.end()) {
            it->second->value = std::move(value);
            it->second->expires = now + ttl;
            lru_.splice(lru_.begin(), lru_, it->second);
            return;
        }
        if (index_.size() >= max_) {
            index_.erase(lru_.back().key);
            lru_.pop_back();
        }
        lru_.push_front(entry{key, std::move(value), now + ttl});
        index_.emplace(key, lru_.begin());
    }

    mutable std::mutex mu_;
    std::list<entry> lru_; ///< most recently used first
    std::unordered_map<std::string, std::list<entry>::iterator> index_;
    const std::size_t max_;
    const clock::duration ttl_, negative_ttl_;
};

} // namespace cachestore::fill
