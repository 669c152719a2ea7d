// cachestore/posix/detail/bounds.hpp - the bounded store's accounting: how
// many bytes this process knows the root holds, admission of a put under
// max_bytes / min_free_bytes, and eviction of least-recently-used chunks.
//
// Usage is known from the last tree walk (a sweep) plus what this process
// committed (and minus what it removed) since, plus the bytes of its puts in
// flight, which are reserved before a byte is written. Other processes' writes
// become visible at this process's next sweep: that is the overshoot a shared
// root can see, bounded by what they write in one sweep interval. Free space
// (min_free_bytes) is read from statvfs, which sees everyone's writes.
//
// Making room is cheap in the common case: the last sweep kept the oldest
// chunks beyond what it evicted (the reserve, about (1 - low_water) x
// max_bytes of them, oldest first); a put that would pass a bound evicts from
// there. Each candidate is stat()ed again first and spared when it was used
// (atime moved) or replaced (inode changed) since the walk. When the reserve
// runs out the caller sweeps (bounds.hpp does not walk trees itself).
//
// Each byte is subtracted once. A chunk this process removes leaves the
// reserve before its unlink (forget()), so an eviction never finds it gone
// and subtracts it again; "gone" means removed by someone else, whose removal
// the books have not seen. A removal that straddles a walk subtracts nothing:
// the walk's figure replaced the books, with or without the chunk. When in
// doubt the books count a byte too many (until the next walk), never too few.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "cachestore/detail/fork_safe_mutex.hpp"
#include "cachestore/posix/detail/errors.hpp"
#include "cachestore/posix/detail/recency.hpp"
#include "cachestore/posix/detail/resolve.hpp"
#include "cachestore/posix/detail/scan.hpp"
#include "cachestore/posix/detail/sys.hpp"
#include "cachestore/posix/options.hpp"

namespace cachestore::detail::posix {

/// Free bytes for unprivileged writers on the filesystem of `fd`; -1 unknown.
[[nodiscard]] inline std::int64_t free_space(int fd) noexcept {
    struct ::statvfs vfs {};
    if (::fstatvfs(fd, &vfs) != 0) return -1;
    return static_cast<std::int64_t>(vfs.f_bavail) * static_cast<std::int64_t>(vfs.f_frsize);
}

/// What evicting one candidate did.
enum class evicted : std::uint8_t {
    removed, ///< unlinked
    spared,  ///< used (atime moved) or replaced since the walk: kept
    gone,    ///< not there any more (removed by someone else)
    failed,  ///< could not be checked or unlinked (left alone)
};

/// Unlinks `c` unless it was used or replaced since it was seen. `size` is set
/// to the bytes the name held (0 when spared or failed).
[[nodiscard]] inline evicted evict(int root_fd, const candidate& c, std::int64_t& size) noexcept {
    size = 0;
    const std::size_t slash = c.rel.rfind('/');
    if (slash == std::string::npos) return evicted::failed;
    try {
        const std::string dir_rel = c.rel.substr(0, slash);
        const std::string name = c.rel.substr(slash + 1);
        auto gone_or_failed = [&](int err) {
            if (!is_gone(err)) return evicted::failed;
            size = c.size;
            return evicted::gone;
        };
        unique_fd dir(open_beneath(root_fd, dir_rel, O_PATH | O_DIRECTORY));
        if (!dir) return gone_or_failed(errno);
        struct ::stat st {};
        if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return gone_or_failed(errno);
        if (!S_ISREG(st.st_mode) || st.st_ino != c.ino || to_ns(st.st_atim) > c.atime_ns) return evicted::spared;
        if (::unlinkat(dir.get(), name.c_str(), 0) != 0) return gone_or_failed(errno);
        size = st.st_size;
        return evicted::removed;
    } catch (...) { // std::bad_alloc building the names
        return evicted::failed;
    }
}

/// How many bytes a walk that found `usage` (and `free` on the filesystem)
/// must evict under `o`: down to low_water x max_bytes when over max_bytes,
/// and up to min_free_bytes + the low-water slack when under min_free_bytes.
[[nodiscard]] constexpr std::int64_t bytes_to_evict(const posix_options& o, std::int64_t usage,
                                                    std::int64_t free) noexcept {
    std::int64_t need = 0;
    if (o.max_bytes > 0 && usage > o.max_bytes)
        need = usage - static_cast<std::int64_t>(o.low_water * static_cast<double>(o.max_bytes));
    if (o.min_free_bytes > 0 && free >= 0 && free < o.min_free_bytes) {
        const auto base = o.max_bytes > 0 ? o.max_bytes : usage;
        const auto slack = static_cast<std::int64_t>((1.0 - o.low_water) * static_cast<double>(base));
        need = std::max(need, o.min_free_bytes + slack - free);
    }
    return std::max<std::int64_t>(need, 0);
}

/// The eviction candidates a sweep keeps beyond what it evicts, for puts to
/// make room from until the next sweep: the larger of (1 - low_water) x the
/// bound and a quarter of the usage (within candidate_heap::max_candidates).
/// A large reserve costs memory only: a candidate not used since the walk is
/// still older than every chunk the walk did not keep, so evicting from it
/// later is as least-recently-used as evicting right away, and each of its
/// entries saves puts a walk.
[[nodiscard]] constexpr std::int64_t reserve_target(const posix_options& o, std::int64_t usage) noexcept {
    const auto base = o.max_bytes > 0 ? o.max_bytes : usage;
    return std::max(static_cast<std::int64_t>((1.0 - o.low_water) * static_cast<double>(base)), usage / 4) + 1;
}

/// Usage as this process knows it, the reserve, and admission. Thread-safe.
class accounting {
public:
    accounting(int root_fd, const posix_options& opts) noexcept : root_fd_(root_fd), opts_(opts) {}

    [[nodiscard]] bool bounded() const noexcept { return opts_.max_bytes > 0 || opts_.min_free_bytes > 0; }
    [[nodiscard]] bool known() const noexcept { return known_.load(std::memory_order_acquire); }
    /// Bytes the root holds as far as this process knows (-1 before the first walk).
    [[nodiscard]] std::int64_t usage() const noexcept {
        return known() ? base_.load(std::memory_order_relaxed) + reserved_.load(std::memory_order_relaxed) : -1;
    }
    /// A running total of bytes this process committed (for a walk to add
    /// what was committed while it ran).
    [[nodiscard]] std::int64_t committed_total() const noexcept { return own_.load(std::memory_order_relaxed); }

    /// After a walk: the usage it measured (minus what it evicted), plus what
    /// was committed here since `committed_before`; and the new reserve.
    void reset(std::int64_t measured, std::int64_t committed_before, std::vector<candidate> reserve) {
        const std::lock_guard lk(mu_);
        ++generation_;
        base_.store(measured + (committed_total() - committed_before), std::memory_order_relaxed);
        reserve_.assign(std::make_move_iterator(reserve.begin()), std::make_move_iterator(reserve.end()));
        known_.store(true, std::memory_order_release);
    }

    /// Reserves `size` bytes for a put when it fits under both bounds, first
    /// evicting from the reserve when it would not. False: no room (sweep).
    [[nodiscard]] bool admit(std::int64_t size) {
        if (try_reserve(size)) return true;
        const std::lock_guard lk(mu_);
        std::int64_t freed = 0;
        const std::int64_t free0 = opts_.min_free_bytes > 0 ? free_space(root_fd_) : -1;
        auto short_of_room = [&] {
            const bool over = opts_.max_bytes > 0 && usage_now() + size > opts_.max_bytes;
            const bool low = opts_.min_free_bytes > 0 && free0 >= 0 && free0 + freed - size < opts_.min_free_bytes;
            return over || low;
        };
        while (short_of_room() && !reserve_.empty()) {
            const candidate c = std::move(reserve_.front());
            reserve_.pop_front();
            std::int64_t bytes = 0;
            const auto what = evict(root_fd_, c, bytes);
            if (what == evicted::removed || what == evicted::gone) {
                base_.fetch_sub(bytes, std::memory_order_relaxed);
                if (what == evicted::removed) {
                    freed += bytes;
                    evictions_.fetch_add(1, std::memory_order_relaxed);
                }
            }
        }
        return try_reserve(size);
    }
    /// A reserved put committed.
    void committed(std::int64_t size) noexcept {
        base_.fetch_add(size, std::memory_order_relaxed);
        own_.fetch_add(size, std::memory_order_relaxed);
        reserved_.fetch_sub(size, std::memory_order_relaxed);
    }
    /// A reserved put failed or lost the race.
    void released(std::int64_t size) noexcept { reserved_.fetch_sub(size, std::memory_order_relaxed); }

    /// A removal by this process in progress (forget() to removed()).
    struct removal {
        std::uint64_t generation = 0; ///< walks that had reset the books when it began
        std::int64_t size = 0;        ///< the file's size, from the stat before the unlink
    };
    /// Before this process unlinks the chunk `rel` (inode `ino`, `size`
    /// bytes): its eviction candidate, if any, leaves the reserve, so no
    /// eviction can find it gone and subtract it a second time. O(reserve).
    [[nodiscard]] removal forget(const std::string& rel, ino_t ino, std::int64_t size) {
        const std::lock_guard lk(mu_);
        const auto it = std::find_if(reserve_.begin(), reserve_.end(),
                                     [&](const candidate& c) { return c.ino == ino && c.rel == rel; });
        if (it != reserve_.end()) reserve_.erase(it);
        return removal{generation_, size};
    }
    /// After forget(): this process's unlink removed the file. (When the
    /// unlink found it gone, call nothing: another thread's remove, an
    /// eviction or another process took it, and whether the books already
    /// lost it is unknown; they keep it until the next walk.)
    void removed(const removal& r) {
        const std::lock_guard lk(mu_);
        if (r.generation == generation_) base_.fetch_sub(r.size, std::memory_order_relaxed);
    }

    /// Chunks evicted by puts making room (not by sweeps), since open.
    [[nodiscard]] std::int64_t put_evictions() const noexcept { return evictions_.load(std::memory_order_relaxed); }
    [[nodiscard]] std::size_t reserve_size() const {
        const std::lock_guard lk(mu_);
        return reserve_.size();
    }

private:
    [[nodiscard]] std::int64_t usage_now() const noexcept {
        return base_.load(std::memory_order_relaxed) + reserved_.load(std::memory_order_relaxed);
    }

    /// Adds `size` to the reservations when both bounds allow it.
    [[nodiscard]] bool try_reserve(std::int64_t size) noexcept {
        if (opts_.min_free_bytes > 0) {
            const std::int64_t free = free_space(root_fd_);
            if (free >= 0 && free - size < opts_.min_free_bytes) return false;
        }
        if (opts_.max_bytes <= 0) {
            reserved_.fetch_add(size, std::memory_order_relaxed);
            return true;
        }
        const std::int64_t after = reserved_.fetch_add(size, std::memory_order_relaxed) + size;
        if (base_.load(std::memory_order_relaxed) + after <= opts_.max_bytes) return true;
        reserved_.fetch_sub(size, std::memory_order_relaxed);
        return false;
    }

    int root_fd_;
    const posix_options& opts_;
    std::atomic<std::int64_t> base_{0};     ///< committed bytes: last walk + own commits - own removals
    std::atomic<std::int64_t> reserved_{0}; ///< bytes of this process's puts in flight
    std::atomic<std::int64_t> own_{0};      ///< bytes this process ever committed
    std::atomic<std::int64_t> evictions_{0};
    std::atomic<bool> known_{false};
    std::uint64_t generation_ = 0; ///< resets (walks) so far; guarded by mu_
    /// Guards reserve_ and generation_ (and serialises eviction by puts).
    /// Fork-safe: the sweeper thread takes it, and a child forked meanwhile
    /// must not inherit it locked (or reserve_ half-updated).
    mutable cachestore::detail::fork_safe_mutex mu_;
    std::deque<candidate> reserve_;
};

} // namespace cachestore::detail::posix
