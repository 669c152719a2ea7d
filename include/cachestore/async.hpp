// cachestore/async.hpp - the AsyncCacheStore concept: the operations of
// CacheStore started on any thread and completed later by a callable, with
// sinks that can pause delivery. See docs/async.md for the requirement table
// and the rules (exactly once, never inline, one at a time).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <utility>

#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/store.hpp"

namespace cachestore {

/// What a pausing sink answers for the bytes it was given.
enum class sink_verdict : std::uint8_t {
    proceed, ///< took them; send more
    pause,   ///< took them; send nothing more until the handle's resume()
    stop,    ///< took them; end the operation with `cancelled`
};

namespace detail {
/// What a resume_handle points at: a driver's per-operation gate. `fn` does
/// the driver's resume of pause number `pause` (the operation's sink calls
/// counted from 1); the gate embeds this as its first base.
struct resume_target {
    void (*fn)(resume_target&, std::uint64_t pause) noexcept = nullptr;
};
} // namespace detail

/// Lets a sink that paused a read continue it, from any thread. Copyable,
/// three words. A handle names the one sink call it was given to: its
/// `resume()` ends that call's pause and no later one, so it is idempotent
/// (a second call, or one that arrives after the read went on, does
/// nothing). Thread-safe, never calls the sink inline, and does nothing once
/// the operation ended or its store is gone. A resume() made while the sink
/// call that returns `pause` is still running counts for that pause.
class resume_handle {
public:
    resume_handle() = default;
    /// For drivers: the handle of the operation's sink call number `pause`.
    resume_handle(std::shared_ptr<detail::resume_target> t, std::uint64_t pause) noexcept
        : t_(std::move(t)), pause_(pause) {}
    void resume() const noexcept {
        if (t_ && t_->fn != nullptr) t_->fn(*t_, pause_);
    }

private:
    std::shared_ptr<detail::resume_target> t_;
    std::uint64_t pause_ = 0;
};

/// A sink for an asynchronous read: a move-constructible chunk_sink
/// (`true` proceed, `false` stop), or `k(bytes, const resume_handle&)`
/// returning a sink_verdict, which alone can pause. The span is valid only
/// during the call.
template <class K>
concept pausing_sink = std::invocable < K&,
        std::span<const std::byte>,
const resume_handle& >
    &&std::same_as<std::invoke_result_t<K&, std::span<const std::byte>, const resume_handle&>, sink_verdict>;

template <class K>
concept async_chunk_sink = std::move_constructible<K> &&(chunk_sink<K> || pausing_sink<K>);

/// A source function moved into an asynchronous put.
template <class S>
concept async_source_function = std::move_constructible<S> && source_function<S>;

/// The completion of an operation: called once, as an rvalue, with its result.
template <class D, class T = void>
concept async_completion = std::move_constructible<D> && std::invocable<D, result<T>>;

namespace detail {
// Archetypes: the weakest types an async driver must accept; move-only,
// declared, never defined.
struct archetype_move_only {
    archetype_move_only(archetype_move_only&&) noexcept;
    archetype_move_only(const archetype_move_only&) = delete;
    archetype_move_only& operator=(archetype_move_only&&) noexcept;
    archetype_move_only& operator=(const archetype_move_only&) = delete;
    ~archetype_move_only();
};
struct archetype_async_sink : archetype_move_only {
    bool operator()(std::span<const std::byte>);
};
struct archetype_pausing_sink : archetype_move_only {
    sink_verdict operator()(std::span<const std::byte>, const resume_handle&);
};
struct archetype_async_source : archetype_move_only {
    result<std::size_t> operator()(std::span<std::byte>);
};
template <class T = void>
struct archetype_completion : archetype_move_only {
    void operator()(result<T>) &&;
};
struct archetype_task : archetype_move_only {
    void operator()() &&;
};
} // namespace detail

/// A chunk store driven asynchronously. Every initiating function returns at
/// once; its completion runs later, exactly once, never inside it.
///
/// | expression                                   | completion           |
/// |----------------------------------------------|----------------------|
/// | `a.async_get_chunk(ctx, key, off, n, sink, done)` | `void(result<>)`  |
/// | `a.async_put_chunk(ctx, key, size, src, done)` | `void(result<>)`   |
/// | `a.async_stat(ctx, key, done)`               | `void(result<info>)` |
/// | `a.async_remove(ctx, key, done)`             | `void(result<>)`     |
/// | `a.post(f)`                                  | runs `f()` later, where completions run |
template <class A>
concept AsyncCacheStore = requires(A& a, const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n,
                                   detail::archetype_async_sink sink, detail::archetype_pausing_sink psink,
                                   detail::archetype_async_source src, std::span<const std::byte> bytes,
                                   detail::archetype_completion<> done, detail::archetype_completion<info> done_info,
                                   detail::archetype_task f) {
    a.async_get_chunk(ctx, key, off, n, std::move(sink), std::move(done));
    a.async_get_chunk(ctx, key, off, n, std::move(psink), std::move(done));
    a.async_put_chunk(ctx, key, n, bytes, std::move(done));
    a.async_put_chunk(ctx, key, n, std::move(src), std::move(done));
    a.async_stat(ctx, key, std::move(done_info));
    a.async_remove(ctx, key, std::move(done));
    a.post(std::move(f));
};

namespace detail {
/// The concept's members alone (declared, never defined): what a layer or
/// adapter over async stores checks itself against.
struct archetype_async_store {
    template <async_chunk_sink K, async_completion D>
    void async_get_chunk(const context&, const chunk_key&, std::int64_t, std::int64_t, K, D);
    template <class Src, async_completion D>
    void async_put_chunk(const context&, const chunk_key&, std::int64_t, Src, D);
    template <async_completion<info> D>
    void async_stat(const context&, const chunk_key&, D);
    template <async_completion D>
    void async_remove(const context&, const chunk_key&, D);
    template <class F>
    void post(F);
};
static_assert(AsyncCacheStore<archetype_async_store>);
} // namespace detail

/// Reads bytes [off, off + out.size()) into `out`, which stays valid until
/// `done` runs.
template <AsyncCacheStore A, async_completion D>
void async_get_chunk(A& a, const context& ctx, const chunk_key& key, std::int64_t off, std::span<std::byte> out,
                     D done) {
    a.async_get_chunk(ctx, key, off, static_cast<std::int64_t>(out.size()), span_sink(out), std::move(done));
}

/// put_chunk_prehashed, asynchronously: the driver's member when it has one,
/// otherwise the digest is checked (a malformed one completes with
/// `invalid_argument` through `post`) and the bytes are put. `bytes` stays
/// valid until `done` runs.
template <AsyncCacheStore A, async_completion D>
void async_put_chunk_prehashed(A& a, const context& ctx, const chunk_key& key, std::span<const std::byte> bytes,
                               std::string_view sha256_hex, D done) {
    if constexpr (requires { a.async_put_chunk_prehashed(ctx, key, bytes, sha256_hex, std::move(done)); }) {
        a.async_put_chunk_prehashed(ctx, key, bytes, sha256_hex, std::move(done));
    } else if (auto d = detail::check_sha256_hex(sha256_hex); !d) {
        a.post([done = std::move(done), d = std::move(d)]() mutable { std::move(done)(std::move(d)); });
    } else {
        a.async_put_chunk(ctx, key, static_cast<std::int64_t>(bytes.size()), bytes, std::move(done));
    }
}

} // namespace cachestore
