// cachestore/layers/detail/hedge_scheduler.hpp - decides when the calls of a
// hedged store get their second attempt. One thread per hedged store sleeps
// until the earliest call's hedge time; calls register on entry and leave on
// return (a mutex each way). Holds the delay estimate and the budget. All of
// that is per process: a child forked from a process using the store starts
// its own thread (fork_generation.hpp).
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

#include "cachestore/detail/fork_generation.hpp"
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
        start_fresh(proc_.get());
    }
    hedge_scheduler(const hedge_scheduler&) = delete;
    hedge_scheduler& operator=(const hedge_scheduler&) = delete;
    /// Stops and joins this process's thread (a forked child's own, not the
    /// parent's: per_process leaves that alone).
    ~hedge_scheduler() {
        proc* p = proc_.mine_or_null();
        if (p == nullptr) return;
        {
            std::lock_guard lock(p->mu);
            p->stopping = true;
        }
        p->cv.notify_all();
        if (p->thread.joinable()) p->thread.join();
    }

    [[nodiscard]] const hedge_options& options() const noexcept { return opt_; }

    /// Registers a call that starts now; its second attempt is due after the current delay.
    void enter(hedge_call& c, store_op op) {
        proc& p = mine();
        std::lock_guard lock(p.mu);
        auto& t = p.track[index(op)];
        ++t.calls;
        p.tokens = std::min(opt_.burst, p.tokens + opt_.max_share);
        c.op = static_cast<std::uint8_t>(index(op));
        c.hedge_at = c.start() + t.delay;
        c.prev = nullptr;
        c.next = p.head;
        if (p.head != nullptr) p.head->prev = &c;
        p.head = &c;
        if (!p.thread.joinable()) {
            try {
                p.thread = std::thread([this, &p] { loop(p); });
            } catch (const std::system_error&) {
                return; // no thread, no hedges: calls run as if undecorated
            }
        }
        if (c.hedge_at < p.wake_at) p.cv.notify_one();
    }

    /// Unregisters a call (no second attempt can start after this). Returns
    /// whether one did, i.e. whether `c.helper` must be joined.
    bool leave(hedge_call& c) {
        proc& p = mine();
        std::lock_guard lock(p.mu);
        if (c.prev != nullptr) c.prev->next = c.next;
        else p.head = c.next;
        if (c.next != nullptr) c.next->prev = c.prev;
        c.prev = c.next = nullptr;
        if (const auto ns = c.answer_ns(); ns > 0) sample(p, p.track[c.op], ns);
        return c.helper.joinable();
    }

    /// Counts a call that the second attempt answered.
    void second_won(store_op op) {
        proc& p = mine();
        std::lock_guard lock(p.mu);
        ++p.track[index(op)].wins;
    }

    [[nodiscard]] hedge_snapshot snapshot() const {
        proc& p = mine();
        std::lock_guard lock(p.mu);
        hedge_snapshot s;
        s.store = opt_.name;
        s.get_chunk = stats(p.track[0]);
        s.stat = stats(p.track[1]);
        return s;
    }

private:
    struct tracker {
        std::array<std::int64_t, window> samples{};
        std::size_t count = 0, pos = 0, fresh = 0;
        std::chrono::nanoseconds delay{0};
        std::uint64_t calls = 0, hedges = 0, wins = 0, denied = 0;
    };

    /// Everything that belongs to one process: the thread, the lock, the
    /// calls in flight, the budget and the estimates (per_process: a forked
    /// child gets its own, keeping the parent's counters and estimates when
    /// they were not being written at the fork).
    struct proc {
        mutable std::mutex mu;
        std::condition_variable cv;
        std::thread thread;
        // Under mu:
        bool stopping = false;
        hedge_call* head = nullptr;
        clock::time_point wake_at = clock::time_point::min(); ///< when the thread next wakes (min: it is awake)
        double tokens = 0;
        std::array<tracker, 2> track{};
        std::vector<std::int64_t> scratch;
    };

    void start_fresh(proc& p) const {
        p.tokens = 1.0;
        for (auto& t : p.track) t.delay = opt_.delay > std::chrono::nanoseconds::zero() ? opt_.delay : opt_.initial_delay;
    }

    proc& mine() const {
        return proc_.get([this](proc& parent, proc& child) {
            start_fresh(child);
            if (!parent.mu.try_lock()) return; // held at the fork: its state may be half-written
            child.track = parent.track;
            child.tokens = parent.tokens;
            parent.mu.unlock();
        });
    }

    static std::size_t index(store_op op) noexcept { return op == store_op::stat ? 1 : 0; }

    static hedge_op_stats stats(const tracker& t) {
        return hedge_op_stats{t.calls, t.hedges, t.wins, t.denied, t.delay};
    }

    /// Adds one time-to-answer; re-estimates the delay every 16 samples.
    void sample(proc& p, tracker& t, std::int64_t ns) const {
        if (opt_.delay > std::chrono::nanoseconds::zero()) return; // fixed delay
        t.samples[t.pos] = ns;
        t.pos = (t.pos + 1) % window;
        t.count = std::min(window, t.count + 1);
        if (++t.fresh < 16 || t.count < opt_.min_samples) return;
        t.fresh = 0;
        p.scratch.assign(t.samples.begin(), t.samples.begin() + static_cast<std::ptrdiff_t>(t.count));
        const auto k = static_cast<std::size_t>(std::lround(opt_.quantile * static_cast<double>(t.count - 1)));
        std::nth_element(p.scratch.begin(), p.scratch.begin() + static_cast<std::ptrdiff_t>(k), p.scratch.end());
        t.delay = std::clamp(std::chrono::nanoseconds(p.scratch[k]), opt_.min_delay, opt_.max_delay);
    }

    void loop(proc& p) {
        std::unique_lock lock(p.mu);
        while (!p.stopping) {
            const auto now = clock::now();
            auto next = clock::time_point::max();
            for (hedge_call* c = p.head; c != nullptr; c = c->next) {
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
                start_second(p, *c);
            }
            p.wake_at = next;
            if (next == clock::time_point::max()) p.cv.wait(lock);
            else p.cv.wait_until(lock, next);
            p.wake_at = clock::time_point::min();
        }
    }

    static void start_second(proc& p, hedge_call& c) {
        tracker& t = p.track[c.op];
        if (p.tokens < 1.0) {
            ++t.denied;
            return;
        }
        if (!c.arm_second()) return;
        try {
            c.helper = std::thread(c.run_b, &c);
        } catch (const std::system_error&) {
            return; // no thread: attempt B never runs (a claim may still stop its unused token)
        }
        p.tokens -= 1.0;
        ++t.hedges;
    }

    hedge_options opt_;
    mutable per_process<proc> proc_; ///< mutable: a const snapshot() in a child makes the child's
};

} // namespace detail
} // namespace cachestore
