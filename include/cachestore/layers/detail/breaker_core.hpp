// cachestore/layers/detail/breaker_core.hpp - the state machine behind
// cachestore::breaker: closed -> open -> half-open -> closed (or open again).
// A closed breaker costs a successful call one atomic load; failures, open and
// half-open states take a mutex.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "cachestore/detail/fork_safe_mutex.hpp"
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
/// succeed to close it. Values below 1 (counts) or 0 (durations) are raised to
/// that; any value up to the type's max is taken as is (the time arithmetic
/// saturates): `open_for = duration::max()` keeps an open breaker open for
/// good, `failure_threshold = INT_MAX` never opens it. Memory: one time point
/// per failure within the window, never more than `failure_threshold`.
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
    /// Called on every state change, on the thread of the call that caused
    /// it, after the breaker's lock is released (it may read snapshot()).
    /// What it throws reaches that call's caller; the books are whole.
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
        transition tr;
        {
            std::lock_guard lock(mu_);
            finish_locked(t, cls, at, tr);
        }
        notify(tr);
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
    /// A state change made under the lock, told to on_state_change after it
    /// is released: the callback may throw (the exception reaches the call
    /// that caused the change, with the books already whole) or read the
    /// breaker's snapshot without deadlocking.
    struct transition {
        breaker_state from = breaker_state::closed, to = breaker_state::closed;
        bool happened = false;
    };

    void notify(const transition& tr) const {
        if (tr.happened && opt_.on_state_change) opt_.on_state_change(tr.from, tr.to);
    }

    void finish_locked(const ticket& t, int cls, clock::time_point at, transition& tr) {
        if (cls == failure) ++failures_;
        if (word_.load(std::memory_order_relaxed) != t.word) return; // the state moved on since
        if (!t.probe) {
            // The failures within the window, this one included: the breaker
            // opens when they are `threshold`. Grown per failure, not
            // allocated up front (a threshold of INT_MAX costs nothing).
            const clock::rep now_ticks = at.time_since_epoch().count();
            while (!recent_.empty() && sub_sat(now_ticks, recent_.front()) > opt_.failure_window.count()) recent_.pop_front();
            recent_.push_back(now_ticks);
            if (recent_.size() >= static_cast<std::size_t>(opt_.failure_threshold)) to_open(at, tr);
            return;
        }
        --probes_in_flight_;
        if (cls == failure) {
            to_open(at, tr);
        } else if (cls == success) {
            if (++probes_ok_ >= opt_.half_open_probes) to_closed(tr);
        }
    }

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

    // Clock ticks added and subtracted, saturated at the limits: options up to
    // duration::max() and injected clocks anywhere in the range never overflow.
    static constexpr clock::rep tick_max = std::numeric_limits<clock::rep>::max();
    static constexpr clock::rep tick_min = std::numeric_limits<clock::rep>::min();
    [[nodiscard]] static constexpr clock::rep add_sat(clock::rep a, clock::rep b) noexcept {
        if (b > 0 && a > tick_max - b) return tick_max;
        if (b < 0 && a < tick_min - b) return tick_min;
        return a + b;
    }
    [[nodiscard]] static constexpr clock::rep sub_sat(clock::rep a, clock::rep b) noexcept {
        if (b < 0 && a > tick_max + b) return tick_max;
        if (b > 0 && a < tick_min + b) return tick_min;
        return a - b;
    }

    result<ticket> admit_slow(store_op op) {
        const auto at = now();
        const std::uint64_t w = word_.load(std::memory_order_acquire);
        if (state_of(w) == breaker_state::open && at.time_since_epoch().count() < open_until_.load(std::memory_order_relaxed))
            return refuse(op, at);
        transition tr;
        auto r = admit_locked(op, at, tr);
        notify(tr);
        return r;
    }

    result<ticket> admit_locked(store_op op, clock::time_point at, transition& tr) {
        std::lock_guard lock(mu_);
        std::uint64_t cur = word_.load(std::memory_order_relaxed);
        if (state_of(cur) == breaker_state::open && at.time_since_epoch().count() >= open_until_.load(std::memory_order_relaxed)) {
            set_state(breaker_state::half_open, tr);
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
                clock::duration(sub_sat(open_until_.load(std::memory_order_relaxed), at.time_since_epoch().count())));
            msg += "open after " + std::to_string(opt_.failure_threshold) + " " + classes_ + " failures within " +
                   std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(opt_.failure_window).count()) +
                   " ms; probes start in " + std::to_string(left.count() < 0 ? 0 : left.count()) + " ms";
        }
        return fail(errc::unavailable, std::string(to_string(op)), {}, std::move(msg));
    }

    void set_state(breaker_state to, transition& tr) {
        const std::uint64_t w = word_.load(std::memory_order_relaxed);
        if (!tr.happened) tr.from = state_of(w);
        tr.to = to;
        tr.happened = true;
        word_.store(((w >> 2U) + 1) << 2U | static_cast<std::uint64_t>(to), std::memory_order_release);
    }

    void to_open(clock::time_point at, transition& tr) {
        open_until_.store(add_sat(at.time_since_epoch().count(), opt_.open_for.count()), std::memory_order_relaxed);
        recent_.clear(); // counted afresh once closed again
        set_state(breaker_state::open, tr);
        ++counts_.opened;
    }

    void to_closed(transition& tr) {
        recent_.clear();
        set_state(breaker_state::closed, tr);
        ++counts_.closed;
    }

    breaker_options opt_;
    std::string classes_; ///< "transient/auth", for messages
    std::atomic<std::uint64_t> word_{0};
    std::atomic<clock::rep> open_until_{0};
    std::atomic<std::uint64_t> rejected_{0};
    mutable cachestore::detail::fork_safe_mutex mu_; ///< short-held, never around the callback: a child never inherits it locked
    // Under mu_:
    std::deque<clock::rep> recent_; ///< the times of the failures within the window (closed state), oldest first
    int probes_in_flight_ = 0, probes_ok_ = 0;
    std::uint64_t failures_ = 0;
    breaker_snapshot counts_;
};

} // namespace detail
} // namespace cachestore
