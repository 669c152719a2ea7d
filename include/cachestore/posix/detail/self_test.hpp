// cachestore/posix/detail/self_test.hpp - proving a POSIX root fit for the
// store: a probe goes through the same temp + link() commit as put_chunk,
// link() onto an existing name must fail with EEXIST, and the probe must be
// visible, read back byte-exact and deleted - all under
// `<root>/.cachestore-selftest/`.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/posix/detail/commit.hpp"
#include "cachestore/posix/detail/errors.hpp"
#include "cachestore/posix/detail/layout.hpp"
#include "cachestore/posix/detail/resolve.hpp"
#include "cachestore/posix/detail/sys.hpp"

namespace cachestore::detail::posix {

[[nodiscard]] inline result<> self_test(const context& ctx, const root_ref& root) {
    constexpr std::string_view op = "self_test";
    if (auto c = ctx.check(op); !c) return c;
    const std::string dir_rel = selftest_dir;
    const bool made = ::mkdirat(root.fd, dir_rel.c_str(), root.opts.dir_mode) == 0;
    if (!made && errno != EEXIST) {
        const int err = errno;
        return sys_fail(op, dir_rel, "cannot create the self-test directory " + root.full(dir_rel), err);
    }
    unique_fd dir(open_beneath(root.fd, dir_rel, O_RDONLY | O_DIRECTORY));
    if (!dir) {
        const int err = errno;
        if (err == ELOOP) return symlink_fail(op, dir_rel, root.full(dir_rel));
        return sys_fail(op, dir_rel, "cannot open the self-test directory " + root.full(dir_rel), err);
    }
    if (made) {
        if (const int err = set_mode(dir.get(), root.opts.dir_mode); err != 0)
            return sys_fail(op, dir_rel, "cannot set the mode of " + root.full(dir_rel), err);
    }

    const std::string name = "probe-" + unique_hex();
    const std::string path = dir_rel + '/' + name;
    std::vector<std::byte> probe(4099); // not a multiple of any block size
    for (std::size_t i = 0; i < probe.size(); i += 8) {
        std::uint64_t x = unique_u64();
        for (std::size_t j = i; j < std::min(i + 8, probe.size()); ++j, x >>= 8) probe[j] = static_cast<std::byte>(x);
    }
    const auto size = static_cast<std::int64_t>(probe.size());
    std::span<const std::byte> bytes(probe);
    unlink_guard cleanup(dir.get(), name);

    auto commit = [&]() -> result<> {
        temp_file tmp = create_temp(root, dir.get(), name);
        if (!tmp.fd) return sys_fail(op, path, "create a temp file in " + root.full(dir_rel), tmp.err);
        return commit_file(ctx, root, op, path, dir.get(), dir_rel, name, size, bytes, std::move(tmp));
    };
    if (auto r = commit(); !r) return r;
    // A second commit of the same name must lose: link() onto an existing name is EEXIST.
    auto again = commit();
    if (again)
        return fail(errc::misconfigured, std::string(op), path,
                    "link() onto an existing name succeeded under " + root.path +
                        ": the filesystem does not make commits exclusive, so racing writers could corrupt chunks");
    if (again.error().code != errc::commit_lost) return again;

    struct ::stat st {};
    if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        const int err = errno;
        return sys_fail(op, path, "the probe " + root.full(path) + " is not visible after its commit", err);
    }
    if (!S_ISREG(st.st_mode) || st.st_size != size)
        return fail(errc::io_error, std::string(op), path,
                    "the probe " + root.full(path) + " reports " + std::to_string(st.st_size) + " bytes after writing " +
                        std::to_string(size));

    unique_fd in(open_retry(dir.get(), name.c_str(), O_RDONLY | O_NOFOLLOW));
    if (!in) {
        const int err = errno;
        return sys_fail(op, path, "cannot open the probe " + root.full(path) + " for reading", err);
    }
    std::vector<std::byte> back(probe.size() + 1);
    std::size_t got = 0;
    if (const int err = pread_full(in.get(), back, 0, got); err != 0)
        return sys_fail(op, path, "cannot read the probe " + root.full(path), err);
    in.reset();
    if (got != probe.size() || !std::equal(probe.begin(), probe.end(), back.begin()))
        return fail(errc::io_error, std::string(op), path,
                    "the probe " + root.full(path) + " read back " + std::to_string(got) + " bytes that differ from the " +
                        std::to_string(size) + " written: the filesystem is not read-after-write consistent");

    if (const int err = cleanup.remove(); err != 0)
        return sys_fail(op, path, "cannot delete the probe " + root.full(path), err);
    if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
        return fail(errc::io_error, std::string(op), path, "the probe " + root.full(path) + " is still visible after its deletion");
    if (errno != ENOENT) {
        const int err = errno;
        return sys_fail(op, path, "stat of the deleted probe " + root.full(path), err);
    }
    return ctx.check(op);
}

} // namespace cachestore::detail::posix
