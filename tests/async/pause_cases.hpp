// Flow control cases written once over AsyncCacheStore (docs/async.md, "flow
// control"): a resume_handle names the one sink call it was given to, so a
// stale handle's resume() (a second call, or one that arrives after the read
// went on) wakes no later pause. Used by the pooled adapter's tests and the
// S3 engine's.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cachestore/async.hpp"

namespace pause_cases {

/// Reads `n` bytes of `k` from `a` with a sink that pauses after every call
/// and checks, at the second pause, that resuming the first pause's handle
/// again does nothing for 100 ms while the second's handle goes on. Then
/// resumes each pause with its own handle, twice, until the read ends.
template <cachestore::AsyncCacheStore A>
void stale_handle_resumes_nothing(A& a, const cachestore::chunk_key& k, std::int64_t n) {
    using namespace std::chrono_literals;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<cachestore::resume_handle> handles; // one per sink call, in order
    std::size_t bytes = 0;
    std::optional<cachestore::result<>> done;
    a.async_get_chunk(
        cachestore::context::with_timeout(30s), k, 0, n,
        [&](std::span<const std::byte> b, const cachestore::resume_handle& h) {
            const std::lock_guard lk(mu);
            bytes += b.size();
            handles.push_back(h);
            cv.notify_all();
            return cachestore::sink_verdict::pause;
        },
        [&](cachestore::result<> r) {
            const std::lock_guard lk(mu);
            done.emplace(std::move(r));
            cv.notify_all();
        });
    std::unique_lock lk(mu);
    const auto calls = [&](std::size_t c) {
        return cv.wait_for(lk, 10s, [&] { return handles.size() >= c || done.has_value(); }) && !done;
    };
    REQUIRE(calls(1));
    const cachestore::resume_handle first = handles[0];
    lk.unlock();
    first.resume();
    lk.lock();
    REQUIRE(calls(2)); // the read goes on once, to its second pause
    lk.unlock();
    first.resume(); // stale: names the first pause
    first.resume();
    lk.lock();
    CHECK_FALSE(cv.wait_for(lk, 100ms, [&] { return handles.size() > 2 || done.has_value(); }));
    CHECK(handles.size() == 2);
    while (!done) {
        const cachestore::resume_handle h = handles.back();
        const std::size_t at = handles.size();
        lk.unlock();
        h.resume();
        h.resume(); // idempotent: the next pause stays paused
        lk.lock();
        cv.wait_for(lk, 10s, [&] { return handles.size() > at || done.has_value(); });
        if (!done) CHECK(handles.size() == at + 1);
    }
    INFO((*done ? std::string() : done->error().to_string()));
    CHECK(done->has_value());
    CHECK(bytes == static_cast<std::size_t>(n));
}

} // namespace pause_cases
