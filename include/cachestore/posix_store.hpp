// cachestore/posix_store.hpp - the embedded default driver: chunks as files
// under a root directory, committed atomically with a temp file + link().
//
// Layout under the root (the SPEC storage path with a 2-hex-char fan-out):
//
//     <root>/<origin_id>/<hash[0:2]>/<hash>/<index>
//
// A put writes `<dir>/.tmp-<index>-<random hex>`, fsyncs it, then link()s it
// to `<dir>/<index>`: link() fails with EEXIST when another writer (thread or
// process) got there first, which is `commit_lost`. Every call resolves its
// paths relative to a directory fd opened once, so the root cannot be swapped
// under a running store, and never follows a symbolic link below the root
// (cachestore/posix/detail/resolve.hpp). Files are created owner-only (0600,
// directories 0700) unless posix_options says otherwise. Directories are never
// removed by the driver.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/posix/detail/resolve.hpp"
#include "cachestore/store.hpp"

namespace cachestore {

/// How a posix_store treats its root and its commits. Every field is
/// described in docs/operations.md ("The POSIX store").
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
};

namespace detail::posix {

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

inline constexpr std::size_t write_block = std::size_t{1} << 20; // put scratch buffer (upper bound)
inline constexpr std::size_t read_block = std::size_t{256} << 10; // get buffer, and the span between ctx checks
inline constexpr const char* selftest_dir = ".cachestore-selftest";

// strerror_r comes in two flavours (XSI returns int, GNU returns char*).
inline const char* strerror_pick(int rc, const char* buf) noexcept { return rc == 0 ? buf : "unknown error"; }
inline const char* strerror_pick(const char* msg, const char*) noexcept { return msg; }

/// strerror text, thread-safe.
[[nodiscard]] inline std::string errno_text(int err) {
    char buf[256] = {};
    return std::string(strerror_pick(::strerror_r(err, buf, sizeof buf), buf));
}

/// The reaction an errno calls for.
[[nodiscard]] constexpr errc classify(int err) noexcept {
    switch (err) {
    case EACCES:
    case EPERM: return errc::misconfigured; // the root's owner or mode is wrong for this process
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EAGAIN:
    case EINTR: return errc::transient;     // resource exhaustion that clears by itself
    case ENAMETOOLONG: return errc::invalid_argument; // an origin_id too long for a file name
    case ESTALE: return errc::transient;    // NFS: another client removed what a handle named; a new lookup is fresh
    default: return errc::io_error;         // ENOSPC, EDQUOT, EIO, EROFS, ENOTDIR, ...
    }
}

/// The errnos that mean "that name is not there": absent, a path component
/// that is not a directory, or (NFS) a stale handle because another client
/// removed the file or a directory above it. On a read path all three are a
/// miss; removing such a name is done.
[[nodiscard]] constexpr bool is_gone(int err) noexcept { return err == ENOENT || err == ENOTDIR || err == ESTALE; }

/// `not_found` for a chunk that is not there, keeping the errno that said so.
[[nodiscard]] inline std::unexpected<error> gone(std::string_view op, const std::string& path, int err) {
    error e;
    e.code = errc::not_found;
    e.op = std::string(op);
    e.path = path;
    e.sys_errno = err == ENOENT ? 0 : err;
    e.message = err == ESTALE ? "chunk not stored (stale NFS handle: another client removed it)" : "chunk not stored";
    return std::unexpected<error>(std::move(e));
}

/// An error from a failed system call: `what: strerror`, with sys_errno set.
[[nodiscard]] inline std::unexpected<error> sys_fail(std::string_view op, const std::string& path, std::string what,
                                                     int err) {
    error e;
    e.code = classify(err);
    e.op = std::string(op);
    e.path = path;
    e.sys_errno = err;
    e.message = std::move(what);
    e.message += ": ";
    e.message += errno_text(err);
    if (err == EACCES || err == EPERM) e.message += " (check the owner and mode of the store's root directory)";
    return std::unexpected<error>(std::move(e));
}

/// The error for a symbolic link met below the root (ELOOP from open_beneath):
/// never followed, and an operator should look at who put it there.
[[nodiscard]] inline std::unexpected<error> symlink_fail(std::string_view op, const std::string& path,
                                                         const std::string& full) {
    error e;
    e.code = errc::io_error;
    e.op = std::string(op);
    e.path = path;
    e.sys_errno = ELOOP;
    e.message = full + ", or a directory above it inside the root, is a symbolic link: the store never follows links "
                       "below its root (remove the link; to put part of the cache on another disk, mount it there)";
    return std::unexpected<error>(std::move(e));
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

/// Whether a root string is a URL ("file:...", "s3://...", any "scheme://")
/// rather than a path. A relative directory really named so is written "./...".
[[nodiscard]] constexpr bool looks_like_url(std::string_view s) noexcept {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (s.size() >= 5 && lower(s[0]) == 'f' && lower(s[1]) == 'i' && lower(s[2]) == 'l' && lower(s[3]) == 'e' &&
        s[4] == ':')
        return true;
    const std::size_t colon = s.find("://");
    if (colon == std::string_view::npos || colon == 0) return false;
    for (std::size_t i = 0; i < colon; ++i) {
        const char c = s[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        const bool ok = alpha || (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
        if (!ok) return false;
    }
    return true;
}

/// The error for a link() the filesystem refuses (no hard links).
[[nodiscard]] inline std::unexpected<error> no_hard_links(std::string_view op, const std::string& path,
                                                          const std::string& root, int err) {
    auto e = sys_fail(op, path, "link() failed under " + root, err);
    e.error().code = errc::misconfigured;
    e.error().message += ": the filesystem does not support hard links, which the POSIX store needs for atomic "
                         "commits (some FUSE and SMB/CIFS mounts lack them); put the root on a local filesystem "
                         "(ext4, xfs, btrfs, tmpfs) or NFS";
    return e;
}

[[nodiscard]] constexpr bool is_no_link_errno(int err) noexcept {
    switch (err) {
    case EPERM:
    case ENOTSUP:
    case EXDEV:
    case ENOSYS: return true;
    default: return err == EOPNOTSUPP; // the same value as ENOTSUP on Linux, not on every system
    }
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

/// Where a chunk lives: the SPEC path (for errors) and its file under the root.
struct location {
    std::string path; ///< SPEC storage path: origin_id/hash/index
    std::string dir;  ///< origin_id/hh/hash, relative to the root
    std::string name; ///< decimal index
    [[nodiscard]] std::string rel() const { return dir + '/' + name; }
};

/// Precondition: validate(k) succeeded.
[[nodiscard]] inline location locate(const chunk_key& k) {
    location l;
    append_storage_path(l.path, k);
    const std::string_view hex(l.path.data() + k.origin_id.size() + 1, 64);
    l.dir.reserve(k.origin_id.size() + 2 + 3 + 64);
    l.dir += k.origin_id;
    l.dir += '/';
    l.dir += hex.substr(0, 2);
    l.dir += '/';
    l.dir += hex;
    l.name = std::to_string(k.index);
    return l;
}

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

} // namespace detail::posix

/// Chunks as files under a root directory. Thread-safe, and safe when several
/// processes (on one host or over NFS) share the root: commits are atomic and
/// exclusive through link(), and readers only ever see complete files.
class posix_store {
public:
    /// Opens the root: a directory path (absolute, or relative to the working
    /// directory), never a URL. A root that is missing (unless
    /// `opts.create_root`), not creatable, not a directory, or not writable by
    /// this process is `misconfigured`, and so is a `file:` URL or any other
    /// "scheme://" string, which would otherwise name a directory under the
    /// working directory.
    [[nodiscard]] static result<posix_store> open(std::string root, posix_options opts = {}) {
        namespace px = detail::posix;
        auto bad = [&](std::string msg, int err = 0) {
            auto e = fail(errc::misconfigured, "open", {}, std::move(msg));
            e.error().sys_errno = err;
            return e;
        };
        if (root.empty()) return bad("the root directory path is empty");
        if (root.find('\0') != std::string::npos) return bad("the root directory path contains NUL");
        if (px::looks_like_url(root))
            return bad("the root " + root +
                       " is a URL, not a directory path: posix_store::open takes a path such as /var/cache/chunks "
                       "(a URL's scheme would become a directory under the working directory; write ./" +
                       root + " if that is really meant)");
        constexpr int dir_flags = O_RDONLY | O_DIRECTORY;
        px::unique_fd fd(px::open_retry(AT_FDCWD, root.c_str(), dir_flags));
        if (!fd && errno == ENOENT && opts.create_root) {
            if (const int err = px::make_dirs(root, opts.dir_mode); err != 0)
                return bad("cannot create the root directory " + root + ": " + px::errno_text(err) +
                               " (create it by hand, or point the store at a writable location)",
                           err);
            fd = px::unique_fd(px::open_retry(AT_FDCWD, root.c_str(), dir_flags));
        }
        if (!fd) {
            const int err = errno;
            switch (err) {
            case ENOENT:
                return bad("the root directory " + root + " does not exist" +
                               (opts.create_root ? std::string()
                                                 : " (create it with mode 0700, or set posix_options::create_root)"),
                           err);
            case ENOTDIR: {
                struct ::stat st {};
                if (::stat(root.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
                    return bad("the root " + root + " is not a directory", err);
                return bad("the root " + root + " cannot be opened or created: a component of its path is not a directory",
                           err);
            }
            case EACCES:
            case EPERM:
                return bad("cannot open the root directory " + root + ": " + px::errno_text(err) +
                               " (check its owner and mode, and those of its parents)",
                           err);
            default: return bad("cannot open the root directory " + root + ": " + px::errno_text(err), err);
            }
        }
        // Prove the root writable by this process the only reliable way (mode
        // bits lie about root, ACLs, read-only mounts and root-squashing NFS).
        const std::string probe = ".cachestore-open-" + px::unique_hex();
        px::unique_fd pf(px::open_retry(fd.get(), probe.c_str(), O_CREAT | O_EXCL | O_WRONLY, opts.file_mode));
        if (!pf) {
            const int err = errno;
            return bad("the root directory " + root + " is not writable: " + px::errno_text(err) +
                           (err == EROFS ? " (the filesystem is mounted read-only)"
                                         : " (check its owner and mode, and that this process may create files in it)"),
                       err);
        }
        pf.reset();
        ::unlinkat(fd.get(), probe.c_str(), 0);
        return posix_store(std::move(root), std::move(fd), opts);
    }

    posix_store(posix_store&&) noexcept = default;
    posix_store& operator=(posix_store&&) noexcept = default;
    posix_store(const posix_store&) = delete;
    posix_store& operator=(const posix_store&) = delete;
    ~posix_store() = default;

    template <chunk_sink Sink>
    result<> get_chunk(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, Sink&& sink) {
        auto h = open_range(ctx, key, off, n);
        if (!h) return std::unexpected(std::move(h.error()));
        const auto cap = static_cast<std::size_t>(std::min<std::int64_t>(n, static_cast<std::int64_t>(detail::posix::read_block)));
        auto buf = std::make_unique_for_overwrite<std::byte[]>(cap);
        for (std::int64_t done = 0; done < n;) {
            if (auto c = ctx.check("get_chunk", h->path); !c) return c;
            const auto len = static_cast<std::size_t>(std::min<std::int64_t>(n - done, static_cast<std::int64_t>(cap)));
            auto got = read_exact(*h, std::span<std::byte>(buf.get(), len), off + done);
            if (!got) return got;
            if (!sink(std::span<const std::byte>(buf.get(), len)))
                return fail(errc::cancelled, "get_chunk", h->path, "sink stopped the transfer");
            done += static_cast<std::int64_t>(len);
        }
        return {};
    }

    /// Reads bytes [off, off + out.size()) of the chunk straight into `out`
    /// (no intermediate copy). cachestore::get_chunk(store, ...) calls this.
    result<> get_chunk_into(const context& ctx, const chunk_key& key, std::int64_t off, std::span<std::byte> out) {
        const auto n = static_cast<std::int64_t>(out.size());
        auto h = open_range(ctx, key, off, n);
        if (!h) return std::unexpected(std::move(h.error()));
        for (std::size_t done = 0; done < out.size();) {
            if (auto c = ctx.check("get_chunk", h->path); !c) return c;
            const std::size_t len = std::min(out.size() - done, detail::posix::read_block);
            auto got = read_exact(*h, out.subspan(done, len), off + static_cast<std::int64_t>(done));
            if (!got) return got;
            done += len;
        }
        return {};
    }

    template <chunk_source Src>
    result<> put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src&& src) {
        namespace px = detail::posix;
        if (auto a = detail::check_put_args(key, size); !a) return a;
        if (auto a = detail::check_source_size(src, size); !a) return a;
        const px::location loc = px::locate(key);
        if (auto c = ctx.check("put_chunk", loc.path); !c) return c;
        // Stat first: a committed chunk is the truth, and nothing is written.
        struct ::stat st {};
        const std::string rel = loc.rel();
        if (const int err = stat_beneath(rel, st); err == 0) {
            if (!S_ISREG(st.st_mode))
                return fail(errc::io_error, "put_chunk", loc.path, full(rel) + " is not a regular file");
            return fail(errc::commit_lost, "put_chunk", loc.path, "chunk already committed");
        } else if (err == ELOOP) {
            return px::symlink_fail("put_chunk", loc.path, full(rel));
        } else if (!px::is_gone(err)) { // ESTALE too: a name another NFS client removed is absent
            return px::sys_fail("put_chunk", loc.path, "stat " + full(rel), err);
        }
        auto dirs = open_dirs(loc);
        if (!dirs) return std::unexpected(std::move(dirs.error()));
        if (auto r = commit_file(ctx, "put_chunk", loc.path, dirs->fd[2].get(), loc.dir, loc.name, size, src); !r)
            return r;
        if (opts_.fsync) return sync_created_parents(loc, *dirs);
        return {};
    }

    result<info> stat(const context& ctx, const chunk_key& key) {
        namespace px = detail::posix;
        if (auto v = validate(key, "stat"); !v) return std::unexpected(std::move(v.error()));
        const px::location loc = px::locate(key);
        if (auto c = ctx.check("stat", loc.path); !c) return std::unexpected(std::move(c.error()));
        const std::string rel = loc.rel();
        struct ::stat st {};
        if (const int err = stat_beneath(rel, st); err != 0) {
            if (px::is_gone(err)) return px::gone("stat", loc.path, err);
            if (err == ELOOP) return px::symlink_fail("stat", loc.path, full(rel));
            return px::sys_fail("stat", loc.path, "stat " + full(rel), err);
        }
        if (!S_ISREG(st.st_mode))
            return fail(errc::io_error, "stat", loc.path, full(rel) + " is not a regular file");
        return info{static_cast<std::int64_t>(st.st_size), px::to_time_point(st.st_mtim)};
    }

    /// Unlinks the chunk's file (absent is success). Directories stay: a
    /// concurrent writer may be creating its temp file in them.
    result<> remove(const context& ctx, const chunk_key& key) {
        namespace px = detail::posix;
        if (auto v = validate(key, "remove"); !v) return v;
        const px::location loc = px::locate(key);
        if (auto c = ctx.check("remove", loc.path); !c) return c;
        const std::string rel = loc.rel();
        // Unlink by name in the chunk's directory, reached without following
        // a link (a linked directory could point anywhere).
        px::unique_fd dir(px::open_beneath(root_fd_.get(), loc.dir, O_PATH | O_DIRECTORY));
        if (!dir) {
            const int err = errno;
            if (px::is_gone(err)) return {};
            if (err == ELOOP) return px::symlink_fail("remove", loc.path, full(loc.dir));
            return px::sys_fail("remove", loc.path, "open directory " + full(loc.dir), err);
        }
        if (::unlinkat(dir.get(), loc.name.c_str(), 0) != 0 && !px::is_gone(errno)) {
            const int err = errno;
            return px::sys_fail("remove", loc.path, "unlink " + full(rel), err);
        }
        return {};
    }

    /// Proves the root usable: writes a probe through the same temp + link()
    /// commit as put_chunk, proves link() onto an existing name fails with
    /// EEXIST, stats it, reads it back byte-exact and deletes it, all under
    /// `<root>/.cachestore-selftest/`.
    result<> self_test(const context& ctx) {
        namespace px = detail::posix;
        constexpr std::string_view op = "self_test";
        if (auto c = ctx.check(op); !c) return c;
        const std::string dir_rel = px::selftest_dir;
        const bool made = ::mkdirat(root_fd_.get(), dir_rel.c_str(), opts_.dir_mode) == 0;
        if (!made && errno != EEXIST) {
            const int err = errno;
            return px::sys_fail(op, dir_rel, "cannot create the self-test directory " + full(dir_rel), err);
        }
        px::unique_fd dir(px::open_beneath(root_fd_.get(), dir_rel, O_RDONLY | O_DIRECTORY));
        if (!dir) {
            const int err = errno;
            if (err == ELOOP) return px::symlink_fail(op, dir_rel, full(dir_rel));
            return px::sys_fail(op, dir_rel, "cannot open the self-test directory " + full(dir_rel), err);
        }
        if (made) {
            if (const int err = px::set_mode(dir.get(), opts_.dir_mode); err != 0)
                return px::sys_fail(op, dir_rel, "cannot set the mode of " + full(dir_rel), err);
        }

        const std::string name = "probe-" + px::unique_hex();
        const std::string path = dir_rel + '/' + name;
        std::vector<std::byte> probe(4099); // not a multiple of any block size
        for (std::size_t i = 0; i < probe.size(); i += 8) {
            std::uint64_t x = px::unique_u64();
            for (std::size_t j = i; j < std::min(i + 8, probe.size()); ++j, x >>= 8) probe[j] = static_cast<std::byte>(x);
        }
        const auto size = static_cast<std::int64_t>(probe.size());
        std::span<const std::byte> bytes(probe);
        px::unlink_guard cleanup(dir.get(), name);

        if (auto r = commit_file(ctx, op, path, dir.get(), dir_rel, name, size, bytes); !r) return r;
        // A second commit of the same name must lose: link() onto an existing name is EEXIST.
        auto again = commit_file(ctx, op, path, dir.get(), dir_rel, name, size, bytes);
        if (again)
            return fail(errc::misconfigured, std::string(op), path,
                        "link() onto an existing name succeeded under " + root_ +
                            ": the filesystem does not make commits exclusive, so racing writers could corrupt chunks");
        if (again.error().code != errc::commit_lost) return again;

        struct ::stat st {};
        if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            const int err = errno;
            return px::sys_fail(op, path, "the probe " + full(path) + " is not visible after its commit", err);
        }
        if (!S_ISREG(st.st_mode) || st.st_size != size)
            return fail(errc::io_error, std::string(op), path,
                        "the probe " + full(path) + " reports " + std::to_string(st.st_size) + " bytes after writing " +
                            std::to_string(size));

        px::unique_fd in(px::open_retry(dir.get(), name.c_str(), O_RDONLY | O_NOFOLLOW));
        if (!in) {
            const int err = errno;
            return px::sys_fail(op, path, "cannot open the probe " + full(path) + " for reading", err);
        }
        std::vector<std::byte> back(probe.size() + 1);
        std::size_t got = 0;
        if (const int err = px::pread_full(in.get(), back, 0, got); err != 0)
            return px::sys_fail(op, path, "cannot read the probe " + full(path), err);
        in.reset();
        if (got != probe.size() || !std::equal(probe.begin(), probe.end(), back.begin()))
            return fail(errc::io_error, std::string(op), path,
                        "the probe " + full(path) + " read back " + std::to_string(got) + " bytes that differ from the " +
                            std::to_string(size) + " written: the filesystem is not read-after-write consistent");

        if (const int err = cleanup.remove(); err != 0)
            return px::sys_fail(op, path, "cannot delete the probe " + full(path), err);
        if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
            return fail(errc::io_error, std::string(op), path, "the probe " + full(path) + " is still visible after its deletion");
        if (errno != ENOENT) {
            const int err = errno;
            return px::sys_fail(op, path, "stat of the deleted probe " + full(path), err);
        }
        return ctx.check(op);
    }

    /// The chunk's file relative to the root: `origin_id/hh/hash/index`, where
    /// `hash/index` ends the SPEC storage path and `hh` is the hash's first two
    /// hex characters. Empty for an invalid key.
    [[nodiscard]] static std::string file_path(const chunk_key& key) {
        if (!validate(key, "file_path")) return {};
        return detail::posix::locate(key).rel();
    }

    /// The root directory as given to open().
    [[nodiscard]] const std::string& root() const noexcept { return root_; }
    [[nodiscard]] const posix_options& options() const noexcept { return opts_; }

private:
    struct read_handle {
        detail::posix::unique_fd fd;
        std::string path; ///< SPEC path, for errors
        std::string rel;  ///< file path under the root, for messages
    };

    posix_store(std::string root, detail::posix::unique_fd fd, posix_options opts) noexcept
        : root_(std::move(root)), root_fd_(std::move(fd)), opts_(opts) {}

    /// `<root>/<rel>` for messages.
    [[nodiscard]] std::string full(const std::string& rel) const {
        std::string s = root_;
        if (s.empty() || s.back() != '/') s += '/';
        s += rel;
        return s;
    }

    /// The checks and open shared by both reads: arguments, ctx, the file,
    /// and the range against its size.
    result<read_handle> open_range(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n) {
        namespace px = detail::posix;
        if (auto a = detail::check_get_args(key, off, n); !a) return std::unexpected(std::move(a.error()));
        const px::location loc = px::locate(key);
        if (auto c = ctx.check("get_chunk", loc.path); !c) return std::unexpected(std::move(c.error()));
        read_handle h{px::unique_fd(), loc.path, loc.rel()};
        h.fd = px::unique_fd(px::open_beneath(root_fd_.get(), h.rel, O_RDONLY));
        if (!h.fd) {
            const int err = errno;
            if (px::is_gone(err)) return px::gone("get_chunk", h.path, err);
            if (err == ELOOP) return px::symlink_fail("get_chunk", h.path, full(h.rel));
            return px::sys_fail("get_chunk", h.path, "open " + full(h.rel), err);
        }
        struct ::stat st {};
        if (::fstat(h.fd.get(), &st) != 0) {
            const int err = errno;
            if (err == ESTALE) return px::gone("get_chunk", h.path, err); // removed by another NFS client
            return px::sys_fail("get_chunk", h.path, "stat " + full(h.rel), err);
        }
        if (!S_ISREG(st.st_mode))
            return fail(errc::io_error, "get_chunk", h.path, full(h.rel) + " is not a regular file");
        const auto size = static_cast<std::int64_t>(st.st_size);
        if (off + n > size)
            return fail(errc::out_of_range, "get_chunk", h.path,
                        "range ends at " + std::to_string(off + n) + " but the chunk holds " + std::to_string(size) +
                            " bytes");
        return h;
    }

    /// Fills all of `dst` from the file at `at`; a file that ends early shrank under us.
    result<> read_exact(const read_handle& h, std::span<std::byte> dst, std::int64_t at) const {
        namespace px = detail::posix;
        std::size_t got = 0;
        if (const int err = px::pread_full(h.fd.get(), dst, at, got); err != 0) {
            if (err == ESTALE) return px::gone("get_chunk", h.path, err); // removed by another NFS client
            return px::sys_fail("get_chunk", h.path, "read " + full(h.rel), err);
        }
        if (got != dst.size()) {
            error e;
            e.code = errc::io_error;
            e.op = "get_chunk";
            e.path = h.path;
            e.message = full(h.rel) + " shrank while being read: it ends at " +
                        std::to_string(at + static_cast<std::int64_t>(got)) + ", expected at least " +
                        std::to_string(at + static_cast<std::int64_t>(dst.size())) + " bytes";
            return std::unexpected(std::move(e));
        }
        return {};
    }

    /// The chunk's directory chain below the root: origin, fan-out and hash
    /// directory. fd[2] is always open; fd[0..1] only when a directory below
    /// them was created (their entries then need an fsync).
    struct dir_chain {
        detail::posix::unique_fd fd[3];
        bool created[3] = {false, false, false};
    };

    /// Opens the chunk's directory, creating missing components with
    /// opts_.dir_mode (EEXIST and racing creators are fine), one component at
    /// a time and never through a symbolic link.
    result<dir_chain> open_dirs(const detail::posix::location& loc) {
        namespace px = detail::posix;
        dir_chain chain;
        chain.fd[2] = px::unique_fd(px::open_beneath(root_fd_.get(), loc.dir, O_RDONLY | O_DIRECTORY));
        if (chain.fd[2]) return chain;
        int err = errno;
        if (err == ELOOP) return px::symlink_fail("put_chunk", loc.path, full(loc.dir));
        if (err != ENOENT && err != ESTALE) // ESTALE: another NFS client removed it; make it again
            return px::sys_fail("put_chunk", loc.path, "open directory " + full(loc.dir), err);
        const std::size_t first = loc.dir.find('/');
        const std::size_t ends[3] = {first, first + 3, loc.dir.size()};
        // An operator (or another host) deleting the origin's tree meanwhile
        // makes a step fail with ENOENT or ESTALE: start over a few times.
        for (int attempt = 0; attempt < 4; ++attempt) {
            bool vanished = false;
            for (int i = 0; i < 3 && !vanished; ++i) {
                const int parent = i == 0 ? root_fd_.get() : chain.fd[i - 1].get();
                const std::size_t begin = i == 0 ? 0 : ends[i - 1] + 1;
                const std::string name = loc.dir.substr(begin, ends[i] - begin);
                bool made = false;
                if (::mkdirat(parent, name.c_str(), opts_.dir_mode) == 0) {
                    made = true;
                } else if (errno != EEXIST) {
                    err = errno;
                    if (err == ENOENT || err == ESTALE) {
                        vanished = true;
                        continue;
                    }
                    return px::sys_fail("put_chunk", loc.path, "create directory " + full(loc.dir.substr(0, ends[i])),
                                        err);
                }
                chain.fd[i] = px::unique_fd(px::open_retry(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
                if (!chain.fd[i]) {
                    err = px::symlink_errno(parent, name.c_str(), errno);
                    if (err == ELOOP) return px::symlink_fail("put_chunk", loc.path, full(loc.dir.substr(0, ends[i])));
                    if (err == ENOENT || err == ESTALE) {
                        vanished = true;
                        continue;
                    }
                    return px::sys_fail("put_chunk", loc.path, "open directory " + full(loc.dir.substr(0, ends[i])),
                                        err);
                }
                if (made) {
                    chain.created[i] = true;
                    if (const int e = px::set_mode(chain.fd[i].get(), opts_.dir_mode); e != 0)
                        return px::sys_fail("put_chunk", loc.path,
                                            "set the mode of directory " + full(loc.dir.substr(0, ends[i])), e);
                }
            }
            if (!vanished) return chain;
        }
        return px::sys_fail("put_chunk", loc.path, "open directory " + full(loc.dir), err);
    }

    /// Makes the entries of directories this put created durable: each
    /// created directory's parent is fsynced, deepest first.
    result<> sync_created_parents(const detail::posix::location& loc, const dir_chain& chain) {
        namespace px = detail::posix;
        const std::size_t first = loc.dir.find('/');
        const std::size_t ends[3] = {first, first + 3, loc.dir.size()};
        for (int i = 2; i >= 0; --i) {
            if (!chain.created[i]) continue;
            const int parent = i == 0 ? root_fd_.get() : chain.fd[i - 1].get();
            if (const int err = px::fsync_retry(parent); err != 0)
                return px::sys_fail("put_chunk", loc.path,
                                    "committed, but fsync of directory " +
                                        (i == 0 ? root_ : full(loc.dir.substr(0, ends[i - 1]))) +
                                        " failed, so the chunk may not survive a crash",
                                    err);
        }
        return {};
    }

    /// fstat of `rel` below the root, reached without following a link: 0 or
    /// the errno (ELOOP for a link, ENOENT/ENOTDIR/ESTALE when absent).
    int stat_beneath(const std::string& rel, struct ::stat& st) const noexcept {
        detail::posix::unique_fd fd(detail::posix::open_beneath(root_fd_.get(), rel, O_PATH));
        if (!fd) return errno;
        return ::fstat(fd.get(), &st) == 0 ? 0 : errno;
    }

    /// The atomic commit shared by put_chunk and self_test: write `size`
    /// bytes from `src` to a fresh temp file in `dirfd`, fsync it, link() it
    /// to `name` (EEXIST: commit_lost), unlink the temp, fsync the directory.
    /// On any failure or cancellation the temp file is removed and `name` is
    /// untouched.
    template <class Src>
    result<> commit_file(const context& ctx, std::string_view op, const std::string& path, int dirfd,
                         const std::string& dir_rel, const std::string& name, std::int64_t size, Src& src) {
        namespace px = detail::posix;
        px::unique_fd fd;
        std::string tmp;
        for (int attempt = 0; attempt < 16 && !fd; ++attempt) {
            tmp = ".tmp-" + name + '-' + px::unique_hex();
            fd = px::unique_fd(px::open_retry(dirfd, tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY, opts_.file_mode));
            if (!fd && errno != EEXIST) break;
        }
        if (!fd) {
            const int err = errno;
            return px::sys_fail(op, path, "create temp file " + full(dir_rel + '/' + tmp), err);
        }
        px::unlink_guard guard(dirfd, tmp);
        if (const int err = px::set_mode(fd.get(), opts_.file_mode); err != 0)
            return px::sys_fail(op, path, "set the mode of " + full(dir_rel + '/' + tmp), err);

        const auto cap = static_cast<std::size_t>(std::min<std::int64_t>(size, static_cast<std::int64_t>(px::write_block)));
        auto scratch = std::make_unique_for_overwrite<std::byte[]>(cap);
        auto pumped = detail::pump_exact(ctx, op, path, src, size, std::span<std::byte>(scratch.get(), cap),
                                         [&](std::span<const std::byte> b) -> result<> {
                                             if (const int err = px::write_all(fd.get(), b); err != 0)
                                                 return px::sys_fail(op, path, "write " + full(dir_rel + '/' + tmp), err);
                                             return {};
                                         });
        if (!pumped) return pumped;
        scratch.reset();
        if (auto c = ctx.check(op, path); !c) return c;
        if (opts_.fsync) {
            if (const int err = px::fsync_retry(fd.get()); err != 0)
                return px::sys_fail(op, path, "fsync " + full(dir_rel + '/' + tmp), err);
        }
        if (const int err = fd.close_checked(); err != 0)
            return px::sys_fail(op, path, "close " + full(dir_rel + '/' + tmp), err);
        if (auto c = ctx.check(op, path); !c) return c;

        if (::linkat(dirfd, tmp.c_str(), dirfd, name.c_str(), 0) != 0) {
            const int err = errno;
            if (err == EEXIST) return fail(errc::commit_lost, std::string(op), path, "chunk already committed");
            if (px::is_no_link_errno(err)) return px::no_hard_links(op, path, root_, err);
            return px::sys_fail(op, path, "link " + full(dir_rel + '/' + tmp) + " to " + name, err);
        }
        // Committed. A temp that cannot be unlinked is only a stray name for
        // the same inode; it does not undo the commit.
        (void)guard.remove();
        if (opts_.fsync) {
            if (const int err = px::fsync_retry(dirfd); err != 0)
                return px::sys_fail(op, path,
                                    "committed, but fsync of directory " + full(dir_rel) +
                                        " failed, so the chunk may not survive a crash",
                                    err);
        }
        return {};
    }

    std::string root_;
    detail::posix::unique_fd root_fd_;
    posix_options opts_;
};

static_assert(CacheStore<posix_store>);

} // namespace cachestore
