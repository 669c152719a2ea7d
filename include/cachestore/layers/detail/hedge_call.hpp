// cachestore/layers/detail/hedge_call.hpp - one hedgeable call: two attempts
// (the caller's own, "A", and at most one second attempt "B" on a helper
// thread) race to claim the call; the claimer's bytes reach the caller's sink,
// the other attempt is stopped through its stop token.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <stop_token>
#include <thread>

#include "cachestore/context.hpp"
#include "cachestore/error.hpp"

namespace cachestore::detail {

class hedge_call {
public:
    using clock = std::chrono::steady_clock;
    static constexpr unsigned first = 1U;   ///< attempt A claimed the call
    static constexpr unsigned second = 2U;  ///< attempt B claimed the call
    static constexpr unsigned armed = 4U;   ///< attempt B exists (stop_b is valid)
    static constexpr unsigned claimed = first | second;

    explicit hedge_call(const context& caller) : caller_(caller), start_(clock::now()) {}
    hedge_call(const hedge_call&) = delete;
    hedge_call& operator=(const hedge_call&) = delete;
    ~hedge_call() = default;

    /// The context of attempt A: the caller's deadline, a stop token that the
    /// caller's stop request and B's claim both trigger.
    [[nodiscard]] context context_a() const { return context(stop_a_.get_token(), caller_.deadline()); }
    /// The context of attempt B (valid once the scheduler set `armed`).
    [[nodiscard]] context context_b() const { return context(stop_b_.get_token(), caller_.deadline()); }

    /// Claims the call for attempt `me` (first or second) unless the other
    /// attempt has; stops the other on success. True when `me` owns the call.
    /// `answered` records the time to the answer for the adaptive delay.
    bool claim(unsigned me, bool answered) {
        unsigned f = flags_.load(std::memory_order_acquire);
        while ((f & claimed) == 0) {
            if (flags_.compare_exchange_weak(f, f | me, std::memory_order_acq_rel, std::memory_order_acquire)) {
                if (answered) {
                    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - start_).count();
                    answer_ns_.store(ns > 0 ? ns : 1, std::memory_order_relaxed);
                }
                if (me == second) stop_a_.request_stop();
                else if ((f & armed) != 0) stop_b_.request_stop();
                return true;
            }
        }
        return (f & me) != 0;
    }

    /// Whether attempt `me` may hand bytes to the caller's sink (claiming the call on its first bytes).
    bool may_deliver(unsigned me) {
        const unsigned f = flags_.load(std::memory_order_acquire);
        if ((f & claimed) != 0) return (f & me) != 0;
        return claim(me, true);
    }

    [[nodiscard]] const std::stop_token& caller_stop() const noexcept { return caller_.stop_token(); }
    [[nodiscard]] unsigned winner() const noexcept { return flags_.load(std::memory_order_acquire) & claimed; }
    [[nodiscard]] clock::time_point start() const noexcept { return start_; }
    /// Time from the call's start to its first byte (or answer), when known; else 0.
    [[nodiscard]] std::int64_t answer_ns() const noexcept { return answer_ns_.load(std::memory_order_relaxed); }

    /// Propagates the caller's stop request to both attempts (any thread).
    void stop_both() {
        stop_a_.request_stop();
        if ((flags_.load(std::memory_order_acquire) & armed) != 0) stop_b_.request_stop();
    }

    // ---- for the scheduler (under its lock) ----------------------------------

    /// Makes attempt B possible unless the call is claimed or the caller
    /// stopped: then the scheduler starts `run_b` on `helper`.
    bool arm_second() {
        if (caller_.stop_requested()) return false;
        stop_b_ = std::stop_source();
        unsigned f = 0;
        return flags_.compare_exchange_strong(f, armed, std::memory_order_acq_rel, std::memory_order_acquire);
    }

    /// Attempt B's body, run on `helper`.
    void (*run_b)(hedge_call*) = nullptr;
    std::thread helper; ///< attempt B's thread; joined by the caller
    std::exception_ptr b_threw; ///< what B's body threw (the sink's exception), rethrown by the caller

    // Scheduler bookkeeping, under its lock.
    hedge_call* prev = nullptr;
    hedge_call* next = nullptr;
    clock::time_point hedge_at{};
    std::uint8_t op = 0; ///< the scheduler's index of the operation
    bool judged = false; ///< hedged, refused or no longer needed

private:
    const context& caller_;
    clock::time_point start_;
    std::stop_source stop_a_;
    std::stop_source stop_b_{std::nostopstate};
    std::atomic<unsigned> flags_{0};
    std::atomic<std::int64_t> answer_ns_{0};
};

/// The errors after which an attempt leaves the call to the other attempt
/// when that one is still running (a fault of this attempt's connection).
[[nodiscard]] constexpr bool defers(errc e) noexcept { return e == errc::transient; }

} // namespace cachestore::detail
