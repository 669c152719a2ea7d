// cachestore/asio.hpp - the Asio adapter: the operations of any
// AsyncCacheStore with Asio completion tokens (callbacks, use_future,
// use_awaitable) and Asio's per-operation cancellation. Optional: include it
// only where standalone Asio (<asio.hpp>, Debian's libasio-dev 1.22) is on
// the include path; nothing else in the library includes it. docs/async.md.
#pragma once

#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "cachestore/async.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"

namespace cachestore::asio {

namespace detail {

/// A stop source that the handler's cancellation slot and the caller's
/// context token both request.
struct cancel_bridge {
    struct forward {
        std::stop_source* to;
        void operator()() const noexcept { to->request_stop(); }
    };
    std::stop_source stop;
    std::optional<std::stop_callback<forward>> from_caller;
    explicit cancel_bridge(const context& ctx) {
        if (ctx.stop_token().stop_possible()) from_caller.emplace(ctx.stop_token(), forward{&stop});
    }
};

/// Starts one operation for an Asio handler: the store sees a context that
/// also stops on the handler's cancellation slot (any cancellation type);
/// the result is posted to the handler's associated executor, which is kept
/// busy (a work guard) until then.
template <class T, class Handler, class Start>
void launch(const context& ctx, Handler handler, Start start) {
    auto slot = ::asio::get_associated_cancellation_slot(handler);
    auto work = ::asio::make_work_guard(::asio::get_associated_executor(handler));
    context op_ctx = ctx;
    if (slot.is_connected()) {
        auto bridge = std::make_shared<cancel_bridge>(ctx);
        slot.assign([bridge](::asio::cancellation_type) { bridge->stop.request_stop(); });
        op_ctx = context(bridge->stop.get_token(), ctx.deadline());
    }
    start(op_ctx, [handler = std::move(handler), work = std::move(work)](result<T> r) mutable {
        auto ex = work.get_executor();
        ::asio::post(ex, [handler = std::move(handler), r = std::move(r)]() mutable {
            auto slot = ::asio::get_associated_cancellation_slot(handler);
            if (slot.is_connected()) slot.clear(); // on the handler's executor, where it is emitted
            std::move(handler)(std::move(r));
        });
        work.reset();
    });
}

} // namespace detail

/// get_chunk with a completion token; completes with `result<>`.
template <AsyncCacheStore A, async_chunk_sink Sink, class Token>
auto async_get_chunk(A& a, const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, Sink sink,
                     Token&& token) {
    return ::asio::async_initiate<Token, void(result<>)>(
        [&a](auto handler, const context& c, const chunk_key& k, std::int64_t o, std::int64_t len, Sink s) {
            detail::launch<void>(c, std::move(handler), [&](const context& op_ctx, auto done) {
                a.async_get_chunk(op_ctx, k, o, len, std::move(s), std::move(done));
            });
        },
        token, ctx, key, off, n, std::move(sink));
}

/// put_chunk with a completion token; `src` is a span that stays valid until
/// the completion, or a source function; completes with `result<>`.
template <AsyncCacheStore A, class Src, class Token>
auto async_put_chunk(A& a, const context& ctx, const chunk_key& key, std::int64_t size, Src src, Token&& token) {
    return ::asio::async_initiate<Token, void(result<>)>(
        [&a](auto handler, const context& c, const chunk_key& k, std::int64_t len, Src s) {
            detail::launch<void>(c, std::move(handler), [&](const context& op_ctx, auto done) {
                a.async_put_chunk(op_ctx, k, len, std::move(s), std::move(done));
            });
        },
        token, ctx, key, size, std::move(src));
}

/// stat with a completion token; completes with `result<info>`.
template <AsyncCacheStore A, class Token>
auto async_stat(A& a, const context& ctx, const chunk_key& key, Token&& token) {
    return ::asio::async_initiate<Token, void(result<info>)>(
        [&a](auto handler, const context& c, const chunk_key& k) {
            detail::launch<info>(c, std::move(handler),
                                 [&](const context& op_ctx, auto done) { a.async_stat(op_ctx, k, std::move(done)); });
        },
        token, ctx, key);
}

/// remove with a completion token; completes with `result<>`.
template <AsyncCacheStore A, class Token>
auto async_remove(A& a, const context& ctx, const chunk_key& key, Token&& token) {
    return ::asio::async_initiate<Token, void(result<>)>(
        [&a](auto handler, const context& c, const chunk_key& k) {
            detail::launch<void>(c, std::move(handler),
                                 [&](const context& op_ctx, auto done) { a.async_remove(op_ctx, k, std::move(done)); });
        },
        token, ctx, key);
}

} // namespace cachestore::asio
