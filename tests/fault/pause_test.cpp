// Flow control at the transport (issue 22, docs/async.md "Flow control"): a
// body sink that answers sink_verdict::pause, driven the way the async
// engine will drive a transfer (its own multi handle; configure, arm,
// exchange, harvest, unhook from transport.hpp), against the fault server.
// It proves on this libcurl what the design assumed: the sink is never
// called while paused, every byte arrives once and in order across resumes,
// a pause longer than the low-speed window does not trip it, and what libcurl
// holds meanwhile is bounded by its receive buffer.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <curl/curl.h>

#include "cachestore/s3.hpp"
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

/// One GET of `key`, paused `pause_for` at each pause, driven like the
/// engine: multi handle, poll, and the resume outside libcurl's callbacks.
transfer_report run_paused_get(const std::string& key, std::int64_t size, pause_every& sink,
                               std::chrono::milliseconds pause_for, long low_speed_time_s) {
    sd::curl_global();
    CURLM* multi = curl_multi_init();
    CURL* easy = curl_easy_init();
    REQUIRE(multi != nullptr);
    REQUIRE(easy != nullptr);
    const std::string url = base_url() + key;
    curl_slist* headers = curl_slist_append(nullptr, ("Range: bytes=0-" + std::to_string(size - 1)).c_str());
    sd::http_request req;
    req.url = url.c_str();
    req.headers = headers;
    req.sink = sink.as_body_sink(size);
    req.low_speed_limit = 1024;
    req.low_speed_time_s = low_speed_time_s;
    sd::configure(easy, req);
    sd::response res;
    const context ctx;
    sd::exchange x{req, res, ctx, sclock::now() + 60s};
    bool custom_method = false;
    sd::arm(easy, custom_method, x);
    REQUIRE(curl_multi_add_handle(multi, easy) == CURLM_OK);

    transfer_report rep;
    sclock::time_point paused_since{};
    for (int running = 1; running != 0;) {
        REQUIRE(curl_multi_perform(multi, &running) == CURLM_OK);
        if (running == 0) break;
        if (x.pause_pending && paused_since == sclock::time_point{}) paused_since = sclock::now();
        if (x.pause_pending && sclock::now() - paused_since >= pause_for) {
            curl_off_t received = 0;
            curl_easy_getinfo(easy, CURLINFO_SIZE_DOWNLOAD_T, &received);
            rep.max_held_while_paused = std::max(rep.max_held_while_paused, received - res.delivered);
            sink.paused = false;
            x.pause_pending = false;
            paused_since = {};
            REQUIRE(curl_easy_pause(easy, CURLPAUSE_CONT) == CURLE_OK); // may call on_write: fine here
            continue;
        }
        REQUIRE(curl_multi_poll(multi, nullptr, 0, 20, nullptr) == CURLM_OK);
    }
    int queued = 0;
    while (CURLMsg* m = curl_multi_info_read(multi, &queued))
        if (m->msg == CURLMSG_DONE && m->easy_handle == easy) res.curl = m->data.result;
    sd::harvest(easy, res);
    curl_multi_remove_handle(multi, easy);
    sd::unhook(easy);
    curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
    curl_multi_cleanup(multi);
    rep.curl = res.curl;
    rep.status = res.status;
    rep.delivered = res.delivered;
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
    // was delivering, at most its receive buffer (CURLOPT_BUFFERSIZE, 16 KiB
    // by default; 16384 bytes measured); the kernel's socket buffer holds
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
