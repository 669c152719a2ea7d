// cachestore::breaker: opens after enough failures within the window, fails
// fast without I/O and with errc::unavailable, lets probes through after the
// open period, closes when they succeed and opens again when one fails. The
// clock is injected: no test sleeps.
#include <catch2/catch.hpp>

#include <chrono>
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
