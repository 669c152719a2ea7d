// S3-specific behaviour against Ceph RGW: authentication failures, bucket
// misconfiguration, upload integrity, odd keys, conditional commits and the
// self-test's refusals. Generic behaviour lives in the conformance suite.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "s3_fixture.hpp"

using namespace cachestore;
using namespace std::chrono_literals;

namespace {

s3::config rgw_config() {
    auto cfg = s3test::server_config("RGW");
    if (!cfg) {
        if (!s3test::env("CI").empty()) FAIL("Ceph RGW unavailable under CI: " << cfg.error());
        WARN("Ceph RGW unavailable, NOT TESTED: " << cfg.error());
    }
    return cfg.value_or(s3::config{});
}

chunk_key key_named(std::string origin) {
    static int n = 0;
    return chunk_key{std::move(origin), "b", "k" + std::to_string(n++), "\"" + s3::detail::random_hex(8) + "\"", 1 << 20, 0};
}

std::string secret_free(const error& e, const s3::config& cfg) {
    std::string s = e.to_string();
    CHECK(s.find(cfg.creds.secret_access_key) == std::string::npos);
    return s;
}

} // namespace

TEST_CASE("rgw: a wrong secret is auth, on every operation, without leaking it", "[s3][rgw]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    cfg.creds.secret_access_key = "wrong/secret+" + cfg.creds.secret_access_key;
    auto st = s3::store::create(cfg);
    REQUIRE(st.has_value());
    const auto k = key_named("auth-test");
    auto g = st->get_chunk({}, k, 0, 1, [](std::span<const std::byte>) { return true; });
    REQUIRE_FALSE(g.has_value());
    CHECK(g.error().code == errc::auth);
    CHECK(g.error().s3_code == "SignatureDoesNotMatch");
    CHECK(g.error().http_status == 403);
    secret_free(g.error(), cfg);
    auto s = st->stat({}, k);
    CHECK(s.error().code == errc::auth); // HEAD: from the status alone
    const std::string data = "x";
    auto p = st->put_chunk({}, k, 1, as_bytes(data));
    CHECK(p.error().code == errc::auth);
    auto t = st->self_test(context::with_timeout(30s));
    REQUIRE_FALSE(t.has_value());
    CHECK(t.error().code == errc::auth);
    CHECK(secret_free(t.error(), cfg).find("secret key") != std::string::npos);
}

TEST_CASE("rgw: a session token is signed and sent but never printed", "[s3][rgw]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    cfg.creds.session_token = "IQoJb3JpZ2luX2VjEXAMPLE/session+token==";
    auto st = s3::store::create(cfg);
    REQUIRE(st.has_value());
    const auto k = key_named("token-test");
    auto g = st->get_chunk({}, k, 0, 1, [](std::span<const std::byte>) { return true; });
    REQUIRE_FALSE(g.has_value()); // RGW ignores tokens for plain users: a miss, but an error to print
    CHECK(g.error().code == errc::not_found);
    const std::string all = g.error().to_string() + s3::describe(cfg) + s3::redacted(cfg.creds);
    CHECK(all.find(cfg.creds.session_token) == std::string::npos);
    CHECK(all.find(cfg.creds.secret_access_key) == std::string::npos);
    CHECK(all.find("Signature=") == std::string::npos);
}

TEST_CASE("rgw: an unknown access key is auth", "[s3][rgw]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    cfg.creds.access_key_id = "NOSUCHKEY0000000000";
    auto st = s3::store::create(cfg);
    REQUIRE(st.has_value());
    auto g = st->get_chunk({}, key_named("auth-test"), 0, 1, [](std::span<const std::byte>) { return true; });
    REQUIRE_FALSE(g.has_value());
    CHECK(g.error().code == errc::auth);
    CHECK(g.error().s3_code == "InvalidAccessKeyId");
}

TEST_CASE("rgw: an absent bucket is a misconfiguration, not a miss", "[s3][rgw]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    cfg.bucket = "cachestore-no-such-bucket-" + s3::detail::random_hex(4);
    auto st = s3::store::create(cfg);
    REQUIRE(st.has_value());
    const auto k = key_named("nobucket");
    auto g = st->get_chunk({}, k, 0, 1, [](std::span<const std::byte>) { return true; });
    CHECK(g.error().code == errc::misconfigured);
    CHECK(g.error().s3_code == "NoSuchBucket");
    const std::string data = "abc";
    auto p = st->put_chunk({}, k, 3, as_bytes(data));
    CHECK(p.error().code == errc::misconfigured);
    CHECK(st->remove({}, k).error().code == errc::misconfigured);
    auto t = st->self_test(context::with_timeout(30s));
    REQUIRE_FALSE(t.has_value());
    CHECK(t.error().code == errc::misconfigured);
    CHECK(t.error().message.find(cfg.bucket) != std::string::npos);
}

TEST_CASE("rgw: odd characters in origin_id and prefix round-trip", "[s3][rgw]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    cfg.prefix = "pre fix+=%~/ü/";
    auto st = s3::store::create(cfg);
    REQUIRE(st.has_value());
    const char* origins[] = {"space here", "plus+sign", "percent%25", "eq=ual", "tilde~", "üñí©ødé-数据",
                             "a..b", "..x", "semi;colon,comma", "bang!star*quote'(paren)", "at@amp&dollar$colon:",
                             "hash#question?", "brackets[]{}", "back\\slash", "caret^pipe|grave`"};
    for (const char* o : origins) {
        INFO("origin_id: " << o);
        const auto k = key_named(o);
        const std::string data = std::string("payload for ") + o;
        REQUIRE(st->put_chunk({}, k, static_cast<std::int64_t>(data.size()), as_bytes(data)).has_value());
        std::string got(data.size(), '\0');
        REQUIRE(get_chunk(*st, {}, k, 0, std::as_writable_bytes(std::span(got))).has_value());
        CHECK(got == data);
        CHECK(st->stat({}, k)->size == static_cast<std::int64_t>(data.size()));
        CHECK(st->remove({}, k).has_value());
        CHECK(st->stat({}, k).error().code == errc::not_found);
    }
}

TEST_CASE("rgw: If-None-Match mode gives exactly one winner among 16 racing writers", "[s3][rgw][concurrency]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    cfg.commit = s3::commit_mode::if_none_match;
    auto st = s3::store::create(cfg);
    REQUIRE(st.has_value());
    REQUIRE(st->conditional_commit());
    for (int round = 0; round < 3; ++round) {
        const auto k = key_named("race");
        std::vector<std::byte> data(std::size_t{256} * 1024, std::byte{0x42});
        std::atomic<int> won{0}, lost{0}, other{0};
        std::atomic<bool> go{false};
        constexpr int writers = 16;
        std::vector<std::thread> ts;
        ts.reserve(writers);
        for (int i = 0; i < writers; ++i)
            ts.emplace_back([&] {
                while (!go) std::this_thread::yield();
                auto r = st->put_chunk({}, k, static_cast<std::int64_t>(data.size()), std::span<const std::byte>(data));
                if (r) ++won;
                else if (r.error().code == errc::commit_lost) ++lost;
                else {
                    UNSCOPED_INFO(r.error());
                    ++other;
                }
            });
        go = true;
        for (auto& t : ts) t.join();
        CHECK(won == 1);
        CHECK(lost == writers - 1);
        CHECK(other == 0);
    }
}

TEST_CASE("rgw: self_test passes and proves conditional commits", "[s3][rgw]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    auto st = s3::store::create(cfg);
    REQUIRE(st.has_value());
    CHECK_FALSE(st->conditional_commit()); // auto mode: stat-then-put until proven
    auto t = st->self_test(context::with_timeout(30s));
    INFO(t);
    REQUIRE(t.has_value());
    const auto rep = st->last_self_test();
    CHECK(rep.ran);
    CHECK(rep.conditional_put_enforced);
    CHECK(st->conditional_commit());
    CHECK(std::chrono::abs(rep.clock_offset) < 5s);
    cfg.commit = s3::commit_mode::stat_then_put;
    auto plain = s3::store::create(cfg);
    REQUIRE(plain->self_test(context::with_timeout(30s)).has_value());
    CHECK_FALSE(plain->conditional_commit());
}

TEST_CASE("rgw: self_test refuses a versioned bucket with a clear message", "[s3][rgw]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    cfg.bucket = s3test::env("CACHESTORE_RGW_VERSIONED_BUCKET");
    REQUIRE_FALSE(cfg.bucket.empty());
    auto st = s3::store::create(cfg);
    REQUIRE(st.has_value());
    auto t = st->self_test(context::with_timeout(30s));
    REQUIRE_FALSE(t.has_value());
    CHECK(t.error().code == errc::misconfigured);
    CHECK(t.error().message.find("versioning Enabled") != std::string::npos);
}

TEST_CASE("rgw: the server refuses an upload whose body does not match the signed hash", "[s3][rgw]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    auto st = s3::store::create(cfg);
    REQUIRE(st.has_value());
    // Sign a PUT for one body, send another: what a flipped bit in transit looks like.
    const std::string signed_body = "the bytes we meant", sent_body = "the bytes we sent!";
    REQUIRE(signed_body.size() == sent_body.size());
    auto r = st->debug_put_with_payload_hash(context::with_timeout(30s), "tamper/" + s3::detail::random_hex(8),
                                             as_bytes(sent_body),
                                             s3::detail::hex_lower(s3::detail::sha256(signed_body)));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().http_status == 400);
    CHECK(r.error().s3_code == "XAmzContentSHA256Mismatch");
    CHECK(r.error().code == errc::transient); // corruption in transit: worth a retry
}

// ---- failure classes outside a scripted answer, against the real server ----

namespace {

/// Runs a command (no shell, stdout discarded); its exit status, -1 when it could not start.
int run(std::vector<std::string> argv) {
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t quiet;
    posix_spawn_file_actions_init(&quiet);
    posix_spawn_file_actions_addopen(&quiet, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    const int rc = posix_spawnp(&pid, args[0], &quiet, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&quiet);
    if (rc != 0) return -1;
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

} // namespace

TEST_CASE("rgw: a store used before fork() serves parent and child their own bytes", "[s3][rgw][fork]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    auto st = s3::store::create(cfg);
    REQUIRE(st.has_value());
    REQUIRE(st->self_test(context::with_timeout(30s)).has_value()); // pooled connections now exist
    const auto ka = key_named("fork-parent"), kb = key_named("fork-child");
    const std::string a(5000, 'a'), b(5000, 'b'); // the same size: Content-Range cannot tell them apart
    REQUIRE(st->put_chunk({}, ka, 5000, as_bytes(a)).has_value());
    REQUIRE(st->put_chunk({}, kb, 5000, as_bytes(b)).has_value());
    auto bad_reads = [&](const chunk_key& k, const std::string& want) {
        int bad = 0;
        std::string got(want.size(), '\0');
        for (int i = 0; i < 300; ++i) {
            auto r = get_chunk(*st, context::with_timeout(20s), k, 0, std::as_writable_bytes(std::span(got)));
            if (!r || got != want) ++bad;
        }
        return bad;
    };
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid == 0) _exit(std::min(bad_reads(kb, b), 100));
    REQUIRE(pid > 0);
    const int parent_bad = bad_reads(ka, a);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(parent_bad == 0);
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    CHECK(st->remove({}, ka).has_value());
    CHECK(st->remove({}, kb).has_value());
}

TEST_CASE("rgw: a prefix with dot segments round-trips, signed as sent", "[s3][rgw][path]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    for (const char* prefix : {"cache/../dc1/./", "./x/", "../up/", "a/./b/../c/"}) {
        INFO("prefix: " << prefix);
        cfg.prefix = prefix;
        auto st = s3::store::create(cfg);
        REQUIRE(st.has_value());
        const auto k = key_named("dots");
        const std::string data = std::string("under ") + prefix;
        auto p = st->put_chunk({}, k, static_cast<std::int64_t>(data.size()), as_bytes(data));
        INFO(p);
        REQUIRE(p.has_value());
        std::string got(data.size(), '\0');
        REQUIRE(get_chunk(*st, {}, k, 0, std::as_writable_bytes(std::span(got))).has_value());
        CHECK(got == data);
        CHECK(st->stat({}, k)->size == static_cast<std::int64_t>(data.size()));
        CHECK(st->remove({}, k).has_value());
    }
}

TEST_CASE("rgw: keys rotated under load (file rewritten, old key deleted): no failed call", "[s3][rgw][credentials]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    const std::string conf = s3test::env("CACHESTORE_RGW_CONF");
    if (conf.empty()) FAIL("CACHESTORE_RGW_CONF is not set: run through tests/servers/with-servers.sh --rgw");
    const auto dir = std::filesystem::temp_directory_path() / ("cachestore-rotate-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    const auto file = dir / "credentials";
    auto key_id = [](int n) { return "ROTATE" + std::to_string(100000 + n) + "KEY"; };
    auto secret = [](int n) { return "rotate/secret+" + std::to_string(n) + "xxxxxxxxxxxxxxxxxx"; };
    auto create_key = [&](int n) {
        return run({"radosgw-admin", "-c", conf, "key", "create", "--uid=test", "--key-type=s3",
                    "--access-key=" + key_id(n), "--secret-key=" + secret(n)});
    };
    auto remove_key = [&](int n) {
        return run({"radosgw-admin", "-c", conf, "key", "rm", "--uid=test", "--key-type=s3", "--access-key=" + key_id(n)});
    };
    auto write_file = [&](int n) {
        const auto tmp = dir / "credentials.new";
        std::ofstream(tmp) << "[default]\naws_access_key_id = " << key_id(n) << "\naws_secret_access_key = " << secret(n)
                           << "\n";
        std::filesystem::rename(tmp, file);
    };
    REQUIRE(create_key(1) == 0);
    write_file(1);
    s3::config base = cfg;
    base.creds = {};
    auto loaded = s3::config_from_env(base, [&](std::string_view n) -> std::optional<std::string> {
        if (n == "AWS_SHARED_CREDENTIALS_FILE") return file.string();
        return std::nullopt;
    });
    REQUIRE(loaded.has_value());
    auto st = s3::store::create(*loaded);
    REQUIRE(st.has_value());
    const auto k = key_named("rotation");
    const std::string data(20000, 'r');
    REQUIRE(st->put_chunk({}, k, 20000, as_bytes(data)).has_value());

    std::atomic<bool> done{false};
    std::atomic<int> calls{0}, failed{0};
    std::string first_failure;
    std::mutex mu;
    std::vector<std::jthread> readers;
    readers.reserve(8);
    for (int t = 0; t < 8; ++t)
        readers.emplace_back([&] {
            std::string got(data.size(), '\0');
            while (!done) {
                auto r = get_chunk(*st, context::with_timeout(20s), k, 0, std::as_writable_bytes(std::span(got)));
                ++calls;
                if (!r || got != data) {
                    ++failed;
                    std::lock_guard lock(mu);
                    if (first_failure.empty()) first_failure = r ? "wrong bytes" : r.error().to_string();
                }
            }
        });
    // Three rotations: new key, file rewritten, old key deleted at once (so
    // some requests still signed with it are refused and refreshed).
    for (int n = 2; n <= 4; ++n) {
        std::this_thread::sleep_for(300ms);
        REQUIRE(create_key(n) == 0);
        write_file(n);
        REQUIRE(remove_key(n - 1) == 0);
    }
    std::this_thread::sleep_for(500ms);
    done = true;
    readers.clear();
    INFO(first_failure);
    CHECK(calls > 100);
    CHECK(failed == 0);
    CHECK(st->remove({}, k).has_value());
    CHECK(remove_key(4) == 0);
    std::filesystem::remove_all(dir);
}

// ---- streaming uploads: signed aws-chunked frames, checked by RGW ----------

TEST_CASE("rgw: a streaming source goes up in signed aws-chunked frames, never spooled", "[s3][rgw][stream]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    std::atomic<std::int64_t> put_sent{-1};
    cfg.observer = [&](const s3::request_event& e) {
        if (e.method == "PUT" && e.op == "put_chunk") put_sent = e.bytes_sent;
    };
    auto st = s3::store::create(cfg);
    REQUIRE(st.has_value());
    REQUIRE(st->self_test(context::with_timeout(30s)).has_value());
    CHECK(st->last_self_test().aws_chunked_accepted);
    const auto k = key_named("streamed");
    std::string data((1 << 20) - 3, '\0');
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 131) >> 3);
    std::size_t at = 0;
    auto src = [&](std::span<std::byte> buf) -> result<std::size_t> {
        const std::size_t n = std::min({buf.size(), std::size_t{70000}, data.size() - at});
        std::memcpy(buf.data(), data.data() + at, n);
        at += n;
        return n;
    };
    auto p = st->put_chunk({}, k, static_cast<std::int64_t>(data.size()), src);
    INFO(p);
    REQUIRE(p.has_value());
    CHECK(put_sent == s3::detail::aws_chunked_length(static_cast<std::int64_t>(data.size()), std::int64_t{64} * 1024));
    std::string got(data.size(), '\0');
    REQUIRE(get_chunk(*st, {}, k, 0, std::as_writable_bytes(std::span(got))).has_value());
    CHECK(got == data);
    CHECK(st->remove({}, k).has_value());
}

TEST_CASE("rgw: a frame with a corrupted signature is refused and nothing is stored", "[s3][rgw][stream]") {
    auto cfg = rgw_config();
    if (cfg.endpoint.empty()) return; // no RGW: rgw_config() failed or warned
    auto st = s3::store::create(cfg);
    REQUIRE(st.has_value());
    const std::string data(30000, 'c'); // frames of 8 KiB: 0..3 with data, then the final empty one
    const auto ok_key = key_named("corrupt-frame");
    auto good = st->debug_put_streaming({}, *st->object_key(ok_key), as_bytes(data), -1);
    INFO(good);
    REQUIRE(good.has_value()); // the same path, uncorrupted, is accepted
    CHECK(st->stat({}, ok_key)->size == 30000);
    CHECK(st->remove({}, ok_key).has_value());
    // First, middle, last data frame. (RGW 16.2 does not check the signature
    // of the final, empty frame: it carries no data, so nothing can be
    // corrupted through it; docs/s3.md.)
    for (const int frame : {0, 2, 3}) {
        INFO("corrupted frame " << frame);
        const auto k = key_named("corrupt-frame");
        auto r = st->debug_put_streaming({}, *st->object_key(k), as_bytes(data), frame);
        REQUIRE_FALSE(r.has_value());
        INFO(r.error());
        // RGW: SignatureDoesNotMatch for a data frame; XAmzContentSHA256Mismatch
        // when only the final frame's signature is wrong. Either way refused.
        CHECK((r.error().s3_code == "SignatureDoesNotMatch" || r.error().s3_code == "XAmzContentSHA256Mismatch"));
        CHECK(r.error().attempts <= 1); // a streamed body is never sent twice
        CHECK(st->stat({}, k).error().code == errc::not_found);
    }
}
