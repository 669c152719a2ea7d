// cachestore/posix/detail/open_root.hpp - opening (and on request creating)
// a POSIX store's root, and refusing what cannot work: a URL instead of a
// path, a missing root, a file, a root this process cannot write, options
// that make no sense. Everything refused is `misconfigured`, op "open".
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "cachestore/error.hpp"
#include "cachestore/posix/detail/errors.hpp"
#include "cachestore/posix/detail/layout.hpp"
#include "cachestore/posix/detail/resolve.hpp"
#include "cachestore/posix/detail/sys.hpp"
#include "cachestore/posix/options.hpp"

namespace cachestore::detail::posix {

/// Checks the options that have a valid range.
[[nodiscard]] inline result<> check_options(const posix_options& o) {
    auto bad = [](std::string msg) { return fail(errc::misconfigured, "open", {}, "posix_options: " + std::move(msg)); };
    if (o.max_bytes < 0) return bad("max_bytes must be >= 0 (0: no bound), got " + std::to_string(o.max_bytes));
    if (o.min_free_bytes < 0)
        return bad("min_free_bytes must be >= 0 (0: no floor), got " + std::to_string(o.min_free_bytes));
    if (!(o.low_water >= 0.5 && o.low_water <= 1.0))
        return bad("low_water must be between 0.5 and 1 (a fraction of max_bytes), got " + std::to_string(o.low_water));
    if (o.recency_granularity.count() < 0) return bad("recency_granularity must be >= 0");
    if (o.sweep_interval.count() < 0) return bad("sweep_interval must be >= 0 (0: no background sweeper)");
    if (o.orphan_age.count() < 0) return bad("orphan_age must be >= 0");
    if ((o.file_mode & 0600) != 0600) return bad("file_mode must let the owner read and write (0600 at least)");
    if ((o.dir_mode & 0700) != 0700) return bad("dir_mode must let the owner list, enter and write (0700 at least)");
    return {};
}

/// Opens the root directory `root` (a path; created when missing only with
/// opts.create_root) and proves it writable.
[[nodiscard]] inline result<unique_fd> open_root(const std::string& root, const posix_options& opts) {
    auto bad = [&](std::string msg, int err = 0) {
        auto e = fail(errc::misconfigured, "open", {}, std::move(msg));
        e.error().sys_errno = err;
        return e;
    };
    if (root.empty()) return bad("the root directory path is empty");
    if (root.find('\0') != std::string::npos) return bad("the root directory path contains NUL");
    if (auto o = check_options(opts); !o) return std::unexpected(std::move(o.error()));
    if (looks_like_url(root))
        return bad("the root " + root +
                   " is a URL, not a directory path: posix_store::open takes a path such as /var/cache/chunks "
                   "(a URL's scheme would become a directory under the working directory; write ./" +
                   root + " if that is really meant)");
    constexpr int dir_flags = O_RDONLY | O_DIRECTORY;
    unique_fd fd(open_retry(AT_FDCWD, root.c_str(), dir_flags));
    if (!fd && errno == ENOENT && opts.create_root) {
        if (const int err = make_dirs(root, opts.dir_mode); err != 0)
            return bad("cannot create the root directory " + root + ": " + errno_text(err) +
                           " (create it by hand, or point the store at a writable location)",
                       err);
        fd = unique_fd(open_retry(AT_FDCWD, root.c_str(), dir_flags));
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
            return bad("cannot open the root directory " + root + ": " + errno_text(err) +
                           " (check its owner and mode, and those of its parents)",
                       err);
        default: return bad("cannot open the root directory " + root + ": " + errno_text(err), err);
        }
    }
    // Prove the root writable by this process the only reliable way (mode
    // bits lie about root, ACLs, read-only mounts and root-squashing NFS).
    const std::string probe = std::string(open_probe_prefix) + unique_hex();
    unique_fd pf(open_retry(fd.get(), probe.c_str(), O_CREAT | O_EXCL | O_WRONLY, opts.file_mode));
    if (!pf) {
        const int err = errno;
        return bad("the root directory " + root + " is not writable: " + errno_text(err) +
                       (err == EROFS ? " (the filesystem is mounted read-only)"
                                     : " (check its owner and mode, and that this process may create files in it)"),
                   err);
    }
    pf.reset();
    ::unlinkat(fd.get(), probe.c_str(), 0);
    return fd;
}

} // namespace cachestore::detail::posix
