// A tiered store (docs/tiered.md) whose near tier is a POSIX store on a sick
// or full disk: the system calls fail with EIO or ENOSPC under
// LD_PRELOAD=tests/preload's shim (meson sets it). Whatever the near tier's
// disk does, a read the far tier can serve is served, exactly, and a put the
// far tier took succeeds; the near tier's failures are counted, and enough of
// them bypass it.
#include <catch2/catch.hpp>

#include <dlfcn.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "cachestore/layers.hpp"
#include "cachestore/memory_store.hpp"
#include "cachestore/posix_store.hpp"
#include "../temp_dir.hpp"

using namespace cachestore;
using namespace std::chrono_literals;

namespace {

/// The shim's control functions, looked up at run time.
struct shim {
    void (*configure)(const char*, const char*, int) = nullptr;
    void (*set_errno)(int) = nullptr;

    static shim& get() {
        static shim s = [] {
            shim x;
            void* c = ::dlsym(RTLD_DEFAULT, "estale_shim_configure");
            void* e = ::dlsym(RTLD_DEFAULT, "estale_shim_set_errno");
            std::memcpy(&x.configure, &c, sizeof x.configure);
            std::memcpy(&x.set_errno, &e, sizeof x.set_errno);
            return x;
        }();
        return s;
    }
};

/// For one scope, `ops` on paths containing `match` fail with `err`.
struct disk_fault {
    disk_fault(const std::string& match, const char* ops, int err) {
        auto& s = shim::get();
        if (s.configure == nullptr || s.set_errno == nullptr)
            FAIL("the preload shim is not loaded: run through meson (LD_PRELOAD=.../libestale_shim.so)");
        s.set_errno(err);
        s.configure(match.c_str(), ops, -1);
    }
    disk_fault(const disk_fault&) = delete;
    disk_fault& operator=(const disk_fault&) = delete;
    ~disk_fault() {
        shim::get().configure(nullptr, nullptr, 0);
        shim::get().set_errno(ESTALE);
    }
};

using store_t = tiered<posix_store, memory_store&>;

chunk_key key(std::int64_t index) { return chunk_key{"tiered-fault", "bucket", "disk/object.bin", "\"e1\"", 256 << 10, index}; }

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
    std::vector<std::byte> v(n);
    std::mt19937 g(seed);
    for (auto& b : v) b = static_cast<std::byte>(g());
    return v;
}

std::vector<std::byte> read_all(store_t& s, const chunk_key& k, std::int64_t n) {
    std::vector<std::byte> out;
    auto r = s.get_chunk({}, k, 0, n, [&](std::span<const std::byte> b) {
        out.insert(out.end(), b.begin(), b.end());
        return true;
    });
    if (!r) FAIL(r.error());
    return out;
}

/// Polls `done` for up to 10 s (promotions run on their own threads).
bool eventually(const std::function<bool()>& done) {
    for (int i = 0; i < 1000 && !done(); ++i) std::this_thread::sleep_for(10ms);
    return done();
}

} // namespace

TEST_CASE("tiered: a near disk failing reads (EIO) never fails a read or stat the far tier serves",
          "[tiered][posix][fault]") {
    test_support::temp_dir dir("cachestore-tiered-eio");
    memory_store far;
    auto near = posix_store::open(dir.path);
    REQUIRE(near);
    store_t s(std::move(*near), far);
    const auto bytes = pattern(256 << 10, 7);
    REQUIRE(s.put_chunk({}, key(0), 256 << 10, std::span<const std::byte>(bytes)));
    REQUIRE(s.near().stat({}, key(0))); // both tiers hold it
    {
        const disk_fault eio(dir.path, "open,pread,fstat", EIO);
        CHECK(read_all(s, key(0), 256 << 10) == bytes);
        auto st = s.stat({}, key(0));
        REQUIRE(st);
        CHECK(st->size == 256 << 10);
    }
    const auto snap = s.snapshot();
    CHECK(snap.get_hits[static_cast<int>(tier::far)] == 1);
    CHECK(snap.stat_hits[static_cast<int>(tier::far)] == 1);
    CHECK(snap.near_errors == 2);
    // The disk healthy again, the near tier answers.
    CHECK(read_all(s, key(0), 256 << 10) == bytes);
    CHECK(s.snapshot().get_hits[static_cast<int>(tier::near)] == 1);
}

TEST_CASE("tiered: a full near disk (ENOSPC) never fails a put the far tier took; its breaker then bypasses it",
          "[tiered][posix][fault]") {
    test_support::temp_dir dir("cachestore-tiered-enospc");
    memory_store far;
    auto near = posix_store::open(dir.path, {.fsync = false});
    REQUIRE(near);
    tiered_options o;
    o.near_breaker.failure_threshold = 4;
    store_t s(std::move(*near), far, o);
    std::vector<std::vector<std::byte>> data;
    for (unsigned i = 0; i < 6; ++i) data.push_back(pattern(256 << 10, 100 + i));
    {
        const disk_fault full(dir.path, "write", ENOSPC);
        for (int i = 0; i < 3; ++i) {
            auto put = s.put_chunk({}, key(i), 256 << 10, std::span<const std::byte>(data[static_cast<std::size_t>(i)]));
            INFO("put " << i);
            CHECK(put);
        }
        CHECK(s.snapshot().near_put_failures == 3);
        for (int i = 0; i < 3; ++i) CHECK(far.stat({}, key(i))); // the far tier has every chunk
        // Chunks only in the far tier: read exactly; their promotion fails (ENOSPC), the 4th failure opens the breaker.
        for (int i = 3; i < 6; ++i) REQUIRE(far.put_chunk({}, key(i), 256 << 10, std::span<const std::byte>(data[static_cast<std::size_t>(i)])));
        CHECK(read_all(s, key(3), 256 << 10) == data[3]);
        CHECK(eventually([&] { return s.snapshot().promotions_failed == 1; }));
        CHECK(s.snapshot().near_breaker.state == breaker_state::open);
        // Open: reads go straight to the far tier, exact, counted as bypasses; no promotion is tried.
        CHECK(read_all(s, key(4), 256 << 10) == data[4]);
        CHECK(read_all(s, key(0), 256 << 10) == data[0]);
        const auto snap = s.snapshot();
        CHECK(snap.bypassed >= 2);
        CHECK(snap.promotions_failed == 1);
        CHECK(snap.get_hits[static_cast<int>(tier::far)] == 3);
    }
    CHECK(s.near().stat({}, key(0)).error().code == errc::not_found); // nothing half-written in the near tier
}
