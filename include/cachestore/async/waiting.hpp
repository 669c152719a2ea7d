// cachestore/async/waiting.hpp - cachestore::waiting<A>: a CacheStore over an
// AsyncCacheStore, each call initiating the operation and waiting for its
// completion. For code that has a thread to block (boot, tools, tests: the
// conformance suite runs through it). docs/async.md.
#pragma once

#include <cstdint>
#include <optional>
#include <semaphore>
#include <span>
#include <type_traits>
#include <utility>

#include "cachestore/async.hpp"
#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/store.hpp"

namespace cachestore {

/// Owns the async store (`waiting<A>`) or refers to one that outlives it
/// (`waiting<A&>`). Sinks and sources are the caller's, called on the async
/// store's threads while the caller waits. Called on one of the store's own
/// threads (from a sink or completion), where waiting could deadlock, every
/// call fails with `misconfigured`.
template <class A>
requires AsyncCacheStore<std::remove_reference_t<A>>
class waiting {
public:
    using inner_type = std::remove_reference_t<A>;

    explicit waiting(A inner) : a_(static_cast<A&&>(inner)) {}
    template <class... Args>
    explicit waiting(std::in_place_t, Args&&... args) : a_(std::forward<Args>(args)...) {}

    [[nodiscard]] inner_type& inner() noexcept { return a_; }

    template <chunk_sink Sink>
    result<> get_chunk(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, Sink&& sink) {
        return wait<void>("get_chunk", [&](auto done) {
            a_.async_get_chunk(
                ctx, key, off, n, [&sink](std::span<const std::byte> b) { return static_cast<bool>(sink(b)); },
                std::move(done));
        });
    }

    template <chunk_source Src>
    result<> put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src&& src) {
        return wait<void>("put_chunk", [&](auto done) {
            if constexpr (source_function<std::remove_cvref_t<Src>>) {
                a_.async_put_chunk(
                    ctx, key, size, [&src](std::span<std::byte> b) -> result<std::size_t> { return src(b); },
                    std::move(done));
            } else {
                a_.async_put_chunk(ctx, key, size, std::span<const std::byte>(src), std::move(done));
            }
        });
    }

    result<> put_chunk_prehashed(const context& ctx, const chunk_key& key, std::span<const std::byte> bytes,
                                 std::string_view sha256_hex) {
        return wait<void>("put_chunk", [&](auto done) {
            cachestore::async_put_chunk_prehashed(a_, ctx, key, bytes, sha256_hex, std::move(done));
        });
    }

    result<info> stat(const context& ctx, const chunk_key& key) {
        return wait<info>("stat", [&](auto done) { a_.async_stat(ctx, key, std::move(done)); });
    }

    result<> remove(const context& ctx, const chunk_key& key) {
        return wait<void>("remove", [&](auto done) { a_.async_remove(ctx, key, std::move(done)); });
    }

    /// The async store's own self_test (a blocking call) when it has one.
    result<> self_test(const context& ctx) {
        if constexpr (requires {
                          { a_.self_test(ctx) } -> std::same_as<result<>>;
                      }) {
            return a_.self_test(ctx);
        } else {
            return fail(errc::misconfigured, "self_test", {}, "the async store has no self_test");
        }
    }

private:
    template <class T, class Start>
    result<T> wait(const char* op, Start start) {
        if constexpr (requires {
                          { a_.on_own_thread() } -> std::convertible_to<bool>;
                      }) {
            if (a_.on_own_thread())
                return fail(errc::misconfigured, op, {},
                            "waiting on one of the async store's own threads would deadlock");
        }
        std::optional<result<T>> r;
        std::binary_semaphore ready(0);
        start([&r, &ready](result<T> got) {
            r.emplace(std::move(got));
            ready.release();
        });
        ready.acquire();
        return std::move(*r);
    }

    A a_;
};

static_assert(CacheStore<waiting<detail::archetype_async_store>>);

} // namespace cachestore
