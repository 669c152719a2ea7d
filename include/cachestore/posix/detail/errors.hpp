// cachestore/posix/detail/errors.hpp - from errno to the errc a caller acts
// on, and the messages an operator reads.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>

#include "cachestore/error.hpp"
#include "cachestore/posix/detail/sys.hpp"

namespace cachestore::detail::posix {

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

} // namespace cachestore::detail::posix
