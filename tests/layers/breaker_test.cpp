// cachestore::breaker: opens after enough failures within the window, fails
// fast without I/O and with errc::unavailable, lets probes through after the
// open period, closes when they succeed and opens again when one fails. The
// clock is injected: no test sleeps.
#include <catch2/catch.hpp>

#include <chrono>
#include <climits>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cachestore/cachestore.hpp"
#include "prom_check.hpp"
#include "scripted_store.hpp"

using namespace cachestore;
using namespace std::chrono_literals;
using layertest::script;

namespace {

const chunk_key key8{"dc1", "bucket", "obj", "\"e\"", 8, 0};

/// A manual clock and a breaker over a scripted store that fails or succeeds on demand.
struct rig {
    std::chrono::steady_clock::time_point now{std::chrono::hours(1000)};
    errc failing{}; ///< the code every call fails with; errc{} (no value of errc): succeed
    std::vector<std::pair<breaker_state, breaker_state>> changes;
    layertest::scripted_store inner;
    breaker<layertest::scripted_store&> b;

    explicit rig(breaker_options o = {}) : b(inner, with_hooks(std::move(o))) {
        inner.plan = [this](int, store_op) {
            script s;
            if (failing != errc{}) s.fail = failing;
            return s;
        };
        REQUIRE(inner.memory().put_chunk({}, key8, 8, as_bytes("12345678")));
    }
    rig(const rig&) = delete;
    rig& operator=(const rig&) = delete;
    ~rig() = default;

    breaker_options with_hooks(breaker_options o) {
        o.clock = [this] { return now; };
        o.on_state_change = [this](breaker_state from, breaker_state to) { changes.emplace_back(from, to); };
        return o;
    }

    result<> get() {
        std::byte out[8];
        return get_chunk(b, {}, key8, 0, out);
    }
};

} // namespace

TEST_CASE("breaker: 10 transient failures within 30 s open it; then calls fail fast without I/O", "[layers][breaker]") {
    rig r;
    r.failing = errc::transient;
    for (int i = 0; i < 9; ++i) {
        CHECK(r.get().error().code == errc::transient);
        r.now += 3s; // 9 failures over 27 s
    }
    CHECK(r.b.state() == breaker_state::closed);
    CHECK(r.changes.empty());
    CHECK(r.get().error().code == errc::transient); // the 10th, 27 s after the first
    CHECK(r.b.state() == breaker_state::open);
    REQUIRE(r.changes.size() == 1);
    CHECK(r.changes[0] == std::pair{breaker_state::closed, breaker_state::open});

    const int calls = r.inner.calls;
    r.failing = errc{}; // the store has recovered, but the breaker does not know yet
    auto g = r.get();
    REQUIRE_FALSE(g);
    CHECK(g.error().code == errc::unavailable);
    CHECK(g.error().op == "get_chunk");
    CHECK(g.error().message.find("open") != std::string::npos);
    CHECK_FALSE(is_retryable(g.error().code));
    CHECK(r.b.stat({}, key8).error().code == errc::unavailable);
    CHECK(r.b.put_chunk({}, key8, 8, as_bytes("12345678")).error().code == errc::unavailable);
    CHECK(r.b.remove({}, key8).error().code == errc::unavailable);
    CHECK(r.b.self_test({}).error().code == errc::unavailable);
    CHECK(r.inner.calls == calls); // no call reached the store
    CHECK(r.inner.memory().size() == 1);
    const auto s = r.b.snapshot();
    CHECK(s.state == breaker_state::open);
    CHECK(s.rejected == 5);
    CHECK(s.failures == 10);
    CHECK(s.opened == 1);
}

TEST_CASE("breaker: failures spread wider than the window never open it", "[layers][breaker]") {
    rig r;
    r.failing = errc::auth;
    for (int i = 0; i < 40; ++i) {
        CHECK(r.get().error().code == errc::auth);
        r.now += 3500ms; // 10 consecutive failures span 31.5 s > 30 s
    }
    CHECK(r.b.state() == breaker_state::closed);
    CHECK(r.b.snapshot().failures == 40);
}

TEST_CASE("breaker: not_found, commit_lost and other answers are successes; cancellations count as nothing",
          "[layers][breaker]") {
    breaker_options o;
    o.failure_threshold = 2;
    rig r(std::move(o));
    for (const errc e : {errc::not_found, errc::commit_lost, errc::out_of_range, errc::protocol, errc::io_error,
                         errc::misconfigured, errc::cancelled, errc::deadline_exceeded, errc::invalid_argument,
                         errc::unavailable}) {
        r.failing = e;
        for (int i = 0; i < 5; ++i) CHECK(r.get().error().code == e);
    }
    CHECK(r.b.state() == breaker_state::closed);
    CHECK(r.b.snapshot().failures == 0);
    // A class added to `failures` counts.
    breaker_options hang;
    hang.failure_threshold = 2;
    hang.failures.insert(errc::deadline_exceeded);
    rig h(std::move(hang));
    h.failing = errc::deadline_exceeded;
    (void)h.get();
    (void)h.get();
    CHECK(h.b.state() == breaker_state::open);
}

TEST_CASE("breaker: after the open period 3 probes go through; their success closes it", "[layers][breaker]") {
    rig r;
    r.failing = errc::transient;
    for (int i = 0; i < 10; ++i) (void)r.get();
    REQUIRE(r.b.state() == breaker_state::open);
    r.now += 29s;
    CHECK(r.get().error().code == errc::unavailable);
    r.now += 1s; // open for 30 s: probes now
    r.failing = errc{};
    const int before = r.inner.calls;
    // Probes run concurrently: hold three in flight with a store call that
    // blocks, and see the fourth refused.
    r.inner.plan = [](int, store_op op) {
        return op == store_op::stat ? script{.stall = 200ms} : script{};
    };
    std::vector<std::thread> probes;
    probes.reserve(3);
    std::atomic<int> ok{0};
    for (int i = 0; i < 3; ++i)
        probes.emplace_back([&] {
            if (r.b.stat({}, key8)) ++ok;
        });
    r.inner.wait_active(3);
    CHECK(r.b.state() == breaker_state::half_open);
    auto fourth = r.get();
    REQUIRE_FALSE(fourth);
    CHECK(fourth.error().code == errc::unavailable);
    CHECK(fourth.error().message.find("half-open") != std::string::npos);
    for (auto& t : probes) t.join();
    CHECK(ok == 3);
    CHECK(r.inner.calls == before + 3);
    CHECK(r.b.state() == breaker_state::closed);
    CHECK(r.get().has_value());
    const std::vector<std::pair<breaker_state, breaker_state>> want{
        {breaker_state::closed, breaker_state::open},
        {breaker_state::open, breaker_state::half_open},
        {breaker_state::half_open, breaker_state::closed}};
    CHECK(r.changes == want);
    const auto s = r.b.snapshot();
    CHECK(s.probes == 3);
    CHECK(s.closed == 1);
    CHECK(s.half_opened == 1);
}

TEST_CASE("breaker: a failed probe opens it again for a full period", "[layers][breaker]") {
    rig r;
    r.failing = errc::transient;
    for (int i = 0; i < 10; ++i) (void)r.get();
    r.now += 30s;
    r.failing = errc{};
    CHECK(r.get().has_value()); // probe 1 succeeds
    r.failing = errc::transient;
    CHECK(r.get().error().code == errc::transient); // probe 2 fails
    CHECK(r.b.state() == breaker_state::open);
    r.failing = errc{};
    r.now += 29s;
    CHECK(r.get().error().code == errc::unavailable);
    r.now += 1s;
    for (int i = 0; i < 3; ++i) CHECK(r.get().has_value());
    CHECK(r.b.state() == breaker_state::closed);
    // Closed again with a clean slate: 9 new failures do not open it.
    r.failing = errc::transient;
    for (int i = 0; i < 9; ++i) (void)r.get();
    CHECK(r.b.state() == breaker_state::closed);
}

TEST_CASE("breaker: a probe ending with no verdict frees its slot", "[layers][breaker]") {
    breaker_options o;
    o.half_open_probes = 1;
    rig r(std::move(o));
    r.failing = errc::transient;
    for (int i = 0; i < 10; ++i) (void)r.get();
    r.now += 30s;
    r.failing = errc::cancelled;
    CHECK(r.get().error().code == errc::cancelled); // the probe: neutral
    CHECK(r.b.state() == breaker_state::half_open);
    r.failing = errc{};
    CHECK(r.get().has_value()); // the next call is a probe again, and closes it
    CHECK(r.b.state() == breaker_state::closed);
}

TEST_CASE("breaker: a call admitted before the breaker opened reports into nothing", "[layers][breaker]") {
    breaker_options o;
    o.failure_threshold = 1;
    rig r(std::move(o));
    r.inner.plan = [](int n, store_op) {
        // Call 0 stalls, then fails transient; call 1 fails at once and opens the breaker.
        return n == 0 ? script{.stall = 100ms, .fail = errc::transient} : script{.fail = errc::transient};
    };
    std::thread slow([&] { (void)r.b.stat({}, key8); });
    r.inner.wait_active(1);
    (void)r.get();
    REQUIRE(r.b.state() == breaker_state::open);
    r.now += 30s;
    // Half-open now; the stale failure of call 0 lands here and must not reopen it.
    r.inner.plan = [](int, store_op) { return script{}; };
    CHECK(r.get().has_value()); // probe 1 of 3
    slow.join();
    CHECK(r.b.state() == breaker_state::half_open);
    CHECK(r.get().has_value());
    CHECK(r.get().has_value());
    CHECK(r.b.state() == breaker_state::closed);
}

TEST_CASE("breaker: forwards the optional members and stacks", "[layers][breaker]") {
    layertest::scripted_store inner;
    breaker<metered<layertest::scripted_store&>> b{metered<layertest::scripted_store&>(inner)};
    static_assert(detail::has_put_chunk_prehashed<decltype(b)>);
    const std::string digest(64, 'a');
    REQUIRE(put_chunk_prehashed(b, {}, key8, as_bytes("12345678"), digest));
    CHECK(inner.prehashed == 1);
    CHECK(b.inner().snapshot()[store_op::put_chunk].succeeded() == 1);
}

TEST_CASE("breaker: Prometheus text parses back", "[layers][breaker][prometheus]") {
    breaker_options o;
    o.name = "s3";
    o.failure_threshold = 1;
    rig r(std::move(o));
    r.failing = errc::transient;
    (void)r.get();
    (void)r.get();
    std::string text;
    write_prometheus(text, r.b.snapshot());
    const auto p = layertest::parse_prometheus(text);
    for (const auto& problem : p.problems) FAIL_CHECK(problem);
    INFO(text);
    CHECK(p.value("cachestore_breaker_state", {{"store", "s3"}, {"state", "open"}}) == 1.0);
    CHECK(p.value("cachestore_breaker_state", {{"store", "s3"}, {"state", "closed"}}) == 0.0);
    CHECK(p.value("cachestore_breaker_transitions_total", {{"store", "s3"}, {"to", "open"}}) == 1.0);
    CHECK(p.value("cachestore_breaker_rejected_total", {{"store", "s3"}}) == 1.0);
    CHECK(p.value("cachestore_breaker_failures_total", {{"store", "s3"}}) == 1.0);
}

TEST_CASE("breaker: open_for = duration::max() keeps it open; no overflow lets a call through", "[layers][breaker]") {
    breaker_options o;
    o.failure_threshold = 1;
    o.open_for = std::chrono::steady_clock::duration::max();
    rig r(std::move(o));
    r.failing = errc::transient;
    CHECK(r.get().error().code == errc::transient);
    REQUIRE(r.b.state() == breaker_state::open);
    r.failing = errc{};
    const int before = r.inner.calls;
    for (const auto step : {std::chrono::hours(0), std::chrono::hours(1), std::chrono::hours(24 * 365 * 100)}) {
        r.now += step;
        INFO("the clock moved on by " << step.count() << " h");
        auto g = r.get();
        REQUIRE_FALSE(g.has_value());
        CHECK(g.error().code == errc::unavailable);
        CHECK(g.error().message.find("in -") == std::string::npos);
        CHECK(r.b.state() == breaker_state::open);
    }
    CHECK(r.inner.calls == before);
    CHECK(r.b.snapshot().half_opened == 0);
}

TEST_CASE("breaker: failure_threshold = INT_MAX allocates nothing up front, and counts", "[layers][breaker]") {
    const long rss_before = test_support::status_kib("VmRSS");
    breaker_options o;
    o.failure_threshold = INT_MAX;
    o.failure_window = std::chrono::steady_clock::duration::max();
    rig r(std::move(o));
    r.failing = errc::transient;
    for (int i = 0; i < 1000; ++i) CHECK(r.get().error().code == errc::transient);
    CHECK(r.b.state() == breaker_state::closed);
    CHECK(r.b.snapshot().failures == 1000);
    const long rss_after = test_support::status_kib("VmRSS");
    INFO("VmRSS " << rss_before << " KiB -> " << rss_after << " KiB");
    CHECK(rss_after - rss_before < 65536L); // KiB: far below the 16 GiB a ring of INT_MAX entries took
}

namespace {

using sdur = std::chrono::steady_clock::duration;
using stime = std::chrono::steady_clock::time_point;

/// t + d, saturated (the test's own clock must not overflow either).
stime later(stime t, sdur d) { return t > stime::max() - d ? stime::max() : t + d; }

std::string show(sdur d) {
    if (d == sdur::max()) return "max";
    if (d == sdur::min()) return "min";
    return std::to_string(d.count()) + "ns";
}

/// One breaker of the class test below: failures 1 s apart until it opens,
/// then calls at growing times after it opened, then probes; checks the
/// state it reports against what it does, and its counters.
void extreme_breaker_case(int threshold, sdur window, sdur open_for, int probes, stime start) {
    breaker_options o;
    o.failure_threshold = threshold;
    o.failure_window = window;
    o.open_for = open_for;
    o.half_open_probes = probes;
    rig r(std::move(o));
    r.now = start;
    std::ostringstream what;
    what << "threshold " << threshold << ", window " << show(window) << ", open_for " << show(open_for) << ", probes "
         << probes << ", clock at " << show(start.time_since_epoch());
    INFO(what.str());
    // The documented raising of values below 1 (counts) and 0 (durations).
    const int t_eff = threshold < 1 ? 1 : threshold;
    const int p_eff = probes < 1 ? 1 : probes;
    const sdur w_eff = window < sdur::zero() ? sdur::zero() : window;
    const sdur o_eff = open_for < sdur::zero() ? sdur::zero() : open_for;
    int made = 0, refused = 0, failed = 0;
    auto call = [&] { // true when the call reached the store
        const int reached = r.inner.calls;
        auto g = r.get();
        ++made;
        const bool refusal = r.inner.calls == reached;
        if (refusal) {
            ++refused;
            CHECK(g.error().code == errc::unavailable);
            CHECK(g.error().message.find(" -") == std::string::npos); // no negative wait
        } else if (!g) {
            ++failed;
        }
        return !refusal;
    };
    // Failures 1 s apart until it opens: the t_eff-th opens it when t_eff - 1 seconds fit in the window.
    constexpr int failing_calls = 5;
    r.failing = errc::transient;
    for (int i = 0; i < failing_calls && r.b.state() == breaker_state::closed; ++i) {
        if (i != 0) r.now += std::chrono::seconds(1);
        CHECK(call());
    }
    const bool opens = t_eff <= failing_calls && sdur(std::chrono::seconds(t_eff - 1)) <= w_eff;
    CHECK((r.b.state() == breaker_state::open) == opens);
    CHECK(failed == (opens ? t_eff : failing_calls));
    r.failing = errc{};
    if (opens) {
        // Refused exactly while open_for has not passed, and reported open meanwhile.
        const stime opened_at = r.now;
        const sdur after[] = {sdur::zero(), sdur(1), sdur(std::chrono::seconds(29)), sdur(std::chrono::seconds(30)),
                              sdur(std::chrono::hours(24 * 365 * 100))};
        bool through = false;
        for (const sdur d : after) {
            r.now = later(opened_at, d);
            INFO("a call " << show(d) << " after it opened");
            CHECK(r.b.state() == breaker_state::open);
            through = call();
            CHECK(through == (d >= o_eff));
            if (through) break;
            CHECK(r.b.state() == breaker_state::open);
        }
        if (through) {
            // That call was the first probe; three more succeed.
            for (int i = 0; i < 3; ++i) {
                CHECK(r.b.state() == (1 + i >= p_eff ? breaker_state::closed : breaker_state::half_open));
                CHECK(call());
            }
            CHECK(r.b.state() == (p_eff <= 4 ? breaker_state::closed : breaker_state::half_open));
        } else {
            CHECK(o_eff > after[std::size(after) - 1]);
        }
    }
    // The counters add up.
    const auto s = r.b.snapshot();
    CHECK(s.state == r.b.state());
    CHECK(static_cast<int>(s.rejected) == refused);
    CHECK(r.inner.calls + refused == made);
    CHECK(static_cast<int>(s.failures) == failed);
    CHECK(s.opened == (opens ? 1U : 0U));
    CHECK(s.half_opened <= s.opened);
    CHECK(s.closed <= s.half_opened);
    CHECK(s.probes <= static_cast<std::uint64_t>(r.inner.calls));
    CHECK(r.changes.size() == s.opened + s.half_opened + s.closed);
    for (std::size_t i = 1; i < r.changes.size(); ++i) CHECK(r.changes[i].first == r.changes[i - 1].second);
}

} // namespace

// The class "counters under extreme option values": every count and duration
// of breaker_options at negative, 0, 1, a typical value and max, crossed, on
// clocks at 0, positive and negative times. Whatever the values: no UB (UBSan
// in CI), the state it reports agrees with whether calls are refused, and the
// counters add up.
TEST_CASE("breaker: counters under extreme option values", "[layers][breaker][extreme]") {
    const int counts[] = {INT_MIN, -1, 0, 1, 3, INT_MAX};
    const sdur typical = std::chrono::seconds(30);
    const sdur durations[] = {sdur::min(), sdur(-1), sdur::zero(), sdur(1), typical, sdur::max()};
    const stime starts[] = {stime{}, stime{std::chrono::hours(1000)}, stime{-std::chrono::hours(1000)}};
    int cases = 0;
    for (const int threshold : counts)
        for (const sdur window : durations)
            for (const sdur open_for : durations)
                for (const int probes : counts)
                    for (const stime start : starts) {
                        extreme_breaker_case(threshold, window, open_for, probes, start);
                        ++cases;
                    }
    CHECK(cases == 6 * 6 * 6 * 6 * 3);
}
