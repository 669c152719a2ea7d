// A test-only CacheStore around a memory_store whose get_chunk and stat do
// what a script says, per call: stall before the first byte (for a while, or
// until stopped), fail with a given code, deliver in timed pieces, tag the
// bytes of one call so that a mix of two calls' bytes shows. Deterministic
// stand-in for a slow or failing server in the layer tests.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cachestore/cachestore.hpp"
#include "../proc_status.hpp"

namespace layertest {

using namespace std::chrono_literals;
using cachestore::context;
using cachestore::errc;
using cachestore::result;
using cachestore::store_op;

/// What one call of get_chunk or stat does.
struct script {
    std::chrono::milliseconds stall{0}; ///< before the first byte (the answer); a stop ends it
    bool stall_until_stopped = false;   ///< stall until the context stops or expires
    std::optional<errc> fail{};         ///< after the stall, fail with this code
    int pieces = 1;                     ///< deliver the range in this many spans
    std::chrono::milliseconds gap{0};   ///< between two pieces
    std::uint8_t tag = 0;               ///< XOR every delivered byte with this
};

/// Waits `d` (or until the context ends, or 30 s when `forever`); false when the context ended it.
inline bool pause(const context& ctx, std::chrono::milliseconds d, bool forever) {
    // No stall: no timed wait either (one costs ~60 us of timer slack, which
    // the table-driven tests would pay thousands of times).
    if (!forever && d <= std::chrono::milliseconds::zero()) return !ctx.stop_requested() && !ctx.expired();
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    auto until = std::chrono::steady_clock::now() + (forever ? std::chrono::milliseconds(30s) : d);
    if (ctx.has_deadline()) until = std::min(until, ctx.deadline());
    cv.wait_until(lock, ctx.stop_token(), until, [] { return false; });
    return !ctx.stop_requested() && !ctx.expired();
}

inline cachestore::error ended(const context& ctx, std::string_view op) {
    auto c = ctx.check(op);
    if (!c) return c.error();
    return cachestore::fail(errc::cancelled, std::string(op), {}, "stopped").error();
}

class scripted_store {
public:
    /// Called with the 0-based number of the call into this store (all
    /// operations count) and the operation; returns what the call does.
    std::function<script(int call, store_op op)> plan;

    std::atomic<int> calls{0};       ///< get_chunk and stat calls so far
    std::atomic<int> active{0};      ///< get_chunk and stat calls in progress
    std::atomic<int> stopped{0};     ///< calls that ended because their context stopped or expired
    std::atomic<int> prehashed{0};   ///< put_chunk_prehashed calls

    cachestore::memory_store& memory() { return mem_; }

    /// Waits until at least `n` calls are in progress.
    void wait_active(int n) const {
        while (active.load() < n) std::this_thread::yield();
    }

    template <cachestore::chunk_sink Sink>
    result<> get_chunk(const context& ctx, const cachestore::chunk_key& key, std::int64_t off, std::int64_t n, Sink&& sink) {
        const script s = next(store_op::get_chunk);
        busy b(*this);
        if (!pause(ctx, s.stall, s.stall_until_stopped)) {
            ++stopped;
            return std::unexpected(ended(ctx, "get_chunk"));
        }
        if (s.fail) return cachestore::fail(*s.fail, "get_chunk", {}, "scripted failure");
        std::vector<std::byte> bytes;
        auto r = mem_.get_chunk(ctx, key, off, n, [&](std::span<const std::byte> x) {
            bytes.insert(bytes.end(), x.begin(), x.end());
            return true;
        });
        if (!r) return r;
        for (auto& x : bytes) x ^= static_cast<std::byte>(s.tag);
        const std::size_t pieces = static_cast<std::size_t>(std::max(1, s.pieces));
        const std::size_t step = (bytes.size() + pieces - 1) / pieces;
        for (std::size_t at = 0; at < bytes.size(); at += step) {
            if (at != 0 && !pause(ctx, s.gap, false)) {
                ++stopped;
                return std::unexpected(ended(ctx, "get_chunk"));
            }
            const std::size_t len = std::min(step, bytes.size() - at);
            if (!sink(std::span<const std::byte>(bytes.data() + at, len)))
                return cachestore::fail(errc::cancelled, "get_chunk", {}, "sink stopped the transfer");
        }
        return {};
    }

    template <cachestore::chunk_source Src>
    result<> put_chunk(const context& ctx, const cachestore::chunk_key& key, std::int64_t size, Src&& src) {
        return mem_.put_chunk(ctx, key, size, std::forward<Src>(src));
    }

    /// Present so that the layers' forwarding of it can be seen.
    result<> put_chunk_prehashed(const context& ctx, const cachestore::chunk_key& key, std::span<const std::byte> bytes,
                                 std::string_view sha256_hex) {
        ++prehashed;
        if (auto d = cachestore::detail::check_sha256_hex(sha256_hex); !d) return d;
        return mem_.put_chunk(ctx, key, static_cast<std::int64_t>(bytes.size()), bytes);
    }

    result<cachestore::info> stat(const context& ctx, const cachestore::chunk_key& key) {
        const script s = next(store_op::stat);
        busy b(*this);
        if (!pause(ctx, s.stall, s.stall_until_stopped)) {
            ++stopped;
            return std::unexpected(ended(ctx, "stat"));
        }
        if (s.fail) return cachestore::fail(*s.fail, "stat", {}, "scripted failure");
        return mem_.stat(ctx, key);
    }

    result<> remove(const context& ctx, const cachestore::chunk_key& key) { return mem_.remove(ctx, key); }
    result<> self_test(const context& ctx) { return mem_.self_test(ctx); }

private:
    struct busy {
        scripted_store& s;
        explicit busy(scripted_store& x) : s(x) { ++s.active; }
        busy(const busy&) = delete;
        busy& operator=(const busy&) = delete;
        ~busy() { --s.active; }
    };

    script next(store_op op) {
        const int n = calls++;
        std::lock_guard lock(plan_mu_);
        return plan ? plan(n, op) : script{};
    }

    cachestore::memory_store mem_;
    std::mutex plan_mu_;
};

static_assert(cachestore::CacheStore<scripted_store>);

/// The number of threads of this process.
inline long thread_count() { return test_support::status_kib("Threads"); }

} // namespace layertest
