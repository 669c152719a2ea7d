// The process model, one table over every driver and layer: a store used
// before fork() (a pre-forking proxy, docs/s3.md), with other threads busy in
// it at the moment of the fork, must be usable and destructible in the child
// and go on working in the parent. Each row: memory, POSIX (bounded, with its
// sweeper thread) or S3 (against fault_server.py, with a credentials
// provider), bare or under metered, breaker, hedged, or all three. Under
// hedged the child must hedge on its own: a first attempt that stalls for
// 3 s is overtaken by the second attempt after the 20 ms delay.
//
// Every child runs under alarm(): a lock it inherited held, or a destructor
// that waits for a thread of the parent's, ends it with SIGALRM, which the
// parent reports as the row's failure. (Not run under the sanitizers: TSan
// does not support fork() in a process with threads, and GCC 12's ASan
// runtime lets a child inherit its allocator's lock held by another thread.)
#include "fault_harness.hpp"

#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "cachestore/async/waiting.hpp"
#include "cachestore/fill/engine.hpp"
#include "cachestore/layers.hpp"
#include "cachestore/posix_store.hpp"
#include "cachestore/s3/async.hpp"
#include "../temp_dir.hpp"
#include "../wait_child.hpp"

using namespace fault_harness;

namespace {

/// Beneath the layers: the first get_chunk after arm() (in this process)
/// stalls up to 3 s, ended early by its stop token (the hedged layer stops
/// the attempt it overtakes).
template <CacheStore S>
class stall_once {
public:
    explicit stall_once(S& inner) : inner_(inner) {}
    void arm() { armed_.store(true); }

    template <chunk_sink Sink>
    result<> get_chunk(const context& ctx, const chunk_key& k, std::int64_t off, std::int64_t n, Sink&& sink) {
        if (armed_.exchange(false)) {
            std::mutex m;
            std::condition_variable_any cv;
            std::unique_lock lock(m);
            const std::stop_token& tok = ctx.stop_token();
            cv.wait_for(lock, tok, 3s, [] { return false; });
            if (auto c = ctx.check("get_chunk"); !c) return c;
        }
        return inner_.get_chunk(ctx, k, off, n, std::forward<Sink>(sink));
    }
    template <chunk_source Src>
    result<> put_chunk(const context& ctx, const chunk_key& k, std::int64_t size, Src&& src) {
        return inner_.put_chunk(ctx, k, size, std::forward<Src>(src));
    }
    result<info> stat(const context& ctx, const chunk_key& k) { return inner_.stat(ctx, k); }
    result<> remove(const context& ctx, const chunk_key& k) { return inner_.remove(ctx, k); }
    result<> self_test(const context& ctx) { return inner_.self_test(ctx); }

private:
    S& inner_;
    std::atomic<bool> armed_{false};
};
static_assert(CacheStore<stall_once<memory_store>>);

hedge_options fixed_hedge() {
    hedge_options o;
    o.delay = 20ms;
    o.burst = 100;
    o.max_share = 1.0;
    return o;
}

/// One row's store: the layers over a stall_once over the driver.
template <class Stack>
struct row_store {
    Stack stack;
    template <class Stall>
    explicit row_store(Stall& s) : stack(make(s)) {}
    template <class Stall>
    static Stack make(Stall& s) {
        if constexpr (std::is_same_v<Stack, Stall&>) return s;
        else return Stack(s);
    }
};

/// put, get (byte-exact), stat, remove, get (not_found) of a chunk named by
/// `tag`; false with a message on the first surprise.
template <CacheStore S>
bool round_trip(S& s, const std::string& tag, std::string& why) {
    const chunk_key k{"fork", "b", "object-" + tag, "\"e\"", std::int64_t{64} * 1024, 0};
    const auto bytes = pattern(5000, std::hash<std::string>{}(tag));
    const auto ctx = context::with_timeout(10s);
    auto p = s.put_chunk(ctx, k, static_cast<std::int64_t>(bytes.size()), std::span<const std::byte>(bytes));
    if (!p && p.error().code != errc::commit_lost) return why = "put: " + p.error().to_string(), false;
    std::vector<std::byte> out(bytes.size());
    span_sink sink(out);
    if (auto g = s.get_chunk(ctx, k, 0, static_cast<std::int64_t>(out.size()), sink); !g)
        return why = "get: " + g.error().to_string(), false;
    if (out != bytes) return why = "get: wrong bytes", false;
    if (auto st = s.stat(ctx, k); !st || st->size != static_cast<std::int64_t>(bytes.size()))
        return why = "stat: " + (st ? std::string("wrong size") : st.error().to_string()), false;
    if (auto r = s.remove(ctx, k); !r) return why = "remove: " + r.error().to_string(), false;
    if (auto g = s.get_chunk(ctx, k, 0, 1, sink); g || g.error().code != errc::not_found)
        return why = "get after remove: " + (g ? std::string("found") : g.error().to_string()), false;
    return true;
}

using test_support::wait_child;

/// Exit codes a child uses to say what went wrong (it cannot use Catch2).
enum child_exit : int { ok = 0, round_trip_failed = 10, hedge_slow = 11, destroy_failed = 12, sockets_inherited = 13 };

/// Two threads calling `work(thread, iteration)` until end(), which joins
/// them and returns how many calls failed: the store busy at every fork.
class busy_threads {
public:
    template <class F>
    explicit busy_threads(F work) {
        threads_.reserve(2);
        for (int t = 0; t < 2; ++t)
            threads_.emplace_back([this, work, t] {
                for (int i = 0; !stop_.load(); ++i)
                    if (!work(t, i)) ++failures_;
            });
    }
    busy_threads(const busy_threads&) = delete;
    busy_threads& operator=(const busy_threads&) = delete;
    ~busy_threads() { (void)end(); }
    int end() {
        stop_ = true;
        for (auto& t : threads_) t.join();
        threads_.clear();
        return failures_.load();
    }

private:
    std::atomic<bool> stop_{false};
    std::atomic<int> failures_{0};
    std::vector<std::thread> threads_;
};

/// The inodes of the TCP sockets this process has open: "socket:[N]" in
/// /proc/self/fd that /proc/self/net/tcp{,6} lists. (Not the AF_UNIX pair
/// curl_multi_init makes for curl_multi_wakeup: libcurl 7.88 opens it
/// without FD_CLOEXEC and offers no callback to record it.)
std::set<std::string> open_tcp_socket_inodes() {
    std::set<std::string> tcp;
    for (const char* table : {"/proc/self/net/tcp", "/proc/self/net/tcp6"}) {
        std::ifstream in(table);
        std::string line;
        std::getline(in, line); // the header
        while (std::getline(in, line)) {
            std::istringstream f(line);
            std::string col;
            for (int i = 0; i < 10 && f >> col; ++i) {
            }
            if (!col.empty()) tcp.insert("socket:[" + col + "]");
        }
    }
    std::set<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        const auto target = std::filesystem::read_symlink(e.path(), ec).string();
        if (!ec && tcp.contains(target)) out.insert(target);
    }
    return out;
}

/// In a child: a round trip on `s` (the child's first call), then none of
/// the TCP sockets the child inherited may be open. Returns the exit status.
template <CacheStore S>
int first_call_closes_inherited_sockets(S& s, const std::string& tag) {
    const auto inherited = open_tcp_socket_inodes();
    std::string why;
    if (!round_trip(s, tag, why)) {
        std::fprintf(stderr, "child: %s\n", why.c_str());
        return child_exit::round_trip_failed;
    }
    int kept = 0;
    for (const auto& ino : open_tcp_socket_inodes()) kept += inherited.contains(ino) ? 1 : 0;
    if (inherited.empty() || kept != 0) {
        std::fprintf(stderr, "child: %d of the %zu TCP sockets it inherited still open\n", kept, inherited.size());
        return child_exit::sockets_inherited;
    }
    return child_exit::ok;
}

/// Forks three children, one after another; each runs `child(f)` under
/// alarm(15) and exits with what it returns (destroy_failed if it throws).
/// Checks that each ended with 0 within 30 s.
template <class F>
void fork_children(F child) {
    for (int f = 0; f < 3; ++f) {
        std::fflush(nullptr);
        const pid_t pid = ::fork();
        if (pid == 0) {
            ::alarm(15);
            int rc = child_exit::destroy_failed;
            try {
                rc = child(f);
            } catch (...) {
            }
            ::_exit(rc);
        }
        REQUIRE(pid > 0);
        const std::string how = wait_child(pid, 30s);
        INFO("fork " << f << ": the child " << how);
        CHECK(how.empty());
    }
}

/// The row: `Stack` over stall_once over `driver`.
template <class Stack, class Driver>
void fork_row(Driver& driver, bool hedges) {
    auto stall = std::make_unique<stall_once<Driver>>(driver);
    auto st = std::make_unique<row_store<Stack>>(*stall);
    auto& s = st->stack;
    std::string why;
    REQUIRE(round_trip(s, "parent-before", why));
    INFO(why);

    // Two threads keep the store busy (its locks taken and released, its
    // pool and scheduler in use) while the main thread forks.
    busy_threads busy([&s](int t, int i) {
        std::string w;
        return round_trip(s, "busy-" + std::to_string(t) + "-" + std::to_string(i % 4), w);
    });
    std::this_thread::sleep_for(20ms);

    fork_children([&](int) {
        int rc = child_exit::ok;
        std::string w;
        if (!round_trip(s, "child", w)) {
            std::fprintf(stderr, "child: %s\n", w.c_str());
            rc = child_exit::round_trip_failed;
        }
        if (rc == 0 && hedges) {
            // Stored first, then read with a stalled first attempt.
            const chunk_key k{"fork", "b", "hedge-child", "\"e\"", std::int64_t{64} * 1024, 0};
            const auto bytes = pattern(1000, 7);
            (void)s.put_chunk(context::with_timeout(10s), k, 1000, std::span<const std::byte>(bytes));
            stall->arm();
            std::vector<std::byte> out(1000);
            span_sink sink(out);
            const auto t0 = sclock::now();
            auto g = s.get_chunk(context::with_timeout(10s), k, 0, 1000, sink);
            if (!g || out != bytes || ms_since(t0) > 1500) {
                std::fprintf(stderr, "child: hedged read took %.0f ms (%s)\n", ms_since(t0),
                             g ? "ok" : g.error().to_string().c_str());
                rc = child_exit::hedge_slow;
            }
        }
        st.reset(); // the child's own threads joined; the parent's left alone
        stall.reset();
        std::destroy_at(&driver); // the child never touches it again: _exit follows
        return rc;
    });
    CHECK(busy.end() == 0);
    CHECK(round_trip(s, "parent-after", why));
    st.reset();
    stall.reset();
}

/// Every layer stack over one driver.
template <class Driver>
void every_stack(Driver& d) {
    using stall_t = stall_once<Driver>;
    SECTION("bare") { fork_row<stall_t&>(d, false); }
    SECTION("metered") { fork_row<metered<stall_t&>>(d, false); }
    SECTION("breaker") { fork_row<breaker<stall_t&>>(d, false); }
    SECTION("hedged") {
        struct h : hedged<stall_t&> {
            explicit h(stall_t& s) : hedged<stall_t&>(s, fixed_hedge()) {}
        };
        fork_row<h>(d, true);
    }
    SECTION("metered<breaker<hedged>>") {
        struct stack : metered<breaker<hedged<stall_t&>>> {
            explicit stack(stall_t& s)
                : metered<breaker<hedged<stall_t&>>>(std::in_place, metered_options{}, std::in_place, breaker_options{},
                                                     std::in_place, fixed_hedge(), s) {}
        };
        fork_row<stack>(d, true);
    }
}

} // namespace

TEST_CASE("process model: memory_store and every layer across fork() with threads busy", "[fork][process]") {
    memory_store m;
    every_stack(m);
}

TEST_CASE("process model: a bounded posix_store (sweeper thread) and every layer across fork()", "[fork][process]") {
    test_support::temp_dir dir("fork-posix");
    posix_options o;
    o.max_bytes = 4 * MiB;
    o.sweep_interval = 5ms;
    auto p = posix_store::open(dir.path, o);
    REQUIRE(p.has_value());
    every_stack(*p);
}

TEST_CASE("process model: an S3 store (pool, TLS share, signing keys, credentials provider, RNG) and every layer "
          "across fork()",
          "[fork][process]") {
    control("POST", "/_fault/reset");
    s3::config cfg = base_config();
    std::atomic<int> fetches{0};
    const s3::credentials fixed = cfg.creds;
    cfg.credentials_source = s3::credentials_provider::from_function([&fetches, fixed]() -> result<s3::credentials> {
        ++fetches; // always due (refresh_ahead beyond the expiry): a fetch is often in progress at a fork
        std::this_thread::sleep_for(1ms);
        s3::credentials c = fixed;
        c.expiration = std::chrono::system_clock::now() + 1h;
        return c;
    },
                                                                   s3::credentials_refresh{std::chrono::seconds(7200), 1ms});
    auto s = s3::store::create(cfg);
    REQUIRE(s.has_value());
    every_stack(*s);
    CHECK(fetches.load() > 0);
}

namespace {

/// An origin of `size` bytes (pattern(size, 11)), 20 ms to answer.
struct slow_origin {
    std::vector<std::byte> bytes;
    result<std::size_t> get(const context& ctx, const origin_object&, std::int64_t offset, std::span<std::byte> out) {
        std::this_thread::sleep_for(20ms);
        if (auto c = ctx.check("origin GET"); !c) return std::unexpected(std::move(c.error()));
        const auto n = std::min<std::size_t>(out.size(), bytes.size() - static_cast<std::size_t>(offset));
        std::memcpy(out.data(), bytes.data() + offset, n);
        return n;
    }
};

/// A cold read of a new object through the engine: every byte right.
template <class E>
bool engine_round_trip(E& e, const std::vector<std::byte>& bytes, const std::string& name, std::string& why) {
    const origin_object obj{"fork", "b", name, "\"e\"", static_cast<std::int64_t>(bytes.size()), 4096};
    std::vector<std::byte> out(bytes.size());
    auto r = e.read(context::with_timeout(10s), obj, 0, out);
    if (!r) return why = name + ": " + r.error().to_string(), false;
    if (out != bytes) return why = name + ": wrong bytes", false;
    return true;
}

} // namespace

TEST_CASE("process model: the read-through engine (fill threads, flights) across fork() with readers busy",
          "[fork][process]") {
    memory_store m;
    slow_origin o{pattern(3 * 4096 + 100, 11)};
    auto e = std::make_unique<fill::engine<memory_store, slow_origin>>(m, o);
    std::string why;
    REQUIRE(engine_round_trip(*e, o.bytes, "parent-before", why));
    busy_threads busy([&](int t, int i) {
        std::string w;
        return engine_round_trip(*e, o.bytes, "busy-" + std::to_string(t) + "-" + std::to_string(i), w);
    });
    std::this_thread::sleep_for(30ms); // fills queued and running at the forks
    fork_children([&](int f) {
        std::string w;
        const auto t0 = sclock::now();
        int rc = child_exit::ok;
        if (!engine_round_trip(*e, o.bytes, "child-" + std::to_string(f), w) || ms_since(t0) > 5000) {
            std::fprintf(stderr, "child: %s (%.0f ms)\n", w.c_str(), ms_since(t0));
            rc = child_exit::round_trip_failed;
        }
        e.reset(); // the child's own fill threads joined; the parent's left alone
        return rc;
    });
    CHECK(busy.end() == 0);
    CHECK(engine_round_trip(*e, o.bytes, "parent-after", why));
    e.reset();
}

namespace {

/// An async store on the fault server (its state reset first), 4 connections.
std::unique_ptr<s3::async_store> fault_async_store() {
    control("POST", "/_fault/reset");
    auto made = s3::async_store::create(base_config(), {.max_connections = 4});
    REQUIRE(made.has_value());
    return std::make_unique<s3::async_store>(std::move(*made));
}

} // namespace

TEST_CASE("process model: an S3 async store (loop thread, multi handle, put pool) across fork() with operations "
          "in flight",
          "[fork][process][async]") {
    auto a = fault_async_store();
    waiting<s3::async_store&> w(*a);
    std::string why;
    REQUIRE(round_trip(w, "async-parent-before", why));
    // Reads, stats and uploads in flight on the parent's loop at each fork.
    busy_threads busy([&w](int t, int i) {
        std::string x;
        return round_trip(w, "async-busy-" + std::to_string(t) + "-" + std::to_string(i % 4), x);
    });
    std::this_thread::sleep_for(20ms);
    fork_children([&](int) {
        // The child's first operation makes the child's own engine; the
        // parent's operations are never completed here.
        std::string x;
        const int rc = round_trip(w, "async-child", x) ? child_exit::ok : child_exit::round_trip_failed;
        if (rc != 0) std::fprintf(stderr, "child: %s\n", x.c_str());
        a.reset(); // the child's loop thread and put pool joined; the parent's left alone
        return rc;
    });
    CHECK(busy.end() == 0);
    CHECK(round_trip(w, "async-parent-after", why));
    INFO(why);
    a.reset();
}

TEST_CASE("process model: a child closes its copies of an S3 async store's connections", "[fork][process][async]") {
    auto a = fault_async_store();
    waiting<s3::async_store&> w(*a);
    std::string why;
    REQUIRE(round_trip(w, "async-sockets-parent", why)); // connections kept alive in the engine and the put pool
    // All made with SOCK_CLOEXEC: a program the proxy exec()s inherits none.
    int tcp = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        if (!open_tcp_socket_inodes().contains(std::filesystem::read_symlink(e.path(), ec).string())) continue;
        ++tcp;
        const int fd = std::stoi(e.path().filename().string());
        CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    }
    CHECK(tcp >= 2);
    fork_children([&](int) {
        // Nothing in flight at the fork. The child's first operation closes
        // its copies of the engine's connections (the blocking pool behind
        // the uploads replaces its own with unconnected sockets): none of
        // the TCP sockets it inherited is open after it.
        const int rc = first_call_closes_inherited_sockets(w, "async-sockets-child");
        a.reset();
        return rc;
    });
    CHECK(round_trip(w, "async-sockets-parent-after", why)); // the parent's connections unharmed
    INFO(why);
    a.reset();
}

TEST_CASE("process model: a child closes its copies of the connections an S3 store's threads held at the fork",
          "[fork][process]") {
    control("POST", "/_fault/reset");
    auto made = s3::store::create(base_config());
    REQUIRE(made.has_value());
    auto& s = *made;
    const chunk_key k{"fork", "b", "object-held", "\"e\"", std::int64_t{64} * 1024, 0};
    const auto bytes = pattern(std::size_t{64} * 1024, 7);
    REQUIRE(s.put_chunk(context::with_timeout(10s), k, static_cast<std::int64_t>(bytes.size()),
                        std::span<const std::byte>(bytes))
                .has_value());
    // A read whose sink waits: its connection is checked out of the pool at
    // every fork, by a thread the child does not have.
    std::atomic<bool> entered{false}, release{false};
    std::thread reader([&] {
        std::size_t got = 0;
        auto sink = [&](std::span<const std::byte> b) {
            entered = true;
            while (!release.load()) std::this_thread::sleep_for(1ms);
            got += b.size();
            return true;
        };
        CHECK(s.get_chunk(context::with_timeout(30s), k, 0, static_cast<std::int64_t>(bytes.size()), sink).has_value());
        CHECK(got == bytes.size());
    });
    while (!entered.load()) std::this_thread::sleep_for(1ms);
    fork_children([&](int) { return first_call_closes_inherited_sockets(s, "held-child"); });
    release = true;
    reader.join(); // the parent's read ends whole: the child closed only its copy
    std::string why;
    CHECK(round_trip(s, "held-parent-after", why));
    INFO(why);
}
