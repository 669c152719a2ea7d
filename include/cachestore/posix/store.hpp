// cachestore/posix/store.hpp - the embedded default driver: chunks as files
// under a root directory, committed atomically (commit.hpp), optionally
// bounded in size with least-recently-used eviction (bounds.hpp, sweeper.hpp).
//
// Layout under the root (the SPEC storage path with a 2-hex-char fan-out):
//
//     <root>/<origin_id>/<hash[0:2]>/<hash>/<index>
//
// Every call resolves its paths relative to a directory descriptor opened
// once, so the root cannot be swapped under a running store, and never follows
// a symbolic link below the root (resolve.hpp). Files are created owner-only
// (0600, directories 0700) unless posix_options says otherwise. Include it as
// <cachestore/posix_store.hpp>.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/posix/detail/bounds.hpp"
#include "cachestore/posix/detail/commit.hpp"
#include "cachestore/posix/detail/errors.hpp"
#include "cachestore/posix/detail/layout.hpp"
#include "cachestore/posix/detail/open_root.hpp"
#include "cachestore/posix/detail/recency.hpp"
#include "cachestore/posix/detail/resolve.hpp"
#include "cachestore/posix/detail/scan.hpp"
#include "cachestore/posix/detail/self_test.hpp"
#include "cachestore/posix/detail/sweeper.hpp"
#include "cachestore/posix/detail/sys.hpp"
#include "cachestore/posix/options.hpp"
#include "cachestore/store.hpp"

namespace cachestore {

namespace detail::posix {
/// Everything a store owns, in one place that does not move (the sweeper
/// thread and the accounting refer to it). Members are destroyed in reverse:
/// the sweeper (its thread joined) first, the root descriptor last.
struct store_state {
    std::string root;
    unique_fd fd;
    posix_options opts;
    accounting acct;
    sweeper sweep;

    store_state(std::string r, unique_fd f, const posix_options& o)
        : root(std::move(r)), fd(std::move(f)), opts(o), acct(fd.get(), opts), sweep(ref(), acct) {}
    [[nodiscard]] root_ref ref() const noexcept { return root_ref{fd.get(), root, opts}; }
};
} // namespace detail::posix

/// Chunks as files under a root directory. Thread-safe, and safe when several
/// processes (on one host or over NFS) share the root: commits are atomic and
/// exclusive through link(), readers only ever see complete files, and with a
/// bound each process evicts least-recently-used chunks (docs/design.md).
class posix_store {
public:
    /// Opens the root: a directory path (absolute, or relative to the working
    /// directory), never a URL. A root that is missing (unless
    /// `opts.create_root`), not creatable, not a directory, or not writable by
    /// this process is `misconfigured`, and so is a `file:` URL or any other
    /// "scheme://" string (it would name a directory under the working
    /// directory) and an option out of its range. With a bound and
    /// `opts.sweep_on_open`, the tree is swept once before this returns; with
    /// `opts.sweep_interval` a background sweeper starts.
    [[nodiscard]] static result<posix_store> open(std::string root, posix_options opts = {}) {
        auto fd = detail::posix::open_root(root, opts);
        if (!fd) return std::unexpected(std::move(fd.error()));
        posix_store s(std::make_unique<detail::posix::store_state>(std::move(root), std::move(*fd), opts));
        if (s.st_->acct.bounded() && opts.sweep_on_open) {
            if (auto r = s.st_->sweep.sweep(context{}); !r) return std::unexpected(std::move(r.error()));
        }
        s.st_->sweep.start();
        return s;
    }

    posix_store(posix_store&&) noexcept = default;
    posix_store& operator=(posix_store&&) noexcept = default;
    posix_store(const posix_store&) = delete;
    posix_store& operator=(const posix_store&) = delete;
    ~posix_store() = default; // stops and joins the background sweeper

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

    /// Commits a chunk (see docs/concept.md). With a bound, the bytes are
    /// reserved first: least-recently-used chunks are evicted to make room,
    /// and when none can be, the put fails with `transient` (store full) and
    /// writes nothing. A chunk larger than max_bytes is `misconfigured`.
    template <chunk_source Src>
    result<> put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src&& src) {
        namespace px = detail::posix;
        if (auto a = detail::check_put_args(key, size); !a) return a;
        if (auto a = detail::check_source_size(src, size); !a) return a;
        const px::location loc = px::locate(key);
        if (auto c = ctx.check("put_chunk", loc.path); !c) return c;
        const px::root_ref root = st_->ref();
        // Stat first: a committed chunk is the truth, and nothing is written.
        struct ::stat st {};
        const std::string rel = loc.rel();
        if (const int err = stat_beneath(rel, st); err == 0) {
            if (!S_ISREG(st.st_mode)) return fail(errc::io_error, "put_chunk", loc.path, root.full(rel) + " is not a regular file");
            return fail(errc::commit_lost, "put_chunk", loc.path, "chunk already committed");
        } else if (err == ELOOP) {
            return px::symlink_fail("put_chunk", loc.path, root.full(rel));
        } else if (!px::is_gone(err)) { // ESTALE too: a name another NFS client removed is absent
            return px::sys_fail("put_chunk", loc.path, "stat " + root.full(rel), err);
        }
        const bool bounded = st_->acct.bounded();
        if (bounded) {
            if (auto r = admit(ctx, loc.path, size); !r) return r;
        }
        auto r = commit(ctx, root, loc, size, src);
        if (bounded) {
            // A failure after the link (a directory fsync) still left the
            // chunk on disk: count it, or the books fall below the disk.
            const bool linked =
                r || (r.error().code != errc::commit_lost && stat_beneath(rel, st) == 0 && S_ISREG(st.st_mode));
            if (linked) st_->acct.committed(size);
            else st_->acct.released(size);
        }
        return r;
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
            if (err == ELOOP) return px::symlink_fail("stat", loc.path, st_->ref().full(rel));
            return px::sys_fail("stat", loc.path, "stat " + st_->ref().full(rel), err);
        }
        if (!S_ISREG(st.st_mode)) return fail(errc::io_error, "stat", loc.path, st_->ref().full(rel) + " is not a regular file");
        return info{static_cast<std::int64_t>(st.st_size), px::to_time_point(st.st_mtim)};
    }

    /// Unlinks the chunk's file (absent is success). Directories stay (a
    /// sweep removes them once empty and old).
    result<> remove(const context& ctx, const chunk_key& key) {
        namespace px = detail::posix;
        if (auto v = validate(key, "remove"); !v) return v;
        const px::location loc = px::locate(key);
        if (auto c = ctx.check("remove", loc.path); !c) return c;
        const px::root_ref root = st_->ref();
        // Unlink by name in the chunk's directory, reached without following
        // a link (a linked directory could point anywhere).
        px::unique_fd dir(px::open_beneath(root.fd, loc.dir, O_PATH | O_DIRECTORY));
        if (!dir) {
            const int err = errno;
            if (px::is_gone(err)) return {};
            if (err == ELOOP) return px::symlink_fail("remove", loc.path, root.full(loc.dir));
            return px::sys_fail("remove", loc.path, "open directory " + root.full(loc.dir), err);
        }
        // Bounded: the chunk leaves the eviction reserve before the unlink (a
        // put's eviction must not find it gone and subtract it again), and
        // its size leaves the books after (bounds.hpp).
        struct ::stat st {};
        std::optional<px::accounting::removal> counted;
        if (st_->acct.bounded() && ::fstatat(dir.get(), loc.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode))
            counted = st_->acct.forget(loc.rel(), st.st_ino, static_cast<std::int64_t>(st.st_size));
        if (::unlinkat(dir.get(), loc.name.c_str(), 0) != 0) {
            const int err = errno;
            if (px::is_gone(err)) return {};
            return px::sys_fail("remove", loc.path, "unlink " + root.full(loc.rel()), err);
        }
        if (counted) st_->acct.removed(*counted);
        return {};
    }

    /// Proves the root usable: a probe through the same commit as put_chunk,
    /// link() exclusive, read back byte-exact, deleted; under
    /// `<root>/.cachestore-selftest/`.
    result<> self_test(const context& ctx) { return detail::posix::self_test(ctx, st_->ref()); }

    /// One pass over the tree: orphans removed; with a bound, chunks evicted
    /// least recently used first until usage is under low_water x max_bytes
    /// (and free space over min_free_bytes plus the slack). Waits for a pass
    /// already running in this store, and for one holding the root's sweep
    /// lock in another process. `cancelled` / `deadline_exceeded` stop it
    /// between directories, with everything done so far consistent.
    result<sweep_report> sweep(const context& ctx = {}) { return st_->sweep.sweep(ctx); }

    /// What is under the root (usage, chunks, oldest and newest use, temp
    /// files), without removing anything or taking the sweep lock.
    result<sweep_report> measure(const context& ctx = {}) const {
        const auto t0 = std::chrono::steady_clock::now();
        auto walk = detail::posix::scan_tree(st_->fd.get(), detail::posix::scan_plan{}, ctx);
        if (!walk) return std::unexpected(std::move(walk.error()));
        sweep_report rep = walk->report;
        rep.passes = 1;
        if (rep.chunks > 0) {
            rep.oldest_use = ns_to_time(walk->oldest_ns);
            rep.newest_use = ns_to_time(walk->newest_ns);
        }
        rep.free_bytes = detail::posix::free_space(st_->fd.get());
        rep.scan_time = rep.total_time = std::chrono::steady_clock::now() - t0;
        return rep;
    }

    /// Bytes of chunks under the root as this process knows them: the last
    /// sweep's figure plus its own commits and puts in flight, minus its
    /// removals. nullopt for an unbounded store (it does not count).
    [[nodiscard]] std::optional<std::int64_t> usage() const noexcept {
        const auto u = st_->acct.usage();
        if (!st_->acct.bounded() || u < 0) return std::nullopt;
        return u;
    }
    /// The report of the last sweep this store ran (nullopt before the first).
    [[nodiscard]] std::optional<sweep_report> last_sweep() const { return st_->sweep.last(); }

    /// The chunk's file relative to the root: `origin_id/hh/hash/index`, where
    /// `hash/index` ends the SPEC storage path and `hh` is the hash's first two
    /// hex characters. Empty for an invalid key.
    [[nodiscard]] static std::string file_path(const chunk_key& key) {
        if (!validate(key, "file_path")) return {};
        return detail::posix::locate(key).rel();
    }

    /// The root directory as given to open().
    [[nodiscard]] const std::string& root() const noexcept { return st_->root; }
    [[nodiscard]] const posix_options& options() const noexcept { return st_->opts; }

private:
    struct read_handle {
        detail::posix::unique_fd fd;
        std::string path; ///< SPEC path, for errors
        std::string rel;  ///< file path under the root, for messages
    };

    explicit posix_store(std::unique_ptr<detail::posix::store_state> st) noexcept : st_(std::move(st)) {}

    static std::chrono::system_clock::time_point ns_to_time(std::int64_t ns) {
        return std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(ns)));
    }

    /// fstat of `rel` below the root, reached without following a link: 0 or
    /// the errno (ELOOP for a link, ENOENT/ENOTDIR/ESTALE when absent).
    int stat_beneath(const std::string& rel, struct ::stat& st) const noexcept {
        detail::posix::unique_fd fd(detail::posix::open_beneath(st_->fd.get(), rel, O_PATH));
        if (!fd) return errno;
        return ::fstat(fd.get(), &st) == 0 ? 0 : errno;
    }

    /// Reserves room for `size` bytes under the bounds, sweeping once when
    /// the reserve of eviction candidates cannot make it.
    result<> admit(const context& ctx, const std::string& path, std::int64_t size) {
        auto& acct = st_->acct;
        const auto& o = st_->opts;
        if (o.max_bytes > 0 && size > o.max_bytes)
            return fail(errc::misconfigured, "put_chunk", path,
                        "a chunk of " + std::to_string(size) + " bytes cannot fit under posix_options::max_bytes " +
                            std::to_string(o.max_bytes) + ": raise the bound above the chunk size");
        for (int attempt = 0;; ++attempt) {
            if (acct.known() && acct.admit(size)) return {};
            if (attempt == 2) break;
            if (auto r = st_->sweep.sweep_for_put(ctx); !r) return r;
        }
        const auto free = detail::posix::free_space(st_->fd.get());
        return fail(errc::transient, "put_chunk", path,
                    "the store is full: " + std::to_string(acct.usage()) + " bytes stored (max_bytes " +
                        std::to_string(o.max_bytes) + "), " + std::to_string(free) + " bytes free (min_free_bytes " +
                        std::to_string(o.min_free_bytes) + "), and no least-recently-used chunk could be removed "
                        "for this one's " + std::to_string(size) + " bytes; nothing was written");
    }

    /// Directories, temp file and commit, again when a sweeper removed the
    /// (empty) directory between our open and our temp file.
    template <class Src>
    result<> commit(const context& ctx, const detail::posix::root_ref& root, const detail::posix::location& loc,
                    std::int64_t size, Src& src) {
        namespace px = detail::posix;
        for (int attempt = 0;; ++attempt) {
            auto dirs = px::open_dirs(root, loc);
            if (!dirs) return std::unexpected(std::move(dirs.error()));
            px::temp_file tmp = px::create_temp(root, dirs->fd[2].get(), loc.name);
            if (!tmp.fd) {
                if ((tmp.err == ENOENT || tmp.err == ESTALE) && attempt < 4) continue;
                return px::sys_fail("put_chunk", loc.path, "create a temp file in " + root.full(loc.dir), tmp.err);
            }
            auto r = px::commit_file(ctx, root, "put_chunk", loc.path, dirs->fd[2].get(), loc.dir, loc.name, size, src,
                                     std::move(tmp));
            if (!r) return r;
            if (root.opts.fsync) return px::sync_created_parents(root, loc, *dirs);
            return {};
        }
    }

    /// The checks and open shared by both reads: arguments, ctx, the file,
    /// the range against its size; and a hit marks the chunk used.
    result<read_handle> open_range(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n) {
        namespace px = detail::posix;
        if (auto a = detail::check_get_args(key, off, n); !a) return std::unexpected(std::move(a.error()));
        const px::location loc = px::locate(key);
        if (auto c = ctx.check("get_chunk", loc.path); !c) return std::unexpected(std::move(c.error()));
        read_handle h{px::unique_fd(), loc.path, loc.rel()};
        h.fd = px::unique_fd(px::open_beneath(st_->fd.get(), h.rel, O_RDONLY));
        if (!h.fd) {
            const int err = errno;
            if (px::is_gone(err)) return px::gone("get_chunk", h.path, err);
            if (err == ELOOP) return px::symlink_fail("get_chunk", h.path, st_->ref().full(h.rel));
            return px::sys_fail("get_chunk", h.path, "open " + st_->ref().full(h.rel), err);
        }
        struct ::stat st {};
        if (::fstat(h.fd.get(), &st) != 0) {
            const int err = errno;
            if (err == ESTALE) return px::gone("get_chunk", h.path, err); // removed by another NFS client
            return px::sys_fail("get_chunk", h.path, "stat " + st_->ref().full(h.rel), err);
        }
        if (!S_ISREG(st.st_mode)) return fail(errc::io_error, "get_chunk", h.path, st_->ref().full(h.rel) + " is not a regular file");
        const auto size = static_cast<std::int64_t>(st.st_size);
        if (off + n > size)
            return fail(errc::out_of_range, "get_chunk", h.path,
                        "range ends at " + std::to_string(off + n) + " but the chunk holds " + std::to_string(size) +
                            " bytes");
        px::touch_on_hit(h.fd.get(), st, st_->opts.recency_granularity);
        return h;
    }

    /// Fills all of `dst` from the file at `at`; a file that ends early shrank under us.
    result<> read_exact(const read_handle& h, std::span<std::byte> dst, std::int64_t at) const {
        namespace px = detail::posix;
        std::size_t got = 0;
        if (const int err = px::pread_full(h.fd.get(), dst, at, got); err != 0) {
            if (err == ESTALE) return px::gone("get_chunk", h.path, err); // removed by another NFS client
            return px::sys_fail("get_chunk", h.path, "read " + st_->ref().full(h.rel), err);
        }
        if (got != dst.size())
            return fail(errc::io_error, "get_chunk", h.path,
                        st_->ref().full(h.rel) + " shrank while being read: it ends at " +
                            std::to_string(at + static_cast<std::int64_t>(got)) + ", expected at least " +
                            std::to_string(at + static_cast<std::int64_t>(dst.size())) + " bytes");
        return {};
    }

    std::unique_ptr<detail::posix::store_state> st_;
};

static_assert(CacheStore<posix_store>);

} // namespace cachestore
