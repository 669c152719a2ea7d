// cachestore/posix/detail/recency.hpp - "when was this chunk last used",
// kept in the file's own access time so that it survives restarts, is shared
// by every process and host on the root, and costs no index.
//
// The kernel's own atime updates cannot be relied on: `noatime` mounts never
// make them and `relatime` (the Linux default) makes at most one a day. So a
// hit sets atime itself, with futimens() on the descriptor it already has open
// and UTIME_OMIT for mtime (which stat().committed reports and nothing here
// changes). It does so only when the stored atime is older than the
// granularity, so a hot chunk costs one timestamp write per interval, not one
// per hit. The time written is CLOCK_REALTIME to the nanosecond (the kernel's
// own "now" is coarser), so that an eviction order between chunks used
// milliseconds apart exists; a process that does not own the file (and so may
// only write "now") falls back to UTIME_NOW.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include <chrono>
#include <cstdint>

namespace cachestore::detail::posix {

/// Nanoseconds since the epoch of a timespec (saturating far outside ±292 years).
[[nodiscard]] constexpr std::int64_t to_ns(const struct timespec& ts) noexcept {
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

/// The current CLOCK_REALTIME.
[[nodiscard]] inline struct timespec realtime_now() noexcept {
    struct timespec now {};
    ::clock_gettime(CLOCK_REALTIME, &now);
    return now;
}

/// Marks the open chunk `fd` (whose fstat is `st`) used now, unless its atime
/// is within `granularity` of now. Best effort: a failure only costs recency.
/// Returns whether it wrote.
inline bool touch_on_hit(int fd, const struct ::stat& st, std::chrono::nanoseconds granularity) noexcept {
    const struct timespec now = realtime_now();
    if (to_ns(now) - to_ns(st.st_atim) < granularity.count() && to_ns(st.st_atim) <= to_ns(now)) return false;
    struct timespec times[2] = {now, {0, UTIME_OMIT}};
    if (::futimens(fd, times) == 0) return true;
    times[0] = {0, UTIME_NOW}; // not the owner: "now" is all a writer may set
    return ::futimens(fd, times) == 0;
}

} // namespace cachestore::detail::posix
