// Fault injection against the S3 driver: a scriptable S3 server
// (fault_server.py) answers with errors, resets, lies about framing, stalls
// and drips, and every scenario proves the same three things:
//
//   - no wrong byte: the sink only ever sees the stored chunk's byte at each
//     offset, and a successful call delivers each byte exactly once;
//   - no partial commit: after a failed put_chunk the server holds nothing;
//   - no hang: every failure ends within the retry budget and the deadline,
//     a stop request ends a call within 100 ms, and no descriptor or thread
//     is leaked.
//
// The error class of every fault is the one documented in the report that
// accompanies this file (docs/reliability.md).
#include "fault_harness.hpp"
#include "../proc_status.hpp"

using namespace fault_harness;
using test_support::reset_peak_rss;

namespace {

struct http_fault {
    const char* name;
    const char* code;
    const char* body; // fault_server body kind
    int status;
    errc expect;
};

// The documented classes of HTTP error answers to a GET (which has a body).
const http_fault get_faults[] = {
    {"500 InternalError", "InternalError", "xml", 500, errc::transient},
    {"502 with an HTML body", "", "html", 502, errc::transient},
    {"503 SlowDown", "SlowDown", "xml", 503, errc::transient},
    {"504 with an empty body", "", "empty", 504, errc::transient},
    {"429 without a code", "", "empty", 429, errc::transient},
    {"400 RequestTimeout", "RequestTimeout", "xml", 400, errc::transient},
    {"403 SignatureDoesNotMatch", "SignatureDoesNotMatch", "xml", 403, errc::auth},
    {"403 InvalidAccessKeyId", "InvalidAccessKeyId", "xml", 403, errc::auth},
    {"403 RequestTimeTooSkewed", "RequestTimeTooSkewed", "xml", 403, errc::auth},
    {"403 AccessDenied", "AccessDenied", "xml", 403, errc::auth},
    {"400 ExpiredToken", "ExpiredToken", "xml", 400, errc::auth},
    {"404 NoSuchBucket", "NoSuchBucket", "xml", 404, errc::misconfigured},
    {"403 with an HTML body", "", "html", 403, errc::auth},
    {"503 with truncated XML", "SlowDown", "truncated_xml", 503, errc::transient},
    {"403 with truncated XML", "SignatureDoesNotMatch", "truncated_xml", 403, errc::auth},
    {"404 with truncated XML", "NoSuchKey", "truncated_xml", 404, errc::not_found},
    {"412 to an unconditional GET", "PreconditionFailed", "xml", 412, errc::protocol},
};

json status_extra(const http_fault& f) {
    json e{{"status", f.status}, {"body", f.body}};
    if (f.code[0] != '\0') e["code"] = f.code;
    return e;
}

} // namespace

// =============================================================================
// HTTP error answers
// =============================================================================

TEST_CASE("fault: the server works as a plain S3 store", "[fault]") {
    scenario sc;
    checking_sink sink;
    auto r = sc.get(1000, 100000, sink);
    INFO(r);
    REQUIRE(r.has_value());
    CHECK_FALSE(sink.wrong);
    CHECK(sink.received == 100000);
    CHECK(sc.stored_exactly());
    auto info = sc.store().stat({}, sc.key);
    REQUIRE(info.has_value());
    CHECK(info->size == static_cast<std::int64_t>(sc.data.size()));
    CHECK(sc.put().error().code == errc::commit_lost);
    REQUIRE(sc.store().remove({}, sc.key).has_value());
    CHECK(sc.absent());
    CHECK(sc.store().stat({}, sc.key).error().code == errc::not_found);
    sc.finish();
}

TEST_CASE("fault: get_chunk error answers are classified, retried only when transient", "[fault][get]") {
    for (const auto& f : get_faults) {
        DYNAMIC_SECTION("always: " << f.name) {
            scenario sc;
            script(json::array({sc.rule("GET", "status", "always", status_extra(f))}));
            checking_sink sink;
            const auto t0 = sclock::now();
            auto r = sc.get(0, 4096, sink);
            INFO(r);
            REQUIRE_FALSE(r.has_value());
            const error& e = r.error();
            CHECK(e.code == f.expect);
            CHECK(e.http_status == f.status);
            CHECK(sink.received == 0);
            const int want_attempts = is_retryable(f.expect) ? max_attempts : 1;
            CHECK(e.attempts == want_attempts);
            CHECK(static_cast<int>(sc.log("GET").size()) == want_attempts);
            CHECK(ms_since(t0) < 2000);
            if (std::string_view(f.body) == "xml") {
                CHECK(e.s3_code == f.code);
                CHECK(e.request_id.rfind("FAULT", 0) == 0);
            }
            CHECK(e.to_string().find(sc.cfg.creds.secret_access_key) == std::string::npos);
            sc.finish();
        }
        if (is_retryable(f.expect)) {
            DYNAMIC_SECTION("once, then success: " << f.name) {
                scenario sc;
                script(json::array({sc.rule("GET", "status", "once", status_extra(f))}));
                checking_sink sink;
                auto r = sc.get(7, 50000, sink);
                INFO(r);
                REQUIRE(r.has_value());
                CHECK_FALSE(sink.wrong);
                CHECK(sink.received == 50000);
                const auto log = sc.log("GET");
                REQUIRE(log.size() == 2);
                CHECK(log[0]["action"] == "status");
                CHECK(log[1]["action"] == "none");
                CHECK(log[1]["range"] == "bytes=7-50006");
                sc.finish();
            }
        }
    }
}

TEST_CASE("fault: stat (HEAD has no body) is classified from the status alone", "[fault][stat]") {
    struct head_fault {
        const char* code;
        int status;
        errc expect;
    };
    // A HEAD answer has no error document: 400 cannot tell RequestTimeout from
    // ExpiredToken (protocol), and 404 cannot tell NoSuchBucket from NoSuchKey.
    const head_fault faults[] = {
        {"InternalError", 500, errc::transient}, {"SlowDown", 503, errc::transient},
        {"", 429, errc::transient},              {"SignatureDoesNotMatch", 403, errc::auth},
        {"ExpiredToken", 400, errc::protocol},   {"NoSuchBucket", 404, errc::not_found},
    };
    for (const auto& f : faults) {
        DYNAMIC_SECTION("HEAD " << f.status << " " << f.code) {
            scenario sc;
            json extra{{"status", f.status}};
            if (f.code[0] != '\0') extra["code"] = f.code;
            script(json::array({sc.rule("HEAD", "status", "always", extra)}));
            auto r = sc.store().stat(context::with_timeout(10s), sc.key);
            REQUIRE_FALSE(r.has_value());
            CHECK(r.error().code == f.expect);
            CHECK(r.error().http_status == f.status);
            CHECK(r.error().attempts == (is_retryable(f.expect) ? max_attempts : 1));
            sc.finish();
        }
    }
    SECTION("HEAD 503 once, then success") {
        scenario sc;
        script(json::array({sc.rule("HEAD", "status", "once", {{"status", 503}, {"code", "SlowDown"}})}));
        auto r = sc.store().stat(context::with_timeout(10s), sc.key);
        INFO((r.has_value() ? std::string() : r.error().to_string()));
        REQUIRE(r.has_value());
        CHECK(r->size == static_cast<std::int64_t>(sc.data.size()));
        CHECK(sc.log("HEAD").size() == 2);
        sc.finish();
    }
}

TEST_CASE("fault: remove retries transient answers and refuses auth", "[fault][remove]") {
    SECTION("503 once") {
        scenario sc;
        script(json::array({sc.rule("DELETE", "status", "once", {{"status", 503}, {"code", "SlowDown"}})}));
        REQUIRE(sc.store().remove(context::with_timeout(10s), sc.key).has_value());
        CHECK(sc.log("DELETE").size() == 2);
        CHECK(sc.absent());
        sc.finish();
    }
    SECTION("403 AccessDenied") {
        scenario sc;
        script(json::array({sc.rule("DELETE", "status", "always", {{"status", 403}, {"code", "AccessDenied"}})}));
        auto r = sc.store().remove(context::with_timeout(10s), sc.key);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::auth);
        CHECK(r.error().attempts == 1);
        CHECK(sc.stored_exactly());
        sc.finish();
    }
    SECTION("404 NoSuchBucket is not 'already removed'") {
        scenario sc;
        script(json::array({sc.rule("DELETE", "status", "always", {{"status", 404}, {"code", "NoSuchBucket"}})}));
        auto r = sc.store().remove(context::with_timeout(10s), sc.key);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::misconfigured);
        sc.finish();
    }
}

// =============================================================================
// Error bodies: hostile, huge, malformed
// =============================================================================

TEST_CASE("fault: error bodies with DTDs and entities are never expanded", "[fault][errbody]") {
    SECTION("internal and external entities") {
        scenario sc;
        script(json::array({sc.rule("GET", "status", "always", {{"status", 503}, {"body", "entities"}})}));
        checking_sink sink;
        auto r = sc.get(0, 100, sink);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::transient); // from the status: the Code is not a known one
        CHECK(r.error().s3_code == "&code;");
        CHECK(r.error().message.find("root:") == std::string::npos);
        CHECK(r.error().attempts == max_attempts);
        sc.finish();
    }
    SECTION("billion laughs") {
        scenario sc;
        script(json::array({sc.rule("GET", "status", "always", {{"status", 403}, {"body", "billion_laughs"}})}));
        checking_sink sink;
        const auto t0 = sclock::now();
        auto r = sc.get(0, 100, sink);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::auth);
        CHECK(r.error().s3_code == "&lol9;");
        CHECK(r.error().message.size() <= 512);
        CHECK(ms_since(t0) < 1000);
        sc.finish();
    }
}

TEST_CASE("fault: a huge error body keeps memory bounded", "[fault][errbody]") {
    SECTION("50 MB 503 once, then success") {
        scenario sc;
        script(json::array({sc.rule("GET", "status", "once", {{"status", 503}, {"code", "SlowDown"}, {"body", "huge"}})}));
        const bool can_measure = reset_peak_rss();
        const long before = test_support::status_kib("VmHWM");
        checking_sink sink;
        auto r = sc.get(0, 10000, sink);
        const long peak = test_support::status_kib("VmHWM");
        INFO(r);
        REQUIRE(r.has_value());
        CHECK(sink.received == 10000);
        if (can_measure) CHECK(peak - before < 16L * 1024); // far below the 50 MB body
        sc.finish();
    }
    SECTION("50 MB 403: auth, bounded fields") {
        scenario sc;
        script(json::array({sc.rule("GET", "status", "always", {{"status", 403}, {"code", "AccessDenied"}, {"body", "huge"}})}));
        const bool can_measure = reset_peak_rss();
        const long before = test_support::status_kib("VmHWM");
        checking_sink sink;
        auto r = sc.get(0, 10000, sink);
        const long peak = test_support::status_kib("VmHWM");
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::auth);
        CHECK(r.error().s3_code == "AccessDenied");
        CHECK(r.error().message.size() <= 512);
        if (can_measure) CHECK(peak - before < 16L * 1024);
        sc.finish();
    }
}

// =============================================================================
// Broken connections and framing lies on GET
// =============================================================================

TEST_CASE("fault: a reset before the status line is transient and retried", "[fault][get][reset]") {
    for (const char* action : {"reset_before_status", "close_before_status"}) {
        DYNAMIC_SECTION(action << " once") {
            scenario sc;
            script(json::array({sc.rule("GET", action, "once")}));
            checking_sink sink;
            auto r = sc.get(100, 200000, sink);
            INFO(r);
            REQUIRE(r.has_value());
            CHECK_FALSE(sink.wrong);
            CHECK(sink.received == 200000);
            CHECK(sc.log("GET").size() == 2);
            sc.finish();
        }
        DYNAMIC_SECTION(action << " always") {
            scenario sc;
            script(json::array({sc.rule("GET", action, "always")}));
            checking_sink sink;
            auto r = sc.get(100, 200000, sink);
            REQUIRE_FALSE(r.has_value());
            CHECK(r.error().code == errc::transient);
            CHECK(r.error().attempts == max_attempts);
            CHECK(sink.received == 0);
            CHECK(sc.log("GET").size() >= static_cast<std::size_t>(max_attempts));
            sc.finish();
        }
    }
}

TEST_CASE("fault: a kept-alive GET connection reset before the answer is replayed at once", "[fault][get][reset]") {
    scenario sc;
    sc.cfg.retry.max_attempts = 1;
    sc.open();
    checking_sink sink;
    REQUIRE(sc.get(0, 10, sink).has_value()); // leaves a kept-alive connection in the pool
    script(json::array({sc.rule("GET", "reset_before_status", "once")}));
    auto r = sc.get(5, 100000, sink);
    INFO(r);
    REQUIRE(r.has_value());
    CHECK(sink.received == 100000);
    CHECK_FALSE(sink.wrong);
    sc.finish();
}

TEST_CASE("fault: a server that closes kept-alive connections is harmless", "[fault][reset]") {
    // Every answer is followed by the server closing the connection, at once
    // or a moment later (an idle reaper). Every operation must succeed: a
    // dead pooled connection is detected, or libcurl replays the request (and
    // rewinds a PUT body) on a new one; only when the close races a PUT body
    // already going out does it cost one (transient) attempt.
    for (double delay : {0.0, 0.005, 0.02}) {
        DYNAMIC_SECTION("close " << delay << " s after each answer") {
            scenario sc(64 * KiB, false);
            sc.cfg.retry.max_attempts = 2;
            sc.open();
            script(json::array({json{{"action", "respond_then_close"}, {"delay", delay}, {"count", "always"}}}));
            for (int i = 0; i < 6; ++i) {
                sc.key.index = i;
                sc.okey = *sc.store().object_key(sc.key);
                auto p = sc.put();
                INFO(i << ": " << p);
                REQUIRE(p.has_value());
                checking_sink sink;
                auto g = sc.get(100, 30000, sink);
                INFO(i << ": " << g);
                REQUIRE(g.has_value());
                CHECK(sink.received == 30000);
                auto st = sc.store().stat({}, sc.key);
                REQUIRE(st.has_value());
                REQUIRE(sc.store().remove({}, sc.key).has_value());
            }
            sc.finish();
        }
    }
}

TEST_CASE("fault: a refused connection is transient, retried within the budget", "[fault][reset]") {
    // A port nobody listens on: bind one, then close it.
    int port = 0;
    {
        const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        socklen_t len = sizeof a;
        REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port = ntohs(a.sin_port);
        close(fd);
    }
    scenario sc(1000, false);
    sc.cfg.endpoint = "http://127.0.0.1:" + std::to_string(port);
    sc.open();
    checking_sink sink;
    const auto t0 = sclock::now();
    auto r = sc.get(0, 10, sink);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::transient);
    CHECK(r.error().attempts == max_attempts);
    CHECK(r.error().http_status == 0);
    CHECK(ms_since(t0) < 1000);
    auto p = sc.put();
    REQUIRE_FALSE(p.has_value());
    CHECK(p.error().code == errc::transient);
    sc.finish();
}

TEST_CASE("fault: an answer that is not HTTP at all is misconfigured (wrong endpoint)", "[fault][framing]") {
    SECTION("on a new connection: not retried") {
        scenario sc;
        sc.open(); // an empty pool: the GET opens a new connection
        script(json::array({sc.rule("GET", "garbage", "always")}));
        checking_sink sink;
        auto r = sc.get(0, 100, sink);
        INFO(r);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::misconfigured);
        CHECK(r.error().attempts == 1);
        CHECK(sink.received == 0);
        sc.finish();
    }
    SECTION("on a kept-alive connection: retried once on a new one, then misconfigured") {
        scenario sc;
        checking_sink sink;
        REQUIRE(sc.get(0, 10, sink).has_value()); // leaves a kept-alive connection where GETs go
        script(json::array({sc.rule("GET", "garbage", "always")}));
        auto r = sc.get(0, 100, sink);
        INFO(r);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::misconfigured);
        CHECK(r.error().attempts == 2);
        CHECK(sink.received == 0);
        sc.finish();
    }
}

TEST_CASE("fault: a response header over libcurl's limit is protocol, said so, and not retried", "[fault][framing]") {
    // libcurl 7.88 reports it as CURLE_OUT_OF_MEMORY with no message.
    for (const char* method : {"GET", "HEAD"}) {
        DYNAMIC_SECTION(method) {
            scenario sc;
            const json big = {{"x-amz-meta-huge", std::string(std::size_t{200} * 1024, 'a')}};
            script(json::array({sc.rule(method, "status", "always", {{"status", 200}, {"body", "empty"}, {"headers", big}})}));
            checking_sink sink;
            result<> r = std::string_view(method) == "GET" ? sc.get(0, 100, sink)
                                                           : [&]() -> result<> {
                auto i = sc.store().stat(context::with_timeout(10s), sc.key);
                if (i) return {};
                return std::unexpected(i.error());
            }();
            REQUIRE_FALSE(r.has_value());
            INFO(r.error().to_string());
            CHECK(r.error().code == errc::protocol);
            CHECK_THAT(r.error().message, Catch::Contains("larger than libcurl accepts"));
            CHECK(sc.log(method).size() == 1);
            sc.finish();
        }
    }
}

TEST_CASE("fault: a body cut short resumes where it stopped, each byte once", "[fault][get][resume]") {
    struct cut {
        const char* action;
        json extra;
    };
    const cut cuts[] = {
        {"reset_mid_body", {{"after", 70000}}},
        {"short_body", {{"after", 70000}}},
        {"short_body_nolength", {{"after", 70000}}},
        {"chunked_cut", {{"after", 65536}}},
    };
    for (const auto& c : cuts) {
        DYNAMIC_SECTION(c.action << " once, then success") {
            scenario sc;
            script(json::array({sc.rule("GET", c.action, "once", c.extra)}));
            checking_sink sink;
            auto r = sc.get(1000, 200000, sink);
            INFO(r);
            REQUIRE(r.has_value());
            CHECK_FALSE(sink.wrong);
            CHECK(sink.received == 200000);
            const auto log = sc.log("GET");
            REQUIRE(log.size() == 2);
            CHECK(log[0]["range"] == "bytes=1000-200999");
            // The retry asks only for what the sink has not received.
            const std::string second = log[1]["range"];
            CHECK(second != "bytes=1000-200999");
            CHECK(second.ends_with("-200999"));
            sc.finish();
        }
        DYNAMIC_SECTION(c.action << " always: transient after max_attempts, only correct bytes") {
            scenario sc;
            json extra = c.extra;
            extra["after"] = 20000;
            script(json::array({sc.rule("GET", c.action, "always", extra)}));
            checking_sink sink;
            auto r = sc.get(1000, 200000, sink);
            REQUIRE_FALSE(r.has_value());
            CHECK(r.error().code == errc::transient);
            CHECK(r.error().attempts == max_attempts);
            CHECK_FALSE(sink.wrong); // a prefix of correct bytes, which the caller discards
            CHECK(sink.received < 200000);
            CHECK(sc.log("GET").size() == static_cast<std::size_t>(max_attempts));
            sc.finish();
        }
    }
}

TEST_CASE("fault: framing lies are protocol errors, never delivered bytes", "[fault][get][framing]") {
    struct lie {
        const char* name;
        const char* action;
        json extra;
        std::int64_t off, n;
        errc expect;
        bool bytes_may_arrive; ///< a correct prefix may reach the sink before the lie shows
    };
    const lie lies[] = {
        {"body longer than Content-Range (Content-Length counts it)", "long_body", {{"mode", "length"}}, 10, 5000, errc::protocol, false},
        {"body longer than the range (chunked)", "long_body", {{"mode", "chunked"}}, 10, 50000, errc::protocol, true},
        {"body longer than the range (close-delimited)", "long_body", {{"mode", "close"}}, 10, 50000, errc::protocol, true},
        {"Content-Range for other bytes", "bad_content_range", {{"mode", "shifted"}}, 10, 5000, errc::protocol, false},
        {"unparseable Content-Range", "bad_content_range", {{"mode", "garbage"}}, 10, 5000, errc::protocol, false},
        {"missing Content-Range", "bad_content_range", {{"mode", "missing"}}, 10, 5000, errc::protocol, false},
        {"impossible Content-Range total", "bad_content_range", {{"mode", "wrong_total"}}, 10, 5000, errc::protocol, false},
        {"200 with the whole object (offset > 0)", "whole_object", json::object(), 10, 5000, errc::protocol, false},
        {"200 with the whole object (offset 0, shorter range)", "whole_object", json::object(), 0, 5000, errc::protocol, false},
    };
    for (const auto& l : lies) {
        DYNAMIC_SECTION(l.name) {
            scenario sc;
            script(json::array({sc.rule("GET", l.action, "always", l.extra)}));
            checking_sink sink;
            auto r = sc.get(l.off, l.n, sink);
            INFO(r);
            REQUIRE_FALSE(r.has_value());
            CHECK(r.error().code == l.expect);
            CHECK(r.error().attempts == 1); // not retried: the server would lie again
            CHECK_FALSE(sink.wrong);
            if (!l.bytes_may_arrive) CHECK(sink.received == 0);
            CHECK(sink.received < l.n);
            sc.finish();
        }
    }
    for (double delay : {0.0, 0.05}) {
        DYNAMIC_SECTION("stray bytes after an honest body (" << delay << " s later) never reach the next call") {
            scenario sc;
            script(json::array({sc.rule("GET", "long_body", 1, {{"mode", "trailing"}, {"extra", 300}, {"delay", delay}})}));
            checking_sink sink;
            auto r = sc.get(10, 5000, sink);
            INFO(r);
            REQUIRE(r.has_value()); // the answer itself was complete and correct
            CHECK(sink.received == 5000);
            CHECK_FALSE(sink.wrong);
            std::this_thread::sleep_for(100ms);
            for (int i = 0; i < 3; ++i) {
                auto r2 = sc.get(20, 6000, sink);
                INFO(r2);
                CHECK(r2.has_value());
                CHECK(sink.received == 6000);
                CHECK_FALSE(sink.wrong);
            }
            sc.finish();
        }
    }
    SECTION("200 with an empty body: out_of_range, not retried") {
        scenario sc;
        script(json::array({sc.rule("GET", "status", "always", {{"status", 200}, {"body", "empty"}})}));
        checking_sink sink;
        auto r = sc.get(0, 100, sink);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::out_of_range);
        CHECK(r.error().attempts == 1);
        sc.finish();
    }
    SECTION("200 with the whole object when the range is the whole object is fine") {
        scenario sc(5000);
        script(json::array({sc.rule("GET", "whole_object", "always")}));
        checking_sink sink;
        auto r = sc.get(0, 5000, sink);
        INFO(r);
        REQUIRE(r.has_value());
        CHECK(sink.received == 5000);
        CHECK_FALSE(sink.wrong);
        sc.finish();
    }
    SECTION("a range past the stored size is out_of_range, not a short read") {
        scenario sc(5000);
        checking_sink sink;
        auto r = sc.get(4000, 2000, sink);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::out_of_range);
        CHECK(sink.received == 0);
        auto r2 = sc.get(6000, 10, sink);
        REQUIRE_FALSE(r2.has_value());
        CHECK(r2.error().code == errc::out_of_range); // 416 InvalidRange
        sc.finish();
    }
}

// =============================================================================
// Stalls, drips, deadlines and stop requests: no hang
// =============================================================================

TEST_CASE("fault: a stalled server ends at the context deadline", "[fault][time]") {
    for (const char* phase : {"headers", "status"}) {
        DYNAMIC_SECTION("stall after " << phase) {
            scenario sc;
            script(json::array({sc.rule("GET", "stall", "always", {{"seconds", 5}, {"phase", phase}})}));
            checking_sink sink;
            const auto ctx = context::with_timeout(600ms);
            auto r = sc.get(0, 1000, sink, ctx);
            const auto late = std::chrono::duration<double, std::milli>(sclock::now() - ctx.deadline()).count();
            REQUIRE_FALSE(r.has_value());
            CHECK(r.error().code == errc::deadline_exceeded);
            CHECK(late >= -1.0);
            CHECK(late < 100.0);
            CHECK(sink.received == 0);
            sc.finish();
        }
    }
    SECTION("the operation timeout applies when the context has none") {
        scenario sc;
        sc.cfg.timeouts.operation = 500ms;
        sc.open();
        script(json::array({sc.rule("GET", "stall", "always", {{"seconds", 5}})}));
        checking_sink sink;
        const auto t0 = sclock::now();
        auto r = sc.get(0, 1000, sink, context{});
        const double took = ms_since(t0);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::deadline_exceeded);
        CHECK(took >= 499.0);
        CHECK(took < 600.0);
        sc.finish();
    }
}

TEST_CASE("fault: a stop request from another thread ends a stalled call within 100 ms", "[fault][time]") {
    SECTION("stalled GET") {
        scenario sc;
        script(json::array({sc.rule("GET", "stall", "always", {{"seconds", 5}})}));
        std::stop_source stop;
        sclock::time_point stopped_at{};
        std::atomic<bool> stopped{false};
        std::jthread stopper([&] {
            std::this_thread::sleep_for(300ms);
            stopped_at = sclock::now();
            stopped = true;
            stop.request_stop();
        });
        checking_sink sink;
        auto r = sc.get(0, 1000, sink, context(stop.get_token(), sclock::now() + 10s));
        const auto end = sclock::now();
        stopper.join();
        REQUIRE(stopped.load());
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::cancelled);
        CHECK(std::chrono::duration<double, std::milli>(end - stopped_at).count() < 100.0);
        sc.finish();
    }
    SECTION("stalled PUT (no answer after the body)") {
        scenario sc(64 * KiB, false);
        script(json::array({sc.rule("PUT", "stall", "always", {{"seconds", 5}, {"phase", "status"}})}));
        std::stop_source stop;
        sclock::time_point stopped_at{};
        std::jthread stopper([&] {
            std::this_thread::sleep_for(300ms);
            stopped_at = sclock::now();
            stop.request_stop();
        });
        auto r = sc.put(context(stop.get_token(), sclock::now() + 10s));
        const auto end = sclock::now();
        stopper.join();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::cancelled);
        CHECK(std::chrono::duration<double, std::milli>(end - stopped_at).count() < 100.0);
        CHECK(sc.absent());
        sc.finish();
    }
    SECTION("waiting between retries") {
        scenario sc;
        sc.cfg.retry.base_delay = 5000ms;
        sc.cfg.retry.max_delay = 5000ms;
        sc.cfg.retry.max_attempts = 20;
        sc.open();
        script(json::array({sc.rule("GET", "status", "always", {{"status", 503}, {"code", "SlowDown"}})}));
        std::stop_source stop;
        sclock::time_point stopped_at{};
        std::jthread stopper([&] {
            std::this_thread::sleep_for(300ms);
            stopped_at = sclock::now();
            stop.request_stop();
        });
        checking_sink sink;
        auto r = sc.get(0, 1000, sink, context(stop.get_token(), sclock::now() + 30s));
        const auto end = sclock::now();
        stopper.join();
        REQUIRE_FALSE(r.has_value());
        // Either stopped while waiting or the jittered wait happened to be short
        // and the next attempt was stopped: cancelled in both cases.
        CHECK(r.error().code == errc::cancelled);
        CHECK(std::chrono::duration<double, std::milli>(end - stopped_at).count() < 100.0);
        sc.finish();
    }
}

TEST_CASE("fault: retries never wait past the deadline", "[fault][time]") {
    scenario sc;
    sc.cfg.retry.base_delay = 2000ms;
    sc.cfg.retry.max_delay = 2000ms;
    sc.cfg.retry.max_attempts = 20;
    sc.open();
    script(json::array({sc.rule("GET", "status", "always", {{"status", 503}, {"code", "SlowDown"}})}));
    checking_sink sink;
    const auto ctx = context::with_timeout(400ms);
    auto r = sc.get(0, 1000, sink, ctx);
    const auto late = std::chrono::duration<double, std::milli>(sclock::now() - ctx.deadline()).count();
    REQUIRE_FALSE(r.has_value());
    // Transient when no time was left for another attempt, or the deadline
    // itself if a short jittered wait fit and the clock ran out during it.
    CHECK((r.error().code == errc::transient || r.error().code == errc::deadline_exceeded));
    CHECK(late < 100.0);
    sc.finish();
}

TEST_CASE("fault: a one-byte-per-second drip trips the low-speed limit", "[fault][time]") {
    SECTION("once: the retry resumes after the dripped bytes") {
        scenario sc;
        sc.cfg.timeouts.low_speed_time = 1s;
        sc.cfg.timeouts.low_speed_limit = 1024;
        sc.open();
        script(json::array({sc.rule("GET", "drip", "once", {{"interval", 1.0}})}));
        checking_sink sink;
        const auto t0 = sclock::now();
        auto r = sc.get(500, 100000, sink);
        const double took = ms_since(t0);
        INFO(r);
        REQUIRE(r.has_value());
        CHECK_FALSE(sink.wrong);
        CHECK(sink.received == 100000);
        CHECK(took < 4000);
        const auto log = sc.log("GET");
        REQUIRE(log.size() == 2);
        CHECK(log[1]["range"] != log[0]["range"]); // resumed after the dripped bytes
        sc.finish();
    }
    SECTION("always: transient within the budget") {
        scenario sc;
        sc.cfg.timeouts.low_speed_time = 1s;
        sc.cfg.retry.max_attempts = 2;
        sc.open();
        script(json::array({sc.rule("GET", "drip", "always", {{"interval", 1.0}})}));
        checking_sink sink;
        const auto t0 = sclock::now();
        auto r = sc.get(0, 100000, sink);
        const double took = ms_since(t0);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::transient);
        CHECK(r.error().attempts == 2);
        CHECK_FALSE(sink.wrong);
        CHECK(took < 2 * 3000 + 500);
        sc.finish();
    }
}

// =============================================================================
// put_chunk: nothing partial is ever committed
// =============================================================================

TEST_CASE("fault: put_chunk under faults commits all or nothing", "[fault][put]") {
    SECTION("server closes mid-upload, always: transient, absent") {
        scenario sc(512 * KiB, false);
        script(json::array({sc.rule("PUT", "close_mid_upload", "always", {{"after", 100000}})}));
        auto r = sc.put();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::transient);
        CHECK(r.error().attempts == max_attempts);
        // libcurl itself replays the first PUT once: it went out on the
        // kept-alive connection of put_chunk's stat.
        CHECK(sc.log("PUT").size() >= static_cast<std::size_t>(max_attempts));
        script(json::array());
        CHECK(sc.store().stat({}, sc.key).error().code == errc::not_found); // HEAD without faults
        CHECK(sc.absent());
        sc.finish();
    }
    SECTION("server closes mid-upload, once: the retry commits the exact bytes") {
        scenario sc(512 * KiB, false);
        script(json::array({sc.rule("PUT", "close_mid_upload", "once", {{"after", 100000}})}));
        auto r = sc.put();
        INFO(r);
        REQUIRE(r.has_value());
        CHECK(sc.stored_exactly());
        sc.finish();
    }
    SECTION("500 after the body, once: retried with the whole body") {
        scenario sc(300 * KiB, false);
        script(json::array({sc.rule("PUT", "status", "once", {{"status", 500}, {"code", "InternalError"}})}));
        auto r = sc.put();
        INFO(r);
        REQUIRE(r.has_value());
        const auto log = sc.log("PUT");
        REQUIRE(log.size() == 2);
        CHECK(log[0]["received"] == 300 * 1024);
        CHECK(log[1]["received"] == 300 * 1024);
        CHECK(sc.stored_exactly());
        sc.finish();
    }
    SECTION("500 after the body, always: transient, absent") {
        scenario sc(300 * KiB, false);
        script(json::array({sc.rule("PUT", "status", "always", {{"status", 500}, {"code", "InternalError"}})}));
        auto r = sc.put();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::transient);
        CHECK(r.error().attempts == max_attempts);
        CHECK(sc.absent());
        sc.finish();
    }
    SECTION("503 SlowDown on the stat before the put: retried") {
        scenario sc(1000, false);
        script(json::array({sc.rule("HEAD", "status", "once", {{"status", 503}})}));
        auto r = sc.put();
        INFO(r);
        REQUIRE(r.has_value());
        CHECK(sc.log("HEAD").size() == 2);
        CHECK(sc.stored_exactly());
        sc.finish();
    }
    SECTION("409 ConditionalRequestConflict: retried") {
        scenario sc(1000, false);
        sc.cfg.commit = s3::commit_mode::if_none_match;
        sc.open();
        script(json::array({sc.rule("PUT", "status", 2, {{"status", 409}, {"code", "ConditionalRequestConflict"}})}));
        auto r = sc.put();
        INFO(r);
        REQUIRE(r.has_value());
        const auto log = sc.log("PUT");
        REQUIRE(log.size() == 3);
        CHECK(log[2]["if_none_match"] == "*");
        CHECK(sc.stored_exactly());
        sc.finish();
    }
    SECTION("409 ConditionalRequestConflict always: transient after max_attempts") {
        scenario sc(1000, false);
        sc.cfg.commit = s3::commit_mode::if_none_match;
        sc.open();
        script(json::array({sc.rule("PUT", "status", "always", {{"status", 409}, {"code", "ConditionalRequestConflict"}})}));
        auto r = sc.put();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::transient);
        CHECK(r.error().attempts == max_attempts);
        CHECK(sc.absent());
        sc.finish();
    }
    SECTION("412 to a conditional PUT: commit_lost, not retried") {
        scenario sc(1000, false);
        sc.cfg.commit = s3::commit_mode::if_none_match;
        sc.open();
        script(json::array({sc.rule("PUT", "status", "always", {{"status", 412}, {"code", "PreconditionFailed"}})}));
        auto r = sc.put();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::commit_lost);
        CHECK(r.error().attempts == 1);
        CHECK(sc.log("PUT").size() == 1);
        sc.finish();
    }
    SECTION("a writer racing between stat and put: the server's real 412 is commit_lost") {
        scenario sc(1000);
        sc.cfg.commit = s3::commit_mode::if_none_match;
        sc.open();
        // The stat misses (as if the other writer had not finished yet) ...
        script(json::array({sc.rule("HEAD", "status", "once", {{"status", 404}})}));
        const auto other = pattern(1000, 1);
        auto r = sc.store().put_chunk(context::with_timeout(10s), sc.key, 1000, std::span<const std::byte>(other));
        // ... and the conditional PUT finds the committed chunk.
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::commit_lost);
        CHECK(sc.stored_exactly()); // the first commit is the truth
        sc.finish();
    }
    SECTION("the commit succeeded but the answer was lost (if_none_match): commit_lost, stored") {
        scenario sc(1000, false);
        sc.cfg.commit = s3::commit_mode::if_none_match;
        sc.open();
        script(json::array({sc.rule("PUT", "commit_then_reset", "once")}));
        auto r = sc.put();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::commit_lost); // our own commit: the stored bytes are ours
        CHECK(sc.stored_exactly());
        sc.finish();
    }
    SECTION("the commit succeeded but the answer was lost (stat_then_put): the retry rewrites the same bytes") {
        scenario sc(1000, false);
        script(json::array({sc.rule("PUT", "commit_then_reset", "once")}));
        auto r = sc.put();
        INFO(r);
        REQUIRE(r.has_value());
        CHECK(sc.stored_exactly());
        sc.finish();
    }
    SECTION("403 on PUT: auth, not retried, absent") {
        scenario sc(1000, false);
        script(json::array({sc.rule("PUT", "status", "always", {{"status", 403}, {"code", "SignatureDoesNotMatch"}})}));
        auto r = sc.put();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::auth);
        CHECK(r.error().attempts == 1);
        CHECK(sc.absent());
        sc.finish();
    }
    SECTION("403 before the body was read: auth, absent") {
        scenario sc(2 * MiB, false);
        sc.key.chunk_size = 4 << 20;
        sc.okey = *sc.store().object_key(sc.key);
        script(json::array({sc.rule("PUT", "status", "always", {{"status", 403}, {"code", "AccessDenied"}, {"early", true}})}));
        auto r = sc.put();
        INFO(r);
        REQUIRE_FALSE(r.has_value());
        // The answer arrives while the body is still going out: libcurl stops
        // sending and reports it.
        CHECK(r.error().code == errc::auth);
        CHECK(r.error().s3_code == "AccessDenied");
        CHECK(r.error().attempts == 1);
        CHECK(sc.absent());
        sc.finish();
    }
    SECTION("503 before the body was read, once: retried, exact bytes") {
        scenario sc(2 * MiB, false);
        sc.key.chunk_size = 4 << 20;
        sc.okey = *sc.store().object_key(sc.key);
        script(json::array({sc.rule("PUT", "status", "once", {{"status", 503}, {"code", "SlowDown"}, {"early", true}})}));
        auto r = sc.put();
        INFO(r);
        REQUIRE(r.has_value());
        CHECK(sc.stored_exactly());
        sc.finish();
    }
    SECTION("a HEAD answered with a body does not poison the PUT after it") {
        scenario sc(1000, false);
        script(json::array({sc.rule("HEAD", "head_with_body", 1, {{"delay", 0.02}})}));
        auto r = sc.put();
        INFO(r);
        REQUIRE(r.has_value());
        CHECK(sc.stored_exactly());
        sc.finish();
    }
    SECTION("a server that stops reading mid-upload: a stop request ends it, nothing committed") {
        scenario sc(16 * MiB, false);
        sc.key.chunk_size = 16 << 20;
        sc.okey = *sc.store().object_key(sc.key);
        script(json::array({sc.rule("PUT", "stall_mid_upload", "always", {{"after", 100000}, {"seconds", 5}})}));
        std::stop_source stop;
        sclock::time_point stopped_at{};
        std::jthread stopper([&] {
            std::this_thread::sleep_for(400ms);
            stopped_at = sclock::now();
            stop.request_stop();
        });
        auto r = sc.put(context(stop.get_token(), sclock::now() + 10s));
        const auto end = sclock::now();
        stopper.join();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::cancelled);
        CHECK(std::chrono::duration<double, std::milli>(end - stopped_at).count() < 100.0);
        CHECK(sc.absent());
        sc.finish();
    }
    SECTION("HEAD 403 for absent keys (no ListBucket): auth, nothing uploaded") {
        scenario sc(1000, false);
        script(json::array({sc.rule("HEAD", "status", "always", {{"status", 403}, {"absent_only", true}})}));
        auto r = sc.put();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::auth);
        CHECK(sc.log("PUT").empty());
        CHECK(sc.absent());
        sc.finish();
    }
    SECTION("404 NoSuchBucket on PUT: misconfigured") {
        scenario sc(1000, false);
        script(json::array({sc.rule("PUT", "status", "always", {{"status", 404}, {"code", "NoSuchBucket"}})}));
        auto r = sc.put();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::misconfigured);
        CHECK(sc.absent());
        sc.finish();
    }
    SECTION("a kept-alive connection reset before the answer: replayed at once, even without retries") {
        scenario sc(200 * KiB, false);
        sc.cfg.retry.max_attempts = 1; // libcurl's own replay on a fresh connection must suffice
        sc.open();
        // put_chunk's stat (HEAD) leaves the connection kept alive: the PUT reuses it.
        script(json::array({sc.rule("PUT", "reset_before_status", "once")}));
        std::size_t at = 0;
        auto src = [&](std::span<std::byte> buf) -> result<std::size_t> {
            const std::size_t n = std::min(buf.size(), sc.data.size() - at);
            std::memcpy(buf.data(), sc.data.data() + at, n);
            at += n;
            return n;
        };
        auto r = sc.store().put_chunk(context::with_timeout(10s), sc.key, static_cast<std::int64_t>(sc.data.size()), src);
        INFO(r);
        REQUIRE(r.has_value());
        CHECK(sc.stored_exactly());
        const auto log = sc.log();
        REQUIRE(log.size() == 3); // HEAD, PUT (reset), PUT on a new connection
        CHECK(log[0]["conn"] == log[1]["conn"]);
        CHECK(log[2]["conn"] != log[1]["conn"]);
        sc.finish();
    }
    SECTION("a stalled PUT ends at the deadline and commits nothing") {
        scenario sc(64 * KiB, false);
        script(json::array({sc.rule("PUT", "stall", "always", {{"seconds", 5}, {"phase", "status"}})}));
        const auto ctx = context::with_timeout(500ms);
        auto r = sc.put(ctx);
        const auto late = std::chrono::duration<double, std::milli>(sclock::now() - ctx.deadline()).count();
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::deadline_exceeded);
        CHECK(late < 100.0);
        CHECK(sc.absent());
        sc.finish();
    }
}

// =============================================================================
// self_test
// =============================================================================

TEST_CASE("fault: self_test refuses unusable buckets with an actionable message", "[fault][self_test]") {
    SECTION("a healthy server passes and is seen to enforce If-None-Match") {
        scenario sc(1000, false);
        sc.cfg.commit = s3::commit_mode::auto_detect;
        sc.open();
        auto r = sc.store().self_test(context::with_timeout(10s));
        INFO(r);
        REQUIRE(r.has_value());
        CHECK(sc.store().last_self_test().conditional_put_enforced);
        CHECK(sc.store().conditional_commit());
        sc.finish();
    }
    SECTION("HEAD 403 for absent keys: auth, mentions ListBucket") {
        scenario sc(1000, false);
        script(json::array({json{{"method", "HEAD"}, {"absent_only", true}, {"action", "status"}, {"status", 403}, {"count", "always"}}}));
        auto r = sc.store().self_test(context::with_timeout(10s));
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::auth);
        CHECK(r.error().message.find("ListBucket") != std::string::npos);
        sc.finish();
    }
    SECTION("GET and HEAD 403 AccessDenied for absent keys: auth, mentions ListBucket") {
        scenario sc(1000, false);
        script(json::array({json{{"absent_only", true}, {"key", ".cachestore-selftest/"}, {"action", "status"},
                                 {"status", 403}, {"code", "AccessDenied"}, {"count", "always"}}}));
        auto r = sc.store().self_test(context::with_timeout(10s));
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::auth);
        CHECK(r.error().message.find("ListBucket") != std::string::npos);
        sc.finish();
    }
    for (const char* v : {"Enabled", "Suspended"}) {
        DYNAMIC_SECTION("versioning " << v << ": misconfigured") {
            scenario sc(1000, false);
            script(json::array({json{{"method", "GET"}, {"query", "versioning"}, {"action", "versioning"}, {"status", v}, {"count", "always"}}}));
            auto r = sc.store().self_test(context::with_timeout(10s));
            REQUIRE_FALSE(r.has_value());
            CHECK(r.error().code == errc::misconfigured);
            CHECK(r.error().message.find("versioning") != std::string::npos);
            sc.finish();
        }
    }
    SECTION("NoSuchBucket: misconfigured, names the bucket") {
        scenario sc(1000, false);
        script(json::array({json{{"method", "GET"}, {"query", "versioning"}, {"action", "status"}, {"status", 404},
                                 {"code", "NoSuchBucket"}, {"count", "always"}}}));
        auto r = sc.store().self_test(context::with_timeout(10s));
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::misconfigured);
        CHECK(r.error().message.find("faultbucket") != std::string::npos);
        sc.finish();
    }
    SECTION("three 503 SlowDown answers in a row: retried, passes") {
        scenario sc(1000, false);
        script(json::array({json{{"action", "status"}, {"status", 503}, {"code", "SlowDown"}, {"count", 3}}}));
        auto r = sc.store().self_test(context::with_timeout(10s));
        INFO(r);
        REQUIRE(r.has_value());
        sc.finish();
    }
}

// =============================================================================
// Many threads, many faults
// =============================================================================

TEST_CASE("fault: concurrent readers under random faults get exact bytes or a clean error", "[fault][threads]") {
    scenario sc(256 * KiB);
    sc.cfg.retry.max_attempts = 8;
    sc.open();
    const std::string k = sc.okey;
    script(json::array({
        json{{"method", "GET"}, {"key", k}, {"action", "reset_mid_body"}, {"count", 15}, {"after", 30000}},
        json{{"method", "GET"}, {"key", k}, {"action", "status"}, {"status", 503}, {"code", "SlowDown"}, {"count", 15}},
        json{{"method", "GET"}, {"key", k}, {"action", "short_body"}, {"count", 15}, {"after", 10000}},
        json{{"method", "GET"}, {"key", k}, {"action", "chunked_cut"}, {"count", 15}, {"after", 20000}},
    }));
    std::atomic<int> ok{0}, failed_clean{0}, wrong{0};
    std::mutex report_mu;
    std::string report;
    {
        constexpr int readers = 4;
        std::vector<std::jthread> threads;
        threads.reserve(readers);
        for (int t = 0; t < readers; ++t) {
            threads.emplace_back([&, t] {
                std::mt19937 rng(static_cast<unsigned>(t));
                for (int i = 0; i < 12; ++i) {
                    const std::int64_t off = std::uniform_int_distribution<std::int64_t>(0, 100000)(rng);
                    const std::int64_t n = std::uniform_int_distribution<std::int64_t>(1, 150000)(rng);
                    checking_sink sink{std::span<const std::byte>(sc.data), off};
                    auto r = sc.store().get_chunk(context::with_timeout(20s), sc.key, off, n, sink);
                    if (sink.wrong) ++wrong;
                    if (r && sink.received == n) ++ok;
                    else if (!r && r.error().code == errc::transient) ++failed_clean;
                    else {
                        ++wrong;
                        std::lock_guard lock(report_mu);
                        report += "off=" + std::to_string(off) + " n=" + std::to_string(n) + " received=" +
                                  std::to_string(sink.received) + " " + sink.what + " " +
                                  (r ? std::string("ok") : r.error().to_string()) + "\n";
                    }
                }
            });
        }
    }
    INFO(report);
    CHECK(wrong == 0);
    CHECK(ok + failed_clean == 48);
    CHECK(ok >= 40);
    sc.finish();
}
