// Failure classes that sit outside a scripted HTTP answer, each against the
// fault server (and, where a real server matters, against RGW in
// tests/s3/rgw_specific_test.cpp):
//
//   - the process model: a store used before fork() (pre-forking proxies);
//   - the end of a body's framing: every byte delivered, then the transfer fails;
//   - name resolution that outlives the deadline or a stop request;
//   - bodiless error answers (HEAD): the class must match what a GET says;
//   - credentials that change while the store runs;
//   - the deadline of a whole call (put_chunk is a HEAD and a PUT);
//   - paths with dot segments, which must be sent exactly as signed;
//   - idle pooled connections, which must not pile up.
//
// docs/reliability.md lists these classes with the tests below.
#include "fault_harness.hpp"
#include "slow_dns.hpp"

#include <sys/wait.h>

#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>

using namespace fault_harness;

namespace {

struct request_event_times {
    std::chrono::microseconds pool_wait, connect, first_byte, total;
};

/// Every request the server logged (all keys).
std::vector<json> full_log() {
    auto a = control("GET", "/_fault/log");
    REQUIRE(a.status == 200);
    return json::parse(a.body).get<std::vector<json>>();
}

/// Runs `child` in a forked process and returns its exit code (-1 if it died).
int run_child(const std::function<int()>& child) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        int rc = 1;
        try {
            rc = child();
        } catch (...) {
            rc = 99;
        }
        ::_exit(rc);
    }
    REQUIRE(pid > 0);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// A result's error, without its value.
template <class T>
result<> as_void(const result<T>& r) {
    if (r) return {};
    return std::unexpected(r.error());
}

/// A second stored chunk for scenario `sc`: same size, other bytes.
struct second_chunk {
    chunk_key key;
    std::vector<std::byte> data;
    explicit second_chunk(scenario& sc) : key(sc.key), data(pattern(sc.data.size(), 4242)) {
        key.object_key += "-second";
        auto r = sc.store().put_chunk(context::with_timeout(10s), key, static_cast<std::int64_t>(data.size()),
                                      std::span<const std::byte>(data));
        INFO(r);
        REQUIRE(r.has_value());
    }
};

/// Reads [0, n) of `key` `rounds` times and counts reads that failed or
/// returned bytes other than `expect`'s.
int bad_reads(s3::store& st, const chunk_key& key, const std::vector<std::byte>& expect, std::size_t n, int rounds) {
    int bad = 0;
    std::vector<std::byte> out(n);
    for (int i = 0; i < rounds; ++i) {
        auto r = cachestore::get_chunk(st, context::with_timeout(10s), key, 0, out);
        if (!r || std::memcmp(out.data(), expect.data(), n) != 0) ++bad;
    }
    return bad;
}

} // namespace

// =============================================================================
// The process model
// =============================================================================

TEST_CASE("process model: a forked child never reuses its parent's pooled connection", "[beyond][fork]") {
    scenario sc;
    second_chunk other(sc);
    checking_sink sink;
    REQUIRE(sc.get(0, 1000, sink).has_value()); // leaves a kept-alive connection in the pool
    sc.clear_log();
    const int rc = run_child([&] { return bad_reads(sc.store(), other.key, other.data, 1000, 1); });
    CHECK(rc == 0);
    REQUIRE(sc.get(0, 1000, sink).has_value()); // the parent's own pooled connection, still in step
    CHECK_FALSE(sink.wrong);
    const auto log = full_log();
    REQUIRE(log.size() == 2);
    CHECK(log[0]["key"] != log[1]["key"]);
    // The child opened its own connection; the parent kept using its own.
    CHECK(log[0]["conn"] != log[1]["conn"]);
    sc.finish();
}

TEST_CASE("process model: parent and child reading at once each get their own bytes", "[beyond][fork]") {
    scenario sc;
    second_chunk other(sc);
    checking_sink sink;
    REQUIRE(sc.get(0, 1000, sink).has_value()); // one pooled connection, inherited by the child
    int parent_bad = -1;
    const int rc = run_child([&] { return std::min(bad_reads(sc.store(), other.key, other.data, 1000, 100), 100); });
    // The child ran to completion above; now race a second child against the parent.
    REQUIRE(rc == 0);
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(std::min(bad_reads(sc.store(), other.key, other.data, 1000, 200), 100));
    REQUIRE(pid > 0);
    parent_bad = bad_reads(sc.store(), sc.key, sc.data, 1000, 200);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0); // the child's wrong or failed reads
    CHECK(parent_bad == 0);
    sc.finish();
}

TEST_CASE("process model: parent and child self-tests use different probe names", "[beyond][fork]") {
    scenario sc(1000, false);
    REQUIRE(sc.store().self_test(context::with_timeout(20s)).has_value()); // the parent's random state is in use
    control("POST", "/_fault/clearlog");
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(sc.store().self_test(context::with_timeout(20s)) ? 0 : 1);
    REQUIRE(pid > 0);
    auto mine = sc.store().self_test(context::with_timeout(20s));
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO(mine);
    CHECK(mine.has_value());
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    std::set<std::string> probes;
    for (const auto& e : full_log())
        if (e["method"] == "PUT" && e["key"].get<std::string>().find("/probe-") != std::string::npos)
            probes.insert(e["key"].get<std::string>());
    CHECK(probes.size() == 2); // one read-after-write probe each (the aws-chunked probe is another key)
    sc.finish();
}

// =============================================================================
// The end of a body's framing
// =============================================================================

TEST_CASE("body framing end: every byte arrived, then the transfer failed: success, one request", "[beyond][framing]") {
    for (const char* action : {"chunked_cut", "reset_mid_body"}) {
        for (const std::int64_t off : {std::int64_t{0}, std::int64_t{777}}) {
            DYNAMIC_SECTION(action << " after the whole range at offset " << off) {
                scenario sc;
                script(json::array({sc.rule("GET", action, "once", {{"after", "all"}})}));
                checking_sink sink;
                auto r = sc.get(off, 10000, sink);
                INFO(r);
                REQUIRE(r.has_value());
                CHECK_FALSE(sink.wrong);
                CHECK(sink.received == 10000);
                const auto log = sc.log("GET");
                REQUIRE(log.size() == 1); // never re-asked, least of all for an empty or inverted range
                sc.finish();
            }
        }
    }
}

// =============================================================================
// Name resolution
// =============================================================================

TEST_CASE("name resolution: a slow lookup ends at the deadline or a stop request", "[beyond][dns]") {
    scenario sc;
    slow_dns_delay_ms = 1500;
    const int lookups0 = slow_dns_lookups.load();
    sc.cfg.endpoint = std::string("http://") + slow_dns_name + ":" + std::to_string(server().port);
    sc.open();
    SECTION("stop request at 200 ms, deadline 300 ms: cancelled at once") {
        std::stop_source stop;
        const auto t0 = sclock::now();
        std::jthread stopper([&] {
            std::this_thread::sleep_for(200ms);
            stop.request_stop();
        });
        checking_sink sink;
        auto r = sc.get(0, 1000, sink, context::with_timeout(300ms, stop.get_token()));
        const double took = ms_since(t0);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::cancelled);
        CHECK(took < 280.0);
    }
    SECTION("deadline 300 ms, no stop: deadline_exceeded by 350 ms") {
        const auto t0 = sclock::now();
        checking_sink sink;
        auto r = sc.get(0, 1000, sink, context::with_timeout(300ms));
        const double took = ms_since(t0);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::deadline_exceeded);
        CHECK(took < 350.0);
    }
    CHECK(slow_dns_lookups.load() > lookups0); // the name really went through the slow resolver
    // The abandoned lookup finishes on its own thread; then nothing is left.
    std::this_thread::sleep_for(std::chrono::milliseconds(slow_dns_delay_ms.load() + 200));
    slow_dns_delay_ms = 0;
    sc.finish();
}

// =============================================================================
// Bodiless error answers
// =============================================================================

TEST_CASE("bodiless errors: a HEAD error is classified as a GET of the key would be", "[beyond][head]") {
    struct head_case {
        const char* name;
        json head;      // the HEAD's answer (no body: HEAD has none)
        json get;       // the one-byte GET's answer, or null when no GET should be needed
        errc expect;
        const char* says; // in the message
    };
    const head_case cases[] = {
        {"400, GET says ExpiredToken", {{"status", 400}, {"body", "empty"}},
         {{"status", 400}, {"code", "ExpiredToken"}}, errc::auth, "ExpiredToken"},
        {"400, GET says AuthorizationHeaderMalformed (wrong region)", {{"status", 400}, {"body", "empty"}},
         {{"status", 400}, {"code", "AuthorizationHeaderMalformed"}}, errc::misconfigured, "HEAD answered HTTP 400"},
        {"400 with x-amz-bucket-region", {{"status", 400}, {"body", "empty"}, {"headers", {{"x-amz-bucket-region", "eu-west-1"}}}},
         nullptr, errc::misconfigured, "eu-west-1"},
        {"301 redirect", {{"status", 301}, {"body", "empty"}}, nullptr, errc::misconfigured, "region"},
        {"307 redirect", {{"status", 307}, {"body", "empty"}}, nullptr, errc::misconfigured, "region"},
    };
    for (const auto& c : cases) {
        for (const bool put : {false, true}) {
            DYNAMIC_SECTION((put ? "put_chunk's HEAD: " : "stat: ") << c.name) {
                scenario sc(1000, /*seed=*/!put);
                json rules = json::array({sc.rule("HEAD", "status", "always", c.head)});
                if (!c.get.is_null()) rules.push_back(sc.rule("GET", "status", "always", c.get));
                script(rules);
                auto r = put ? sc.put() : as_void(sc.store().stat(context::with_timeout(10s), sc.key));
                REQUIRE_FALSE(r.has_value());
                INFO(r.error());
                CHECK(r.error().code == c.expect);
                CHECK(r.error().to_string().find(c.says) != std::string::npos);
                if (put) CHECK(sc.log("PUT").empty()); // nothing uploaded
                sc.finish();
            }
        }
    }
}

// =============================================================================
// Credentials that change
// =============================================================================

namespace {

/// A provider handing out key 1, 2, 3... on each fetch.
struct counting_source {
    std::atomic<int> fetches{0};
    std::chrono::seconds lifetime{0}; ///< 0 = no expiration
    std::shared_ptr<s3::credentials_provider> provider(s3::credentials_refresh opts = {}) {
        return s3::credentials_provider::from_function(
            [this]() -> result<s3::credentials> {
                const int n = ++fetches;
                s3::credentials c;
                c.access_key_id = "AKIDROTATE" + std::to_string(1000000000 + n);
                c.secret_access_key = "rotating/secret+" + std::to_string(n);
                c.session_token = "token-" + std::to_string(n);
                if (lifetime.count() > 0) c.expiration = std::chrono::system_clock::now() + lifetime;
                return c;
            },
            opts);
    }
    static std::string key(int n) { return "AKIDROTATE" + std::to_string(1000000000 + n); }
};

std::vector<std::string> keys_used(const std::vector<json>& log) {
    std::vector<std::string> k;
    k.reserve(log.size());
    for (const auto& e : log) k.push_back(e["access_key"].get<std::string>());
    return k;
}

} // namespace

TEST_CASE("credentials: refused credentials are refreshed once and the call retried", "[beyond][credentials]") {
    SECTION("GET 403 InvalidAccessKeyId once: the provider's next key, one retry") {
        scenario sc;
        counting_source src;
        sc.cfg.credentials_source = src.provider();
        sc.open();
        script(json::array({sc.rule("GET", "status", "once", {{"status", 403}, {"code", "InvalidAccessKeyId"}})}));
        checking_sink sink;
        auto r = sc.get(0, 5000, sink);
        INFO(r);
        REQUIRE(r.has_value());
        CHECK(keys_used(sc.log("GET")) == std::vector<std::string>{counting_source::key(1), counting_source::key(2)});
        CHECK(sc.log("GET")[1]["token"] == "token-2");
        sc.finish();
    }
    SECTION("HEAD 400 whose GET says ExpiredToken: refreshed, stat succeeds") {
        scenario sc;
        counting_source src;
        sc.cfg.credentials_source = src.provider();
        sc.open();
        script(json::array({sc.rule("HEAD", "status", "once", {{"status", 400}, {"body", "empty"}}),
                            sc.rule("GET", "status", "once", {{"status", 400}, {"code", "ExpiredToken"}})}));
        auto r = sc.store().stat(context::with_timeout(10s), sc.key);
        INFO(as_void(r));
        REQUIRE(r.has_value());
        CHECK(r->size == static_cast<std::int64_t>(sc.data.size()));
        const auto heads = sc.log("HEAD");
        REQUIRE(heads.size() == 2);
        CHECK(heads[1]["access_key"] == counting_source::key(2));
        sc.finish();
    }
    for (const bool provider : {true, false}) {
        DYNAMIC_SECTION((provider ? "a provider with nothing newer" : "static credentials (no provider)")
                        << ": auth after one request, no loop") {
            scenario sc;
            if (provider) {
                sc.cfg.credentials_source = s3::credentials_provider::fixed(sc.cfg.creds);
                sc.open();
            }
            const char* code = provider ? "ExpiredToken" : "InvalidAccessKeyId";
            script(json::array({sc.rule("GET", "status", "always", {{"status", 403}, {"code", code}})}));
            checking_sink sink;
            auto r = sc.get(0, 5000, sink);
            REQUIRE_FALSE(r.has_value());
            CHECK(r.error().code == errc::auth);
            CHECK(sc.log("GET").size() == 1);
            sc.finish();
        }
    }
}

TEST_CASE("credentials: current_nowait answers without asking the source, or says current() may have to",
          "[beyond][credentials]") {
    // What an event loop calls (docs/async.md): never a fetch, a probe or a
    // wait on its thread; nullopt sends current() to a helper.
    counting_source src;
    s3::credentials_refresh opts;
    opts.recheck = 100ms;
    auto p = src.provider(opts);
    CHECK_FALSE(p->current_nowait()); // nothing fetched yet
    CHECK(src.fetches == 0);
    auto first = p->current();
    REQUIRE(first);
    CHECK(src.fetches == 1);
    auto again = p->current_nowait();
    REQUIRE(again);
    CHECK(*again == *first); // the same snapshot, and no fetch
    CHECK(src.fetches == 1);
    std::this_thread::sleep_for(150ms); // past the recheck: current() may ask the source
    CHECK_FALSE(p->current_nowait());
    CHECK(src.fetches == 1);
    REQUIRE(p->current());
    CHECK(p->current_nowait());

    // Credentials that expired are never handed out: current() must ask.
    counting_source brief;
    brief.lifetime = 1s;
    s3::credentials_refresh no_ahead;
    no_ahead.refresh_ahead = 0s;
    no_ahead.recheck = 60s;
    auto q = brief.provider(no_ahead);
    REQUIRE(q->current());
    CHECK(q->current_nowait());
    std::this_thread::sleep_for(1100ms);
    CHECK_FALSE(q->current_nowait());

    // Fixed credentials: always at hand.
    s3::credentials fixed;
    fixed.access_key_id = "AKIDFIXED0000000000";
    fixed.secret_access_key = "fixed/secret+key000000000000000000000000";
    auto f = s3::credentials_provider::fixed(fixed);
    REQUIRE(f->current_nowait());
    CHECK((*f->current_nowait())->access_key_id == "AKIDFIXED0000000000");
}

TEST_CASE("credentials: temporary credentials are renewed ahead of their expiry", "[beyond][credentials]") {
    scenario sc;
    counting_source src;
    src.lifetime = 2s;
    s3::credentials_refresh opts;
    opts.refresh_ahead = 1s;
    opts.recheck = 50ms;
    sc.cfg.credentials_source = src.provider(opts);
    sc.open();
    checking_sink sink;
    REQUIRE(sc.get(0, 100, sink).has_value());
    std::this_thread::sleep_for(1200ms); // inside the refresh-ahead window, before the expiry
    REQUIRE(sc.get(0, 100, sink).has_value());
    CHECK(keys_used(sc.log("GET")) == std::vector<std::string>{counting_source::key(1), counting_source::key(2)});
    sc.finish();
}

TEST_CASE("credentials: a source that has only expired credentials is asked once per recheck, and the call fails auth",
          "[beyond][credentials]") {
    scenario sc;
    std::atomic<int> fetches{0};
    const s3::credentials base = sc.cfg.creds;
    sc.cfg.credentials_source = s3::credentials_provider::from_function([&fetches, base]() -> result<s3::credentials> {
        ++fetches;
        s3::credentials c = base;
        c.expiration = std::chrono::system_clock::now() - 1h;
        return c;
    });
    auto made = s3::store::create(sc.cfg);
    REQUIRE_FALSE(made.has_value()); // create() asks for the first credentials
    CHECK(made.error().code == errc::auth);
    CHECK_THAT(made.error().message, Catch::Contains("only expired credentials"));
    // The same provider behind a store made while its credentials were good:
    // 8 threads x 500 calls, once the source has only expired ones.
    // Its first credentials expire 200 ms after they are fetched; every
    // later fetch gives credentials that expired an hour ago.
    auto first = std::make_shared<std::atomic<bool>>(true);
    sc.cfg.credentials_source = s3::credentials_provider::from_function([&fetches, base, first]() -> result<s3::credentials> {
        ++fetches;
        s3::credentials c = base;
        c.expiration = std::chrono::system_clock::now() + (first->exchange(false) ? std::chrono::milliseconds(200) : -1h);
        return c;
    });
    sc.open();
    std::this_thread::sleep_for(300ms);
    fetches = 0;
    sc.clear_log();
    std::atomic<int> auth_errors{0}, other{0};
    const auto t0 = sclock::now();
    std::vector<std::thread> threads;
    threads.reserve(8);
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&] {
            std::vector<std::byte> out(100);
            for (int i = 0; i < 500; ++i) {
                auto r = cachestore::get_chunk(sc.store(), context::with_timeout(10s), sc.key, 0, out);
                if (!r && r.error().code == errc::auth && r.error().message.find("only expired") != std::string::npos) ++auth_errors;
                else ++other;
            }
        });
    for (auto& t : threads) t.join();
    const double ms = ms_since(t0);
    INFO(fetches.load() << " fetches in " << ms << " ms; " << other.load() << " calls that did not fail auth");
    CHECK(auth_errors.load() == 8 * 500);
    CHECK(fetches.load() <= 1 + static_cast<int>(ms / 1000)); // one per recheck (1 s by default)
    CHECK(sc.log("GET").empty()); // nothing sent with credentials known to be expired
    sc.finish();
}

TEST_CASE("credentials: refused credentials that the source gives again are not retried", "[beyond][credentials]") {
    // AWS without s3:ListBucket answers every miss 403 AccessDenied
    // (docs/errors.md): each would otherwise cost a fetch and a second GET.
    scenario sc;
    std::atomic<int> fetches{0};
    const s3::credentials base = sc.cfg.creds;
    sc.cfg.credentials_source = s3::credentials_provider::from_function([&fetches, base]() -> result<s3::credentials> {
        ++fetches;
        return base; // the same credentials every time
    });
    sc.open();
    fetches = 0;
    script(json::array({sc.rule("GET", "status", "always", {{"status", 403}, {"code", "AccessDenied"}})}));
    checking_sink sink;
    for (int i = 0; i < 10; ++i) {
        auto r = sc.get(0, 100, sink);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::auth);
    }
    CHECK(sc.log("GET").size() == 10);
    CHECK(fetches.load() <= 1); // one refetch after the first refusal, none within the recheck interval after it
    sc.finish();
}

TEST_CASE("credentials: the shared credentials file is followed while the store runs", "[beyond][credentials]") {
    const auto dir = std::filesystem::temp_directory_path() / ("cachestore-creds-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto file = dir / "credentials";
    auto write = [&](const std::string& id) {
        const auto tmp = dir / "credentials.new";
        std::ofstream(tmp) << "[default]\naws_access_key_id = " << id << "\naws_secret_access_key = s3cr3t/" << id << "\n";
        std::filesystem::rename(tmp, file); // as rotation tools do: a new file, renamed over the old
    };
    write("AKIDFILE000000000001");
    scenario sc;
    s3::config base = sc.cfg;
    base.creds = {};
    const std::map<std::string, std::string> vars{{"AWS_SHARED_CREDENTIALS_FILE", file.string()}, {"HOME", dir.string()}};
    auto cfg = s3::config_from_env(base, [&](std::string_view n) -> std::optional<std::string> {
        auto it = vars.find(std::string(n));
        return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
    });
    INFO(as_void(cfg));
    REQUIRE(cfg.has_value());
    REQUIRE(cfg->credentials_source != nullptr);
    sc.cfg = *cfg;
    sc.open();
    checking_sink sink;
    REQUIRE(sc.get(0, 100, sink).has_value());
    write("AKIDFILE000000000002");
    std::this_thread::sleep_for(1100ms); // the file is re-checked at most once a second
    REQUIRE(sc.get(0, 100, sink).has_value());
    CHECK(keys_used(sc.log("GET")) == std::vector<std::string>{"AKIDFILE000000000001", "AKIDFILE000000000002"});
    sc.finish();
    std::filesystem::remove_all(dir);
}

// =============================================================================
// The deadline of a whole call
// =============================================================================

TEST_CASE("deadline: put_chunk's HEAD and PUT share one per-call timeout", "[beyond][time]") {
    scenario sc(4000, false);
    sc.cfg.timeouts.operation = 1000ms;
    sc.open();
    // Each stalls 700 ms, then the connection closes (transient, retried).
    script(json::array({sc.rule("HEAD", "stall", "once", {{"phase", "status"}, {"seconds", 0.7}}),
                        sc.rule("PUT", "stall", "once", {{"phase", "status"}, {"seconds", 0.7}})}));
    const auto t0 = sclock::now();
    auto r = sc.put(context{}); // no deadline of the caller's: timeouts.operation bounds the call
    const double took = ms_since(t0);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::deadline_exceeded);
    CHECK(took < 1150.0);
    CHECK(sc.absent());
    sc.finish();
}

// =============================================================================
// Paths with dot segments
// =============================================================================

TEST_CASE("paths: a prefix with dot segments is sent exactly as signed", "[beyond][path]") {
    scenario sc(1000, false);
    sc.cfg.prefix = "cache/../dc1/./";
    sc.open();
    REQUIRE(sc.put().has_value());
    const auto puts = full_log();
    REQUIRE_FALSE(puts.empty());
    for (const auto& e : puts) {
        INFO(e.dump());
        CHECK(e["target"].get<std::string>().rfind("/faultbucket/cache/../dc1/./", 0) == 0);
    }
    sc.finish();
}

// =============================================================================
// Idle connections
// =============================================================================

TEST_CASE("idle connections: closed once idle longer than timeouts.idle", "[beyond][idle]") {
    scenario sc;
    const std::size_t fds_before = count_dir("/proc/self/fd");
    sc.cfg.timeouts.idle = 300ms;
    sc.open();
    auto burst = [&] {
        std::vector<std::jthread> ts;
        ts.reserve(6);
        for (int i = 0; i < 6; ++i)
            ts.emplace_back([&] { CHECK(bad_reads(sc.store(), sc.key, sc.data, 20000, 5) == 0); });
    };
    burst();
    CHECK(sc.store().idle_connections() >= 2);
    SECTION("reaped by reap_idle_connections()") {
        std::this_thread::sleep_for(400ms);
        sc.store().reap_idle_connections();
        CHECK(sc.store().idle_connections() == 0);
        CHECK(count_dir("/proc/self/fd") <= fds_before);
    }
    SECTION("reaped by the next call") {
        std::this_thread::sleep_for(400ms);
        CHECK(bad_reads(sc.store(), sc.key, sc.data, 100, 1) == 0);
        CHECK(sc.store().idle_connections() == 1);
        CHECK(count_dir("/proc/self/fd") <= fds_before + 1);
    }
    sc.finish();
}

// =============================================================================
// A wrong endpoint at boot
// =============================================================================

TEST_CASE("self_test: an endpoint that is not S3, not there or stalled is misconfigured and named",
          "[beyond][self_test]") {
    struct not_s3 {
        const char* name;
        json rules;
    };
    const not_s3 cases[] = {
        {"HTML 404 for everything", json::array({{{"action", "status"}, {"count", "always"}, {"status", 404}, {"body", "html"}}})},
        {"501 without a body for everything", json::array({{{"action", "status"}, {"count", "always"}, {"status", 501}, {"body", "empty"}}})},
        {"200 HTML page for the bucket", json::array({{{"action", "status"}, {"count", "always"}, {"status", 200}, {"body", "html"}}})},
        {"plain 404 only for objects", json::array({{{"method", "GET"}, {"key", ".cachestore-selftest"}, {"action", "status"},
                                                     {"count", "always"}, {"status", 404}, {"body", "empty"}}})},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            scenario sc(1000, false);
            script(c.rules);
            auto r = sc.store().self_test(context::with_timeout(20s));
            REQUIRE_FALSE(r.has_value());
            INFO(r.error());
            CHECK(r.error().code == errc::misconfigured);
            CHECK(r.error().message.find("does not look like an S3 server") != std::string::npos);
            CHECK(r.error().message.find("127.0.0.1:" + std::to_string(server().port)) != std::string::npos);
            sc.finish();
        }
    }
    SECTION("nothing listening on the port") {
        scenario sc(1000, false);
        // A port that was free a moment ago: bound, then closed.
        const int s = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        socklen_t len = sizeof a;
        REQUIRE(::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        ::close(s);
        sc.cfg.endpoint = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
        sc.open();
        const auto t0 = sclock::now();
        auto r = sc.store().self_test(context::with_timeout(20s));
        REQUIRE_FALSE(r.has_value());
        INFO(r.error());
        CHECK(r.error().code == errc::misconfigured);
        CHECK(r.error().message.find("refuses connections") != std::string::npos);
        CHECK(r.error().message.find(sc.cfg.endpoint) != std::string::npos);
        CHECK(ms_since(t0) < 2000.0);
        sc.finish();
    }
    SECTION("it accepts the connection and never answers") {
        scenario sc(1000, false);
        script(json::array({{{"method", "GET"}, {"query", "versioning"}, {"action", "stall"}, {"phase", "status"},
                             {"seconds", 3}, {"count", "always"}}}));
        const auto t0 = sclock::now();
        auto r = sc.store().self_test(context::with_timeout(700ms));
        REQUIRE_FALSE(r.has_value());
        INFO(r.error());
        CHECK(r.error().code == errc::misconfigured);
        CHECK(r.error().message.find("accepted the connection but did not answer within the timeout") !=
              std::string::npos);
        CHECK(r.error().message.find(sc.cfg.endpoint) != std::string::npos);
        CHECK(ms_since(t0) < 2000.0);
        sc.finish();
    }
    SECTION("a later request that stalls stays deadline_exceeded (the server has answered)") {
        scenario sc(1000, false);
        script(json::array({{{"method", "PUT"}, {"key", ".cachestore-selftest/probe-"}, {"action", "stall"},
                             {"phase", "status"}, {"seconds", 3}, {"count", "always"}}}));
        auto r = sc.store().self_test(context::with_timeout(700ms));
        REQUIRE_FALSE(r.has_value());
        INFO(r.error());
        CHECK(r.error().code == errc::deadline_exceeded);
        CHECK(r.error().message.find("accepted the connection") == std::string::npos);
        sc.finish();
    }
    SECTION("a real S3 answer still passes") {
        scenario sc(1000, false);
        auto r = sc.store().self_test(context::with_timeout(20s));
        INFO(r);
        CHECK(r.has_value());
        sc.finish();
    }
}

// =============================================================================
// The per-attempt observer
// =============================================================================

TEST_CASE("observer: one event per HTTP attempt, with its status, ids, sizes and timings", "[beyond][observer]") {
    struct seen {
        std::string op, method, path, s3_code, request_id;
        int attempt = 0, status = 0;
        std::int64_t sent = 0, received = 0;
        bool reused = false;
        std::optional<errc> outcome;
        request_event_times times;
    };
    std::vector<seen> events;
    std::mutex mu;
    scenario sc(200 * KiB, false);
    sc.cfg.observer = [&](const s3::request_event& e) {
        std::lock_guard lock(mu);
        events.push_back({std::string(e.op), std::string(e.method), std::string(e.path), std::string(e.s3_code),
                          std::string(e.request_id), e.attempt, e.http_status, e.bytes_sent, e.bytes_received,
                          e.connection_reused, e.outcome, {e.pool_wait, e.connect, e.first_byte, e.total}});
    };
    sc.open();
    REQUIRE(sc.put().has_value()); // HEAD 404, PUT 200
    script(json::array({sc.rule("GET", "status", "once", {{"status", 503}, {"code", "SlowDown"}})}));
    checking_sink sink;
    REQUIRE(sc.get(0, 50000, sink).has_value()); // GET 503 (attempt 1), GET 206 (attempt 2)
    REQUIRE(events.size() == 4);
    CHECK(events[0].method == "HEAD");
    CHECK(events[0].op == "put_chunk");
    CHECK(events[0].status == 404);
    CHECK(events[0].outcome == errc::not_found);
    CHECK(events[1].method == "PUT");
    CHECK(events[1].status == 200);
    CHECK_FALSE(events[1].outcome.has_value());
    CHECK(events[1].sent == 200 * KiB);
    CHECK(events[1].reused); // the HEAD's connection
    CHECK(events[2].attempt == 1);
    CHECK(events[2].status == 503);
    CHECK(events[2].outcome == errc::transient);
    CHECK(events[2].s3_code == "SlowDown");
    CHECK(events[3].attempt == 2);
    CHECK(events[3].status == 206);
    CHECK(events[3].received == 50000);
    for (const auto& e : events) {
        CHECK(e.path == *storage_path(sc.key));
        CHECK(e.request_id.rfind("FAULT", 0) == 0);
        CHECK(e.times.total >= e.times.first_byte);
        CHECK(e.times.first_byte > std::chrono::microseconds(0));
        CHECK(e.times.total < std::chrono::seconds(5));
    }
    sc.finish();
}

// =============================================================================
// Streaming uploads (signed aws-chunked over http) and payload signing
// =============================================================================

namespace {

/// A source function over `data`, `step` bytes at a time, that can fail or
/// lie about its length.
struct test_source {
    const std::vector<std::byte>* data;
    std::size_t step = 100000;
    std::size_t pos = 0;
    std::int64_t fail_at = -1; ///< return an error once this many bytes were given
    result<std::size_t> operator()(std::span<std::byte> buf) {
        if (fail_at >= 0 && pos >= static_cast<std::size_t>(fail_at))
            return fail(errc::io_error, "origin", {}, "the origin connection dropped");
        const std::size_t n = std::min({buf.size(), step, data->size() - pos});
        std::memcpy(buf.data(), data->data() + pos, n);
        pos += n;
        return n;
    }
};

} // namespace

TEST_CASE("streaming: a streaming source is sent as signed aws-chunked frames once the self-test proved them", "[beyond][stream]") {
    SECTION("before the self-test: spooled, signed with its SHA-256") {
        scenario sc(300 * KiB + 7, false);
        test_source src{&sc.data};
        REQUIRE(sc.store().put_chunk(context::with_timeout(20s), sc.key, static_cast<std::int64_t>(sc.data.size()), src).has_value());
        const auto puts = sc.log("PUT");
        REQUIRE(puts.size() == 1);
        CHECK(puts[0]["content_sha256"].get<std::string>().size() == 64);
        CHECK(sc.stored_exactly());
        sc.finish();
    }
    SECTION("after the self-test: streamed in frames, exact bytes stored") {
        scenario sc(300 * KiB + 7, false);
        REQUIRE(sc.store().self_test(context::with_timeout(20s)).has_value());
        CHECK(sc.store().last_self_test().aws_chunked_accepted);
        test_source src{&sc.data};
        auto r = sc.store().put_chunk(context::with_timeout(20s), sc.key, static_cast<std::int64_t>(sc.data.size()), src);
        INFO(r);
        REQUIRE(r.has_value());
        const auto puts = sc.log("PUT");
        REQUIRE(puts.size() == 1);
        CHECK(puts[0]["content_sha256"] == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
        CHECK(puts[0]["content_length"] ==
              s3::detail::aws_chunked_length(static_cast<std::int64_t>(sc.data.size()), std::int64_t{64} * 1024));
        CHECK(sc.stored_exactly());
        sc.finish();
    }
    SECTION("a server that stores the framing as data: the self-test notices, sources are spooled") {
        scenario sc(50000, false);
        script(json::array({{{"method", "PUT"}, {"key", "stream-probe"}, {"action", "store_raw"}, {"count", "always"}}}));
        REQUIRE(sc.store().self_test(context::with_timeout(20s)).has_value());
        CHECK_FALSE(sc.store().last_self_test().aws_chunked_accepted);
        test_source src{&sc.data};
        REQUIRE(sc.store().put_chunk(context::with_timeout(20s), sc.key, 50000, src).has_value());
        CHECK(sc.log("PUT")[0]["content_sha256"].get<std::string>().size() == 64);
        CHECK(sc.stored_exactly());
        sc.cfg.streaming = s3::streaming_upload::stream;
        sc.open();
        auto t = sc.store().self_test(context::with_timeout(20s));
        REQUIRE_FALSE(t.has_value());
        CHECK(t.error().code == errc::misconfigured);
        CHECK(t.error().message.find("aws-chunked") != std::string::npos);
        sc.finish();
    }
}

TEST_CASE("streaming: a failure after the source gave bytes is not retried and commits nothing", "[beyond][stream]") {
    auto streamed = [](scenario& sc) {
        sc.cfg.streaming = s3::streaming_upload::stream;
        sc.open();
    };
    SECTION("server cuts the upload mid-body") {
        scenario sc(512 * KiB, false);
        streamed(sc);
        script(json::array({sc.rule("PUT", "close_mid_upload", "once", {{"after", 100000}})}));
        test_source src{&sc.data};
        auto r = sc.store().put_chunk(context::with_timeout(20s), sc.key, 512 * KiB, src);
        REQUIRE_FALSE(r.has_value());
        INFO(r.error());
        CHECK(r.error().code == errc::transient);
        CHECK(r.error().message.find("not retried") != std::string::npos);
        CHECK(sc.log("PUT").size() == 1);
        CHECK(sc.absent());
        sc.finish();
    }
    SECTION("500 after the whole body") {
        scenario sc(300 * KiB, false);
        streamed(sc);
        script(json::array({sc.rule("PUT", "status", "once", {{"status", 500}, {"code", "InternalError"}})}));
        test_source src{&sc.data};
        auto r = sc.store().put_chunk(context::with_timeout(20s), sc.key, 300 * KiB, src);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::transient);
        CHECK(sc.log("PUT").size() == 1);
        CHECK(sc.absent());
        sc.finish();
    }
    SECTION("503 before any byte left the source: retried, exact bytes") {
        scenario sc(300 * KiB, false);
        streamed(sc);
        script(json::array({sc.rule("PUT", "status", "once", {{"status", 503}, {"code", "SlowDown"}, {"early", true}})}));
        test_source src{&sc.data};
        auto r = sc.store().put_chunk(context::with_timeout(20s), sc.key, 300 * KiB, src);
        INFO(r);
        // Either the 503 came before libcurl read a byte (retried: success) or
        // after (not retried: transient); never partial.
        if (r) CHECK(sc.stored_exactly());
        else CHECK((r.error().code == errc::transient && sc.absent()));
        sc.finish();
    }
    SECTION("the source fails, ends early or runs long: invalid_argument or its error, nothing committed") {
        for (int mode = 0; mode < 3; ++mode) {
            scenario sc(200 * KiB, false);
            streamed(sc);
            std::vector<std::byte> longer = sc.data;
            longer.push_back(std::byte{1});
            std::vector<std::byte> shorter(sc.data.begin(), sc.data.end() - 1);
            test_source src{mode == 1 ? &shorter : mode == 2 ? &longer : &sc.data};
            if (mode == 0) src.fail_at = 100000;
            auto r = sc.store().put_chunk(context::with_timeout(20s), sc.key, 200 * KiB, src);
            REQUIRE_FALSE(r.has_value());
            CHECK(r.error().code == (mode == 0 ? errc::io_error : errc::invalid_argument));
            CHECK(sc.absent());
            sc.finish();
        }
    }
}

TEST_CASE("payload signing: http bodies are signed; unsigned is refused for http", "[beyond][payload]") {
    scenario sc(10000, false);
    REQUIRE(sc.put().has_value());
    CHECK(sc.log("PUT")[0]["content_sha256"].get<std::string>().size() == 64);
    auto cfg = sc.cfg;
    cfg.payload = s3::payload_signing::unsigned_payload;
    auto bad = s3::store::create(cfg);
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().code == errc::misconfigured);
    CHECK(bad.error().message.find("https") != std::string::npos);
    sc.finish();
}
