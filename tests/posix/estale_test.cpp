// posix_store on NFS: ESTALE, which a client gets when another client removed
// the file (or directory) a handle or a cached lookup refers to. For a cache,
// a chunk removed by another host is a miss, never an alert: every read path
// (open, fstat, pread; stat; put's stat-first; remove; the directories of a
// put) treats ESTALE as "not there". Run under LD_PRELOAD=tests/preload's
// estale_shim (meson sets it), which fails chosen calls on chosen paths.
#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "cachestore/posix_store.hpp"
#include "../temp_dir.hpp"

using namespace cachestore;
namespace fs = std::filesystem;

namespace {

/// The shim's control functions, looked up at run time.
struct shim {
    using configure_fn = void (*)(const char*, const char*, int);
    using hits_fn = int (*)();
    configure_fn configure = nullptr;
    hits_fn hits = nullptr;

    static shim& get() {
        static shim s = [] {
            shim x;
            void* c = ::dlsym(RTLD_DEFAULT, "estale_shim_configure");
            void* h = ::dlsym(RTLD_DEFAULT, "estale_shim_hits");
            std::memcpy(&x.configure, &c, sizeof x.configure);
            std::memcpy(&x.hits, &h, sizeof x.hits);
            return x;
        }();
        return s;
    }
};

/// Arms the shim for one scope: `ops` on paths containing `match` fail with
/// ESTALE, at most `count` times (< 0: every time).
struct estale {
    estale(const std::string& match, const char* ops, int count = -1) {
        auto& s = shim::get();
        if (s.configure == nullptr)
            FAIL("estale_shim is not preloaded: run through meson (LD_PRELOAD=.../libestale_shim.so)");
        s.configure(match.c_str(), ops, count);
    }
    estale(const estale&) = delete;
    estale& operator=(const estale&) = delete;
    ~estale() { shim::get().configure(nullptr, nullptr, 0); }
    [[nodiscard]] static int hits() { return shim::get().hits(); }
};

struct temp_dir : test_support::temp_dir {
    temp_dir() : test_support::temp_dir("cachestore-estale") {}
};

posix_store open_store(const std::string& root) {
    auto s = posix_store::open(root);
    if (!s) FAIL(s.error());
    return std::move(*s);
}

chunk_key key(std::int64_t index = 0, std::string object = "nfs/object.bin") {
    return chunk_key{"estale-test", "bucket", std::move(object), "\"e1\"", 1 << 20, index};
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed = 1) {
    std::vector<std::byte> v(n);
    std::mt19937 g(seed);
    for (auto& b : v) b = static_cast<std::byte>(g());
    return v;
}

/// The chunk's hash directory relative to the root.
std::string dir_of(const chunk_key& k) { return fs::path(posix_store::file_path(k)).parent_path().string(); }

} // namespace

TEST_CASE("estale: a read whose file went stale is a miss", "[posix][estale]") {
    temp_dir tmp;
    auto s = open_store(tmp.path);
    const auto k = key();
    const auto data = pattern(300000);
    REQUIRE(s.put_chunk({}, k, 300000, std::span<const std::byte>(data)).has_value());
    const std::string file = posix_store::file_path(k);
    std::vector<std::byte> out(1000);
    auto sink = [](std::span<const std::byte>) { return true; };

    for (const char* op : {"open", "fstat", "pread"}) {
        INFO("ESTALE from " << op);
        {
            estale e(file, op);
            auto r = s.get_chunk({}, k, 0, 300000, sink);
            REQUIRE_FALSE(r.has_value());
            CHECK(estale::hits() >= 1);
            CHECK(r.error().code == errc::not_found);
            CHECK(r.error().sys_errno == ESTALE);
            CHECK(r.error().path == *storage_path(k));
        }
        {
            estale e(file, op);
            auto r = s.get_chunk_into({}, k, 100, std::span<std::byte>(out));
            REQUIRE_FALSE(r.has_value());
            CHECK(r.error().code == errc::not_found);
        }
        // Once the handle is fresh again the chunk reads as before.
        REQUIRE(s.get_chunk_into({}, k, 100, std::span<std::byte>(out)).has_value());
        CHECK(std::memcmp(out.data(), data.data() + 100, out.size()) == 0);
    }
}

TEST_CASE("estale: stat of a stale chunk is not_found", "[posix][estale]") {
    temp_dir tmp;
    auto s = open_store(tmp.path);
    const auto k = key(1);
    const auto data = pattern(100);
    REQUIRE(s.put_chunk({}, k, 100, std::span<const std::byte>(data)).has_value());
    for (const char* op : {"open", "fstat"}) {
        INFO("ESTALE from " << op);
        estale e(posix_store::file_path(k), op);
        auto r = s.stat({}, k);
        REQUIRE_FALSE(r.has_value());
        CHECK(estale::hits() >= 1);
        CHECK(r.error().code == errc::not_found);
    }
    CHECK(s.stat({}, k)->size == 100);
}

TEST_CASE("estale: put's stat-first finding a stale name writes the chunk", "[posix][estale]") {
    temp_dir tmp;
    auto s = open_store(tmp.path);
    const auto k = key(2);
    const auto data = pattern(5000, 7);
    // Another chunk of the object exists, so the directories do too and only
    // the chunk's own name is looked up stale.
    REQUIRE(s.put_chunk({}, key(20), 5000, std::span<const std::byte>(data)).has_value());
    for (const char* op : {"open"}) {
        INFO("ESTALE from " << op);
        {
            estale e(posix_store::file_path(k), op, 1);
            auto r = s.put_chunk({}, k, 5000, std::span<const std::byte>(data));
            INFO(r);
            CHECK(r.has_value());
            CHECK(estale::hits() == 1);
        }
        std::vector<std::byte> back(5000);
        REQUIRE(cachestore::get_chunk(s, {}, k, 0, std::span<std::byte>(back)).has_value());
        CHECK(back == data);
        REQUIRE(s.remove({}, k).has_value());
    }
}

TEST_CASE("estale: a put whose directory went stale re-creates it", "[posix][estale]") {
    temp_dir tmp;
    auto s = open_store(tmp.path);
    const auto k = key(3);
    const auto data = pattern(4000, 9);
    // Another host removed the object's directory; this client's first lookup
    // of it is stale, the next one finds (or makes) a fresh one.
    REQUIRE(s.put_chunk({}, key(4), 4000, std::span<const std::byte>(data)).has_value());
    const std::string dir = dir_of(k);
    {
        estale e(dir, "open", 1);
        auto r = s.put_chunk({}, k, 4000, std::span<const std::byte>(data));
        INFO(r);
        CHECK(r.has_value());
        CHECK(estale::hits() == 1);
    }
    CHECK(s.stat({}, k)->size == 4000);
}

TEST_CASE("estale: removing a stale chunk succeeds", "[posix][estale]") {
    temp_dir tmp;
    auto s = open_store(tmp.path);
    const auto k = key(5);
    const auto data = pattern(64);
    REQUIRE(s.put_chunk({}, k, 64, std::span<const std::byte>(data)).has_value());
    {
        estale e(posix_store::file_path(k), "unlink,open,fstat", -1);
        auto r = s.remove({}, k);
        INFO(r);
        CHECK(r.has_value());
        CHECK(estale::hits() >= 1);
    }
}
