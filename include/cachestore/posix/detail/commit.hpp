// cachestore/posix/detail/commit.hpp - the POSIX commit protocol.
//
// A put writes `<dir>/.tmp-<index>-<16 hex>` (created O_EXCL with the store's
// file mode, and flock()ed for as long as it is being written, so a sweeper
// can tell a live temp from an orphan), fsyncs it, link()s it to
// `<dir>/<index>` and unlinks the temp name. link() fails with EEXIST when
// another writer (thread, process or host) committed first: `commit_lost`.
// Readers only ever open `<index>`, so they never see a partial chunk. The
// directories on the way are created one component at a time from directory
// descriptors, never through a symbolic link, and fsynced when new.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "cachestore/bytes.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/posix/detail/errors.hpp"
#include "cachestore/posix/detail/layout.hpp"
#include "cachestore/posix/detail/recency.hpp"
#include "cachestore/posix/detail/resolve.hpp"
#include "cachestore/posix/detail/sys.hpp"
#include "cachestore/posix/options.hpp"

namespace cachestore::detail::posix {

/// What the protocol needs of its store: the root's descriptor, its path as
/// given (for messages) and the options.
struct root_ref {
    int fd;
    const std::string& path;
    const posix_options& opts;

    /// `<root>/<rel>` for messages.
    [[nodiscard]] std::string full(std::string_view rel) const {
        std::string s = path;
        if (s.empty() || s.back() != '/') s += '/';
        s += rel;
        return s;
    }
};

/// The chunk's directory chain below the root: origin, fan-out and hash
/// directory. fd[2] is always open; fd[0..1] only when a directory below them
/// was created (their entries then need an fsync).
struct dir_chain {
    std::array<unique_fd, 3> fd;
    std::array<bool, 3> created{};
};

/// Opens the chunk's directory, creating missing components with dir_mode
/// (EEXIST and racing creators are fine), one component at a time and never
/// through a symbolic link.
[[nodiscard]] inline result<dir_chain> open_dirs(const root_ref& root, const location& loc) {
    dir_chain chain;
    chain.fd[2] = unique_fd(open_beneath(root.fd, loc.dir, O_RDONLY | O_DIRECTORY));
    if (chain.fd[2]) return chain;
    int err = errno;
    if (err == ELOOP) return symlink_fail("put_chunk", loc.path, root.full(loc.dir));
    if (err != ENOENT && err != ESTALE) // ESTALE: another NFS client removed it; make it again
        return sys_fail("put_chunk", loc.path, "open directory " + root.full(loc.dir), err);
    const std::size_t first = loc.dir.find('/');
    const std::size_t ends[3] = {first, first + 3, loc.dir.size()};
    // An operator, another host or a sweeper removing empty directories
    // meanwhile makes a step fail with ENOENT or ESTALE: start over.
    for (int attempt = 0; attempt < 8; ++attempt) {
        bool vanished = false;
        for (int i = 0; i < 3 && !vanished; ++i) {
            const int parent = i == 0 ? root.fd : chain.fd[i - 1].get();
            const std::size_t begin = i == 0 ? 0 : ends[i - 1] + 1;
            const std::string name = loc.dir.substr(begin, ends[i] - begin);
            const std::string shown = root.full(loc.dir.substr(0, ends[i]));
            bool made = false;
            if (::mkdirat(parent, name.c_str(), root.opts.dir_mode) == 0) {
                made = true;
            } else if (errno != EEXIST) {
                err = errno;
                if (err == ENOENT || err == ESTALE) {
                    vanished = true;
                    continue;
                }
                return sys_fail("put_chunk", loc.path, "create directory " + shown, err);
            }
            chain.fd[i] = unique_fd(open_retry(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
            if (!chain.fd[i]) {
                err = symlink_errno(parent, name.c_str(), errno);
                if (err == ELOOP) return symlink_fail("put_chunk", loc.path, shown);
                if (err == ENOENT || err == ESTALE) {
                    vanished = true;
                    continue;
                }
                return sys_fail("put_chunk", loc.path, "open directory " + shown, err);
            }
            chain.created[i] = made;
            if (made) {
                if (const int e = set_mode(chain.fd[i].get(), root.opts.dir_mode); e != 0)
                    return sys_fail("put_chunk", loc.path, "set the mode of directory " + shown, e);
            }
        }
        if (!vanished) return chain;
        chain = dir_chain{};
    }
    return sys_fail("put_chunk", loc.path, "open directory " + root.full(loc.dir), err);
}

/// Makes the entries of directories a put created durable: each created
/// directory's parent is fsynced, deepest first.
[[nodiscard]] inline result<> sync_created_parents(const root_ref& root, const location& loc, const dir_chain& chain) {
    const std::size_t first = loc.dir.find('/');
    const std::size_t ends[3] = {first, first + 3, loc.dir.size()};
    for (int i = 2; i >= 0; --i) {
        if (!chain.created[i]) continue;
        const int parent = i == 0 ? root.fd : chain.fd[i - 1].get();
        if (const int err = fsync_retry(parent); err != 0)
            return sys_fail("put_chunk", loc.path,
                            "committed, but fsync of directory " +
                                (i == 0 ? root.path : root.full(loc.dir.substr(0, ends[i - 1]))) +
                                " failed, so the chunk may not survive a crash",
                            err);
    }
    return {};
}

/// A temp file being written: its descriptor (flock()ed: "a put is writing
/// me") and its name in the directory.
struct temp_file {
    unique_fd fd;
    std::string name;
    int err = 0; ///< errno when it could not be created (ENOENT/ESTALE: the directory is gone)
};

/// Creates a fresh temp file for `name` in `dirfd` with the store's mode.
[[nodiscard]] inline temp_file create_temp(const root_ref& root, int dirfd, const std::string& name) {
    temp_file t;
    for (int attempt = 0; attempt < 16; ++attempt) {
        t.name = std::string(temp_prefix) + name + '-' + unique_hex();
        t.fd = unique_fd(open_retry(dirfd, t.name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, root.opts.file_mode));
        if (t.fd) break;
        if (errno != EEXIST) break;
    }
    if (!t.fd) {
        t.err = errno;
        return t;
    }
    // The lock marks the temp live for sweepers (they remove only unlocked
    // orphans). A filesystem without locks (ENOLCK) falls back to the age rule.
    while (::flock(t.fd.get(), LOCK_EX | LOCK_NB) != 0 && errno == EINTR) {
    }
    if (const int e = set_mode(t.fd.get(), root.opts.file_mode); e != 0) {
        (void)::unlinkat(dirfd, t.name.c_str(), 0);
        t.fd.reset();
        t.err = e;
    }
    return t;
}

/// The commit: writes `size` bytes from `src` to the temp file, fsyncs it
/// (opts.fsync), link()s it to `name` (EEXIST: commit_lost), unlinks the temp
/// and fsyncs the directory. On any failure or cancellation the temp file is
/// removed and `name` is untouched.
template <class Src>
[[nodiscard]] result<> commit_file(const context& ctx, const root_ref& root, std::string_view op, const std::string& path,
                                   int dirfd, const std::string& dir_rel, const std::string& name, std::int64_t size,
                                   Src& src, temp_file tmp) {
    unlink_guard guard(dirfd, tmp.name);
    const std::string tmp_shown = root.full(dir_rel + '/' + tmp.name);
    const auto cap = static_cast<std::size_t>(std::min<std::int64_t>(size, static_cast<std::int64_t>(write_block)));
    auto scratch = std::make_unique_for_overwrite<std::byte[]>(cap);
    auto pumped = detail::pump_exact(ctx, op, path, src, size, std::span<std::byte>(scratch.get(), cap),
                                     [&](std::span<const std::byte> b) -> result<> {
                                         if (const int err = write_all(tmp.fd.get(), b); err != 0)
                                             return sys_fail(op, path, "write " + tmp_shown, err);
                                         return {};
                                     });
    if (!pumped) return pumped;
    scratch.reset();
    // Its first use is now, to the nanosecond (the kernel stamps new files from
    // a clock as coarse as a jiffy, which would tie chunks written together).
    const struct timespec used[2] = {realtime_now(), {0, UTIME_OMIT}};
    (void)::futimens(tmp.fd.get(), used);
    if (auto c = ctx.check(op, path); !c) return c;
    if (root.opts.fsync) {
        if (const int err = fsync_retry(tmp.fd.get()); err != 0) return sys_fail(op, path, "fsync " + tmp_shown, err);
    }
    if (const int err = tmp.fd.close_checked(); err != 0) return sys_fail(op, path, "close " + tmp_shown, err);
    if (auto c = ctx.check(op, path); !c) return c;

    if (::linkat(dirfd, tmp.name.c_str(), dirfd, name.c_str(), 0) != 0) {
        const int err = errno;
        if (err == EEXIST) return fail(errc::commit_lost, std::string(op), path, "chunk already committed");
        if (is_no_link_errno(err)) return no_hard_links(op, path, root.path, err);
        if (err == ENOENT || err == ESTALE) { // the temp (or its directory) was removed under us
            auto e = sys_fail(op, path, "link " + tmp_shown + " to " + name, err);
            e.error().code = errc::transient;
            e.error().message += ": the temp file was removed while this put was committing (a sweeper removes "
                                 "temp files older than posix_options::orphan_age); nothing was committed";
            return e;
        }
        return sys_fail(op, path, "link " + tmp_shown + " to " + name, err);
    }
    // Committed. A temp that cannot be unlinked is only a stray name for the
    // same inode; it does not undo the commit.
    (void)guard.remove();
    if (root.opts.fsync) {
        if (const int err = fsync_retry(dirfd); err != 0)
            return sys_fail(op, path,
                            "committed, but fsync of directory " + root.full(dir_rel) +
                                " failed, so the chunk may not survive a crash",
                            err);
    }
    return {};
}

} // namespace cachestore::detail::posix
