// The async engine's transport (issue 22, docs/async.md): libcurl's multi
// interface driven by detail::epoll_loop through multi_driver's socket and
// timer callbacks, with the request steps of transport.hpp (configure, arm,
// exchange, harvest, unhook), against the fault server. Proves on this
// libcurl what the engine relies on:
//   - flow control: a sink answering sink_verdict::pause is never called
//     while paused, every byte arrives once and in order across resumes, a
//     pause longer than the low-speed window does not trip it, and libcurl
//     holds at most its receive buffer meanwhile (also for chunked answers);
//   - many transfers on one thread, connections bounded;
//   - libcurl's own timeouts fire through the timer callback;
//   - kept connections closed while idle (by the server, or by libcurl while
//     a forked child holds a copy): the loop neither loses nor spins.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "cachestore/s3.hpp"
#include "cachestore/detail/epoll_loop.hpp"
#include "cachestore/s3/detail/multi_driver.hpp"
#include "cachestore/s3/detail/transport.hpp"
#include "fault_process.hpp"

#ifndef FAULT_SERVER_PY
#error "FAULT_SERVER_PY must name tests/fault/fault_server.py"
#endif
#ifndef FAULT_PYTHON3
#error "FAULT_PYTHON3 must name a python3 interpreter"
#endif

using namespace cachestore;
using namespace std::chrono_literals;
using sclock = std::chrono::steady_clock;
namespace sd = cachestore::s3::detail;

namespace {

faultproc::fault_process& server() {
    static faultproc::fault_process s(FAULT_PYTHON3, FAULT_SERVER_PY, {});
    INFO(s.problem());
    REQUIRE(s.port() > 0);
    return s;
}

std::string base_url() { return "http://127.0.0.1:" + std::to_string(server().port()) + "/pausebucket/"; }

std::vector<std::byte> pattern(std::size_t n) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 131) ^ (i >> 9));
    return v;
}

/// Stores `body` as `key` on the fault server (it checks no signature).
void put_object(const std::string& key, const std::vector<std::byte>& body) {
    s3::config c;
    c.endpoint = "http://127.0.0.1:" + std::to_string(server().port());
    c.bucket = "pausebucket";
    c.creds.access_key_id = "AKIDPAUSETEST0000000";
    c.creds.secret_access_key = "pause/secret+key0000000000000000000000000";
    auto st = s3::store::create(c);
    REQUIRE(st);
    auto r = st->debug_put_with_payload_hash({}, key, body, "UNSIGNED-PAYLOAD");
    INFO((r ? std::string() : r.error().message));
    REQUIRE(r);
}

/// A sink that pauses after every `every` bytes and records what it saw.
struct pause_every {
    std::size_t every = 0;
    std::vector<std::byte> got;
    std::size_t since_pause = 0;
    bool paused = false;
    int calls_while_paused = 0;
    int pauses = 0;

    sd::body_sink as_body_sink(std::int64_t limit) {
        sd::body_sink s;
        s.self = this;
        s.limit = limit;
        s.exact = true;
        s.accept = [](void*, const sd::response& r) { return r.status == 200 || r.status == 206; };
        s.write = [](void* self, std::span<const std::byte> b) {
            auto& p = *static_cast<pause_every*>(self);
            if (p.paused) ++p.calls_while_paused;
            p.got.insert(p.got.end(), b.begin(), b.end());
            p.since_pause += b.size();
            if (p.since_pause < p.every) return sink_verdict::proceed;
            p.since_pause = 0;
            p.paused = true;
            ++p.pauses;
            return sink_verdict::pause;
        };
        return s;
    }
};

struct transfer_report {
    CURLcode curl = CURLE_OK;
    long status = 0;
    std::int64_t delivered = 0;
    curl_off_t max_held_while_paused = 0; ///< bytes libcurl had received beyond what the sink took, at a resume
};

/// One easy handle set up for a ranged GET of `key` (`size` bytes) into
/// `sink`, armed with its exchange; removed and freed with it.
struct get_transfer {
    std::string url;
    curl_slist* headers = nullptr;
    sd::http_request req;
    sd::response res;
    context ctx;
    sd::exchange x;
    CURL* easy = curl_easy_init();
    bool custom_method = false;
    bool done = false;

    get_transfer(const std::string& key, std::int64_t size, sd::body_sink sink, long low_speed_time_s)
        : url(base_url() + key),
          headers(curl_slist_append(nullptr, ("Range: bytes=0-" + std::to_string(size - 1)).c_str())),
          x{req, res, ctx, sclock::now() + 60s} {
        REQUIRE(easy != nullptr);
        req.url = url.c_str();
        req.headers = headers;
        req.sink = sink;
        req.low_speed_limit = 1024;
        req.low_speed_time_s = low_speed_time_s;
        sd::configure(easy, req);
        // What the engine sets for a pausing sink's transfer (configure's is
        // receive_buffer, 512 KiB, for sinks that never pause).
        curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, sd::pausing_receive_buffer);
        sd::arm(easy, custom_method, x);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, this);
    }
    get_transfer(const get_transfer&) = delete;
    get_transfer& operator=(const get_transfer&) = delete;
    ~get_transfer() {
        sd::unhook(easy);
        curl_easy_cleanup(easy);
        curl_slist_free_all(headers);
    }
};

/// The loop, the driver and a done callback that harvests and removes.
struct event_rig {
    cachestore::detail::epoll_loop loop;
    sd::multi_driver driver;
    int finished = 0;

    explicit event_rig(long max_connections) : driver(loop, max_connections, &event_rig::on_done, this) {
        REQUIRE(loop.ok());
        REQUIRE(driver.ok());
    }
    static void on_done(void* self, CURL* e, CURLcode rc) {
        auto& rig = *static_cast<event_rig*>(self);
        void* priv = nullptr;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        auto& t = *static_cast<get_transfer*>(priv);
        t.res.curl = rc;
        sd::harvest(e, t.res);
        rig.driver.remove(e);
        t.done = true;
        ++rig.finished;
    }
};

/// One GET of `key`, paused `pause_for` at each pause, on the event loop;
/// the resume runs on the loop thread, outside libcurl's callbacks.
transfer_report run_paused_get(const std::string& key, std::int64_t size, pause_every& sink,
                               std::chrono::milliseconds pause_for, long low_speed_time_s) {
    event_rig rig(4);
    get_transfer t(key, size, sink.as_body_sink(size), low_speed_time_s);
    REQUIRE(rig.driver.add(t.easy) == CURLM_OK);
    transfer_report rep;
    sclock::time_point paused_since{};
    const auto give_up = sclock::now() + 60s;
    while (!t.done && sclock::now() < give_up) {
        rig.loop.run_for(10ms);
        if (!t.x.pause_pending) continue;
        if (paused_since == sclock::time_point{}) paused_since = sclock::now();
        if (sclock::now() - paused_since < pause_for) continue;
        curl_off_t received = 0;
        curl_easy_getinfo(t.easy, CURLINFO_SIZE_DOWNLOAD_T, &received);
        rep.max_held_while_paused = std::max(rep.max_held_while_paused, received - t.res.delivered);
        sink.paused = false;
        t.x.pause_pending = false;
        paused_since = {};
        REQUIRE(rig.driver.resume(t.easy) == CURLE_OK);
    }
    REQUIRE(t.done);
    rep.curl = t.res.curl;
    rep.status = t.res.status;
    rep.delivered = t.res.delivered;
    return rep;
}

/// Stores `mib` MiB as `key`, reads it back through a sink pausing every
/// `every` bytes for `pause_for`, and checks the bytes and the outcome.
transfer_report paused_round_trip(const std::string& key, std::size_t mib, std::size_t every,
                                  std::chrono::milliseconds pause_for, long low_speed_time_s, pause_every& sink) {
    const std::size_t size = mib << 20;
    const auto body = pattern(size);
    put_object(key, body);
    sink.every = every;
    const auto rep = run_paused_get(key, static_cast<std::int64_t>(size), sink, pause_for, low_speed_time_s);
    INFO(curl_easy_strerror(rep.curl));
    CHECK(rep.curl == CURLE_OK);
    CHECK(rep.status == 206);
    CHECK(rep.delivered == static_cast<std::int64_t>(size));
    CHECK(sink.calls_while_paused == 0);
    CHECK((sink.got == body)); // (not expanded: megabytes)
    return rep;
}

} // namespace

TEST_CASE("a pausing sink: never called while paused, every byte once and in order", "[pause]") {
    pause_every sink;
    const auto rep = paused_round_trip("pause-8m", 8, std::size_t{512} << 10, 50ms, 10, sink);
    CHECK(sink.pauses >= 15);
    // What libcurl holds for a paused transfer: the rest of the receive it
    // was delivering, at most its receive buffer (CURLOPT_BUFFERSIZE,
    // pausing_receive_buffer = 16 KiB; 16384 bytes measured); the kernel's socket buffer holds
    // the rest, then TCP's window stops the server.
    WARN("libcurl held at most " << rep.max_held_while_paused << " bytes beyond the sink's while paused");
    CHECK(rep.max_held_while_paused <= CURL_MAX_WRITE_SIZE);
}

TEST_CASE("a pause longer than the low-speed window does not trip it", "[pause]") {
    // libcurl skips its low-speed check for a paused receive (7.88.1 here):
    // three 1.5 s pauses under a 1 s window at 1 KiB/s end with CURLE_OK.
    pause_every sink;
    const auto t0 = sclock::now();
    paused_round_trip("pause-3m", 3, std::size_t{1} << 20, 1500ms, 1, sink);
    CHECK(sink.pauses >= 2);
    CHECK(sclock::now() - t0 >= 3s);
}

TEST_CASE("a chunked answer pauses within the same bound", "[pause]") {
    // Transfer-Encoding: chunked, 16 KiB chunks (the fault server's long_body
    // rule with nothing extra): decoding must not make libcurl hold more.
    const auto a = server().control("POST", "/_fault/script",
                                    R"([{"method": "GET", "key": "pause-chunked", "count": "always",
                                         "action": "long_body", "mode": "chunked", "extra": 0}])");
    REQUIRE(a.status == 200);
    pause_every sink;
    const auto rep = paused_round_trip("pause-chunked", 4, std::size_t{256} << 10, 50ms, 10, sink);
    CHECK(server().control("POST", "/_fault/reset").status == 200);
    CHECK(sink.pauses >= 15);
    WARN("chunked: libcurl held at most " << rep.max_held_while_paused << " bytes beyond the sink's while paused");
    CHECK(rep.max_held_while_paused <= CURL_MAX_WRITE_SIZE);
}

TEST_CASE("64 transfers on one thread: every byte, at most max_connections connections", "[loop]") {
    const std::size_t size = std::size_t{256} << 10;
    const auto body = pattern(size);
    put_object("loop-256k", body);
    CHECK(server().control("POST", "/_fault/clearlog").status == 200);
    event_rig rig(8);
    std::vector<pause_every> sinks(64);
    std::vector<std::unique_ptr<get_transfer>> ts;
    ts.reserve(sinks.size());
    for (auto& k : sinks) {
        k.every = size + 1; // never pauses
        ts.push_back(std::make_unique<get_transfer>("loop-256k", static_cast<std::int64_t>(size),
                                                    k.as_body_sink(static_cast<std::int64_t>(size)), 10));
        REQUIRE(rig.driver.add(ts.back()->easy) == CURLM_OK);
    }
    const auto give_up = sclock::now() + 60s;
    while (rig.finished < 64 && sclock::now() < give_up) rig.loop.run_for(100ms);
    REQUIRE(rig.finished == 64);
    for (std::size_t i = 0; i < ts.size(); ++i) {
        INFO("transfer " << i << ": " << curl_easy_strerror(ts[i]->res.curl));
        CHECK(ts[i]->res.curl == CURLE_OK);
        CHECK(ts[i]->res.status == 206);
        CHECK((sinks[i].got == body));
    }
    const auto a = server().control("GET", "/_fault/log");
    REQUIRE(a.status == 200);
    const auto log = nlohmann::json::parse(a.body);
    std::set<int> conns;
    for (const auto& e : log) conns.insert(e["conn"].get<int>());
    INFO(conns.size() << " connections for " << log.size() << " requests");
    CHECK(log.size() == 64);
    CHECK(conns.size() <= 8);
    ts.clear(); // every handle removed: the driver may go
    CHECK(rig.driver.sockets() == 0); // the idle cache's sockets are parked, not watched
}

namespace {

/// One GET of `key` (`body`'s bytes) on the rig, to the end. `too_old`:
/// libcurl treats every idle connection as too old to reuse, and closes it.
void get_whole(event_rig& rig, const std::string& key, const std::vector<std::byte>& body, bool too_old = false) {
    pause_every sink;
    sink.every = body.size() + 1; // never pauses
    const auto size = static_cast<std::int64_t>(body.size());
    get_transfer t(key, size, sink.as_body_sink(size), 10);
    if (too_old) curl_easy_setopt(t.easy, CURLOPT_MAXAGE_CONN, 0L);
    REQUIRE(rig.driver.add(t.easy) == CURLM_OK);
    const auto give_up = sclock::now() + 10s;
    while (!t.done && sclock::now() < give_up) rig.loop.run_for(100ms);
    REQUIRE(t.done);
    CHECK(t.res.curl == CURLE_OK);
    CHECK(t.res.status == 206);
    CHECK((sink.got == body));
}

/// How many waits of 30 ms the loop makes in 150 ms with nothing to do: about
/// 5, unless a descriptor it cannot clear is reported at every wait.
int idle_waits(event_rig& rig) {
    int waits = 0;
    const auto t0 = sclock::now();
    while (sclock::now() - t0 < 150ms) {
        rig.loop.run_for(30ms);
        ++waits;
    }
    return waits;
}

/// Every GET of `key` answered, then its connection closed by the server
/// `delay_s` later, as idle-timeout reapers do.
void script_idle_close(const std::string& key, double delay_s) {
    const auto a = server().control("POST", "/_fault/script",
                                    R"([{"method": "GET", "key": ")" + key + R"(", "count": "always",
                                         "action": "respond_then_close", "delay": )" +
                                        std::to_string(delay_s) + "}]");
    REQUIRE(a.status == 200);
}

} // namespace

TEST_CASE("kept connections the server closes while idle, or libcurl closes: the next transfers complete, the loop "
          "never spins",
          "[loop]") {
    // After a transfer the driver parks its connection's socket (registered
    // with epoll, no callback). The server then closes it: the parked socket
    // becomes ready and its registration ends. Or libcurl finds it closed at
    // the next request and closes it through the driver, whose registration
    // ends before the close; the new connection usually gets the same number
    // and is registered anew.
    const auto body = pattern(4096);
    put_object("loop-idle-close", body);
    script_idle_close("loop-idle-close", 0.02);
    event_rig rig(1);
    for (int i = 0; i < 6; ++i) {
        INFO("transfer " << i);
        get_whole(rig, "loop-idle-close", body);
        if (i % 2 == 1) continue; // the next request at once: libcurl may find the connection closed
        CHECK(idle_waits(rig) <= 8);
        CHECK(rig.loop.watched() == 0);
    }
    CHECK(server().control("POST", "/_fault/reset").status == 200);
}

TEST_CASE("a parked connection libcurl closes while a forked child holds a copy: its registration ends before the "
          "close, the loop never spins",
          "[loop][fork]") {
    // epoll registers a descriptor's open file, not its number: a close in
    // this process leaves the registration while a child still has the file.
    // Were a parked socket closed without the driver's unwatch first, the
    // server's FIN on it would be reported at every wait from then on, under
    // a number that now names another socket.
    const auto body = pattern(4096);
    put_object("loop-fork-close", body);
    script_idle_close("loop-fork-close", 0.2);
    event_rig rig(1);
    get_whole(rig, "loop-fork-close", body); // its socket parked
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::pause(); // holds copies of every descriptor until killed
        ::_exit(0);
    }
    get_whole(rig, "loop-fork-close", body, true); // libcurl closes the parked connection (too old), connects anew
    rig.loop.run_for(300ms);                        // the server closes both connections
    const int waits = idle_waits(rig);
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    CHECK(waits <= 8);
    CHECK(server().control("POST", "/_fault/reset").status == 200);
}

TEST_CASE("libcurl's timeouts fire through the timer callback", "[loop]") {
    // A stalled answer and CURLOPT_TIMEOUT_MS: nothing but the loop's timer
    // can end it, since the socket never becomes readable.
    const auto a = server().control("POST", "/_fault/script",
                                    R"([{"method": "GET", "key": "loop-stall", "count": "always",
                                         "action": "stall", "phase": "status", "seconds": 5}])");
    REQUIRE(a.status == 200);
    event_rig rig(2);
    pause_every sink;
    get_transfer t("loop-stall", 100, sink.as_body_sink(100), 10);
    curl_easy_setopt(t.easy, CURLOPT_TIMEOUT_MS, 300L);
    const auto t0 = sclock::now();
    REQUIRE(rig.driver.add(t.easy) == CURLM_OK);
    while (!t.done && sclock::now() - t0 < 10s) rig.loop.run_for(1000ms);
    const auto took = sclock::now() - t0;
    CHECK(server().control("POST", "/_fault/reset").status == 200);
    REQUIRE(t.done);
    CHECK(t.res.curl == CURLE_OPERATION_TIMEDOUT);
    CHECK(took >= 300ms);
    CHECK(took < 2s);
}
