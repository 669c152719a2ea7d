// cachestore/posix/detail/scan.hpp - one walk over the store's tree: usage,
// the least-recently-used chunks worth keeping as eviction candidates, and
// orphans.
//
// The walk reads every directory once (readdir) and every entry once
// (fstatat, AT_SYMLINK_NOFOLLOW); it opens directories with O_NOFOLLOW and
// never enters a link. It keeps in memory only the oldest chunks (by atime)
// whose sizes add up to the bytes the caller may want to evict (a max-heap on
// atime, at most max_candidates entries), so its memory follows what is
// evicted, not what is stored. Orphans it removes on the way, when asked:
//   - `.tmp-*` older than the orphan age whose flock() it can take (a live put
//     holds one on its temp file, so a slow put never loses its temp);
//   - open()'s `.cachestore-open-*` probes and self_test()'s leftovers older
//     than the orphan age;
//   - origin, fan-out and hash directories it found empty, once older than the
//     empty-directory age (a put that loses its directory to this makes it
//     again).
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/posix/detail/layout.hpp"
#include "cachestore/posix/detail/recency.hpp"
#include "cachestore/posix/detail/resolve.hpp"
#include "cachestore/posix/detail/sys.hpp"
#include "cachestore/posix/options.hpp"

namespace cachestore::detail::posix {

/// A chunk that may be evicted: when it was last used, its size and inode
/// (to notice a re-commit), and its path under the root.
struct candidate {
    std::int64_t atime_ns = 0;
    std::int64_t size = 0;
    ino_t ino = 0;
    std::string rel; ///< origin/hh/hash/index
};

/// The oldest chunks seen, as few as cover `target` bytes (and at most
/// max_candidates of them). A max-heap on atime: the top is the newest kept.
class candidate_heap {
public:
    static constexpr std::size_t max_candidates = std::size_t{1} << 17; // ~20 MiB at most

    explicit candidate_heap(std::int64_t target = 0) : target_(target) {}

    /// Offers a chunk; `rel` is built only when it is kept.
    template <class RelFn>
    void offer(std::int64_t atime_ns, std::int64_t size, ino_t ino, RelFn&& rel) {
        if (target_ <= 0 || (bytes_ >= target_ && !v_.empty() && atime_ns >= v_.front().atime_ns)) {
            dropped_ = true;
            return;
        }
        v_.push_back(candidate{atime_ns, size, ino, rel()});
        std::push_heap(v_.begin(), v_.end(), newer);
        bytes_ += size;
        while (!v_.empty() && (bytes_ - v_.front().size >= target_ || v_.size() > max_candidates)) {
            bytes_ -= v_.front().size;
            std::pop_heap(v_.begin(), v_.end(), newer);
            v_.pop_back();
            dropped_ = true;
        }
    }

    /// The kept chunks, least recently used first (empties the heap).
    [[nodiscard]] std::vector<candidate> take_oldest_first() {
        std::sort_heap(v_.begin(), v_.end(), newer);
        bytes_ = 0;
        return std::exchange(v_, {});
    }

    [[nodiscard]] std::int64_t bytes() const noexcept { return bytes_; }
    /// Whether some chunk was not kept (the heap is not the whole tree).
    [[nodiscard]] bool dropped() const noexcept { return dropped_; }

private:
    static bool newer(const candidate& a, const candidate& b) noexcept { return a.atime_ns < b.atime_ns; }
    std::int64_t target_;
    std::int64_t bytes_ = 0;
    bool dropped_ = false;
    std::vector<candidate> v_;
};

/// What a walk does besides counting.
struct scan_plan {
    std::int64_t keep_bytes = 0;   ///< eviction candidates to keep (bytes)
    bool remove_orphans = false;   ///< remove stale temps, probes and empty directories
    std::int64_t orphan_age_ns = 0;
    std::int64_t empty_dir_age_ns = 0;
};

/// What a walk found.
struct scan_result {
    sweep_report report; ///< counts only; bytes = total chunk bytes found
    candidate_heap heap;
    std::int64_t oldest_ns = std::numeric_limits<std::int64_t>::max();
    std::int64_t newest_ns = std::numeric_limits<std::int64_t>::min();
};

/// Reads directory entries of an open directory descriptor (which it takes
/// over) without following anything.
class dir_reader {
public:
    explicit dir_reader(int fd) noexcept : dir_(fd >= 0 ? ::fdopendir(fd) : nullptr) {
        if (dir_ == nullptr && fd >= 0) ::close(fd);
    }
    dir_reader(const dir_reader&) = delete;
    dir_reader& operator=(const dir_reader&) = delete;
    ~dir_reader() {
        if (dir_ != nullptr) ::closedir(dir_);
    }
    [[nodiscard]] explicit operator bool() const noexcept { return dir_ != nullptr; }
    [[nodiscard]] int fd() const noexcept { return ::dirfd(dir_); }
    /// The next name other than "." and "..", with its d_type; false at the end.
    bool next(std::string_view& name, unsigned char& type) noexcept {
        while (const dirent* e = ::readdir(dir_)) { // NOLINT(concurrency-mt-unsafe): one reader per DIR*
            name = e->d_name;
            if (name == "." || name == "..") continue;
            type = e->d_type;
            return true;
        }
        return false;
    }

private:
    DIR* dir_;
};

/// The tree walk itself. One instance per pass.
class tree_walk {
public:
    tree_walk(int root_fd, const scan_plan& plan, const context& ctx) noexcept
        : root_fd_(root_fd), plan_(plan), ctx_(ctx), now_ns_(to_ns(realtime_now())) {}

    result<scan_result> run() {
        out_.heap = candidate_heap(plan_.keep_bytes);
        dir_reader root(open_retry(root_fd_, ".", O_RDONLY | O_DIRECTORY));
        if (!root) {
            const int err = errno;
            return fail(errc::io_error, "sweep", {}, "cannot read the root directory: " + errno_text(err));
        }
        std::string_view name;
        unsigned char type = 0;
        while (root.next(name, type)) {
            ++out_.report.entries_scanned;
            if (name == selftest_dir) {
                walk_selftest();
            } else if (name.starts_with(open_probe_prefix)) {
                struct ::stat st {};
                if (stat_at(root.fd(), name, st) && !maybe_remove_orphan(root.fd(), name, st, false)) {
                    ++out_.report.temp_files;
                    out_.report.temp_bytes += st.st_size;
                }
            } else if (name == sweep_lock_name) {
            } else if (is_dir(root.fd(), name, type)) {
                const std::string origin(name);
                if (auto r = walk_origin(root.fd(), origin); !r) return std::unexpected(std::move(r.error()));
            } else {
                ++out_.report.foreign;
            }
        }
        return std::move(out_);
    }

private:
    static bool stat_at(int dirfd, std::string_view name, struct ::stat& st) noexcept {
        return ::fstatat(dirfd, std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    }
    static bool is_dir(int dirfd, std::string_view name, unsigned char type) noexcept {
        if (type == DT_DIR) return true;
        if (type != DT_UNKNOWN) return false;
        struct ::stat st {};
        return stat_at(dirfd, name, st) && S_ISDIR(st.st_mode);
    }
    [[nodiscard]] bool old(const struct ::stat& st, std::int64_t age_ns) const noexcept {
        return now_ns_ - to_ns(st.st_mtim) >= age_ns;
    }

    /// Removes an orphan file when the plan says so and it is old enough and
    /// (for a temp) unlocked. True when it was removed; the counts follow.
    bool maybe_remove_orphan(int dirfd, std::string_view name, const struct ::stat& st, bool is_temp) {
        if (!plan_.remove_orphans || !S_ISREG(st.st_mode) || !old(st, plan_.orphan_age_ns)) return false;
        const std::string n(name);
        unique_fd fd;
        if (is_temp) { // a live put holds an flock on its temp file
            fd = unique_fd(open_retry(dirfd, n.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK));
            if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
                if (!fd || errno == EWOULDBLOCK) return false; // in use (ENOLCK etc.: the age rule decides)
            }
        }
        if (::unlinkat(dirfd, n.c_str(), 0) != 0) return false;
        ++out_.report.orphans_removed;
        out_.report.orphan_bytes += st.st_size;
        return true;
    }

    /// rmdir of an empty directory found empty, when old enough.
    void maybe_remove_dir(int parent, const std::string& name, int self_fd) {
        if (!plan_.remove_orphans) return;
        struct ::stat st {};
        // Against the clock now: removing its last entries just moved its mtime.
        if (::fstat(self_fd, &st) != 0 || to_ns(realtime_now()) - to_ns(st.st_mtim) < plan_.empty_dir_age_ns) return;
        if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) == 0) ++out_.report.dirs_removed;
    }

    void walk_selftest() {
        dir_reader d(open_retry(root_fd_, selftest_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
        if (!d) return;
        std::string_view name;
        unsigned char type = 0;
        while (d.next(name, type)) {
            ++out_.report.entries_scanned;
            struct ::stat st {};
            if (!stat_at(d.fd(), name, st)) continue;
            const bool temp = name.starts_with(temp_prefix);
            if (!maybe_remove_orphan(d.fd(), name, st, temp) && temp) {
                ++out_.report.temp_files;
                out_.report.temp_bytes += st.st_size;
            }
        }
    }

    /// <origin>/<hh>/<hash>/: counts `remaining` entries left in each, for rmdir.
    result<> walk_origin(int root, const std::string& origin) {
        if (auto c = ctx_.check("sweep"); !c) return c;
        dir_reader d(open_retry(root, origin.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
        if (!d) return {};
        std::size_t remaining = 0;
        std::string_view name;
        unsigned char type = 0;
        while (d.next(name, type)) {
            ++out_.report.entries_scanned;
            if (is_hex_name(name, 2) && is_dir(d.fd(), name, type)) {
                const std::string hh(name);
                auto r = walk_fanout(d.fd(), origin, hh);
                if (!r) return std::unexpected(std::move(r.error()));
                remaining += *r ? 0 : 1;
            } else {
                ++out_.report.foreign;
                ++remaining;
            }
        }
        if (remaining == 0) maybe_remove_dir(root, origin, d.fd());
        return {};
    }

    /// True when the fan-out directory was removed.
    result<bool> walk_fanout(int parent, const std::string& origin, const std::string& hh) {
        dir_reader d(open_retry(parent, hh.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
        if (!d) return false;
        std::size_t remaining = 0;
        std::string_view name;
        unsigned char type = 0;
        while (d.next(name, type)) {
            ++out_.report.entries_scanned;
            if (is_hex_name(name, 64) && is_dir(d.fd(), name, type)) {
                if (auto c = ctx_.check("sweep"); !c) return std::unexpected(std::move(c.error()));
                const std::string hash(name);
                remaining += walk_hash(d.fd(), origin, hh, hash) ? 0 : 1;
            } else {
                ++out_.report.foreign;
                ++remaining;
            }
        }
        if (remaining != 0) return false;
        const auto before = out_.report.dirs_removed;
        maybe_remove_dir(parent, hh, d.fd());
        return out_.report.dirs_removed != before;
    }

    /// True when the hash directory was removed.
    bool walk_hash(int parent, const std::string& origin, const std::string& hh, const std::string& hash) {
        dir_reader d(open_retry(parent, hash.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
        if (!d) return false;
        std::size_t remaining = 0;
        std::string_view name;
        unsigned char type = 0;
        while (d.next(name, type)) {
            ++out_.report.entries_scanned;
            ++remaining;
            struct ::stat st {};
            if (!stat_at(d.fd(), name, st)) {
                --remaining; // gone meanwhile
                continue;
            }
            if (is_chunk_name(name) && S_ISREG(st.st_mode)) {
                const std::int64_t atime = to_ns(st.st_atim);
                ++out_.report.chunks;
                out_.report.bytes += st.st_size;
                out_.oldest_ns = std::min(out_.oldest_ns, atime);
                out_.newest_ns = std::max(out_.newest_ns, atime);
                out_.heap.offer(atime, st.st_size, st.st_ino, [&] {
                    std::string rel;
                    rel.reserve(origin.size() + hh.size() + hash.size() + name.size() + 3);
                    rel.append(origin).append(1, '/').append(hh).append(1, '/').append(hash).append(1, '/').append(name);
                    return rel;
                });
            } else if (name.starts_with(temp_prefix)) {
                if (maybe_remove_orphan(d.fd(), name, st, true)) {
                    --remaining;
                } else {
                    ++out_.report.temp_files;
                    out_.report.temp_bytes += st.st_size;
                }
            } else {
                ++out_.report.foreign;
            }
        }
        if (remaining != 0) return false;
        const auto before = out_.report.dirs_removed;
        maybe_remove_dir(parent, hash, d.fd());
        return out_.report.dirs_removed != before;
    }

    int root_fd_;
    scan_plan plan_;
    const context& ctx_;
    std::int64_t now_ns_;
    scan_result out_;
};

/// Walks the tree under `root_fd` once.
[[nodiscard]] inline result<scan_result> scan_tree(int root_fd, const scan_plan& plan, const context& ctx) {
    return tree_walk(root_fd, plan, ctx).run();
}

} // namespace cachestore::detail::posix
