// cachestore/context.hpp - cancellation and deadline for one call.
#pragma once

#include <chrono>
#include <stop_token>
#include <string>
#include <utility>

#include "cachestore/error.hpp"

namespace cachestore {

/// Carries a stop token and a deadline into every blocking call. Cheap to copy
/// (a shared stop state and a time point); pass it by const reference.
class context {
public:
    using clock = std::chrono::steady_clock;

    context() = default;
    explicit context(std::stop_token stop, clock::time_point deadline = clock::time_point::max())
        : stop_(std::move(stop)), deadline_(deadline) {}

    /// A context that expires `timeout` from now.
    [[nodiscard]] static context with_timeout(clock::duration timeout, std::stop_token stop = {}) {
        return context(std::move(stop), clock::now() + timeout);
    }

    /// A copy with the earlier of the two deadlines.
    [[nodiscard]] context with_deadline(clock::time_point d) const {
        return context(stop_, d < deadline_ ? d : deadline_);
    }

    [[nodiscard]] const std::stop_token& stop_token() const noexcept { return stop_; }
    [[nodiscard]] clock::time_point deadline() const noexcept { return deadline_; }
    [[nodiscard]] bool has_deadline() const noexcept { return deadline_ != clock::time_point::max(); }
    [[nodiscard]] bool stop_requested() const noexcept { return stop_.stop_requested(); }
    [[nodiscard]] bool expired() const noexcept { return has_deadline() && clock::now() >= deadline_; }

    /// Time left before the deadline (zero when past, max() when none).
    [[nodiscard]] clock::duration remaining() const noexcept {
        if (!has_deadline()) return clock::duration::max();
        const auto now = clock::now();
        return now >= deadline_ ? clock::duration::zero() : deadline_ - now;
    }

    /// The error code that ends a call now, if any.
    [[nodiscard]] bool done(errc& why) const noexcept {
        if (stop_requested()) {
            why = errc::cancelled;
            return true;
        }
        if (expired()) {
            why = errc::deadline_exceeded;
            return true;
        }
        return false;
    }

    /// `cancelled` or `deadline_exceeded` for `op`, or success.
    [[nodiscard]] result<> check(std::string_view op, std::string_view path = {}) const {
        errc why{};
        if (!done(why)) return {};
        return fail(why, std::string(op), std::string(path),
                    why == errc::cancelled ? "stop requested" : "deadline exceeded");
    }

private:
    std::stop_token stop_;
    clock::time_point deadline_ = clock::time_point::max();
};

} // namespace cachestore
