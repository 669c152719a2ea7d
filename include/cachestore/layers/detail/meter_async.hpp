// cachestore/layers/detail/meter_async.hpp - what metered<S> wraps around an
// asynchronous operation: the call (begun at initiation, ended by the
// completion), a sink that records the first byte and counts bytes, and the
// completion that ends the call. The same counters as the blocking API, on
// the initiating thread's shard (relaxed atomics: ending it from the store's
// thread is correct; only the no-contention property weakens).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

#include "cachestore/async.hpp"
#include "cachestore/error.hpp"
#include "cachestore/layers/detail/meter.hpp"
#include "cachestore/layers/operation.hpp"

namespace cachestore::detail {

/// One asynchronous call. Ended exactly once: by its completion, or, if the
/// store dropped the completion without calling it, as io_error.
struct async_meter_call {
    using clock = std::chrono::steady_clock;
    meter_shard& shard;
    store_op op;
    clock::time_point start = clock::now();
    std::uint64_t bytes = 0; ///< delivered to the sink so far
    bool ended = false;

    async_meter_call(meter& m, store_op o) noexcept : shard(m.local()), op(o) { meter::begin(shard, op); }
    async_meter_call(const async_meter_call&) = delete;
    async_meter_call& operator=(const async_meter_call&) = delete;
    ~async_meter_call() {
        if (!ended) meter::end(shard, op, static_cast<std::size_t>(errc::io_error), elapsed_ns(start, clock::now()));
    }
    template <class T>
    void end(const result<T>& r) noexcept {
        ended = true;
        meter::end(shard, op, outcome_index(r), elapsed_ns(start, clock::now()));
    }
    void saw(std::size_t n) noexcept {
        if (bytes == 0 && n != 0) meter::first_byte(shard, elapsed_ns(start, clock::now()));
        bytes += n;
    }
};

/// The caller's sink, either form, counting what passes through.
template <class K>
struct metered_sink {
    K k;
    std::shared_ptr<async_meter_call> call;
    bool operator()(std::span<const std::byte> b) requires chunk_sink<K> {
        call->saw(b.size());
        return static_cast<bool>(k(b));
    }
    sink_verdict operator()(std::span<const std::byte> b, const resume_handle& h) requires pausing_sink<K> {
        call->saw(b.size());
        return k(b, h);
    }
};

/// The caller's completion: ends the call (bytes read, or `written` on a
/// successful put), then runs.
template <class D, class T>
struct metered_done {
    D done;
    std::shared_ptr<async_meter_call> call;
    std::uint64_t written = 0;
    void operator()(result<T> r) && {
        if (call->bytes != 0) add(call->shard.bytes_read, call->bytes);
        if (r && written != 0) add(call->shard.bytes_written, written);
        call->end(r);
        call.reset();
        std::move(done)(std::move(r));
    }
};

} // namespace cachestore::detail
