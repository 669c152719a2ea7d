// cachestore/memory_store.hpp - the in-memory driver: the reference model.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/detail/fork_safe_mutex.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/store.hpp"

namespace cachestore {

/// Keeps chunks in process memory. Thread-safe; readers never block each
/// other, and a reader keeps its chunk alive even if it is removed meanwhile.
class memory_store {
public:
    memory_store() = default;

    template <chunk_sink Sink>
    result<> get_chunk(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, Sink&& sink) {
        if (auto a = detail::check_get_args(key, off, n); !a) return a;
        std::string path = detail_path(key);
        if (auto c = ctx.check("get_chunk", path); !c) return c;
        auto blob = find(path);
        if (!blob) return fail(errc::not_found, "get_chunk", path, "chunk not stored");
        const auto size = static_cast<std::int64_t>(blob->bytes.size());
        if (off + n > size)
            return fail(errc::out_of_range, "get_chunk", path,
                        "range ends at " + std::to_string(off + n) + " but the chunk holds " + std::to_string(size) + " bytes");
        constexpr std::int64_t block = std::int64_t{64} * 1024; // bounds the time between cancellation checks
        for (std::int64_t at = off; at < off + n; at += block) {
            if (auto c = ctx.check("get_chunk", path); !c) return c;
            const std::int64_t len = std::min(block, off + n - at);
            if (!sink(std::span<const std::byte>(blob->bytes.data() + at, static_cast<std::size_t>(len))))
                return fail(errc::cancelled, "get_chunk", path, "sink stopped the transfer");
        }
        return {};
    }

    template <chunk_source Src>
    result<> put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src&& src) {
        if (auto a = detail::check_put_args(key, size); !a) return a;
        if (auto a = detail::check_source_size(src, size); !a) return a;
        std::string path = detail_path(key);
        if (auto c = ctx.check("put_chunk", path); !c) return c;
        if (find(path)) return fail(errc::commit_lost, "put_chunk", path, "chunk already committed");
        auto blob = std::make_shared<entry>();
        if (auto sized = detail::resize_buffer(blob->bytes, size, "put_chunk", path, "the chunk"); !sized) return sized;
        std::size_t at = 0;
        std::byte scratch[64 * 1024];
        auto r = detail::pump_exact(ctx, "put_chunk", path, src, size, scratch, [&](std::span<const std::byte> b) -> result<> {
            std::memcpy(blob->bytes.data() + at, b.data(), b.size());
            at += b.size();
            return {};
        });
        if (!r) return r;
        if (auto c = ctx.check("put_chunk", path); !c) return c;
        blob->committed = std::chrono::system_clock::now();
        std::unique_lock lock(mu_);
        if (!chunks_.try_emplace(std::move(path), std::move(blob)).second)
            return fail(errc::commit_lost, "put_chunk", detail_path(key), "chunk already committed");
        return {};
    }

    result<info> stat(const context& ctx, const chunk_key& key) {
        if (auto v = validate(key, "stat"); !v) return std::unexpected(std::move(v.error()));
        std::string path = detail_path(key);
        if (auto c = ctx.check("stat", path); !c) return std::unexpected(std::move(c.error()));
        auto blob = find(path);
        if (!blob) return fail(errc::not_found, "stat", path, "chunk not stored");
        return info{static_cast<std::int64_t>(blob->bytes.size()), blob->committed};
    }

    result<> remove(const context& ctx, const chunk_key& key) {
        if (auto v = validate(key, "remove"); !v) return v;
        std::string path = detail_path(key);
        if (auto c = ctx.check("remove", path); !c) return c;
        std::unique_lock lock(mu_);
        chunks_.erase(path);
        return {};
    }

    result<> self_test(const context& ctx) { return ctx.check("self_test"); }

    /// Number of stored chunks (for tests and examples).
    [[nodiscard]] std::size_t size() const {
        std::shared_lock lock(mu_);
        return chunks_.size();
    }

private:
    struct entry {
        std::vector<std::byte> bytes;
        std::chrono::system_clock::time_point committed;
    };

    static std::string detail_path(const chunk_key& key) {
        std::string p;
        detail::append_storage_path(p, key);
        return p;
    }

    std::shared_ptr<const entry> find(const std::string& path) const {
        std::shared_lock lock(mu_);
        auto it = chunks_.find(path);
        return it == chunks_.end() ? nullptr : it->second;
    }

    mutable detail::fork_safe_shared_mutex mu_; ///< a forked child never inherits it locked
    std::map<std::string, std::shared_ptr<const entry>, std::less<>> chunks_;
};

static_assert(CacheStore<memory_store>);

} // namespace cachestore
