// cachestore::tiered<Near, Far> (issue 20): a far hit is served and promoted
// into the near tier off the caller's path (whole chunks, partial reads
// included, once per chunk however many readers race); puts commit to the far
// tier first, then the near tier; a failing near tier never fails a read or a
// put the far tier can serve, and one that keeps failing is bypassed and
// probed again later; a removal leaves neither tier holding the chunk, even
// with its promotion queued or running; destruction and fork() end or
// restart the promotion threads cleanly; the counters reach the Prometheus
// text. The tiers are memory and POSIX stores, and test_store (below): a
// memory store that fails, logs or waits on demand.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <latch>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "../temp_dir.hpp"
#include "cachestore/cachestore.hpp"
#include "prom_check.hpp"
#include "scripted_store.hpp"
#include "../wait_child.hpp"

using namespace cachestore;
using namespace std::chrono_literals;
using sclock = std::chrono::steady_clock;

namespace {

constexpr std::int64_t chunk = 4096;
constexpr auto near_i = static_cast<std::size_t>(tier::near);
constexpr auto far_i = static_cast<std::size_t>(tier::far);
constexpr auto none_i = static_cast<std::size_t>(tier::none);

chunk_key key_of(const std::string& object, std::int64_t chunk_size = chunk) {
    return chunk_key{"dc1", "bucket", object, "\"e\"", chunk_size, 0};
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i)
        v[i] = static_cast<std::byte>((i * 131 + std::size_t{seed} * 7 + i / 251) & 0xffU);
    return v;
}

std::vector<std::byte> slice(const std::vector<std::byte>& v, std::int64_t off, std::int64_t n) {
    return {v.begin() + off, v.begin() + off + n};
}

/// Polls `done` every millisecond for up to 5 s; its last answer.
template <class Pred>
bool eventually(Pred done) {
    const auto until = sclock::now() + 5s;
    while (!done()) {
        if (sclock::now() > until) return done();
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

/// What a get_chunk delivered: its answer, the bytes in order, and in how many spans.
struct read_result {
    result<> r;
    std::vector<std::byte> bytes;
    int spans = 0;
};

template <class S>
read_result read(S& s, const chunk_key& k, std::int64_t off, std::int64_t n, const context& ctx = {}) {
    read_result out;
    out.r = s.get_chunk(ctx, k, off, n, [&out](std::span<const std::byte> b) {
        out.bytes.insert(out.bytes.end(), b.begin(), b.end());
        ++out.spans;
        return true;
    });
    return out;
}

/// The whole chunk as `s` holds it; empty when it does not.
template <class S>
std::vector<std::byte> contents(S& s, const chunk_key& k) {
    auto st = s.stat({}, k);
    if (!st) return {};
    auto r = read(s, k, 0, st->size);
    return r.r ? r.bytes : std::vector<std::byte>{};
}

template <class S>
bool absent(S& s, const chunk_key& k) {
    auto st = s.stat({}, k);
    return !st && st.error().code == errc::not_found;
}

template <class S>
void store(S& s, const chunk_key& k, const std::vector<std::byte>& bytes) {
    REQUIRE(s.put_chunk({}, k, static_cast<std::int64_t>(bytes.size()), std::span<const std::byte>(bytes)));
}

/// Every promotion planned so far has ended (done, skipped or failed), none is reserved.
template <class T>
bool promotions_settled(const T& t, std::uint64_t planned) {
    const auto s = t.snapshot();
    return s.promotions_done + s.promotions_skipped + s.promotions_failed == planned && s.promotion_queue_bytes == 0;
}

/// Calls into test stores, in the order they happened ("far put", "near put done", ...).
class call_log {
public:
    void add(std::string e) {
        const std::lock_guard lk(mu_);
        entries_.push_back(std::move(e));
    }
    [[nodiscard]] std::vector<std::string> entries() const {
        const std::lock_guard lk(mu_);
        return entries_;
    }

private:
    mutable std::mutex mu_;
    std::vector<std::string> entries_;
};

/// A door that calls wait at while it is closed (only calls for `only`'s
/// object, when given), until it opens or their context stops or expires.
class gate {
public:
    void close(std::string only = {}) {
        const std::lock_guard lk(mu_);
        open_ = false;
        only_ = std::move(only);
    }
    void open() {
        {
            const std::lock_guard lk(mu_);
            open_ = true;
        }
        cv_.notify_all();
    }
    /// false when the context ended the wait.
    bool pass(const context& ctx, const chunk_key& k) {
        std::unique_lock lk(mu_);
        if (open_ || (!only_.empty() && k.object_key != only_)) return true;
        ++waiting_;
        const bool passed = ctx.has_deadline()
                                ? cv_.wait_until(lk, ctx.stop_token(), ctx.deadline(), [this] { return open_; })
                                : cv_.wait(lk, ctx.stop_token(), [this] { return open_; });
        --waiting_;
        return passed;
    }
    [[nodiscard]] int waiting() const {
        const std::lock_guard lk(mu_);
        return waiting_;
    }

private:
    mutable std::mutex mu_;
    std::condition_variable_any cv_;
    bool open_ = true;
    std::string only_;
    int waiting_ = 0;
};

/// A memory_store behind switches: each operation fails with a chosen code
/// on demand, get_chunk can fail after delivering a prefix, put_chunk waits
/// at a gate while it is closed (so does get_chunk, after delivering its
/// bytes), every call is counted and, with a log, logged.
class test_store {
public:
    static constexpr errc ok{}; ///< no value of errc: the call goes through

    explicit test_store(std::string name = {}, call_log* log = nullptr) : name_(std::move(name)), log_(log) {}

    std::atomic<errc> get_fails{ok}, put_fails{ok}, stat_fails{ok}, remove_fails{ok}, self_test_fails{ok};
    std::atomic<std::int64_t> get_fails_after{-1}; ///< >= 0: get_chunk delivers this many bytes, then io_error
    std::atomic<int> gets{0}, puts{0}, stats{0}, removes{0}, puts_stopped{0};
    std::atomic<std::int64_t> last_get_off{-1}, last_get_n{-1};
    gate put_gate;
    gate get_gate;

    memory_store& memory() { return mem_; }

    template <chunk_sink Sink>
    result<> get_chunk(const context& ctx, const chunk_key& k, std::int64_t off, std::int64_t n, Sink&& sink) {
        ++gets;
        last_get_off = off;
        last_get_n = n;
        note("get");
        if (const errc e = get_fails.load(); e != ok) return fail(e, "get_chunk", {}, "test failure");
        const std::int64_t after = get_fails_after.load();
        if (after >= 0) { // a disk failing mid-read: the first bytes, then EIO
            if (after > 0) {
                if (auto r = mem_.get_chunk(ctx, k, off, std::min(after, n), sink); !r) return r;
            }
            return fail(errc::io_error, "get_chunk", {}, "test failure after " + std::to_string(after) + " bytes");
        }
        auto r = mem_.get_chunk(ctx, k, off, n, sink);
        if (!get_gate.pass(ctx, k)) return fail(errc::cancelled, "get_chunk", {}, "stopped at the gate");
        return r;
    }

    template <chunk_source Src>
    result<> put_chunk(const context& ctx, const chunk_key& k, std::int64_t size, Src&& src) {
        ++puts;
        note("put");
        if (!put_gate.pass(ctx, k)) {
            ++puts_stopped;
            return fail(errc::cancelled, "put_chunk", {}, "stopped at the gate");
        }
        if (const errc e = put_fails.load(); e != ok) return fail(e, "put_chunk", {}, "test failure");
        auto r = mem_.put_chunk(ctx, k, size, std::forward<Src>(src));
        note("put done");
        return r;
    }

    result<info> stat(const context& ctx, const chunk_key& k) {
        ++stats;
        note("stat");
        if (const errc e = stat_fails.load(); e != ok) return fail(e, "stat", {}, "test failure");
        return mem_.stat(ctx, k);
    }

    result<> remove(const context& ctx, const chunk_key& k) {
        ++removes;
        note("remove");
        if (const errc e = remove_fails.load(); e != ok) return fail(e, "remove", {}, "test failure");
        return mem_.remove(ctx, k);
    }

    result<> self_test(const context& ctx) {
        if (const errc e = self_test_fails.load(); e != ok) return fail(e, "self_test", {}, "test failure");
        return mem_.self_test(ctx);
    }

private:
    void note(const char* what) {
        if (log_ != nullptr) log_->add(name_ + " " + what);
    }

    std::string name_;
    call_log* log_;
    memory_store mem_;
};
static_assert(CacheStore<test_store>);

using mem_tiers = tiered<memory_store&, memory_store&>;
using test_tiers = tiered<test_store&, test_store&>;

/// Forwards to `S`, keeping the message of every failed put_chunk (commit_lost aside).
template <CacheStore S>
class observed {
public:
    explicit observed(S& inner) : inner_(inner) {}

    [[nodiscard]] std::vector<std::string> put_failures() const {
        const std::lock_guard lk(mu_);
        return failures_;
    }

    template <chunk_sink Sink>
    result<> get_chunk(const context& ctx, const chunk_key& k, std::int64_t off, std::int64_t n, Sink&& sink) {
        return inner_.get_chunk(ctx, k, off, n, std::forward<Sink>(sink));
    }
    result<> get_chunk_into(const context& ctx, const chunk_key& k, std::int64_t off, std::span<std::byte> out) {
        return cachestore::get_chunk(inner_, ctx, k, off, out);
    }
    template <chunk_source Src>
    result<> put_chunk(const context& ctx, const chunk_key& k, std::int64_t size, Src&& src) {
        auto r = inner_.put_chunk(ctx, k, size, std::forward<Src>(src));
        if (!r && r.error().code != errc::commit_lost) {
            const std::lock_guard lk(mu_);
            failures_.push_back(r.error().to_string());
        }
        return r;
    }
    result<info> stat(const context& ctx, const chunk_key& k) { return inner_.stat(ctx, k); }
    result<> remove(const context& ctx, const chunk_key& k) { return inner_.remove(ctx, k); }
    result<> self_test(const context& ctx) { return inner_.self_test(ctx); }

private:
    S& inner_;
    mutable std::mutex mu_;
    std::vector<std::string> failures_;
};

/// A steady clock that moves only when told (the near breaker's).
class manual_clock {
public:
    [[nodiscard]] sclock::time_point now() const { return sclock::time_point(sclock::duration(ticks_.load())); }
    void advance(sclock::duration d) { ticks_ += d.count(); }

private:
    std::atomic<sclock::rep> ticks_{std::chrono::duration_cast<sclock::duration>(std::chrono::hours(1000)).count()};
};

using test_support::wait_child;

} // namespace

TEST_CASE("tiered: a far hit is served, promoted into the near tier, and the next read is a near hit",
          "[layers][tiered]") {
    memory_store near, far;
    mem_tiers t(near, far);
    const auto k = key_of("promote");
    const auto data = pattern(chunk, 1);
    store(far, k, data);

    auto first = read(t, k, 0, chunk);
    REQUIRE(first.r);
    CHECK(first.bytes == data);
    auto s = t.snapshot();
    CHECK(s.get_hits[far_i] == 1);
    CHECK(s.get_hits[near_i] == 0);

    REQUIRE(eventually([&] { return t.snapshot().promotions_done == 1; }));
    auto st = t.near().stat({}, k);
    REQUIRE(st);
    CHECK(st->size == chunk);
    CHECK(contents(near, k) == data);

    auto second = read(t, k, 0, chunk);
    REQUIRE(second.r);
    CHECK(second.bytes == data);
    s = t.snapshot();
    CHECK(s.get_hits[near_i] == 1);
    CHECK(s.get_hits[far_i] == 1);
    CHECK(s.promotion_bytes == static_cast<std::uint64_t>(chunk));
    CHECK(s.promotions_skipped == 0);
    CHECK(s.promotions_failed == 0);
    CHECK(s.near_errors == 0);
    CHECK(eventually([&] { return t.snapshot().promotion_queue_bytes == 0; }));

    // stat: near, then far; a miss in both is counted as neither.
    const auto only_far = key_of("only-far");
    store(far, only_far, pattern(100, 2));
    auto near_stat = t.stat({}, k);
    REQUIRE(near_stat);
    CHECK(near_stat->size == chunk);
    auto far_stat = t.stat({}, only_far);
    REQUIRE(far_stat);
    CHECK(far_stat->size == 100);
    CHECK(t.stat({}, key_of("absent")).error().code == errc::not_found);
    auto miss = read(t, key_of("absent"), 0, 10);
    REQUIRE_FALSE(miss.r);
    CHECK(miss.r.error().code == errc::not_found);
    s = t.snapshot();
    CHECK(s.stat_hits[near_i] == 1);
    CHECK(s.stat_hits[far_i] == 1);
    CHECK(s.stat_hits[none_i] == 1);
    CHECK(s.get_hits[none_i] == 1);
    CHECK(absent(near, only_far)); // a stat never promotes
}

TEST_CASE("tiered: partial reads promote the whole chunk; a short last chunk promotes its size", "[layers][tiered]") {
    memory_store near, far;
    const auto data = pattern(chunk, 3);

    SECTION("a range not starting at 0") {
        mem_tiers t(near, far);
        const auto k = key_of("middle");
        store(far, k, data);
        auto r = read(t, k, 1000, 500);
        REQUIRE(r.r);
        CHECK(r.bytes == slice(data, 1000, 500));
        REQUIRE(eventually([&] { return promotions_settled(t, 1); }));
        CHECK(t.snapshot().promotions_done == 1);
        CHECK(contents(near, k) == data);
        CHECK(t.snapshot().promotion_bytes == static_cast<std::uint64_t>(chunk));
    }
    SECTION("a range from 0 that stops short of the end") {
        mem_tiers t(near, far);
        const auto k = key_of("prefix");
        store(far, k, data);
        auto r = read(t, k, 0, 1234);
        REQUIRE(r.r);
        CHECK(r.bytes == slice(data, 0, 1234));
        REQUIRE(eventually([&] { return promotions_settled(t, 1); }));
        CHECK(t.snapshot().promotions_done == 1);
        CHECK(contents(near, k) == data);
    }
    SECTION("a short last chunk, read from 0") {
        mem_tiers t(near, far);
        const auto k = key_of("short");
        const auto tail = pattern(1000, 4); // chunk_size 4096, the object's last 1000 bytes
        store(far, k, tail);
        auto r = read(t, k, 0, 1000);
        REQUIRE(r.r);
        CHECK(r.bytes == tail);
        REQUIRE(eventually([&] { return promotions_settled(t, 1); }));
        CHECK(t.snapshot().promotions_done == 1);
        auto st = near.stat({}, k);
        REQUIRE(st);
        CHECK(st->size == 1000);
        CHECK(contents(near, k) == tail);
        CHECK(t.snapshot().promotion_bytes == 1000);
    }
    SECTION("a short last chunk, read in its middle") {
        mem_tiers t(near, far);
        const auto k = key_of("short-middle");
        const auto tail = pattern(1000, 5);
        store(far, k, tail);
        auto r = read(t, k, 600, 400);
        REQUIRE(r.r);
        CHECK(r.bytes == slice(tail, 600, 400));
        REQUIRE(eventually([&] { return promotions_settled(t, 1); }));
        CHECK(t.snapshot().promotions_done == 1);
        CHECK(contents(near, k) == tail);
    }
    SECTION("promote_partial_reads = false: only reads from offset 0 promote") {
        tiered_options o;
        o.promote_partial_reads = false;
        mem_tiers t(near, far, o);
        const auto k = key_of("no-partial");
        store(far, k, data);
        auto r = read(t, k, 100, 200);
        REQUIRE(r.r);
        CHECK(r.bytes == slice(data, 100, 200));
        // Nothing was planned: no promotion is queued, none can come later.
        auto s = t.snapshot();
        CHECK(s.promotion_queue_bytes == 0);
        CHECK(s.promotions_done == 0);
        CHECK(s.promotions_failed == 0);
        CHECK(absent(near, k));
        // A read from 0 still promotes, and is the only promotion.
        auto whole = read(t, k, 0, chunk);
        REQUIRE(whole.r);
        REQUIRE(eventually([&] { return promotions_settled(t, 1); }));
        CHECK(t.snapshot().promotions_done == 1);
        CHECK(t.snapshot().promotions_failed == 0);
        CHECK(contents(near, k) == data);
    }
    SECTION("promotion_queue_bytes = 0: nothing is promoted") {
        tiered_options o;
        o.promotion_queue_bytes = 0;
        mem_tiers t(near, far, o);
        const auto k = key_of("never");
        store(far, k, data);
        auto r = read(t, k, 0, chunk);
        REQUIRE(r.r);
        CHECK(r.bytes == data);
        CHECK(t.snapshot().promotion_queue_bytes == 0);
        CHECK(t.snapshot().promotions_done == 0);
        CHECK(absent(near, k));
    }
}

TEST_CASE("tiered: far hits past the promotion budget are skipped, not queued", "[layers][tiered]") {
    test_store near("near");
    memory_store far;
    tiered_options o;
    o.promotion_queue_bytes = chunk; // room for one promotion at a time
    tiered<test_store&, memory_store&> t(near, far, o);
    const auto a = key_of("budget-a"), b = key_of("budget-b");
    const auto da = pattern(chunk, 20), db = pattern(chunk, 21);
    store(far, a, da);
    store(far, b, db);
    near.put_gate.close();
    REQUIRE(read(t, a, 0, chunk).r);
    REQUIRE(eventually([&] { return near.put_gate.waiting() == 1; }));
    auto r = read(t, b, 0, chunk); // served, but the budget is spent: not promoted
    REQUIRE(r.r);
    CHECK(r.bytes == db);
    auto s = t.snapshot();
    CHECK(s.promotions_skipped == 1);
    CHECK(s.promotion_queue_bytes == static_cast<std::uint64_t>(chunk));
    near.put_gate.open();
    REQUIRE(eventually([&] { return promotions_settled(t, 2); }));
    CHECK(t.snapshot().promotions_done == 1);
    CHECK(contents(near.memory(), a) == da);
    CHECK(absent(near.memory(), b));
    // The budget is free again: the next far hit of b promotes it.
    REQUIRE(read(t, b, 0, chunk).r);
    REQUIRE(eventually([&] { return promotions_settled(t, 3); }));
    CHECK(t.snapshot().promotions_done == 2);
    CHECK(contents(near.memory(), b) == db);
}

TEST_CASE("tiered: a promotion's buffer is kept for the next one: at most threads + 1, within the budget",
          "[layers][tiered]") {
    // The copy on the reader's path goes into pages already touched (docs/tiered.md, "Costs").
    detail::promotions p(2500, 2); // 2 threads; budget: two 1000-byte buffers
    const std::byte* first = nullptr;
    {
        auto t = p.plan("a", 1000);
        REQUIRE(t);
        CHECK(t.buffer().empty());
        CHECK(t.buffer().capacity() >= 1000);
        t.buffer().assign(1000, std::byte{7});
        first = t.buffer().data();
    }
    {
        auto t = p.plan("b", 600); // a smaller chunk takes the kept buffer, emptied
        REQUIRE(t);
        CHECK(t.buffer().data() == first);
        CHECK(t.buffer().empty());
    }
    auto t1 = p.plan("c", 1000);
    auto t2 = p.plan("d", 1000);
    CHECK(!p.plan("e", 1000)); // the budget holds two
    CHECK(t1.buffer().data() == first);
    CHECK(t2.buffer().data() != first);
    const std::byte* second = t2.buffer().data();
    t1 = {};
    t2 = {};
    auto u1 = p.plan("c", 1000);
    auto u2 = p.plan("d", 1000);
    CHECK(std::set<const std::byte*>{u1.buffer().data(), u2.buffer().data()} == std::set<const std::byte*>{first, second});
    CHECK(p.spare_bytes() == 0);
    u1 = {};
    u2 = {};
    CHECK(p.spare_bytes() == 2000);

    detail::promotions one(1u << 20, 1); // 1 thread: at most 2 buffers kept
    {
        auto a = one.plan("a", 1000), b = one.plan("b", 1000), c = one.plan("c", 1000);
        REQUIRE((a && b && c));
    }
    CHECK(one.spare_bytes() == 2000);
}

TEST_CASE("tiered: owning both tiers, built in place; it moves while a promotion runs", "[layers][tiered]") {
    using owning = tiered<test_store, memory_store>;
    static_assert(CacheStore<owning>);
    owning first(std::piecewise_construct, std::tuple<std::string>{"near"}, std::tuple<>{});
    const auto k = key_of("moved");
    const auto data = pattern(chunk, 22);
    store(first.far(), k, data);
    first.near().put_gate.close();
    auto r = read(first, k, 0, chunk);
    REQUIRE(r.r);
    CHECK(r.bytes == data);
    REQUIRE(eventually([&] { return first.near().put_gate.waiting() == 1; }));
    owning t(std::move(first)); // the promotion holds the tiers, which stay where they are
    t.near().put_gate.open();
    REQUIRE(eventually([&] { return promotions_settled(t, 1); }));
    CHECK(t.snapshot().promotions_done == 1);
    CHECK(contents(t.near().memory(), k) == data);
    auto again = read(t, k, 0, chunk);
    REQUIRE(again.r);
    CHECK(again.bytes == data);
    CHECK(t.snapshot().get_hits[near_i] == 1);
    CHECK(t.snapshot().get_hits[far_i] == 1);
}

TEST_CASE("tiered: get_chunk_into over a POSIX near tier reads exact bytes and promotes", "[layers][tiered]") {
    test_support::temp_dir dir("cachestore-tiered");
    auto opened = posix_store::open(dir.path, {.fsync = false});
    REQUIRE(opened);
    memory_store far;
    using tiers = tiered<posix_store, memory_store&>;
    static_assert(detail::has_get_chunk_into<tiers>);
    tiers t(std::move(*opened), far);
    const auto k = key_of("into");
    const auto data = pattern(chunk, 6);
    store(far, k, data);

    std::vector<std::byte> out(chunk);
    REQUIRE(get_chunk(t, {}, k, 0, std::span<std::byte>(out)));
    CHECK(out == data);
    CHECK(t.snapshot().get_hits[far_i] == 1);
    REQUIRE(eventually([&] { return promotions_settled(t, 1); }));
    CHECK(t.snapshot().promotions_done == 1);
    CHECK(contents(t.near(), k) == data);

    std::vector<std::byte> part(700);
    REQUIRE(get_chunk(t, {}, k, 300, std::span<std::byte>(part)));
    CHECK(part == slice(data, 300, 700));
    CHECK(t.snapshot().get_hits[near_i] == 1);

    // A range not starting at 0, through get_chunk_into, promotes the whole chunk too.
    const auto k2 = key_of("into-middle");
    const auto data2 = pattern(chunk, 7);
    store(far, k2, data2);
    std::vector<std::byte> mid(1000);
    REQUIRE(get_chunk(t, {}, k2, 2000, std::span<std::byte>(mid)));
    CHECK(mid == slice(data2, 2000, 1000));
    REQUIRE(eventually([&] { return promotions_settled(t, 2); }));
    CHECK(t.snapshot().promotions_done == 2);
    CHECK(contents(t.near(), k2) == data2);

    // Not in either tier.
    auto miss = get_chunk(t, {}, key_of("nowhere"), 0, std::span<std::byte>(mid));
    REQUIRE_FALSE(miss);
    CHECK(miss.error().code == errc::not_found);
}

TEST_CASE("tiered: put_chunk commits to the far tier, then the near tier", "[layers][tiered]") {
    call_log log;
    test_store near("near", &log), far("far", &log);
    test_tiers t(near, far);
    const auto k = key_of("put");
    const auto data = pattern(3000, 8);
    std::size_t at = 0;
    auto source = [&](std::span<std::byte> buf) -> result<std::size_t> {
        const std::size_t n = std::min({buf.size(), std::size_t{700}, data.size() - at});
        std::memcpy(buf.data(), data.data() + at, n);
        at += n;
        return n;
    };
    auto put = [&](bool streamed) {
        return streamed ? t.put_chunk({}, k, 3000, source) : t.put_chunk({}, k, 3000, std::span<const std::byte>(data));
    };

    for (const bool streamed : {false, true}) {
        DYNAMIC_SECTION((streamed ? "a source function" : "bytes in memory")) {
            SECTION("both tiers take it: far first, then near, the same bytes") {
                REQUIRE(put(streamed));
                const std::vector<std::string> order{"far put", "far put done", "near put", "near put done"};
                CHECK(log.entries() == order);
                CHECK(contents(far.memory(), k) == data);
                CHECK(contents(near.memory(), k) == data);
                CHECK(t.snapshot().near_put_failures == 0);
            }
            SECTION("the far tier answers commit_lost: the caller gets it, the near tier is still filled") {
                store(far.memory(), k, data);
                auto r = put(streamed);
                REQUIRE_FALSE(r);
                CHECK(r.error().code == errc::commit_lost);
                CHECK(contents(near.memory(), k) == data);
                CHECK(t.snapshot().near_put_failures == 0);
            }
            SECTION("the far tier fails: the caller gets its error, the near tier is not asked") {
                far.put_fails = errc::transient;
                auto r = put(streamed);
                REQUIRE_FALSE(r);
                CHECK(r.error().code == errc::transient);
                CHECK(near.puts == 0);
                CHECK(near.memory().size() == 0);
                CHECK(t.snapshot().near_put_failures == 0);
            }
            SECTION("the near tier fails: the put succeeds, counted") {
                near.put_fails = errc::io_error;
                REQUIRE(put(streamed));
                CHECK(contents(far.memory(), k) == data);
                CHECK(near.memory().size() == 0);
                CHECK(t.snapshot().near_put_failures == 1);
            }
            SECTION("the near tier has it already (commit_lost): not a failure") {
                store(near.memory(), k, data);
                REQUIRE(put(streamed));
                CHECK(contents(far.memory(), k) == data);
                CHECK(t.snapshot().near_put_failures == 0);
            }
        }
    }
}

TEST_CASE("tiered: a failing near tier never fails a read the far tier can serve", "[layers][tiered]") {
    test_store near("near"), far("far");
    test_tiers t(near, far);
    const auto k = key_of("near-fails");
    const auto data = pattern(chunk, 9);
    store(far.memory(), k, data);

    SECTION("near get and stat fail with io_error: the far tier answers") {
        near.get_fails = errc::io_error;
        near.stat_fails = errc::io_error;
        auto r = read(t, k, 0, chunk);
        REQUIRE(r.r);
        CHECK(r.bytes == data);
        auto st = t.stat({}, k);
        REQUIRE(st);
        CHECK(st->size == chunk);
        const auto s = t.snapshot();
        CHECK(s.near_errors == 2);
        CHECK(s.near_resumed == 0);
        CHECK(s.get_hits[far_i] == 1);
        CHECK(s.stat_hits[far_i] == 1);
        CHECK(far.gets == 1);
    }
    SECTION("the near tier fails mid-read: the far tier delivers the rest, each byte once, in order") {
        store(near.memory(), k, data);
        near.get_fails_after = 2048;
        auto r = read(t, k, 0, chunk);
        REQUIRE(r.r);
        CHECK(r.bytes.size() == static_cast<std::size_t>(chunk));
        CHECK(r.bytes == data);
        CHECK(r.spans == 2);
        CHECK(far.last_get_off == 2048);
        CHECK(far.last_get_n == 2048);
        auto s = t.snapshot();
        CHECK(s.near_resumed == 1);
        CHECK(s.near_errors == 1);
        CHECK(s.get_hits[far_i] == 1);

        // A range not from 0: the far tier is asked from the first byte the near tier did not give.
        near.get_fails_after = 1000;
        auto part = read(t, k, 100, 3000);
        REQUIRE(part.r);
        CHECK(part.bytes == slice(data, 100, 3000));
        CHECK(far.last_get_off == 1100);
        CHECK(far.last_get_n == 2000);
        s = t.snapshot();
        CHECK(s.near_resumed == 2);
        // No promotion: the near tier has the chunk (it failed, it did not miss).
        CHECK(s.promotion_queue_bytes == 0);
        CHECK(s.promotions_done + s.promotions_skipped + s.promotions_failed == 0);
    }
    SECTION("the sink refuses: cancelled, the far tier is never asked") {
        store(near.memory(), k, data);
        auto r = t.get_chunk({}, k, 0, chunk, [](std::span<const std::byte>) { return false; });
        REQUIRE_FALSE(r);
        CHECK(r.error().code == errc::cancelled);
        CHECK(far.gets == 0);
        CHECK(t.snapshot().near_errors == 0);
    }
    SECTION("the sink refuses a far read: cancelled, not promoted") {
        auto r = t.get_chunk({}, k, 0, chunk, [](std::span<const std::byte>) { return false; });
        REQUIRE_FALSE(r);
        CHECK(r.error().code == errc::cancelled);
        CHECK(far.gets == 1);
        CHECK(eventually([&] { return t.snapshot().promotion_queue_bytes == 0; }));
        CHECK(t.snapshot().promotions_done == 0);
        CHECK(absent(near.memory(), k));
    }
    SECTION("the caller's own errors from the near tier are returned; the far tier is not asked") {
        for (const errc e : {errc::invalid_argument, errc::out_of_range, errc::cancelled, errc::deadline_exceeded}) {
            INFO(to_string(e));
            near.get_fails = e;
            near.stat_fails = e;
            auto r = read(t, k, 0, chunk);
            REQUIRE_FALSE(r.r);
            CHECK(r.r.error().code == e);
            auto st = t.stat({}, k);
            REQUIRE_FALSE(st);
            CHECK(st.error().code == e);
        }
        CHECK(far.gets == 0);
        CHECK(far.stats == 0);
        CHECK(t.snapshot().near_errors == 0);
    }
    SECTION("a stopped context, a bad range: the near tier's answer stands") {
        std::stop_source stop;
        stop.request_stop();
        auto r = read(t, k, 0, chunk, context(stop.get_token()));
        REQUIRE_FALSE(r.r);
        CHECK(r.r.error().code == errc::cancelled);
        auto past = read(t, k, chunk - 10, 20);
        REQUIRE_FALSE(past.r);
        CHECK(past.r.error().code == errc::out_of_range);
        CHECK(far.gets == 0);
    }
}

TEST_CASE("tiered: a near tier that keeps failing is bypassed, then probed, then used again", "[layers][tiered]") {
    manual_clock clock;
    test_store near("near"), far("far");
    tiered_options o;
    o.near_breaker.clock = [&clock] { return clock.now(); };
    test_tiers t(near, far, o);
    const int threshold = o.near_breaker.failure_threshold;
    REQUIRE(threshold == 5);
    const auto k = key_of("bypass");
    const auto data = pattern(chunk, 10);
    store(far.memory(), k, data);

    near.get_fails = errc::io_error;
    for (int i = 0; i < threshold; ++i) {
        auto r = read(t, k, 0, chunk);
        REQUIRE(r.r);
        CHECK(r.bytes == data);
    }
    CHECK(near.gets == threshold);
    auto s = t.snapshot();
    CHECK(s.near_breaker.state == breaker_state::open);
    CHECK(s.near_breaker.opened == 1);
    CHECK(s.near_errors == static_cast<std::uint64_t>(threshold));
    CHECK(s.bypassed == 0);

    // Open: reads, stats and puts skip the near tier.
    auto r = read(t, k, 0, chunk);
    REQUIRE(r.r);
    CHECK(r.bytes == data);
    REQUIRE(t.stat({}, k));
    const auto k2 = key_of("bypass-put");
    REQUIRE(t.put_chunk({}, k2, chunk, std::span<const std::byte>(data)));
    CHECK(contents(far.memory(), k2) == data);
    CHECK(near.gets == threshold);
    CHECK(near.stats == 0);
    CHECK(near.puts == 0);
    s = t.snapshot();
    CHECK(s.bypassed == 3);
    CHECK(s.get_hits[far_i] == static_cast<std::uint64_t>(threshold) + 1);
    CHECK(s.near_put_failures == 0);
    CHECK(s.promotion_queue_bytes == 0);
    CHECK(s.promotions_done + s.promotions_skipped + s.promotions_failed == 0);

    clock.advance(o.near_breaker.open_for - 1s);
    REQUIRE(read(t, k, 0, chunk).r);
    CHECK(near.gets == threshold);
    CHECK(t.snapshot().bypassed == 4);

    // The near tier recovers; after open_for, probes reach it and their success closes the breaker.
    near.get_fails = test_store::ok;
    store(near.memory(), k, data);
    clock.advance(1s);
    for (int i = 0; i < o.near_breaker.half_open_probes; ++i) {
        auto p = read(t, k, 0, chunk);
        REQUIRE(p.r);
        CHECK(p.bytes == data);
    }
    CHECK(near.gets == threshold + o.near_breaker.half_open_probes);
    s = t.snapshot();
    CHECK(s.near_breaker.state == breaker_state::closed);
    CHECK(s.near_breaker.half_opened == 1);
    CHECK(s.near_breaker.closed == 1);
    CHECK(s.get_hits[near_i] == static_cast<std::uint64_t>(o.near_breaker.half_open_probes));
    CHECK(s.bypassed == 4);

    // Closed again: puts reach the near tier.
    const auto k3 = key_of("after");
    REQUIRE(t.put_chunk({}, k3, chunk, std::span<const std::byte>(data)));
    CHECK(contents(near.memory(), k3) == data);
}

TEST_CASE("tiered: many threads reading one far-only chunk promote it once", "[layers][tiered][concurrency]") {
    constexpr int threads = 16;
    constexpr std::int64_t size = std::int64_t{16} << 10;
    const auto data = pattern(size, 11);

    SECTION("the promotion held until every read is done") {
        test_store near("near");
        memory_store far;
        tiered<test_store&, memory_store&> t(near, far);
        const auto k = key_of("hot", size);
        store(far, k, data);
        near.put_gate.close();
        std::latch start(threads);
        std::vector<int> good(threads, 0);
        {
            std::vector<std::jthread> readers;
            readers.reserve(threads);
            for (int i = 0; i < threads; ++i)
                readers.emplace_back([&, i] {
                    start.arrive_and_wait();
                    auto r = read(t, k, 0, size);
                    good[static_cast<std::size_t>(i)] = r.r && r.bytes == data ? 1 : 0;
                });
        }
        CHECK(std::count(good.begin(), good.end(), 1) == threads);
        auto s = t.snapshot();
        CHECK(s.get_hits[far_i] == threads);
        CHECK(s.promotions_skipped == threads - 1); // one already pending
        CHECK(s.promotion_queue_bytes == static_cast<std::uint64_t>(size));
        REQUIRE(eventually([&] { return near.put_gate.waiting() == 1; }));
        near.put_gate.open();
        REQUIRE(eventually([&] { return promotions_settled(t, threads); }));
        s = t.snapshot();
        CHECK(s.promotions_done == 1);
        CHECK(s.promotions_failed == 0);
        CHECK(s.promotion_bytes == static_cast<std::uint64_t>(size));
        CHECK(near.puts == 1);
        CHECK(contents(near.memory(), k) == data);
        auto again = read(t, k, 0, size);
        REQUIRE(again.r);
        CHECK(again.bytes == data);
        CHECK(t.snapshot().get_hits[near_i] == 1);
    }
    SECTION("free-running, ten chunks one after another") {
        memory_store near, far;
        mem_tiers t(near, far);
        for (int round = 0; round < 10; ++round) {
            const auto k = key_of("hot-" + std::to_string(round), size);
            store(far, k, data);
            std::latch start(threads);
            std::atomic<int> good{0};
            {
                std::vector<std::jthread> readers;
                readers.reserve(threads);
                for (int i = 0; i < threads; ++i)
                    readers.emplace_back([&] {
                        start.arrive_and_wait();
                        auto r = read(t, k, 0, size);
                        if (r.r && r.bytes == data) ++good;
                    });
            }
            CHECK(good == threads);
        }
        const auto s0 = t.snapshot();
        CHECK(s0.get_hits[near_i] + s0.get_hits[far_i] == std::uint64_t{10} * threads);
        REQUIRE(eventually([&] { return promotions_settled(t, t.snapshot().get_hits[far_i]); }));
        const auto s = t.snapshot();
        CHECK(s.promotions_done >= 10); // every chunk at least once (a second is a commit_lost, done too)
        CHECK(s.promotions_failed == 0);
        CHECK(s.promotion_bytes == static_cast<std::uint64_t>(10 * size));
        for (int round = 0; round < 10; ++round)
            CHECK(contents(near, key_of("hot-" + std::to_string(round), size)) == data);
    }
}

TEST_CASE("tiered: a bounded POSIX near tier evicting while promotions run: every read exact",
          "[layers][tiered][concurrency]") {
    constexpr std::int64_t size = std::int64_t{32} << 10;
    constexpr std::int64_t max_bytes = 8 * size;
    constexpr int chunks = 40; // 5 times the near tier's bound
    constexpr int threads = 4;
    constexpr int reads_each = 60;
    test_support::temp_dir dir("cachestore-tiered-bounded");
    auto opened = posix_store::open(dir.path, {.fsync = false,
                                               .max_bytes = max_bytes,
                                               .recency_granularity = std::chrono::milliseconds(0),
                                               .sweep_interval = std::chrono::milliseconds(10)});
    REQUIRE(opened);
    memory_store far;
    std::vector<std::vector<std::byte>> data;
    for (int i = 0; i < chunks; ++i) {
        data.push_back(pattern(size, 100 + static_cast<unsigned>(i)));
        store(far, key_of("evict-" + std::to_string(i), size), data.back());
    }
    observed<posix_store> near(*opened);
    tiered<observed<posix_store>&, memory_store&> t(near, far);

    std::atomic<int> failed{0}, wrong{0};
    {
        std::vector<std::jthread> readers;
        readers.reserve(threads);
        for (int j = 0; j < threads; ++j)
            readers.emplace_back([&, j] {
                std::vector<std::byte> out(size);
                for (int i = 0; i < reads_each; ++i) {
                    const int c = (i * 7 + j * 11) % chunks;
                    const auto k = key_of("evict-" + std::to_string(c), size);
                    const auto& want = data[static_cast<std::size_t>(c)];
                    if (i % 3 == 0) { // straight into a buffer
                        if (!get_chunk(t, {}, k, 0, std::span<std::byte>(out))) ++failed;
                        else if (out != want) ++wrong;
                    } else if (i % 3 == 1) { // a sink
                        auto r = read(t, k, 0, size);
                        if (!r.r) ++failed;
                        else if (r.bytes != want) ++wrong;
                    } else { // a range in the middle
                        auto r = read(t, k, 1000 + j, 5000);
                        if (!r.r) ++failed;
                        else if (r.bytes != slice(want, 1000 + j, 5000)) ++wrong;
                    }
                }
            });
    }
    CHECK(failed == 0);
    CHECK(wrong == 0);
    const auto s0 = t.snapshot();
    CHECK(s0.get_hits[near_i] + s0.get_hits[far_i] == static_cast<std::uint64_t>(threads * reads_each));
    REQUIRE(eventually([&] { return promotions_settled(t, t.snapshot().get_hits[far_i]); }));
    const auto s = t.snapshot();
    INFO("near hits " << s.get_hits[near_i] << ", far hits " << s.get_hits[far_i] << ", promotions done "
                      << s.promotions_done << ", skipped " << s.promotions_skipped << ", failed "
                      << s.promotions_failed);
    INFO("near bypassed " << s.bypassed << ", breaker opened " << s.near_breaker.opened);
    std::string put_failures;
    for (const auto& f : near.put_failures()) put_failures += "\n  " + f;
    INFO("near put failures:" << put_failures);
    CHECK(s.promotions_done > 0);
    CHECK(s.near_errors == 0);
    // A promotion may fail only as a bounded store's put may: full, every
    // candidate for eviction read since the last walk (docs/operations.md).
    CHECK(s.promotions_failed == near.put_failures().size());
    for (const auto& f : near.put_failures()) CHECK(f.find("the store is full") != std::string::npos);
    // One process's bound holds on disk (its books may count more than the disk holds).
    auto measured = opened->measure();
    REQUIRE(measured);
    CHECK(measured->bytes <= max_bytes);
    // Whatever the near tier kept is byte-exact.
    for (int i = 0; i < chunks; ++i) {
        const auto k = key_of("evict-" + std::to_string(i), size);
        auto kept = contents(*opened, k);
        if (!kept.empty()) CHECK(kept == data[static_cast<std::size_t>(i)]);
    }
}

TEST_CASE("tiered: after remove returns, neither tier holds the chunk, whatever its promotion was doing",
          "[layers][tiered][concurrency]") {
    test_store near("near"), far("far");
    const auto k = key_of("removed");
    const auto data = pattern(chunk, 12);
    store(far.memory(), k, data);

    SECTION("the promotion's near put is running when remove is called") {
        test_tiers t(near, far);
        near.put_gate.close();
        auto r = read(t, k, 0, chunk);
        REQUIRE(r.r);
        CHECK(r.bytes == data);
        REQUIRE(eventually([&] { return near.put_gate.waiting() == 1; }));
        std::optional<result<>> removed;
        std::jthread remover([&] { removed = t.remove({}, k); });
        // The removal waits for the running near put: it has not reached the far tier.
        const auto until = sclock::now() + 100ms;
        while (sclock::now() < until && far.removes == 0) std::this_thread::sleep_for(1ms);
        CHECK(far.removes == 0);
        near.put_gate.open();
        remover.join();
        REQUIRE(removed.has_value());
        CHECK(removed->has_value());
        CHECK(absent(near.memory(), k));
        CHECK(absent(far.memory(), k));
        CHECK(read(t, k, 0, chunk).r.error().code == errc::not_found);
        REQUIRE(eventually([&] { return promotions_settled(t, 1); }));
        CHECK(absent(near.memory(), k));
    }
    SECTION("the promotion is queued behind another when remove is called") {
        tiered_options o;
        o.promotion_threads = 1;
        test_tiers t(near, far, o);
        const auto first = key_of("first");
        store(far.memory(), first, data);
        near.put_gate.close(first.object_key); // the one promotion thread waits in the first chunk's put
        REQUIRE(read(t, first, 0, chunk).r);
        REQUIRE(eventually([&] { return near.put_gate.waiting() == 1; }));
        auto r = read(t, k, 0, chunk);
        REQUIRE(r.r);
        CHECK(r.bytes == data);
        CHECK(t.snapshot().promotion_queue_bytes == static_cast<std::uint64_t>(2 * chunk));
        REQUIRE(t.remove({}, k));
        CHECK(absent(near.memory(), k));
        CHECK(absent(far.memory(), k));
        near.put_gate.open();
        REQUIRE(eventually([&] { return promotions_settled(t, 2); }));
        CHECK(absent(near.memory(), k));
        CHECK(contents(near.memory(), first) == data);
        CHECK(t.snapshot().promotions_done == 1);
        CHECK(t.snapshot().promotions_skipped == 1);
    }
    SECTION("the far read has its bytes when remove is called; the promotion is submitted after") {
        test_tiers t(near, far);
        far.get_gate.close(); // the far read delivers, then waits
        std::optional<read_result> got;
        std::jthread reader([&] { got = read(t, k, 0, chunk); });
        REQUIRE(eventually([&] { return far.get_gate.waiting() == 1; }));
        REQUIRE(t.remove({}, k));
        far.get_gate.open();
        reader.join();
        REQUIRE(got.has_value());
        REQUIRE(got->r);
        CHECK(got->bytes == data);
        REQUIRE(eventually([&] { return promotions_settled(t, 1); }));
        CHECK(absent(near.memory(), k));
        CHECK(absent(far.memory(), k));
        CHECK(t.snapshot().promotions_done == 0);
    }
    SECTION("a near tier that fails the removal: the error names it; the far tier's copy is gone") {
        test_tiers t(near, far);
        store(near.memory(), k, data);
        near.remove_fails = errc::io_error;
        auto r = t.remove({}, k);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == errc::io_error);
        CHECK(r.error().message.starts_with("near tier: "));
        CHECK(absent(far.memory(), k));
    }
    SECTION("a far tier that fails the removal: its error; the near tier's copy is gone") {
        test_tiers t(near, far);
        store(near.memory(), k, data);
        far.remove_fails = errc::transient;
        auto r = t.remove({}, k);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == errc::transient);
        CHECK_FALSE(r.error().message.starts_with("near tier: "));
        CHECK(absent(near.memory(), k));
    }
}

TEST_CASE("tiered: self_test tests both tiers and names the one that failed", "[layers][tiered]") {
    test_store near("near"), far("far");
    test_tiers t(near, far);
    CHECK(t.self_test({}));
    near.self_test_fails = errc::io_error;
    auto n = t.self_test({});
    REQUIRE_FALSE(n);
    CHECK(n.error().code == errc::io_error);
    CHECK(n.error().message.starts_with("near tier: "));
    near.self_test_fails = test_store::ok;
    far.self_test_fails = errc::auth;
    auto f = t.self_test({});
    REQUIRE_FALSE(f);
    CHECK(f.error().code == errc::auth);
    CHECK(f.error().message.starts_with("far tier: "));
}

TEST_CASE("tiered: destroying the store with promotions running and queued ends them promptly",
          "[layers][tiered][concurrency]") {
    const long threads_before = layertest::thread_count();
    test_store near("near");
    memory_store far;
    const auto data = pattern(chunk, 13);
    for (int i = 0; i < 3; ++i) store(far, key_of("doomed-" + std::to_string(i)), data);
    near.put_gate.close(); // never opened: a near put ends only when its context stops
    sclock::time_point destroyed_at;
    {
        tiered_options o;
        o.promotion_threads = 1;
        tiered<test_store&, memory_store&> t(near, far, o);
        for (int i = 0; i < 3; ++i) REQUIRE(read(t, key_of("doomed-" + std::to_string(i)), 0, chunk).r);
        REQUIRE(eventually([&] { return near.put_gate.waiting() == 1; }));
        CHECK(t.snapshot().promotion_queue_bytes == static_cast<std::uint64_t>(3 * chunk));
        destroyed_at = sclock::now();
    }
    CHECK(sclock::now() - destroyed_at < 5s);
    CHECK(near.puts == 1); // the queued two never ran
    CHECK(near.puts_stopped == 1);
    CHECK(near.put_gate.waiting() == 0);
    CHECK(near.memory().size() == 0);
    CHECK(eventually([&] { return layertest::thread_count() == threads_before; }));
}

TEST_CASE("tiered: a forked child promotes on threads of its own; the parent goes on", "[layers][tiered][fork]") {
#if defined(__SANITIZE_THREAD__)
    WARN("skipped under ThreadSanitizer: it kills a child of a multi-threaded process that starts a thread "
         "(die_after_fork)");
    return;
#endif
    test_store near("near");
    memory_store far;
    tiered_options o;
    o.promotion_threads = 1;
    tiered<test_store&, memory_store&> t(near, far, o);
    const auto a = key_of("fork-a"), held = key_of("fork-held"), b = key_of("fork-b"), c = key_of("fork-c");
    const auto da = pattern(chunk, 14), dh = pattern(chunk, 15), db = pattern(chunk, 16), dc = pattern(chunk, 17);
    store(far, a, da);
    store(far, held, dh);
    store(far, b, db);
    store(far, c, dc);

    // The parent promotes once (its promotion thread exists), then holds its
    // only promotion thread in a near put while it forks.
    REQUIRE(read(t, a, 0, chunk).r);
    REQUIRE(eventually([&] { return promotions_settled(t, 1); }));
    near.put_gate.close(held.object_key);
    REQUIRE(read(t, held, 0, chunk).r);
    REQUIRE(eventually([&] { return near.put_gate.waiting() == 1; }));

    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::alarm(15); // an inherited lock held, or a wait for the parent's thread: SIGALRM
        int rc = 0;
        auto r = read(t, b, 0, chunk);
        if (!r.r) rc = 10;
        else if (r.bytes != db) rc = 11;
        else if (!eventually([&] { return contents(near.memory(), b) == db; })) rc = 12;
        // (the counter moves just after the near put lands: wait for it too)
        else if (!eventually([&] { return t.snapshot().promotions_done == 2; })) rc = 13;
        ::_exit(rc);
    }
    REQUIRE(pid > 0);
    const std::string how = wait_child(pid, 30s);
    INFO("the child " << how);
    CHECK(how.empty());

    CHECK(absent(near.memory(), b)); // the child's memory, not ours
    near.put_gate.open();
    REQUIRE(eventually([&] { return promotions_settled(t, 2); }));
    auto r = read(t, c, 0, chunk);
    REQUIRE(r.r);
    CHECK(r.bytes == dc);
    REQUIRE(eventually([&] { return promotions_settled(t, 3); }));
    CHECK(t.snapshot().promotions_done == 3);
    CHECK(contents(near.memory(), held) == dh);
    CHECK(contents(near.memory(), c) == dc);
}

TEST_CASE("tiered: the Prometheus text of a stack holds the tiered counters and the layers in each tier",
          "[layers][tiered]") {
    memory_store near_mem, far_mem;
    metered<memory_store&> near_layer(near_mem, metered_options{"near"});
    tiered_options o;
    o.name = "tiers";
    using tiers = tiered<metered<memory_store&>&, memory_store&>;
    tiers t(near_layer, far_mem, o);
    metered<tiers&> outer(t, metered_options{"outer"});

    const auto k = key_of("prom");
    const auto data = pattern(chunk, 18);
    store(far_mem, k, data);
    REQUIRE(read(outer, k, 0, chunk).r); // a far hit, promoted
    REQUIRE(eventually([&] { return promotions_settled(t, 1); }));
    REQUIRE(read(outer, k, 0, chunk).r); // a near hit
    CHECK(read(outer, key_of("none"), 0, 1).r.error().code == errc::not_found); // neither
    REQUIRE(outer.stat({}, k)); // a near hit

    for (const bool whole_stack : {true, false}) {
        INFO((whole_stack ? "metered<tiered<metered<memory>&, memory>&>" : "the tiered store alone"));
        std::string text;
        if (whole_stack) write_layer_metrics(text, outer);
        else write_layer_metrics(text, t);
        const auto p = layertest::parse_prometheus(text);
        INFO(text);
        CHECK(p.problems.empty());
        for (const auto& problem : p.problems) UNSCOPED_INFO(problem);
        const auto hits = [&](const char* op, const char* where) {
            return p.value("cachestore_tier_hits_total", {{"store", "tiers"}, {"op", op}, {"tier", where}});
        };
        CHECK(hits("get_chunk", "far") == 1);
        CHECK(hits("get_chunk", "near") == 1);
        CHECK(hits("get_chunk", "none") == 1);
        CHECK(hits("stat", "near") == 1);
        CHECK(hits("stat", "far") == 0);
        CHECK(p.value("cachestore_tier_promotions_total", {{"store", "tiers"}, {"result", "done"}}) == 1);
        CHECK(p.value("cachestore_tier_promotions_total", {{"store", "tiers"}, {"result", "skipped"}}) == 0);
        CHECK(p.value("cachestore_tier_promotions_total", {{"store", "tiers"}, {"result", "failed"}}) == 0);
        CHECK(p.value("cachestore_tier_promotion_bytes_total", {{"store", "tiers"}}) == chunk);
        CHECK(p.value("cachestore_tier_promotion_queue_bytes", {{"store", "tiers"}}) == 0);
        CHECK(p.value("cachestore_tier_bypassed_total", {{"store", "tiers"}}) == 0);
        CHECK(p.value("cachestore_tier_near_errors_total", {{"store", "tiers"}}) == 0);
        CHECK(p.value("cachestore_tier_near_resumed_total", {{"store", "tiers"}}) == 0);
        CHECK(p.value("cachestore_tier_near_put_failures_total", {{"store", "tiers"}}) == 0);
        CHECK(p.value("cachestore_tier_near_state", {{"store", "tiers"}, {"state", "closed"}}) == 1);
        CHECK(p.value("cachestore_tier_near_state", {{"store", "tiers"}, {"state", "open"}}) == 0);
        // The metered layer inside the near tier: three misses and a hit, one promotion put.
        const auto near_ops = [&](const char* op, const char* outcome) {
            return p.value("cachestore_operations_total", {{"store", "near"}, {"op", op}, {"outcome", outcome}});
        };
        CHECK(near_ops("get_chunk", "ok") == 1);
        CHECK(near_ops("get_chunk", "not_found") == 2);
        CHECK(near_ops("stat", "ok") == 1);
        CHECK(near_ops("put_chunk", "ok") == 1);
        const auto outer_gets =
            p.value("cachestore_operations_total", {{"store", "outer"}, {"op", "get_chunk"}, {"outcome", "ok"}});
        if (whole_stack) CHECK(outer_gets == 2);
        else CHECK_FALSE(outer_gets);
    }
}
