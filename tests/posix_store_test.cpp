// posix_store: the POSIX-specific behaviour (the generic contract is covered by
// the conformance suite): the on-disk layout, no temp file left behind by any
// failure, misconfigured roots, sharing one root between stores and between
// processes, self_test, and the zero-copy span read.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "cachestore/posix_store.hpp"
#include "temp_dir.hpp"

using namespace cachestore;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct temp_dir : test_support::temp_dir {
    temp_dir() : test_support::temp_dir("cachestore-posix") {}
};

posix_store open_store(const std::string& root, posix_options opts = {}) {
    auto s = posix_store::open(root, opts);
    if (!s) FAIL(s.error());
    return std::move(*s);
}

chunk_key key(std::int64_t chunk_size = 4096, std::int64_t index = 0, std::string object = "obj/a.bin") {
    return chunk_key{"posix-test", "bucket", std::move(object), "\"etag-1\"", chunk_size, index};
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed = 1) {
    std::vector<std::byte> v(n);
    std::mt19937 g(seed);
    for (auto& b : v) b = static_cast<std::byte>(g());
    return v;
}

std::vector<std::byte> slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> out(c.size());
    if (!c.empty()) std::memcpy(out.data(), c.data(), c.size());
    return out;
}

/// Names in a directory (empty when it does not exist).
std::vector<std::string> list(const fs::path& dir) {
    std::vector<std::string> names;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
        names.push_back(it->path().filename().string());
    return names;
}

bool has_temp(const std::vector<std::string>& names) {
    return std::ranges::any_of(names, [](const std::string& n) { return n.starts_with(".tmp-"); });
}

/// A source that yields `step` bytes per call from `data` (and can run a hook first).
struct stepping_source {
    const std::vector<std::byte>* data;
    std::size_t step;
    std::size_t pos = 0;
    result<std::size_t> operator()(std::span<std::byte> buf) {
        const std::size_t n = std::min({buf.size(), step, data->size() - pos});
        if (n != 0) std::memcpy(buf.data(), data->data() + pos, n);
        pos += n;
        return n;
    }
};

/// Runs `body` in a forked child and returns its exit status (or -1 on a signal).
template <class F>
int in_child(F&& body) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) ::_exit(body());
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

} // namespace

TEST_CASE("posix_store: the chunk lands at file_path(key) under the root", "[posix]") {
    temp_dir tmp;
    auto s = open_store(tmp.path);
    CHECK(s.root() == tmp.path);
    const auto k = key(4096, 7);
    const auto data = pattern(3000);
    REQUIRE(s.put_chunk({}, k, 3000, std::span<const std::byte>(data)).has_value());

    // origin_id/<hh>/<hash>/<index>: the SPEC path with a 2-hex-char fan-out.
    const auto spec = storage_path(k);
    REQUIRE(spec.has_value());
    const std::string hash = spec->substr(k.origin_id.size() + 1, 64);
    const std::string rel = posix_store::file_path(k);
    CHECK(rel == k.origin_id + "/" + hash.substr(0, 2) + "/" + hash + "/7");

    const fs::path file = fs::path(tmp.path) / rel;
    REQUIRE(fs::is_regular_file(file));
    CHECK(fs::file_size(file) == 3000);
    CHECK(slurp(file) == data);
    CHECK(list(file.parent_path()) == std::vector<std::string>{"7"});

    // stat reports the file's size and mtime (nanoseconds kept).
    struct ::stat st {};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    auto info = s.stat({}, k);
    REQUIRE(info.has_value());
    CHECK(info->size == 3000);
    CHECK(info->committed.time_since_epoch() ==
          std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::seconds(st.st_mtim.tv_sec) +
                                                                          std::chrono::nanoseconds(st.st_mtim.tv_nsec)));

    // Errors carry the SPEC storage path, not the file path.
    auto missing = key(4096, 8);
    auto r = s.stat({}, missing);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::not_found);
    CHECK(r.error().path == *storage_path(missing));
    auto lost = s.put_chunk({}, k, 3000, std::span<const std::byte>(data));
    REQUIRE_FALSE(lost.has_value());
    CHECK(lost.error().code == errc::commit_lost);
    CHECK(lost.error().path == *spec);

    // remove unlinks the file but keeps the directories.
    REQUIRE(s.remove({}, k).has_value());
    CHECK_FALSE(fs::exists(file));
    CHECK(fs::is_directory(file.parent_path()));
    CHECK(list(file.parent_path()).empty());

    // An invalid key has no file path.
    auto bad = k;
    bad.origin_id = "..";
    CHECK(posix_store::file_path(bad).empty());
}

TEST_CASE("posix_store: a file placed by hand at file_path is served", "[posix]") {
    temp_dir tmp;
    auto s = open_store(tmp.path);
    const auto k = key(100, 2);
    const fs::path file = fs::path(tmp.path) / posix_store::file_path(k);
    fs::create_directories(file.parent_path());
    { std::ofstream(file, std::ios::binary) << "hello, chunk"; }
    std::vector<std::byte> buf(5);
    REQUIRE(cachestore::get_chunk(s, {}, k, 7, std::span<std::byte>(buf)).has_value());
    CHECK(std::memcmp(buf.data(), "chunk", 5) == 0);
    CHECK(s.stat({}, k)->size == 12);
}

TEST_CASE("posix_store: no temp file survives a failed put", "[posix]") {
    temp_dir tmp;
    auto s = open_store(tmp.path);
    const auto data = pattern(200000, 4);
    int n = 0;
    auto fresh = [&] { return key(1 << 20, 0, "fail/" + std::to_string(n++)); };
    auto dir_of = [&](const chunk_key& k) { return (fs::path(tmp.path) / posix_store::file_path(k)).parent_path(); };
    // The put got as far as its target directory (so a temp file existed) and
    // left nothing in it.
    auto require_clean = [&](const chunk_key& k) {
        const auto dir = dir_of(k);
        REQUIRE(fs::is_directory(dir));
        const auto names = list(dir);
        INFO("left in " << dir.string() << ": " << names.size() << " entries");
        CHECK_FALSE(has_temp(names));
        CHECK(names.empty());
        CHECK(s.stat({}, k).error().code == errc::not_found);
    };

    SECTION("short source") {
        const auto k = fresh();
        const std::vector<std::byte> shorter(data.begin(), data.end() - 1);
        stepping_source src{&shorter, 70000};
        auto r = s.put_chunk({}, k, 200000, src);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::invalid_argument);
        require_clean(k);
    }
    SECTION("long source") {
        const auto k = fresh();
        const auto longer = pattern(200001, 4);
        stepping_source src{&longer, 70000};
        auto r = s.put_chunk({}, k, 200000, src);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::invalid_argument);
        require_clean(k);
    }
    SECTION("failing source") {
        const auto k = fresh();
        int calls = 0;
        auto failing = [&](std::span<std::byte> buf) -> result<std::size_t> {
            if (++calls == 3) return fail(errc::transient, "origin read", {}, "connection reset");
            const std::size_t m = std::min<std::size_t>(buf.size(), 50000);
            std::memset(buf.data(), 0x5a, m);
            return m;
        };
        auto r = s.put_chunk({}, k, 200000, failing);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::transient);
        CHECK(r.error().op == "put_chunk");
        CHECK(r.error().path == *storage_path(k));
        require_clean(k);
    }
    SECTION("stop requested from inside the source") {
        const auto k = fresh();
        std::stop_source stop;
        stepping_source inner{&data, 50000};
        auto src = [&](std::span<std::byte> buf) -> result<std::size_t> {
            if (inner.pos >= 100000) stop.request_stop();
            return inner(buf);
        };
        auto r = s.put_chunk(context(stop.get_token()), k, 200000, src);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::cancelled);
        require_clean(k);
    }
    SECTION("stop requested on the last block, before the commit") {
        const auto k = fresh();
        std::stop_source stop;
        stepping_source inner{&data, 200000};
        auto src = [&](std::span<std::byte> buf) -> result<std::size_t> {
            stop.request_stop();
            return inner(buf);
        };
        auto r = s.put_chunk(context(stop.get_token()), k, 200000, src);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::cancelled);
        require_clean(k);
    }
    SECTION("deadline expires mid-transfer") {
        const auto k = fresh();
        stepping_source inner{&data, 20000};
        auto slow = [&](std::span<std::byte> buf) -> result<std::size_t> {
            std::this_thread::sleep_for(15ms);
            return inner(buf);
        };
        auto r = s.put_chunk(context::with_timeout(60ms), k, 200000, slow);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::deadline_exceeded);
        require_clean(k);
    }
    SECTION("deadline already expired: nothing is created at all") {
        const auto k = fresh();
        auto r = s.put_chunk(context::with_timeout(-1s), k, 200000, std::span<const std::byte>(data));
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::deadline_exceeded);
        CHECK_FALSE(fs::exists(dir_of(k)));
    }
    SECTION("a write fails (EFBIG under RLIMIT_FSIZE, like ENOSPC)") {
        const auto k = fresh();
        const int status = in_child([&] {
            ::signal(SIGXFSZ, SIG_IGN);
            struct rlimit lim {};
            lim.rlim_cur = lim.rlim_max = 4096;
            if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) return 10;
            auto r = s.put_chunk({}, k, 200000, std::span<const std::byte>(data));
            if (r) return 11;
            if (r.error().code != errc::io_error) return 12;
            if (r.error().sys_errno != EFBIG) return 13;
            if (r.error().message.find(".tmp-0-") == std::string::npos) return 14; // names the temp file
            return 0;
        });
        CHECK(status == 0);
        require_clean(k);
    }
    // Every failure leaves the store usable for the same key.
    const auto k = fresh();
    REQUIRE(s.put_chunk({}, k, 200000, std::span<const std::byte>(data)).has_value());
    CHECK(list(dir_of(k)) == std::vector<std::string>{"0"});
}

TEST_CASE("posix_store: open() refuses an unusable root as misconfigured", "[posix]") {
    temp_dir tmp;
    const std::string file = tmp.path + "/plain-file";
    { std::ofstream(file) << "x"; }

    auto expect_misconfigured = [](const std::string& root, posix_options opts = {}) {
        auto s = posix_store::open(root, opts);
        INFO("root: " << root);
        REQUIRE_FALSE(s.has_value());
        CHECK(s.error().code == errc::misconfigured);
        CHECK(s.error().op == "open");
        CHECK_FALSE(s.error().message.empty());
        return s.error();
    };

    SECTION("a regular file") {
        auto e = expect_misconfigured(file);
        CHECK(e.message.find("not a directory") != std::string::npos);
        CHECK(e.message.find(file) != std::string::npos);
    }
    SECTION("a path below a regular file cannot be created") {
        auto e = expect_misconfigured(file + "/sub/root");
        CHECK(e.message.find("component of its path is not a directory") != std::string::npos);
        CHECK(e.sys_errno == ENOTDIR);
    }
    SECTION("missing: not created by default") {
        auto e = expect_misconfigured(tmp.path + "/missing");
        CHECK(e.message.find("does not exist") != std::string::npos);
        CHECK(e.message.find("create_root") != std::string::npos);
        CHECK(e.sys_errno == ENOENT);
        CHECK_FALSE(fs::exists(tmp.path + "/missing"));
    }
    SECTION("an empty path") { expect_misconfigured(""); }
    SECTION("created when missing with create_root") {
        auto s = posix_store::open(tmp.path + "/a/b/c", posix_options{.create_root = true});
        REQUIRE(s.has_value());
        CHECK(fs::is_directory(tmp.path + "/a/b/c"));
        CHECK(list(tmp.path + "/a/b/c").empty()); // the writability probe is gone
    }
    SECTION("a URL is not a path: nothing is created under the working directory") {
        const fs::path cwd = fs::current_path();
        fs::current_path(tmp.path);
        for (const std::string url : {"file:///tmp/x/chunks", "file:relative", "FILE://localhost/tmp/x", "s3://bucket/p",
                                      "https://host/x"}) {
            INFO(url);
            auto e = expect_misconfigured(url, posix_options{.create_root = true});
            CHECK(e.message.find("is a URL, not a directory path") != std::string::npos);
        }
        CHECK(list(tmp.path).size() == 1); // only plain-file
        // A relative directory really named so is spelled ./...
        auto s = posix_store::open("./file:dir", posix_options{.create_root = true});
        CHECK(s.has_value());
        CHECK(fs::is_directory(tmp.path + "/file:dir"));
        fs::current_path(cwd);
    }
    SECTION("not writable, or not creatable, by this user") {
        // Root ignores mode bits: drop to an unprivileged user in a child.
        const std::string ro = tmp.path + "/read-only";
        REQUIRE(::mkdir(ro.c_str(), 0555) == 0);
        REQUIRE(::chmod(ro.c_str(), 0555) == 0);
        REQUIRE(::chmod(tmp.path.c_str(), 0755) == 0);
        const int status = in_child([&] {
            if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) return 20;
            auto a = posix_store::open(ro);
            if (a || a.error().code != errc::misconfigured) return 21;
            if (a.error().message.find("not writable") == std::string::npos) return 22;
            if (a.error().sys_errno != EACCES) return 23;
            auto b = posix_store::open(ro + "/new-root", posix_options{.create_root = true});
            if (b || b.error().code != errc::misconfigured) return 24;
            return 0;
        });
        CHECK(status == 0);
    }
}

TEST_CASE("posix_store: two stores on one root see each other's chunks", "[posix]") {
    temp_dir tmp;
    auto a = open_store(tmp.path);
    auto b = open_store(tmp.path, posix_options{.fsync = false, .create_root = false});
    const auto k = key(8192, 1);
    const auto data = pattern(8192, 3);
    REQUIRE(a.put_chunk({}, k, 8192, std::span<const std::byte>(data)).has_value());
    CHECK(b.stat({}, k)->size == 8192);
    std::vector<std::byte> got(8192);
    REQUIRE(cachestore::get_chunk(b, {}, k, 0, std::span<std::byte>(got)).has_value());
    CHECK(got == data);
    CHECK(b.put_chunk({}, k, 8192, std::span<const std::byte>(data)).error().code == errc::commit_lost);
    REQUIRE(b.remove({}, k).has_value());
    CHECK(a.stat({}, k).error().code == errc::not_found);
    REQUIRE(b.put_chunk({}, k, 8192, std::span<const std::byte>(data)).has_value());
    CHECK(a.stat({}, k)->size == 8192);

    // A moved store keeps working; the moved-to object owns the root.
    posix_store c = std::move(a);
    CHECK(c.stat({}, k)->size == 8192);
    b = std::move(c);
    CHECK(b.stat({}, k)->size == 8192);
}

TEST_CASE("posix_store: a forked process racing on the same keys: exactly one commit each", "[posix][concurrency]") {
    temp_dir tmp;
    constexpr int keys = 24;
    const auto data = pattern(std::size_t{96} * 1024, 11);
    auto k_of = [](int i) { return key(std::int64_t{128} * 1024, i, "race"); };

    int go[2], report[2];
    REQUIRE(::pipe(go) == 0);
    REQUIRE(::pipe(report) == 0);
    // Each writer feeds its bytes in small steps so the two commits overlap.
    auto run = [&](posix_store& st, char* outcome) {
        for (int i = 0; i < keys; ++i) {
            stepping_source src{&data, 8192};
            auto r = st.put_chunk({}, k_of(i), static_cast<std::int64_t>(data.size()), src);
            outcome[i] = r ? 'W' : r.error().code == errc::commit_lost ? 'L' : 'E';
        }
    };
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(go[1]);
        ::close(report[0]);
        char mine[keys] = {};
        auto st = posix_store::open(tmp.path);
        char byte = 0;
        if (!st || ::read(go[0], &byte, 1) != 1) ::_exit(1);
        run(*st, mine);
        ::_exit(::write(report[1], mine, keys) == keys ? 0 : 2);
    }
    ::close(go[0]);
    ::close(report[1]);
    auto s = open_store(tmp.path);
    char parent[keys] = {}, child[keys] = {};
    REQUIRE(::write(go[1], "g", 1) == 1);
    run(s, parent);
    ::close(go[1]);
    std::size_t have = 0;
    while (have < keys) {
        const ssize_t r = ::read(report[0], child + have, keys - have);
        if (r <= 0) break;
        have += static_cast<std::size_t>(r);
    }
    ::close(report[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    REQUIRE(have == keys);

    for (int i = 0; i < keys; ++i) {
        INFO("key " << i << ": parent " << parent[i] << ", child " << child[i]);
        CHECK(((parent[i] == 'W' && child[i] == 'L') || (parent[i] == 'L' && child[i] == 'W')));
        std::vector<std::byte> got(data.size());
        REQUIRE(cachestore::get_chunk(s, {}, k_of(i), 0, std::span<std::byte>(got)).has_value());
        CHECK(got == data);
    }
    // All keys share one object directory: one file per index, no temp left.
    const auto dir = (fs::path(tmp.path) / posix_store::file_path(k_of(0))).parent_path();
    const auto names = list(dir);
    CHECK(names.size() == static_cast<std::size_t>(keys));
    CHECK_FALSE(has_temp(names));
}

TEST_CASE("posix_store: self_test passes on /tmp and leaves no probe behind", "[posix]") {
    temp_dir tmp;
    REQUIRE(tmp.path.rfind("/tmp/", 0) == 0);
    auto s = open_store(tmp.path);
    auto r = s.self_test(context::with_timeout(30s));
    INFO(r);
    REQUIRE(r.has_value());
    REQUIRE(s.self_test({}).has_value()); // again: the self-test directory already exists
    CHECK(fs::is_directory(tmp.path + "/.cachestore-selftest"));
    CHECK(list(tmp.path + "/.cachestore-selftest").empty());

    std::stop_source stop;
    stop.request_stop();
    CHECK(s.self_test(context(stop.get_token())).error().code == errc::cancelled);
}

TEST_CASE("posix_store: get_chunk_into fills the caller's span", "[posix]") {
    temp_dir tmp;
    auto s = open_store(tmp.path);
    const std::int64_t size = 700 * 1024 + 13; // spans several read blocks
    const auto k = key(1 << 20, 3);
    const auto data = pattern(static_cast<std::size_t>(size), 21);
    REQUIRE(s.put_chunk({}, k, size, std::span<const std::byte>(data)).has_value());

    std::vector<std::byte> all(static_cast<std::size_t>(size));
    REQUIRE(s.get_chunk_into({}, k, 0, std::span<std::byte>(all)).has_value());
    CHECK(all == data);

    std::vector<std::byte> part(std::size_t{300} * 1024);
    const std::int64_t off = 123457;
    REQUIRE(cachestore::get_chunk(s, {}, k, off, std::span<std::byte>(part)).has_value()); // dispatches to get_chunk_into
    CHECK(std::equal(part.begin(), part.end(), data.begin() + off));

    std::vector<std::byte> past(2);
    auto r = s.get_chunk_into({}, k, size - 1, std::span<std::byte>(past));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::out_of_range);
    CHECK(r.error().message.find(std::to_string(size + 1)) != std::string::npos);
    CHECK(r.error().message.find(std::to_string(size)) != std::string::npos);
    CHECK(s.get_chunk_into({}, key(1 << 20, 4), 0, std::span<std::byte>(past)).error().code == errc::not_found);
    CHECK(s.get_chunk_into({}, k, 0, std::span<std::byte>()).error().code == errc::invalid_argument);
    std::stop_source stop;
    stop.request_stop();
    CHECK(s.get_chunk_into(context(stop.get_token()), k, 0, std::span<std::byte>(past)).error().code == errc::cancelled);
}

TEST_CASE("posix_store: a chunk file that shrinks during a read is io_error, never short", "[posix]") {
    temp_dir tmp;
    auto s = open_store(tmp.path);
    const std::int64_t size = 1 << 20;
    const auto k = key(size, 0);
    const auto data = pattern(static_cast<std::size_t>(size), 5);
    REQUIRE(s.put_chunk({}, k, size, std::span<const std::byte>(data)).has_value());
    const std::string file = tmp.path + "/" + posix_store::file_path(k);
    std::size_t seen = 0;
    auto r = s.get_chunk({}, k, 0, size, [&](std::span<const std::byte> b) {
        if (seen == 0) REQUIRE(::truncate(file.c_str(), 1000) == 0); // someone damages the file
        seen += b.size();
        return true;
    });
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::io_error);
    CHECK(r.error().message.find("shrank") != std::string::npos);
    CHECK(seen < static_cast<std::size_t>(size));
}

TEST_CASE("posix_store: without fsync the commit is the same", "[posix]") {
    temp_dir tmp;
    auto s = open_store(tmp.path, posix_options{.fsync = false, .create_root = true});
    const auto k = key(64, 0);
    const auto data = pattern(64);
    REQUIRE(s.put_chunk({}, k, 64, std::span<const std::byte>(data)).has_value());
    CHECK(slurp(fs::path(tmp.path) / posix_store::file_path(k)) == data);
    CHECK(s.put_chunk({}, k, 64, std::span<const std::byte>(data)).error().code == errc::commit_lost);
}

namespace {
mode_t mode_of(const fs::path& p) {
    struct ::stat st {};
    REQUIRE(::lstat(p.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

/// Sets the process umask for one scope (tests run on one thread).
struct scoped_umask {
    mode_t old;
    explicit scoped_umask(mode_t m) : old(::umask(m)) {}
    ~scoped_umask() { ::umask(old); }
    scoped_umask(const scoped_umask&) = delete;
    scoped_umask& operator=(const scoped_umask&) = delete;
};
} // namespace

TEST_CASE("posix_store: files are 0600 and directories 0700 by default, whatever the umask", "[posix][modes]") {
    temp_dir tmp;
    for (const mode_t mask : {mode_t{0}, mode_t{022}, mode_t{077}}) {
        INFO("umask " << std::oct << mask);
        scoped_umask um(mask);
        const std::string root = tmp.path + "/m" + std::to_string(mask) + "/a/root";
        auto s = open_store(root, posix_options{.create_root = true});
        // The root and the parents the store created: 0700.
        CHECK(mode_of(root) == 0700);
        CHECK(mode_of(tmp.path + "/m" + std::to_string(mask)) == 0700);
        const auto k = key(4096, 1);
        const auto data = pattern(100);
        REQUIRE(s.put_chunk({}, k, 100, std::span<const std::byte>(data)).has_value());
        const fs::path file = fs::path(root) / posix_store::file_path(k);
        CHECK(mode_of(file) == 0600);
        CHECK(mode_of(file.parent_path()) == 0700);                             // hash directory
        CHECK(mode_of(file.parent_path().parent_path()) == 0700);               // fan-out
        CHECK(mode_of(file.parent_path().parent_path().parent_path()) == 0700); // origin
        REQUIRE(s.self_test({}).has_value());
        CHECK(mode_of(fs::path(root) / ".cachestore-selftest") == 0700);
    }
}

TEST_CASE("posix_store: file_mode and dir_mode are applied exactly; an existing root keeps its mode", "[posix][modes]") {
    temp_dir tmp;
    scoped_umask um(077); // would narrow 0640/0750 if it applied
    REQUIRE(::chmod(tmp.path.c_str(), 0755) == 0);
    auto s = open_store(tmp.path, posix_options{.file_mode = 0640, .dir_mode = 0750});
    CHECK(mode_of(tmp.path) == 0755);
    const auto k = key(4096, 2);
    const auto data = pattern(10);
    REQUIRE(s.put_chunk({}, k, 10, std::span<const std::byte>(data)).has_value());
    const fs::path file = fs::path(tmp.path) / posix_store::file_path(k);
    CHECK(mode_of(file) == 0640);
    CHECK(mode_of(file.parent_path()) == 0750);
    CHECK(mode_of(file.parent_path().parent_path().parent_path()) == 0750);
    CHECK(s.options().file_mode == 0640);
}
