// cachestore/posix/detail/sys.hpp - system-call helpers of the POSIX store:
// an owned descriptor, EINTR-safe I/O, errno text, unique temp names, modes.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <utility>

namespace cachestore::detail::posix {

/// Owns one file descriptor.
class unique_fd {
public:
    unique_fd() noexcept = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() { reset(); }

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] explicit operator bool() const noexcept { return fd_ >= 0; }
    void reset() noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    /// Closes now and reports the errno of close() (0 on success): on NFS a
    /// failed write-back surfaces only here. Never retried: Linux closes the
    /// descriptor even when close() reports EINTR.
    int close_checked() noexcept {
        if (fd_ < 0) return 0;
        const int rc = ::close(std::exchange(fd_, -1));
        return rc == 0 || errno == EINTR ? 0 : errno;
    }

private:
    int fd_ = -1;
};

/// Unlinks a name in a directory when it goes out of scope, unless released.
class unlink_guard {
public:
    unlink_guard(int dirfd, std::string name) noexcept : dirfd_(dirfd), name_(std::move(name)) {}
    unlink_guard(const unlink_guard&) = delete;
    unlink_guard& operator=(const unlink_guard&) = delete;
    ~unlink_guard() { remove(); }
    /// Unlinks now; 0 or the errno (ENOENT counts as done).
    int remove() noexcept {
        if (!armed_) return 0;
        armed_ = false;
        return ::unlinkat(dirfd_, name_.c_str(), 0) == 0 || errno == ENOENT ? 0 : errno;
    }
    void release() noexcept { armed_ = false; }
    [[nodiscard]] const std::string& name() const noexcept { return name_; }

private:
    int dirfd_;
    std::string name_;
    bool armed_ = true;
};

// strerror_r comes in two flavours (XSI returns int, GNU returns char*).
inline const char* strerror_pick(int rc, const char* buf) noexcept { return rc == 0 ? buf : "unknown error"; }
inline const char* strerror_pick(const char* msg, const char*) noexcept { return msg; }

/// strerror text, thread-safe.
[[nodiscard]] inline std::string errno_text(int err) {
    char buf[256] = {};
    return std::string(strerror_pick(::strerror_r(err, buf, sizeof buf), buf));
}

/// A 64-bit value unique per call across threads and forked processes (not a
/// secret: it only keeps temp file names apart).
[[nodiscard]] inline std::uint64_t unique_u64() noexcept {
    static const std::uint64_t seed = []() noexcept {
        std::uint64_t s = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        try {
            std::random_device rd;
            s ^= (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
        } catch (...) { // no entropy source: the clock, pid and counter still separate names
        }
        return s;
    }();
    static std::atomic<std::uint64_t> counter{0};
    std::uint64_t x = seed ^ (static_cast<std::uint64_t>(::getpid()) << 40) ^
                      (counter.fetch_add(1, std::memory_order_relaxed) * 0x9e3779b97f4a7c15ULL) ^
                      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    // splitmix64 finaliser
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

[[nodiscard]] inline std::string unique_hex() {
    static constexpr char digits[] = "0123456789abcdef";
    std::uint64_t x = unique_u64();
    std::string s(16, '0');
    for (int i = 15; i >= 0; --i, x >>= 4) s[static_cast<std::size_t>(i)] = digits[x & 0xf];
    return s;
}

[[nodiscard]] inline int fsync_retry(int fd) noexcept {
    int rc;
    do rc = ::fsync(fd);
    while (rc != 0 && errno == EINTR);
    return rc == 0 ? 0 : errno;
}

/// Writes all of `b`; 0 or the errno.
[[nodiscard]] inline int write_all(int fd, std::span<const std::byte> b) noexcept {
    const std::byte* p = b.data();
    std::size_t left = b.size();
    while (left != 0) {
        const ssize_t w = ::write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return EIO;
        p += w;
        left -= static_cast<std::size_t>(w);
    }
    return 0;
}

/// Reads up to dst.size() bytes at `at`, stopping early only at end of file;
/// `got` is the count read. 0 or the errno.
[[nodiscard]] inline int pread_full(int fd, std::span<std::byte> dst, std::int64_t at, std::size_t& got) noexcept {
    got = 0;
    while (got < dst.size()) {
        const ssize_t r = ::pread(fd, dst.data() + got, dst.size() - got, static_cast<off_t>(at) + static_cast<off_t>(got));
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (r == 0) break;
        got += static_cast<std::size_t>(r);
    }
    return 0;
}

[[nodiscard]] inline std::chrono::system_clock::time_point to_time_point(const struct timespec& ts) noexcept {
    using namespace std::chrono;
    return system_clock::time_point(
        duration_cast<system_clock::duration>(seconds(ts.tv_sec) + nanoseconds(ts.tv_nsec)));
}

/// Applies `mode` exactly to a file or directory the store just created.
[[nodiscard]] inline int set_mode(int fd, mode_t mode) noexcept { return ::fchmod(fd, mode) == 0 ? 0 : errno; }

/// Creates `path` and its missing parents with `mode` (exact), like mkdir -p.
/// 0 or the errno of the step that failed.
[[nodiscard]] inline int make_dirs(const std::string& path, mode_t mode) noexcept {
    try {
        std::string prefix;
        std::size_t i = 0;
        while (i <= path.size()) {
            const std::size_t slash = path.find('/', i);
            const std::size_t end = slash == std::string::npos ? path.size() : slash;
            prefix = path.substr(0, end);
            i = end + 1;
            if (prefix.empty() || prefix.back() == '/' || prefix.ends_with("/.") || prefix == ".") continue;
            if (::mkdir(prefix.c_str(), mode) == 0) {
                if (::chmod(prefix.c_str(), mode) != 0) return errno;
            } else if (errno != EEXIST) {
                return errno;
            }
        }
        return 0;
    } catch (...) {
        return ENOMEM;
    }
}

} // namespace cachestore::detail::posix
