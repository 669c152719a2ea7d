// The layers over the S3 driver where only a real server shows the behaviour:
// tests/fault/fault_server.py stalls a GET after its headers (hedged), answers
// 503 to everything (breaker), and a port where nothing listens refuses the
// connection (breaker). Started by the test itself; fails, never skips, when
// python3 cannot start it.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "cachestore/layers.hpp"
#include "cachestore/cachestore.hpp"
#include "cachestore/s3.hpp"
#include "../fault/fault_process.hpp"

#ifndef FAULT_SERVER_PY
#error "FAULT_SERVER_PY must name fault_server.py"
#endif
#ifndef FAULT_PYTHON3
#error "FAULT_PYTHON3 must name the python3 interpreter"
#endif

using namespace cachestore;
using namespace std::chrono_literals;
using json = nlohmann::json;
using sclock = std::chrono::steady_clock;

namespace {

faultproc::fault_process& server() {
    static faultproc::fault_process s = [] {
        // Runtimes that start a helper thread with the first thread (TSan's
        // background thread) do it now, not inside a counted scenario.
        std::thread([] {}).join();
        return faultproc::fault_process(FAULT_PYTHON3, FAULT_SERVER_PY, {});
    }();
    INFO(s.problem());
    REQUIRE(s.port() > 0);
    return s;
}

void control(const char* method, const std::string& path, const std::string& body = {}) {
    s3::detail::curl_global();
    const auto a = server().control(method, path, body);
    INFO(path << ": " << a.body);
    REQUIRE(a.status == 200);
}

json log() {
    const auto a = server().control("GET", "/_fault/log");
    REQUIRE(a.status == 200);
    return json::parse(a.body);
}

std::size_t count_dir(const char* dir) {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
    return n;
}

s3::config config_at(int port) {
    s3::config c;
    c.endpoint = "http://127.0.0.1:" + std::to_string(port);
    c.bucket = "layerbucket";
    c.creds.access_key_id = "AKIDLAYERTEST000000";
    c.creds.secret_access_key = "layer/secret+key0000000000000000000000000";
    c.retry.max_attempts = 2;
    c.retry.base_delay = 1ms;
    c.retry.max_delay = 5ms;
    c.timeouts.connect = 2000ms;
    c.commit = s3::commit_mode::stat_then_put;
    return c;
}

s3::store make_store(int port) {
    auto st = s3::store::create(config_at(port));
    REQUIRE(st);
    return std::move(*st);
}

std::vector<std::byte> pattern(std::size_t n) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 131) ^ (i >> 8));
    return v;
}

const chunk_key key{"layers", "origin", "object", "\"etag\"", 1 << 20, 0};

std::size_t gets_in_log() {
    std::size_t n = 0;
    for (const auto& e : log())
        if (e["method"] == "GET") ++n;
    return n;
}

} // namespace

TEST_CASE("hedged over S3: a GET stalled after its headers loses to the second attempt, which is not left behind",
          "[layers][hedged][fault]") {
    control("POST", "/_fault/reset");
    const std::size_t fds0 = count_dir("/proc/self/fd"), tasks0 = count_dir("/proc/self/task");
    const auto data = pattern(std::size_t{256} * 1024);
    {
        hedge_options o;
        o.delay = 50ms;
        hedged<s3::store> h(make_store(server().port()), o);
        REQUIRE(h.put_chunk({}, key, static_cast<std::int64_t>(data.size()), std::span<const std::byte>(data)));
        control("POST", "/_fault/clearlog");
        control("POST", "/_fault/script",
                json::array({{{"method", "GET"}, {"count", "once"}, {"action", "stall"}, {"phase", "headers"}, {"seconds", 5}}})
                    .dump());
        std::vector<std::byte> out(data.size());
        const auto t0 = sclock::now();
        auto r = get_chunk(h, context::with_timeout(20s), key, 0, out);
        const auto took = sclock::now() - t0;
        REQUIRE(r);
        CHECK(out == data);
        CHECK(took < 2s); // not the 5 s stall
        CHECK(gets_in_log() == 2);
        const auto s = h.snapshot();
        CHECK(s.get_chunk.hedges == 1);
        CHECK(s.get_chunk.hedge_wins == 1);
        // The stopped attempt's connection is closed, not pooled: the next GET works at once.
        std::fill(out.begin(), out.end(), std::byte{0});
        REQUIRE(get_chunk(h, context::with_timeout(20s), key, 0, out));
        CHECK(out == data);
    }
    CHECK(count_dir("/proc/self/fd") == fds0);
    CHECK(count_dir("/proc/self/task") <= tasks0);
}

TEST_CASE("hedged over S3: both attempts stalled end at the deadline, together", "[layers][hedged][fault]") {
    control("POST", "/_fault/reset");
    const std::size_t fds0 = count_dir("/proc/self/fd");
    const auto data = pattern(std::size_t{64} * 1024);
    {
        hedge_options o;
        o.delay = 30ms;
        hedged<s3::store> h(make_store(server().port()), o);
        REQUIRE(h.put_chunk({}, key, static_cast<std::int64_t>(data.size()), std::span<const std::byte>(data)));
        control("POST", "/_fault/script",
                json::array({{{"method", "GET"}, {"count", "always"}, {"action", "stall"}, {"phase", "headers"}, {"seconds", 5}}})
                    .dump());
        std::vector<std::byte> out(data.size());
        const auto t0 = sclock::now();
        auto r = get_chunk(h, context::with_timeout(300ms), key, 0, out);
        const auto took = sclock::now() - t0;
        REQUIRE_FALSE(r);
        CHECK(r.error().code == errc::deadline_exceeded);
        CHECK(took < 1500ms);
        CHECK(h.snapshot().get_chunk.hedges == 1);
    }
    CHECK(count_dir("/proc/self/fd") == fds0);
}

TEST_CASE("breaker over S3: 503s open it; while open nothing reaches the server; probes close it",
          "[layers][breaker][fault]") {
    control("POST", "/_fault/reset");
    auto now = sclock::now();
    breaker_options o;
    o.clock = [&now] { return now; };
    breaker<s3::store> b(make_store(server().port()), o);
    control("POST", "/_fault/script",
            json::array({{{"method", "*"}, {"count", "always"}, {"action", "status"}, {"status", 503}, {"code", "SlowDown"}}})
                .dump());
    for (int i = 0; i < 10; ++i) {
        auto r = b.stat({}, key);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == errc::transient);
        CHECK(r.error().attempts == 2); // the driver retried each call
    }
    CHECK(b.state() == breaker_state::open);
    control("POST", "/_fault/clearlog");
    for (int i = 0; i < 20; ++i) {
        auto r = b.stat({}, key);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == errc::unavailable);
    }
    std::vector<std::byte> out(16);
    CHECK(get_chunk(b, {}, key, 0, out).error().code == errc::unavailable);
    CHECK(log().empty()); // no request at all
    // The store recovers; after the open period three probes close the breaker.
    control("POST", "/_fault/script", "[]");
    now += 30s;
    for (int i = 0; i < 3; ++i) CHECK(b.stat({}, key).error().code == errc::not_found); // a miss is a success
    CHECK(b.state() == breaker_state::closed);
    CHECK(log().size() == 3);
}

TEST_CASE("breaker over S3: refused connections open it", "[layers][breaker][fault]") {
    const int port = faultproc::refused_port();
    REQUIRE(port > 0);
    breaker<s3::store> b(make_store(port));
    for (int i = 0; i < 10; ++i) {
        auto r = b.stat(context::with_timeout(10s), key);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == errc::transient);
    }
    REQUIRE(b.state() == breaker_state::open);
    const auto created = b.inner().connections_created();
    std::vector<std::byte> out(16);
    for (int i = 0; i < 100; ++i) CHECK(get_chunk(b, {}, key, 0, out).error().code == errc::unavailable);
    CHECK(b.inner().connections_created() == created);
    CHECK(b.snapshot().rejected == 100);
}

// A tiered store (docs/tiered.md) whose far tier is the S3 driver behind the
// fault server: the far tier's failures reach a caller only when the near tier
// cannot answer, and a put the far tier refused leaves the near tier empty.
TEST_CASE("tiered over S3: a far tier answering 503 fails no read the near tier serves, and no put reaches the near tier",
          "[layers][tiered][fault]") {
    control("POST", "/_fault/reset");
    const auto data = pattern(std::size_t{128} * 1024);
    const chunk_key other{"layers", "origin", "object", "\"etag\"", 1 << 20, 1};
    tiered<memory_store, s3::store> t(std::piecewise_construct, std::tuple<>{}, std::forward_as_tuple(make_store(server().port())));
    REQUIRE(t.put_chunk({}, key, static_cast<std::int64_t>(data.size()), std::span<const std::byte>(data)));
    REQUIRE(t.near().stat({}, key)); // both tiers
    control("POST", "/_fault/script",
            json::array({{{"method", "*"}, {"count", "always"}, {"action", "status"}, {"status", 503}, {"code", "SlowDown"}}})
                .dump());
    control("POST", "/_fault/clearlog");
    std::vector<std::byte> out(data.size());
    REQUIRE(get_chunk(t, {}, key, 0, out));
    CHECK(out == data);
    REQUIRE(t.stat({}, key));
    CHECK(log().empty()); // near hits: the far tier was never asked
    // What only the far tier could answer fails with its error class.
    CHECK(get_chunk(t, {}, other, 0, out).error().code == errc::transient);
    auto put = t.put_chunk({}, other, static_cast<std::int64_t>(data.size()), std::span<const std::byte>(data));
    REQUIRE_FALSE(put);
    CHECK(put.error().code == errc::transient);
    CHECK(t.near().stat({}, other).error().code == errc::not_found); // nothing the far tier did not take
    const auto s = t.snapshot();
    CHECK(s.get_hits[static_cast<int>(tier::near)] == 1);
    CHECK(s.near_put_failures == 0);
    CHECK(s.promotions_done == 0);
}

TEST_CASE("tiered over S3: a far read cut mid-body is retried by the driver; the promoted copy is exact",
          "[layers][tiered][fault]") {
    control("POST", "/_fault/reset");
    const auto data = pattern(std::size_t{512} * 1024);
    memory_store near;
    tiered<memory_store&, s3::store> t(near, make_store(server().port()));
    REQUIRE(t.far().put_chunk({}, key, static_cast<std::int64_t>(data.size()), std::span<const std::byte>(data)));
    control("POST", "/_fault/script",
            json::array({{{"method", "GET"}, {"count", "once"}, {"action", "reset_mid_body"}, {"after", 100000}}}).dump());
    std::vector<std::byte> out;
    REQUIRE(t.get_chunk({}, key, 0, static_cast<std::int64_t>(data.size()), [&](std::span<const std::byte> b) {
        out.insert(out.end(), b.begin(), b.end());
        return true;
    }));
    CHECK(out == data); // each byte once, in order, across the driver's resumed transfer
    for (int i = 0; i < 500 && t.snapshot().promotions_done == 0; ++i) std::this_thread::sleep_for(10ms);
    REQUIRE(t.snapshot().promotions_done == 1);
    std::vector<std::byte> promoted(data.size());
    REQUIRE(get_chunk(near, {}, key, 0, promoted));
    CHECK(promoted == data);
}
