// cachestore/posix/detail/resolve.hpp - opening paths inside the store's root
// without following symbolic links.
//
// Every path the POSIX store opens below its root is built from a validated
// chunk key (no empty, "." or ".." component), but the tree itself is shared:
// another process, user or host could plant a symbolic link in it. A link
// followed from inside the root could expose or overwrite files elsewhere, so
// no component below the root is ever followed (the root itself may be a link:
// it is the operator's choice and is opened once, as given).
//
// Linux 5.6 and later: one openat2() with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
// | RESOLVE_NO_MAGICLINKS per path, as cheap as openat(). Elsewhere (older
// kernels, seccomp filters that refuse openat2, other systems) the path is
// walked one component at a time with O_NOFOLLOW: one openat() per component.
// Either way a symbolic link anywhere below the root fails with ELOOP.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__linux__) && __has_include(<linux/openat2.h>) && __has_include(<sys/syscall.h>)
#include <linux/openat2.h>
#include <sys/syscall.h>
#endif

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>

#if defined(SYS_openat2) && defined(RESOLVE_BENEATH)
#define CACHESTORE_POSIX_HAVE_OPENAT2 1
#else
#define CACHESTORE_POSIX_HAVE_OPENAT2 0
#endif

namespace cachestore::detail::posix {

/// openat() retried on EINTR. Flags always get O_CLOEXEC.
[[nodiscard]] inline int open_retry(int dirfd, const char* rel, int flags, mode_t mode = 0) noexcept {
    int fd = -1;
    do fd = ::openat(dirfd, rel, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd;
}

#if CACHESTORE_POSIX_HAVE_OPENAT2
/// openat2() beneath `dirfd`, no symlinks; -1 with errno (ENOSYS when the
/// kernel or a seccomp filter lacks it). EAGAIN (a concurrent rename or mount
/// under RESOLVE_BENEATH) and EINTR are retried.
[[nodiscard]] inline int openat2_beneath(int dirfd, const char* rel, int flags, mode_t mode) noexcept {
    open_how how{};
    // No O_NOFOLLOW: with O_PATH it would open a trailing link itself, where
    // RESOLVE_NO_SYMLINKS alone refuses it (ELOOP) like any other component.
    how.flags = static_cast<std::uint64_t>(static_cast<unsigned>(flags | O_CLOEXEC));
    how.mode = (flags & O_CREAT) != 0 ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long fd = -1;
    for (int attempt = 0; attempt < 64; ++attempt) {
        fd = ::syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
        if (fd >= 0 || (errno != EAGAIN && errno != EINTR)) break;
    }
    return static_cast<int>(fd);
}
#endif

/// Whether openat2 works here: probed once per process. A kernel without it
/// says ENOSYS; a container's seccomp filter may say EPERM instead.
[[nodiscard]] inline bool have_openat2() noexcept {
#if CACHESTORE_POSIX_HAVE_OPENAT2
    static const bool ok = [] {
        const int fd = openat2_beneath(AT_FDCWD, ".", O_PATH | O_DIRECTORY, 0);
        if (fd < 0) return errno != ENOSYS && errno != EPERM;
        ::close(fd);
        return true;
    }();
    return ok;
#else
    return false;
#endif
}

/// After `openat(dirfd, name, ...|O_NOFOLLOW)` failed with `err`: ELOOP when
/// `name` is a symbolic link (O_DIRECTORY | O_NOFOLLOW reports ENOTDIR for
/// one), else `err`.
[[nodiscard]] inline int symlink_errno(int dirfd, const char* name, int err) noexcept {
    if (err != ENOTDIR && err != ELOOP) return err;
    struct ::stat st {};
    if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) return ELOOP;
    return err;
}

/// The fallback: walks `rel` one component at a time, never following a link.
[[nodiscard]] inline int walk_beneath(int dirfd, const std::string& rel, int flags, mode_t mode) noexcept {
    int cur = dirfd;
    int owned = -1;
    std::size_t start = 0;
    int fd = -1;
    int err = 0;
    for (;;) {
        const std::size_t slash = rel.find('/', start);
        const bool last = slash == std::string::npos;
        const std::string name = rel.substr(start, last ? std::string::npos : slash - start);
        if (last) {
            fd = open_retry(cur, name.c_str(), flags | O_NOFOLLOW, mode);
            err = fd < 0 ? symlink_errno(cur, name.c_str(), errno) : 0;
            if (fd >= 0 && (flags & O_PATH) != 0) { // O_PATH | O_NOFOLLOW opens a link itself
                struct ::stat st {};
                if (::fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
                    ::close(fd);
                    fd = -1;
                    err = ELOOP;
                }
            }
            break;
        }
        const int next = open_retry(cur, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
        if (next < 0) {
            err = symlink_errno(cur, name.c_str(), errno);
            break;
        }
        if (owned >= 0) ::close(owned);
        owned = cur = next;
        start = slash + 1;
    }
    if (owned >= 0) ::close(owned);
    if (fd < 0) errno = err;
    return fd;
}

/// Opens `rel` (relative; components never empty, "." or "..") beneath
/// `dirfd` without following a symbolic link anywhere on the way: -1 with
/// errno ELOOP for one, else the usual errnos (ENOENT, ENOTDIR, ESTALE, ...).
/// O_CLOEXEC is always added; `flags` must not hold O_NOFOLLOW (a trailing
/// link is refused like any other, O_PATH included).
[[nodiscard]] inline int open_beneath(int dirfd, const std::string& rel, int flags, mode_t mode = 0) noexcept {
#if CACHESTORE_POSIX_HAVE_OPENAT2
    if (have_openat2()) return openat2_beneath(dirfd, rel.c_str(), flags, mode);
#endif
    return walk_beneath(dirfd, rel, flags, mode);
}

/// How open_beneath resolves paths here, for messages and docs.
[[nodiscard]] inline std::string_view resolver_name() noexcept {
    return have_openat2() ? "openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)" : "O_NOFOLLOW per component";
}

} // namespace cachestore::detail::posix
