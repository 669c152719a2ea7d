// The bounded posix_store under load on a shared root: 2 processes x 8
// threads read random chunks and fill the misses until they have written 10x
// the bound, each process with its own store and background sweeper. The
// parent measures the root all along. Asserted: no reader ever gets a wrong
// byte; no error but the documented ones (not_found on a miss, commit_lost on
// a race, transient when the store is full); and the usage never exceeds the
// bound by more than what both processes wrote in one sweep interval (plus
// the longest sweep and the measurement's own walk). The figures are printed
// for docs/reliability.md.
#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "cachestore/posix_store.hpp"

using namespace cachestore;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t bound = std::int64_t{1} << 20; // 1 MiB
constexpr std::int64_t write_goal = 10 * bound;
constexpr int processes = 2;
constexpr int threads = 8;
constexpr int keys = 640; // about 6x the bound: most reads miss, every fill must evict
constexpr auto interval = 50ms;
constexpr auto time_limit = 90s;

/// What the processes share (an anonymous shared mapping made before fork).
struct shared_state {
    std::atomic<std::int64_t> written{0};    ///< bytes committed by every process
    std::atomic<std::int64_t> reads_ok{0};
    std::atomic<std::int64_t> misses{0};
    std::atomic<std::int64_t> lost{0};       ///< commit_lost
    std::atomic<std::int64_t> full{0};       ///< transient: the store is full
    std::atomic<std::int64_t> wrong{0};      ///< reads that returned a wrong byte
    std::atomic<std::int64_t> bad{0};        ///< any other error
    std::atomic<std::int64_t> max_sweep_ns{0};
    std::atomic<std::int64_t> sweeps{0};
    std::atomic<int> error_taken{0};
    char first_error[512] = {};
};

chunk_key key_of(int i) { return chunk_key{"stress", "bucket", "obj/" + std::to_string(i / 4), "\"e\"", 32768, i % 4}; }

std::int64_t size_of(int i) { return 4096 + (static_cast<std::int64_t>(i) * 7919) % 12289; }

std::byte byte_at(int i, std::int64_t pos) {
    std::uint64_t x = (static_cast<std::uint64_t>(i) << 32) ^ static_cast<std::uint64_t>(pos / 8);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<std::byte>((x ^ (x >> 31)) >> (8 * (pos % 8)));
}

void note_error(shared_state& sh, const std::string& what) {
    sh.bad.fetch_add(1);
    if (sh.error_taken.exchange(1) == 0) std::snprintf(sh.first_error, sizeof sh.first_error, "%s", what.c_str());
}

/// One process: 8 threads over its own bounded store until the goal is written.
int child(const std::string& root, shared_state& sh, unsigned seed) {
    auto opened = posix_store::open(root, {.fsync = false,
                                           .max_bytes = bound,
                                           .recency_granularity = 0ms,
                                           .sweep_interval = std::chrono::duration_cast<std::chrono::milliseconds>(interval)});
    if (!opened) {
        note_error(sh, "open: " + opened.error().to_string());
        return 1;
    }
    posix_store& s = *opened;
    const auto stop_at = std::chrono::steady_clock::now() + time_limit;
    std::atomic<bool> done{false};
    std::thread watch([&] { // the longest sweep this process ran
        std::int64_t seen = -1;
        while (!done.load()) {
            if (auto r = s.last_sweep()) {
                const auto t = std::chrono::duration_cast<std::chrono::nanoseconds>(r->total_time).count();
                std::int64_t m = sh.max_sweep_ns.load();
                while (t > m && !sh.max_sweep_ns.compare_exchange_weak(m, t)) {
                }
                if (t != seen) sh.sweeps.fetch_add(1);
                seen = t;
            }
            std::this_thread::sleep_for(2ms);
        }
    });
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            std::mt19937 g(seed * 100 + static_cast<unsigned>(t));
            std::uniform_int_distribution<int> pick(0, keys - 1);
            std::vector<std::byte> buf(32768);
            while (sh.written.load() < write_goal && std::chrono::steady_clock::now() < stop_at) {
                const int i = pick(g);
                const auto k = key_of(i);
                const std::int64_t n = size_of(i);
                auto r = s.get_chunk_into({}, k, 0, std::span<std::byte>(buf.data(), static_cast<std::size_t>(n)));
                if (r) {
                    for (std::int64_t p = 0; p < n; ++p)
                        if (buf[static_cast<std::size_t>(p)] != byte_at(i, p)) {
                            sh.wrong.fetch_add(1);
                            break;
                        }
                    sh.reads_ok.fetch_add(1);
                    continue;
                }
                if (r.error().code != errc::not_found) {
                    note_error(sh, "get: " + r.error().to_string());
                    continue;
                }
                sh.misses.fetch_add(1);
                for (std::int64_t p = 0; p < n; ++p) buf[static_cast<std::size_t>(p)] = byte_at(i, p);
                auto w = s.put_chunk({}, k, n, std::span<const std::byte>(buf.data(), static_cast<std::size_t>(n)));
                if (w) sh.written.fetch_add(n);
                else if (w.error().code == errc::commit_lost) sh.lost.fetch_add(1);
                else if (w.error().code == errc::transient && w.error().message.find("the store is full") != std::string::npos)
                    sh.full.fetch_add(1);
                else note_error(sh, "put: " + w.error().to_string());
            }
        });
    for (auto& th : pool) th.join();
    done = true;
    watch.join();
    return 0;
}

struct sample {
    std::chrono::steady_clock::time_point start;
    std::int64_t written_before; ///< written when the walk started
    std::int64_t written_after;  ///< written when it ended
    std::int64_t usage;
};

} // namespace

TEST_CASE("stress: 2 processes x 8 threads fill 10x the bound of a shared root", "[posix][bounds][stress]") {
    std::string tmpl = (fs::temp_directory_path() / "cachestore-stress-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    const std::string root = tmpl;
    void* mem = ::mmap(nullptr, sizeof(shared_state), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(mem != MAP_FAILED);
    auto* sh = new (mem) shared_state();

    std::vector<pid_t> kids;
    for (int p = 0; p < processes; ++p) {
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) ::_exit(child(root, *sh, static_cast<unsigned>(p + 1)));
        kids.push_back(pid);
    }
    // Measure the root until both are done.
    auto observer = posix_store::open(root);
    REQUIRE(observer.has_value());
    std::vector<sample> samples;
    const auto t0 = std::chrono::steady_clock::now();
    std::int64_t max_walk_ns = 0;
    for (int live = processes; live > 0;) {
        sample smp{std::chrono::steady_clock::now(), sh->written.load(), 0, 0};
        auto m = observer->measure();
        REQUIRE(m.has_value());
        smp.written_after = sh->written.load();
        smp.usage = m->bytes;
        max_walk_ns = std::max<std::int64_t>(max_walk_ns, (std::chrono::steady_clock::now() - smp.start).count());
        samples.push_back(smp);
        std::this_thread::sleep_for(3ms);
        for (auto& pid : kids) {
            int status = 0;
            if (pid > 0 && ::waitpid(pid, &status, WNOHANG) == pid) {
                CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
                pid = -1;
                --live;
            }
        }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // The allowance at each sample: what everyone wrote from one window
    // (interval + longest sweep + this walk) before the walk to its end.
    const auto window = std::chrono::nanoseconds(interval) + std::chrono::nanoseconds(sh->max_sweep_ns.load()) +
                        std::chrono::nanoseconds(max_walk_ns);
    std::int64_t max_over = 0, max_allowed_at_max = 0, worst_excess = std::numeric_limits<std::int64_t>::min();
    std::int64_t max_window_writes = 0;
    for (std::size_t i = 0, j = 0; i < samples.size(); ++i) {
        while (j + 1 < i && samples[j + 1].start <= samples[i].start - window) ++j;
        const std::int64_t base = samples[j].start <= samples[i].start - window ? samples[j].written_before : 0;
        const std::int64_t allowed = samples[i].written_after - base;
        max_window_writes = std::max(max_window_writes, allowed);
        const std::int64_t over = samples[i].usage - bound;
        if (over > max_over) {
            max_over = over;
            max_allowed_at_max = allowed;
        }
        worst_excess = std::max(worst_excess, over - allowed);
    }
    std::printf("stress: %d processes x %d threads, bound %lld bytes, wrote %lld bytes (%.1fx) in %.2f s; "
                "reads ok %lld, misses %lld, commit_lost %lld, store full %lld; %zu usage samples\n",
                processes, threads, static_cast<long long>(bound), static_cast<long long>(sh->written.load()),
                static_cast<double>(sh->written.load()) / static_cast<double>(bound), secs,
                static_cast<long long>(sh->reads_ok.load()), static_cast<long long>(sh->misses.load()),
                static_cast<long long>(sh->lost.load()), static_cast<long long>(sh->full.load()), samples.size());
    std::printf("stress: max usage over the bound %lld bytes (%.1f %% of it); writes in that window %lld bytes; "
                "window %.1f ms (interval %lld ms + longest sweep %.1f ms + walk %.1f ms); max writes in any window "
                "%lld bytes\n",
                static_cast<long long>(max_over), 100.0 * static_cast<double>(max_over) / static_cast<double>(bound),
                static_cast<long long>(max_allowed_at_max), std::chrono::duration<double, std::milli>(window).count(),
                static_cast<long long>(std::chrono::milliseconds(interval).count()),
                static_cast<double>(sh->max_sweep_ns.load()) / 1e6, static_cast<double>(max_walk_ns) / 1e6,
                static_cast<long long>(max_window_writes));
    INFO("first unexpected error: " << sh->first_error);
    CHECK(sh->bad.load() == 0);
    CHECK(sh->wrong.load() == 0);
    CHECK(sh->written.load() >= write_goal);
    CHECK(worst_excess <= 0);
    CHECK(sh->reads_ok.load() > 0);

    sh->~shared_state();
    ::munmap(mem, sizeof(shared_state));
    std::error_code ec;
    fs::remove_all(root, ec);
}
