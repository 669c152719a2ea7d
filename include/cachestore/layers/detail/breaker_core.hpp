// cachestore/layers/detail/breaker_core.hpp - the state machine behind
// cachestore::breaker: closed -> open -> half-open -> closed (or open again).
// A closed breaker costs a successful call one atomic load; failures, open and
// half-open states take a mutex.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cachestore/error.hpp"
#include "cachestore/layers/operation.hpp"

namespace cachestore {

enum class breaker_state : std::uint8_t { closed, open, half_open };

/// "closed", "open" or "half_open" (also the Prometheus label value).
[[nodiscard]] constexpr std::string_view to_string(breaker_state s) noexcept {
    switch (s) {
    case breaker_state::closed: return "closed";
    case breaker_state::open: return "open";
    case breaker_state::half_open: return "half_open";
    }
    return "unknown";
}

/// The upstream's defaults (SPEC §6): 10 failures of class transient or auth
/// within 30 s open the breaker; it stays open 30 s; then 3 probe calls must
/// succeed to close it. Values below 1 (counts) or 0 (durations) are raised to that.
struct breaker_options {
    int failure_threshold = 10;
    std::chrono::steady_clock::duration failure_window = std::chrono::seconds(30);
    std::chrono::steady_clock::duration open_for = std::chrono::seconds(30);
    int half_open_probes = 3;
    /// The outcomes that count as failures. Add errc::deadline_exceeded to
    /// trip on a store that hangs rather than fails.
    errc_set failures{errc::transient, errc::auth};
    /// The time source (tests inject one); empty means steady_clock::now.
    std::function<std::chrono::steady_clock::time_point()> clock;
    /// Called on every state change, under the breaker's lock: keep it short
    /// and never call the breaker from it.
    std::function<void(breaker_state from, breaker_state to)> on_state_change;
    /// The Prometheus `store` label (none when empty).
    std::string name;
};

/// A breaker's state and counters at one moment.
struct breaker_snapshot {
    std::string store;
    breaker_state state = breaker_state::closed;
    std::uint64_t opened = 0;      ///< transitions into open
    std::uint64_t half_opened = 0; ///< transitions into half-open
    std::uint64_t closed = 0;      ///< transitions into closed (from half-open)
    std::uint64_t rejected = 0;    ///< calls refused with errc::unavailable, without I/O
    std::uint64_t failures = 0;    ///< calls that ended with a failure class
    std::uint64_t probes = 0;      ///< probe calls let through while half-open
};

namespace detail {

class breaker_core {
public:
    using clock = std::chrono::steady_clock;

    /// A call let through: the state word it saw, and whether it is a probe.
    struct ticket {
        std::uint64_t word = 0;
        bool probe = false;
    };

    explicit breaker_core(breaker_options o) : opt_(std::move(o)) {
        if (opt_.failure_threshold < 1) opt_.failure_threshold = 1;
        if (opt_.half_open_probes < 1) opt_.half_open_probes = 1;
        if (opt_.failure_window < clock::duration::zero()) opt_.failure_window = clock::duration::zero();
        if (opt_.open_for < clock::duration::zero()) opt_.open_for = clock::duration::zero();
        ring_.resize(static_cast<std::size_t>(opt_.failure_threshold));
        for (std::size_t k = 1; k < outcome_count; ++k)
            if (opt_.failures.contains(static_cast<errc>(k))) {
                if (!classes_.empty()) classes_ += '/';
                classes_ += to_string(static_cast<errc>(k));
            }
    }

    /// Lets a call through, or refuses it with errc::unavailable.
    result<ticket> admit(store_op op) {
        const std::uint64_t w = word_.load(std::memory_order_acquire);
        if (state_of(w) == breaker_state::closed) return ticket{w, false};
        return admit_slow(op);
    }

    /// Reports how a call that admit() let through ended: 0 for success, else its errc.
    void finish(const ticket& t, std::size_t outcome) {
        const int cls = classify(outcome);
        if (!t.probe && cls != failure) return; // the common case: nothing to do
        const auto at = now();
        std::lock_guard lock(mu_);
        if (cls == failure) ++failures_;
        if (word_.load(std::memory_order_relaxed) != t.word) return; // the state moved on since
        if (!t.probe) {
            ring_[ring_pos_] = at;
            ring_pos_ = (ring_pos_ + 1) % ring_.size();
            if (ring_count_ < ring_.size()) ++ring_count_;
            // ring_[ring_pos_] is now the oldest of the last `threshold` failures.
            if (ring_count_ == ring_.size() && at - ring_[ring_pos_] <= opt_.failure_window) to_open(at);
            return;
        }
        --probes_in_flight_;
        if (cls == failure) {
            to_open(at);
        } else if (cls == success) {
            if (++probes_ok_ >= opt_.half_open_probes) to_closed();
        }
    }

    [[nodiscard]] breaker_snapshot snapshot() const {
        std::lock_guard lock(mu_);
        breaker_snapshot s = counts_;
        s.store = opt_.name;
        s.state = state_of(word_.load(std::memory_order_relaxed));
        s.rejected = rejected_.load(std::memory_order_relaxed);
        s.failures = failures_;
        return s;
    }

    [[nodiscard]] breaker_state state() const noexcept { return state_of(word_.load(std::memory_order_acquire)); }

private:
    static constexpr int success = 0, failure = 1, neutral = 2;

    // The state word: generation << 2 | state. Every transition bumps the
    // generation, so a call reports only into the state it was admitted in.
    static constexpr breaker_state state_of(std::uint64_t w) noexcept { return static_cast<breaker_state>(w & 3U); }

    [[nodiscard]] int classify(std::size_t outcome) const noexcept {
        if (outcome == 0) return success;
        const auto e = static_cast<errc>(outcome);
        if (opt_.failures.contains(e)) return failure;
        // No verdict on the store: the caller gave up, a bad call, or an inner breaker refused.
        if (e == errc::cancelled || e == errc::deadline_exceeded || e == errc::invalid_argument || e == errc::unavailable)
            return neutral;
        return success; // not_found, commit_lost, out_of_range, ...: the store answered
    }

    [[nodiscard]] clock::time_point now() const { return opt_.clock ? opt_.clock() : clock::now(); }

    result<ticket> admit_slow(store_op op) {
        const auto at = now();
        const std::uint64_t w = word_.load(std::memory_order_acquire);
        if (state_of(w) == breaker_state::open && at.time_since_epoch().count() < open_until_.load(std::memory_order_relaxed))
            return refuse(op, at);
        std::lock_guard lock(mu_);
        std::uint64_t cur = word_.load(std::memory_order_relaxed);
        if (state_of(cur) == breaker_state::open && at.time_since_epoch().count() >= open_until_.load(std::memory_order_relaxed)) {
            set_state(breaker_state::half_open);
            ++counts_.half_opened;
            probes_in_flight_ = 0;
            probes_ok_ = 0;
            cur = word_.load(std::memory_order_relaxed);
        }
        switch (state_of(cur)) {
        case breaker_state::closed: return ticket{cur, false};
        case breaker_state::half_open:
            if (probes_in_flight_ + probes_ok_ < opt_.half_open_probes) {
                ++probes_in_flight_;
                ++counts_.probes;
                return ticket{cur, true};
            }
            break;
        case breaker_state::open: break;
        }
        return refuse(op, at);
    }

    std::unexpected<error> refuse(store_op op, clock::time_point at) {
        rejected_.fetch_add(1, std::memory_order_relaxed);
        std::string msg = "circuit breaker ";
        if (state_of(word_.load(std::memory_order_relaxed)) == breaker_state::half_open) {
            msg += "half-open: waiting for " + std::to_string(opt_.half_open_probes) + " probe calls to succeed";
        } else {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                clock::duration(open_until_.load(std::memory_order_relaxed)) - at.time_since_epoch());
            msg += "open after " + std::to_string(opt_.failure_threshold) + " " + classes_ + " failures within " +
                   std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(opt_.failure_window).count()) +
                   " ms; probes start in " + std::to_string(left.count() < 0 ? 0 : left.count()) + " ms";
        }
        return fail(errc::unavailable, std::string(to_string(op)), {}, std::move(msg));
    }

    void set_state(breaker_state to) {
        const std::uint64_t w = word_.load(std::memory_order_relaxed);
        const breaker_state from = state_of(w);
        word_.store(((w >> 2U) + 1) << 2U | static_cast<std::uint64_t>(to), std::memory_order_release);
        if (opt_.on_state_change) opt_.on_state_change(from, to);
    }

    void to_open(clock::time_point at) {
        open_until_.store((at + opt_.open_for).time_since_epoch().count(), std::memory_order_relaxed);
        set_state(breaker_state::open);
        ++counts_.opened;
    }

    void to_closed() {
        ring_count_ = 0;
        ring_pos_ = 0;
        set_state(breaker_state::closed);
        ++counts_.closed;
    }

    breaker_options opt_;
    std::string classes_; ///< "transient/auth", for messages
    std::atomic<std::uint64_t> word_{0};
    std::atomic<clock::rep> open_until_{0};
    std::atomic<std::uint64_t> rejected_{0};
    mutable std::mutex mu_;
    // Under mu_:
    std::vector<clock::time_point> ring_; ///< the last `threshold` failure times (closed state)
    std::size_t ring_pos_ = 0, ring_count_ = 0;
    int probes_in_flight_ = 0, probes_ok_ = 0;
    std::uint64_t failures_ = 0;
    breaker_snapshot counts_;
};

} // namespace detail
} // namespace cachestore
