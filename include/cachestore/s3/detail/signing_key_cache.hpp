// cachestore/s3/detail/signing_key_cache.hpp - derived SigV4 signing keys,
// cached per (access key id, secret, date) and cleansed when dropped.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>

#include "cachestore/detail/fork_safe_mutex.hpp"
#include "cachestore/s3/detail/crypto.hpp"

namespace cachestore::s3::sigv4::detail {

/// A small mutex-protected cache of derived signing keys. Entries hold a copy
/// of the secret (to compare, never to print) and are cleansed when replaced
/// or destroyed.
class signing_key_cache {
public:
    static constexpr std::size_t capacity = 4;

    signing_key_cache() = default;
    signing_key_cache(const signing_key_cache&) = delete;
    signing_key_cache& operator=(const signing_key_cache&) = delete;
    ~signing_key_cache() {
        for (auto& e : entries_) wipe(e);
    }

    /// Copies the cached key for (id, secret, date8) into `out`; false on a miss.
    bool find(std::string_view id, std::string_view secret, std::string_view date8,
              cachestore::s3::detail::digest32& out) {
        std::lock_guard lock(mu_);
        for (auto& e : entries_) {
            if (e.valid && std::string_view(e.date, 8) == date8 && e.access_key_id == id &&
                e.secret == secret) {
                out = e.key;
                e.last_used = ++tick_;
                return true;
            }
        }
        return false;
    }

    void insert(std::string_view id, std::string_view secret, std::string_view date8,
                const cachestore::s3::detail::digest32& key) {
        std::lock_guard lock(mu_);
        entry* victim = &entries_[0];
        for (auto& e : entries_) {
            if (e.valid && std::string_view(e.date, 8) == date8 && e.access_key_id == id &&
                e.secret == secret)
                return; // another thread got here first
            // Prefer a free slot, else the least recently used one.
            if (victim->valid && (!e.valid || e.last_used < victim->last_used)) victim = &e;
        }
        wipe(*victim);
        victim->access_key_id.assign(id);
        victim->secret.assign(secret);
        std::memcpy(victim->date, date8.data(), 8);
        victim->key = key;
        victim->last_used = ++tick_;
        victim->valid = true;
    }

private:
    struct entry {
        std::string access_key_id;
        std::string secret;
        char date[8] = {};
        cachestore::s3::detail::digest32 key{};
        std::uint64_t last_used = 0;
        bool valid = false;
    };

    static void wipe(entry& e) noexcept {
        cachestore::s3::detail::cleanse(e.secret.data(), e.secret.size());
        cachestore::s3::detail::cleanse(e.key.data(), e.key.size());
        e.secret.clear();
        e.valid = false;
    }

    cachestore::detail::fork_safe_mutex mu_; ///< a forked child never inherits it locked
    std::array<entry, capacity> entries_{};
    std::uint64_t tick_ = 0;
};

} // namespace cachestore::s3::sigv4::detail
