// posix_store never follows a symbolic link below its root: a link planted in
// the tree (by another user, process or host) could otherwise serve or
// overwrite a file anywhere. Run twice by meson: with openat2 (Linux 5.6+)
// and under tests/preload/estale_shim with ESTALE_SHIM_NO_OPENAT2=1, where the
// store walks paths one O_NOFOLLOW component at a time.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "cachestore/posix_store.hpp"
#include "../temp_dir.hpp"

using namespace cachestore;
namespace fs = std::filesystem;

namespace {

struct temp_dir : test_support::temp_dir {
    temp_dir() : test_support::temp_dir("cachestore-symlink") {}
};

chunk_key key(std::int64_t index = 0, std::string origin = "links") {
    return chunk_key{std::move(origin), "bucket", "obj/linked.bin", "\"e1\"", 4096, index};
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Every way to reach `k` through the store refuses the link: io_error with
/// ELOOP, no byte delivered, nothing written.
void expect_refused(posix_store& s, const chunk_key& k) {
    bool got_bytes = false;
    auto r = s.get_chunk({}, k, 0, 6, [&](std::span<const std::byte>) {
        got_bytes = true;
        return true;
    });
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::io_error);
    CHECK(r.error().sys_errno == ELOOP);
    CHECK(r.error().message.find("symbolic link") != std::string::npos);
    CHECK_FALSE(got_bytes);
    std::vector<std::byte> out(6);
    auto into = s.get_chunk_into({}, k, 0, std::span<std::byte>(out));
    REQUIRE_FALSE(into.has_value());
    CHECK(into.error().code == errc::io_error);
    auto st = s.stat({}, k);
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == errc::io_error);
    const std::vector<std::byte> data(100, std::byte{0x42});
    auto put = s.put_chunk({}, k, 100, std::span<const std::byte>(data));
    REQUIRE_FALSE(put.has_value());
    CHECK(put.error().code == errc::io_error); // not commit_lost: nothing is stored there
    CHECK(put.error().sys_errno == ELOOP);
}

} // namespace

TEST_CASE("symlink: a link at a chunk's name is not followed", "[posix][symlink]") {
    temp_dir tmp;
    const std::string root = tmp.path + "/root";
    const std::string outside = tmp.path + "/secret";
    { std::ofstream(outside) << "SECRET bytes outside the root"; }
    auto s = posix_store::open(root, posix_options{.create_root = true});
    REQUIRE(s.has_value());
    const auto k = key(0);
    const fs::path file = fs::path(root) / posix_store::file_path(k);
    fs::create_directories(file.parent_path());
    fs::create_symlink(outside, file);

    expect_refused(*s, k);
    CHECK(slurp(outside) == "SECRET bytes outside the root");
    // remove unlinks the link itself, never its target.
    REQUIRE(s->remove({}, k).has_value());
    CHECK_FALSE(fs::is_symlink(file));
    CHECK(slurp(outside) == "SECRET bytes outside the root");
    // and the name is usable again
    const std::vector<std::byte> data(100, std::byte{7});
    REQUIRE(s->put_chunk({}, k, 100, std::span<const std::byte>(data)).has_value());
}

TEST_CASE("symlink: a linked directory below the root is not followed", "[posix][symlink]") {
    temp_dir tmp;
    const std::string root = tmp.path + "/root";
    auto s = posix_store::open(root, posix_options{.create_root = true});
    REQUIRE(s.has_value());
    const auto k = key(0);
    const std::string rel = posix_store::file_path(k); // links/hh/hash/0
    const std::string hh = rel.substr(0, rel.find('/') + 3);

    // A tree elsewhere laid out like the store, holding the chunk.
    const fs::path elsewhere = fs::path(tmp.path) / "elsewhere";
    const fs::path planted = elsewhere / rel;
    fs::create_directories(planted.parent_path());
    { std::ofstream(planted) << "SECRET chunk outside"; }

    SECTION("the origin directory is a link") { fs::create_symlink(elsewhere / "links", fs::path(root) / "links"); }
    SECTION("the fan-out directory is a link") {
        fs::create_directories(fs::path(root) / "links");
        fs::create_symlink(elsewhere / hh, fs::path(root) / hh);
    }
    SECTION("the hash directory is a link") {
        fs::create_directories(fs::path(root) / hh);
        const std::string hash_dir = fs::path(rel).parent_path().string();
        fs::create_symlink(elsewhere / hash_dir, fs::path(root) / hash_dir);
    }
    expect_refused(*s, k);
    // A new chunk of the same object is not written through the link either.
    const std::vector<std::byte> data(64, std::byte{1});
    auto other = s->put_chunk({}, key(1), 64, std::span<const std::byte>(data));
    REQUIRE_FALSE(other.has_value());
    CHECK(other.error().code == errc::io_error);
    auto rm = s->remove({}, k);
    REQUIRE_FALSE(rm.has_value());
    CHECK(rm.error().code == errc::io_error);
    CHECK(slurp(planted) == "SECRET chunk outside");
    std::size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(elsewhere)) n += e.is_regular_file() ? 1 : 0;
    CHECK(n == 1); // nothing was created outside the root
}

TEST_CASE("symlink: the root itself may be a link", "[posix][symlink]") {
    temp_dir tmp;
    fs::create_directories(tmp.path + "/real");
    fs::create_symlink(tmp.path + "/real", tmp.path + "/root");
    auto s = posix_store::open(tmp.path + "/root");
    REQUIRE(s.has_value());
    const auto k = key(3);
    const std::vector<std::byte> data(10, std::byte{9});
    REQUIRE(s->put_chunk({}, k, 10, std::span<const std::byte>(data)).has_value());
    CHECK(fs::is_regular_file(fs::path(tmp.path) / "real" / posix_store::file_path(k)));
    CHECK(s->stat({}, k)->size == 10);
}
