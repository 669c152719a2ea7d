// cachestore/layers/detail/hedge_scheduler.hpp - decides when the calls of a
// hedged store get their second attempt. One thread per hedged store sleeps
// until the earliest call's hedge time; calls register on entry and leave on
// return (a mutex each way). Holds the delay estimate and the budget.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "cachestore/layers/detail/hedge_call.hpp"
#include "cachestore/layers/operation.hpp"

namespace cachestore {

/// When to send a second attempt, and how many. docs/layers.md has the reasoning.
struct hedge_options {
    /// A fixed delay before the second attempt; zero (the default) chooses it
    /// from the recent times to the first byte (see `quantile`).
    std::chrono::nanoseconds delay{0};
    /// Adaptive delay: this quantile of the last 256 times from a call's start
    /// to its first byte (get_chunk) or answer (stat), clamped to
    /// [min_delay, max_delay]; `initial_delay` until `min_samples` are in.
    double quantile = 0.95;
    std::chrono::nanoseconds min_delay = std::chrono::milliseconds(1);
    std::chrono::nanoseconds max_delay = std::chrono::seconds(1);
    std::chrono::nanoseconds initial_delay = std::chrono::milliseconds(50);
    std::size_t min_samples = 20;
    /// Budget: a token bucket that earns `max_share` of a hedge per call and
    /// holds at most `burst` hedges, so hedges stay below this share of the
    /// calls (plus the burst) even when every call is slow.
    double max_share = 0.10;
    double burst = 10;
    /// Hedge stat() too (a HEAD: its answer plays the first byte).
    bool hedge_stat = true;
    /// The Prometheus `store` label (none when empty).
    std::string name;
};

/// One hedged operation's counters.
struct hedge_op_stats {
    std::uint64_t calls = 0;          ///< calls that could be hedged
    std::uint64_t hedges = 0;         ///< second attempts started
    std::uint64_t hedge_wins = 0;     ///< calls answered by the second attempt
    std::uint64_t budget_denied = 0;  ///< calls due for a hedge that the budget refused
    std::chrono::nanoseconds delay{0}; ///< the delay new calls get now
};

struct hedge_snapshot {
    std::string store;
    hedge_op_stats get_chunk, stat;
};

namespace detail {

class hedge_scheduler {
public:
    using clock = std::chrono::steady_clock;
    static constexpr std::size_t window = 256;

    explicit hedge_scheduler(hedge_options o) : opt_(std::move(o)) {
        // Delays beyond a day would only overflow the time arithmetic.
        constexpr std::chrono::nanoseconds day = std::chrono::hours(24);
        for (auto* d : {&opt_.delay, &opt_.min_delay, &opt_.max_delay, &opt_.initial_delay})
            *d = std::clamp(*d, std::chrono::nanoseconds::zero(), day);
        if (!(opt_.quantile > 0.0 && opt_.quantile <= 1.0)) opt_.quantile = 0.95;
        if (opt_.max_delay < opt_.min_delay) opt_.max_delay = opt_.min_delay;
        if (!(opt_.max_share >= 0.0)) opt_.max_share = 0.0;
        if (!(opt_.burst >= 1.0)) opt_.burst = 1.0;
        tokens_ = 1.0;
        for (auto& t : track_) t.delay = opt_.delay > std::chrono::nanoseconds::zero() ? opt_.delay : opt_.initial_delay;
    }
    hedge_scheduler(const hedge_scheduler&) = delete;
    hedge_scheduler& operator=(const hedge_scheduler&) = delete;
    ~hedge_scheduler() {
        {
            std::lock_guard lock(mu_);
            stopping_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
    }

    [[nodiscard]] const hedge_options& options() const noexcept { return opt_; }

    /// Registers a call that starts now; its second attempt is due after the current delay.
    void enter(hedge_call& c, store_op op) {
        std::lock_guard lock(mu_);
        auto& t = track_[index(op)];
        ++t.calls;
        tokens_ = std::min(opt_.burst, tokens_ + opt_.max_share);
        c.op = static_cast<std::uint8_t>(index(op));
        c.hedge_at = c.start() + t.delay;
        c.prev = nullptr;
        c.next = head_;
        if (head_ != nullptr) head_->prev = &c;
        head_ = &c;
        if (!thread_.joinable()) {
            try {
                thread_ = std::thread([this] { loop(); });
            } catch (const std::system_error&) {
                return; // no thread, no hedges: calls run as if undecorated
            }
        }
        if (c.hedge_at < wake_at_) cv_.notify_one();
    }

    /// Unregisters a call (no second attempt can start after this). Returns
    /// whether one did, i.e. whether `c.helper` must be joined.
    bool leave(hedge_call& c) {
        std::lock_guard lock(mu_);
        if (c.prev != nullptr) c.prev->next = c.next;
        else head_ = c.next;
        if (c.next != nullptr) c.next->prev = c.prev;
        c.prev = c.next = nullptr;
        if (const auto ns = c.answer_ns(); ns > 0) sample(track_[c.op], ns);
        return c.helper.joinable();
    }

    /// Counts a call that the second attempt answered.
    void second_won(store_op op) {
        std::lock_guard lock(mu_);
        ++track_[index(op)].wins;
    }

    [[nodiscard]] hedge_snapshot snapshot() const {
        std::lock_guard lock(mu_);
        hedge_snapshot s;
        s.store = opt_.name;
        s.get_chunk = stats(track_[0]);
        s.stat = stats(track_[1]);
        return s;
    }

private:
    struct tracker {
        std::array<std::int64_t, window> samples{};
        std::size_t count = 0, pos = 0, fresh = 0;
        std::chrono::nanoseconds delay{0};
        std::uint64_t calls = 0, hedges = 0, wins = 0, denied = 0;
    };

    static std::size_t index(store_op op) noexcept { return op == store_op::stat ? 1 : 0; }

    static hedge_op_stats stats(const tracker& t) {
        return hedge_op_stats{t.calls, t.hedges, t.wins, t.denied, t.delay};
    }

    /// Adds one time-to-answer; re-estimates the delay every 16 samples.
    void sample(tracker& t, std::int64_t ns) {
        if (opt_.delay > std::chrono::nanoseconds::zero()) return; // fixed delay
        t.samples[t.pos] = ns;
        t.pos = (t.pos + 1) % window;
        t.count = std::min(window, t.count + 1);
        if (++t.fresh < 16 || t.count < opt_.min_samples) return;
        t.fresh = 0;
        scratch_.assign(t.samples.begin(), t.samples.begin() + static_cast<std::ptrdiff_t>(t.count));
        const auto k = static_cast<std::size_t>(std::lround(opt_.quantile * static_cast<double>(t.count - 1)));
        std::nth_element(scratch_.begin(), scratch_.begin() + static_cast<std::ptrdiff_t>(k), scratch_.end());
        t.delay = std::clamp(std::chrono::nanoseconds(scratch_[k]), opt_.min_delay, opt_.max_delay);
    }

    void loop() {
        std::unique_lock lock(mu_);
        while (!stopping_) {
            const auto now = clock::now();
            auto next = clock::time_point::max();
            for (hedge_call* c = head_; c != nullptr; c = c->next) {
                if (c->judged) continue;
                if (c->winner() != 0) {
                    c->judged = true; // answered before its hedge time
                    continue;
                }
                if (c->hedge_at > now) {
                    next = std::min(next, c->hedge_at);
                    continue;
                }
                c->judged = true;
                start_second(*c);
            }
            wake_at_ = next;
            if (next == clock::time_point::max()) cv_.wait(lock);
            else cv_.wait_until(lock, next);
            wake_at_ = clock::time_point::min();
        }
    }

    void start_second(hedge_call& c) {
        tracker& t = track_[c.op];
        if (tokens_ < 1.0) {
            ++t.denied;
            return;
        }
        if (!c.arm_second()) return;
        try {
            c.helper = std::thread(c.run_b, &c);
        } catch (const std::system_error&) {
            return; // no thread: attempt B never runs (a claim may still stop its unused token)
        }
        tokens_ -= 1.0;
        ++t.hedges;
    }

    hedge_options opt_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::thread thread_;
    // Under mu_:
    bool stopping_ = false;
    hedge_call* head_ = nullptr;
    clock::time_point wake_at_ = clock::time_point::min(); ///< when the thread next wakes (min: it is awake)
    double tokens_ = 0;
    std::array<tracker, 2> track_{};
    std::vector<std::int64_t> scratch_;
};

} // namespace detail
} // namespace cachestore
