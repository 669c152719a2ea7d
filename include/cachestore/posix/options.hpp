// cachestore/posix/options.hpp - how a posix_store treats its root, its
// commits and its size, and what a sweep reports. docs/operations.md ("The
// POSIX store") describes every field; docs/design.md ("The bounded POSIX
// store") the design behind the bounds.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>

namespace cachestore {

/// How a posix_store treats its root, its commits and its size.
struct posix_options {
    /// fsync each chunk file before its link() and the directories it entered
    /// after, so a committed chunk survives a power loss. Off: commits are
    /// still atomic and exclusive, but the last ones may vanish in a crash.
    bool fsync = true;
    /// Create a missing root (and its missing parents, with dir_mode). Off by
    /// default: a mistyped root is `misconfigured`, never a new empty cache.
    bool create_root = false;
    /// Mode of every file the store creates (chunks, temp files, probes). Set
    /// exactly (fchmod after creation): the process umask neither widens nor
    /// narrows it. Default owner-only: chunks of private objects stay private.
    mode_t file_mode = 0600;
    /// Mode of every directory the store creates, the root included when it
    /// creates it (an existing root keeps its mode). Exact, like file_mode.
    mode_t dir_mode = 0700;

    // ---- bounds (0: unbounded; the store then never removes a chunk) -------

    /// The most bytes of committed chunks (file sizes) the root may hold. A
    /// put that would pass it first removes least-recently-used chunks; a
    /// sweep that finds it passed (other processes write too) removes them
    /// down to low_water × max_bytes.
    std::int64_t max_bytes = 0;
    /// The least free space (statvfs f_bavail) the filesystem must keep. A put
    /// that would go below it first removes least-recently-used chunks; a
    /// sweep that finds it passed frees up to min_free_bytes plus
    /// (1 - low_water) × max_bytes (× the usage, without max_bytes).
    std::int64_t min_free_bytes = 0;
    /// Where an evicting sweep stops, as a fraction of max_bytes (0.5 .. 1).
    double low_water = 0.9;

    // ---- recency ------------------------------------------------------------

    /// A hit sets the chunk's access time (atime, never mtime) when it is
    /// older than this: recency that works on noatime and relatime mounts at
    /// most one timestamp write per chunk per interval. 0: on every hit.
    std::chrono::milliseconds recency_granularity{60'000};

    // ---- the sweeper ----------------------------------------------------------

    /// A background thread owned by the store sweeps this often (and when a
    /// put needs room). 0: no thread; call sweep() yourself, and puts sweep
    /// in their own thread when the cheap way to make room runs out.
    std::chrono::milliseconds sweep_interval{0};
    /// With a bound, open() sweeps once (a scan of the whole tree) to learn
    /// the usage before it returns. Off: the first bounded put (or sweep())
    /// does that scan instead.
    bool sweep_on_open = true;
    /// Temp files (.tmp-*) not locked by a live put, and probe files, older
    /// than this are removed by a sweep, and empty directories older than the
    /// smaller of this and one minute.
    std::chrono::seconds orphan_age{3600};
};

/// What one sweep (or measure) found and did. Sizes are file sizes in bytes.
struct sweep_report {
    std::int64_t chunks = 0;          ///< committed chunk files under the root after the pass
    std::int64_t bytes = 0;           ///< their total size: the store's usage after the pass
    std::int64_t chunks_evicted = 0;  ///< least-recently-used chunks removed
    std::int64_t bytes_evicted = 0;   ///< their total size
    std::int64_t spared = 0;          ///< eviction candidates used again before their turn, kept
    std::int64_t orphans_removed = 0; ///< stale temp and probe files removed
    std::int64_t orphan_bytes = 0;    ///< their total size
    std::int64_t dirs_removed = 0;    ///< empty origin, fan-out and hash directories removed
    std::int64_t temp_files = 0;      ///< temp files seen and kept (puts in progress, or too young)
    std::int64_t temp_bytes = 0;      ///< their total size
    std::int64_t foreign = 0;         ///< entries the store does not own (left alone)
    std::int64_t entries_scanned = 0; ///< directory entries examined
    std::int64_t free_bytes = -1;     ///< free space on the filesystem after the pass (-1: unknown)
    /// Access times of the least and the most recently used chunk (epoch when none).
    std::chrono::system_clock::time_point oldest_use{}, newest_use{};
    std::chrono::nanoseconds scan_time{};  ///< time spent walking the tree
    std::chrono::nanoseconds total_time{}; ///< the whole pass, lock wait and evictions included
    int passes = 0;                        ///< tree walks (2 when the first found more to evict than it kept candidates for)
    bool over_bound = false;               ///< a limit was still exceeded after the pass (nothing left to evict)
};

} // namespace cachestore
