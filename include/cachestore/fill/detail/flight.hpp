// cachestore/fill/detail/flight.hpp - singleflight: one fill per key in the
// process at a time, each waiter on its own context (docs/fill.md, R1-R5).
//
// A flight is one fill's meeting point. The first caller of a key creates it
// (the leader: it starts the fill, on a thread of its choosing); every later
// caller of the key joins it. Each waiter waits on its own context: one whose
// stop token fires or whose deadline passes returns at once and changes
// nothing for the others. finish() takes the flight out of the table *before*
// it releases the waiters, so a caller arriving after a failure starts a new
// fill: an error is never replayed.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cachestore/context.hpp"
#include "cachestore/error.hpp"

namespace cachestore::fill::detail {

/// One fill's outcome, shared by every waiter: `T` (copied to each) or the
/// fill's error. Published once; never changed after.
template <class T>
class flight {
public:
    flight() = default;
    flight(const flight&) = delete;
    flight& operator=(const flight&) = delete;
    ~flight() = default;

    /// Waits for the outcome on the caller's own context. `cancelled` or
    /// `deadline_exceeded` (op, path) when the context ends first: only this
    /// waiter leaves; the fill and the other waiters go on.
    result<T> wait(const context& ctx, std::string_view op, std::string_view path) {
        std::unique_lock lk(mu_);
        const auto ready = [this] { return outcome_.has_value(); };
        const bool got = ctx.has_deadline() ? cv_.wait_until(lk, ctx.stop_token(), ctx.deadline(), ready)
                                            : cv_.wait(lk, ctx.stop_token(), ready);
        if (got) return *outcome_;
        lk.unlock();
        if (auto why = ctx.check(op, path); !why) return std::unexpected(std::move(why.error()));
        return fail(errc::cancelled, std::string(op), std::string(path), "stop requested"); // not reached
    }

    /// The outcome if it is published, without waiting.
    [[nodiscard]] std::optional<result<T>> peek() const {
        const std::lock_guard lk(mu_);
        return outcome_;
    }

    /// Calls `f(outcome)` once the outcome is published: now (on this thread)
    /// if it is, else on the thread that publishes it, after the waiters are
    /// woken. `f` must not throw. (Where the async API attaches.)
    void on_done(std::function<void(const result<T>&)> f) {
        std::unique_lock lk(mu_);
        if (!outcome_) {
            callbacks_.push_back(std::move(f));
            return;
        }
        lk.unlock();
        f(*outcome_); // published: never written again, read without the lock
    }

    /// Publishes the outcome (once: a second call is ignored) and wakes every waiter.
    void publish(result<T> r) {
        std::vector<std::function<void(const result<T>&)>> cbs;
        {
            const std::lock_guard lk(mu_);
            if (outcome_) return;
            outcome_.emplace(std::move(r));
            cbs.swap(callbacks_);
        }
        cv_.notify_all();
        for (auto& f : cbs) f(*outcome_);
    }

private:
    mutable std::mutex mu_;
    std::condition_variable_any cv_;
    std::optional<result<T>> outcome_;
    std::vector<std::function<void(const result<T>&)>> callbacks_;
};

/// The flights in progress, by key (a chunk's storage path).
template <class T>
class flight_table {
public:
    struct ticket {
        std::shared_ptr<flight<T>> f;
        bool leader = false; ///< this caller created the flight: it must start the fill and finish() it
    };

    /// Joins the key's flight, or creates it (then the caller is its leader).
    ticket join(const std::string& key) {
        const std::lock_guard lk(mu_);
        auto [it, made] = flights_.try_emplace(key);
        if (made) it->second = std::make_shared<flight<T>>();
        return {it->second, made};
    }

    /// Ends `f`, the flight of `key`: out of the table first, then its outcome
    /// published to every waiter. A caller of `key` from now on starts anew.
    void finish(const std::string& key, const std::shared_ptr<flight<T>>& f, result<T> r) {
        {
            const std::lock_guard lk(mu_);
            if (auto it = flights_.find(key); it != flights_.end() && it->second == f) flights_.erase(it);
        }
        f->publish(std::move(r));
    }

    /// Takes `f`, the flight of `key`, out of the table, its outcome already
    /// published (a success kept in the table until its commit ends, so that
    /// callers in between join it instead of fetching again).
    void retire(const std::string& key, const std::shared_ptr<flight<T>>& f) {
        const std::lock_guard lk(mu_);
        if (auto it = flights_.find(key); it != flights_.end() && it->second == f) flights_.erase(it);
    }

    /// Flights in progress (a gauge).
    [[nodiscard]] std::size_t size() const {
        const std::lock_guard lk(mu_);
        return flights_.size();
    }

private:
    mutable std::mutex mu_;
    std::unordered_map<std::string, std::shared_ptr<flight<T>>> flights_;
};

} // namespace cachestore::fill::detail
