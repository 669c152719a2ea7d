// S3 driver configuration: validation, endpoint parsing, the JSON loader, the
// environment / shared credentials file loader, describe(), and that no
// message ever carries the secret or the session token.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "cachestore/s3/config.hpp"
#include "cachestore/s3/config_json.hpp"
#include "cachestore/s3/detail/classify.hpp"

using namespace cachestore;
using namespace std::chrono_literals;

namespace {

// A secret with '+' and '/', and a token, that must never show up anywhere.
const std::string secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const std::string token = "FQoGZXIvYXdzEJr//////////wEaDEXAMPLETOKEN+abc/def==";
const std::string key_id = "AKIAIOSFODNN7EXAMPLE";

s3::config good() {
    s3::config c;
    c.endpoint = "http://127.0.0.1:7480";
    c.bucket = "chunks";
    c.creds = {key_id, secret, token};
    return c;
}

bool leaks(std::string_view text) {
    return text.find(secret) != std::string_view::npos || text.find(token) != std::string_view::npos ||
           text.find("K7MDENG") != std::string_view::npos || text.find("EXAMPLETOKEN") != std::string_view::npos;
}

/// An environment made of a map: no process-wide setenv in tests.
s3::env_source env_of(std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
        const auto it = vars.find(std::string(name));
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

/// A temporary directory removed at scope exit.
struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        static std::atomic<int> counter{0};
        std::random_device rd;
        path = std::filesystem::temp_directory_path() /
               ("cachestore-config-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
                std::to_string(rd()));
        std::filesystem::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    std::string write(const std::string& name, std::string_view content) const {
        const auto p = path / name;
        std::filesystem::create_directories(p.parent_path());
        std::ofstream out(p, std::ios::binary);
        out << content;
        return p.string();
    }
};

/// The error of a failed result, checked to be a config error without secrets.
template <class T>
error config_error(const result<T>& r) {
    REQUIRE_FALSE(r.has_value());
    const error& e = r.error();
    CHECK(e.code == errc::misconfigured);
    CHECK(e.op == "config");
    CHECK_FALSE(leaks(e.message));
    CHECK_FALSE(leaks(e.to_string()));
    return e;
}

/// Validation of `c` fails with a message containing `needle`.
void rejects(const s3::config& c, std::string_view needle) {
    INFO("expecting: " << needle);
    const error e = config_error(s3::validate(c));
    INFO("message: " << e.message);
    CHECK(e.message.find(needle) != std::string::npos);
}

/// config_from_json fails with a message containing `needle` (credentials come
/// from a fake environment so validation does not depend on the machine).
error json_rejects(std::string_view text, std::string_view needle) {
    INFO("json: " << text);
    INFO("expecting: " << needle);
    auto r = s3::config_from_json(text, env_of({{"AWS_ACCESS_KEY_ID", key_id}, {"AWS_SECRET_ACCESS_KEY", secret}}));
    error e = config_error(r);
    INFO("message: " << e.message);
    CHECK(e.message.find(needle) != std::string::npos);
    return e;
}

bool contains(std::string_view hay, std::string_view needle) { return hay.find(needle) != std::string_view::npos; }

} // namespace

// ---- validate ----------------------------------------------------------------

TEST_CASE("validate accepts good configs", "[s3][config]") {
    CHECK(s3::validate(good()));

    auto c = good();
    c.endpoint.clear(); // AWS
    c.addressing_style = s3::addressing::virtual_hosted;
    c.bucket = "my.bucket-01";
    c.prefix = "cache/";
    c.creds.session_token.clear();
    CHECK(s3::validate(c));

    c = good();
    c.endpoint = "https://minio.dc1:9000/"; // a trailing '/' is fine
    c.bucket = "Legacy_Bucket.1";           // relaxed path-style name
    c.timeouts.operation = 0ms;             // no per-call timeout
    c.timeouts.low_speed_limit = 0;         // low-speed check off ...
    c.timeouts.low_speed_time = 0s;         // ... so its time may be 0
    c.retry = {1, 0ms, 0ms};
    c.max_idle_connections = 0;
    CHECK(s3::validate(c));

    c = good();
    c.endpoint = "http://[::1]:9000";
    CHECK(s3::validate(c));
}

TEST_CASE("validate: bucket", "[s3][config]") {
    auto c = good();
    c.bucket = "";
    rejects(c, "bucket is empty");
    c.bucket = "a/b";
    rejects(c, "not a valid bucket name");
    c.bucket = std::string(256, 'a');
    rejects(c, "not a valid bucket name");
    c.bucket = "..";
    rejects(c, "not a valid bucket name");

    c = good();
    c.endpoint = "https://s3.example.com";
    c.addressing_style = s3::addressing::virtual_hosted;
    for (const char* bad : {"ab", "UpperCase", "under_score", "a..b", "-abc", "abc-", "abc.-def", "192.168.1.1",
                            "0123456789012345678901234567890123456789012345678901234567890123"}) {
        c.bucket = bad;
        rejects(c, "DNS-compatible");
    }
    c.bucket = "abc";
    CHECK(s3::validate(c));
}

TEST_CASE("validate: virtual-hosted addressing needs a DNS host", "[s3][config]") {
    auto c = good();
    c.addressing_style = s3::addressing::virtual_hosted;
    rejects(c, "not the IP address \"127.0.0.1\"");
    c.endpoint = "http://[::1]:9000";
    rejects(c, "use path addressing");
    c.endpoint = "http://localhost:9000";
    CHECK(s3::validate(c));
}

TEST_CASE("validate: endpoint", "[s3][config]") {
    auto c = good();
    auto bad = [&](std::string ep, std::string_view needle) {
        c.endpoint = std::move(ep);
        rejects(c, needle);
    };
    bad("not a url", "not a valid URL");
    bad("127.0.0.1:7480", "needs a scheme");
    bad("localhost:9000", "needs a scheme");
    bad("http://", "not a valid URL");
    bad("http://h:99999", "not a valid URL");
    bad("ftp://h", "must be http or https");
    bad("s3://bucket", "must be http or https");
    bad("http://h:9000/bucket", "must not have a path");
    bad("http://h:9000/?x=1", "must not have a query");
    bad("http://h:9000?", "must not have a query");
    bad("http://h:9000#frag", "must not have a fragment");
    bad("http://h:0", "port must be between 1 and 65535");
    bad("http://[fe80::1%25eth0]:80", "zone ids");
    bad("http://user@h:9000", "must not contain user info");
    bad("http://user:" + secret + "@h:9000", "user info"); // unencoded '/' in the secret: curl cannot parse it
    bad("http://user:abc%2Fdef@h:9000", "must not contain user info");
    bad("http://user:" + secret + "@h:9000/x y", "not a valid URL");
}

TEST_CASE("validate: region", "[s3][config]") {
    auto c = good();
    c.region = "";
    rejects(c, "region is empty");
    c.endpoint.clear(); // the AWS default needs the region; reported once
    {
        const error e = config_error(s3::validate(c));
        CHECK(contains(e.message, "region is empty"));
        CHECK_FALSE(contains(e.message, "endpoint"));
    }
    c.region = "eu west 1";
    rejects(c, "region \"eu west 1\" must be");
    c.region = "eu/west";
    rejects(c, "must be 1-64 characters");
}

TEST_CASE("validate: credentials", "[s3][config]") {
    auto c = good();
    c.creds.access_key_id.clear();
    rejects(c, "access_key_id is empty");
    c = good();
    c.creds.secret_access_key.clear();
    rejects(c, "secret_access_key is empty");
    c = good();
    c.creds = {};
    rejects(c, "AWS_ACCESS_KEY_ID");
    c = good();
    c.creds.access_key_id += "\n";
    rejects(c, "access_key_id contains");
    c = good();
    c.creds.secret_access_key += "\n";
    rejects(c, "secret_access_key contains a control character");
    c = good();
    c.creds.session_token += "\r\n";
    rejects(c, "session_token contains a control character");
}

TEST_CASE("validate: prefix", "[s3][config]") {
    auto c = good();
    c.prefix = "/cache/";
    rejects(c, "must not start with '/'");
    c.prefix = "ca\nche/";
    rejects(c, "control character");
    c.prefix = "cache-"; // no trailing '/' needed
    CHECK(s3::validate(c));
}

TEST_CASE("validate: retry", "[s3][config]") {
    auto c = good();
    c.retry.max_attempts = 0;
    rejects(c, "retry.max_attempts must be between 1 and 20");
    c.retry.max_attempts = 21;
    rejects(c, "retry.max_attempts");
    c.retry.max_attempts = 20;
    CHECK(s3::validate(c));
    c = good();
    c.retry.base_delay = -1ms;
    rejects(c, "retry.base_delay must be >= 0");
    c = good();
    c.retry.max_delay = -1ms;
    rejects(c, "retry.max_delay must be >= 0");
    c = good();
    c.retry.base_delay = 100ms;
    c.retry.max_delay = 50ms;
    rejects(c, "retry.max_delay (50 ms) must be >= retry.base_delay (100 ms)");
    c = good();
    c.retry.max_delay = 25h;
    rejects(c, "at most 24 hours");
}

TEST_CASE("validate: timeouts", "[s3][config]") {
    auto c = good();
    c.timeouts.connect = 0ms;
    rejects(c, "timeouts.connect must be > 0");
    c.timeouts.connect = -5ms;
    rejects(c, "timeouts.connect must be > 0 ms (got -5)");
    c = good();
    c.timeouts.low_speed_limit = -1;
    rejects(c, "timeouts.low_speed_limit must be >= 0");
    c = good();
    c.timeouts.low_speed_time = -1s;
    rejects(c, "timeouts.low_speed_time must be >= 0");
    c = good();
    c.timeouts.low_speed_time = 0s;
    rejects(c, "low_speed_time must be > 0 s while low_speed_limit");
    c = good();
    c.timeouts.operation = -1ms;
    rejects(c, "timeouts.operation must be >= 0");
    c = good();
    c.timeouts.operation = 25h;
    rejects(c, "at most 24 hours");
}

TEST_CASE("validate: tls files and enum values", "[s3][config]") {
    temp_dir d;
    const auto file = d.write("ca.pem", "not really a PEM");
    auto c = good();
    c.tls.ca_file = file;
    c.tls.ca_dir = d.path.string();
    CHECK(s3::validate(c));
    c.tls.ca_file = (d.path / "missing.pem").string();
    rejects(c, "tls.ca_file");
    c = good();
    c.tls.ca_dir = file;
    rejects(c, "tls.ca_dir");

    c = good();
    c.addressing_style = static_cast<s3::addressing>(7);
    rejects(c, "addressing_style");
    c = good();
    c.commit = static_cast<s3::commit_mode>(7);
    rejects(c, "commit");
}

TEST_CASE("validate reports every problem at once", "[s3][config]") {
    s3::config c;
    c.endpoint = "http://h:9000/x";
    c.prefix = "/p";
    c.retry.max_attempts = 0;
    c.timeouts.connect = 0ms;
    c.creds.secret_access_key = secret;
    const error e = config_error(s3::validate(c));
    for (const char* needle :
         {"bucket is empty", "must not have a path", "access_key_id is empty", "prefix", "max_attempts", "connect"}) {
        INFO(needle);
        CHECK(contains(e.message, needle));
    }
    CHECK(contains(e.to_string(), "cachestore: misconfigured op=config: "));
}

// ---- parse_endpoint ----------------------------------------------------------

TEST_CASE("parse_endpoint", "[s3][config]") {
    auto parts = [](std::string ep, std::string region = "us-east-1") {
        s3::config c;
        c.endpoint = std::move(ep);
        c.region = std::move(region);
        auto r = s3::parse_endpoint(c);
        INFO(r);
        REQUIRE(r);
        return *r;
    };
    using P = s3::endpoint_parts;

    CHECK(parts("http://127.0.0.1:7480") == P{"http", "127.0.0.1", 7480, false});
    CHECK(parts("http://127.0.0.1:7480").authority() == "127.0.0.1:7480");
    CHECK(parts("http://127.0.0.1:7480").origin() == "http://127.0.0.1:7480");
    CHECK(parts("https://minio.dc1:9000") == P{"https", "minio.dc1", 9000, false});
    CHECK(parts("HTTPS://minio.dc1:9000/") == P{"https", "minio.dc1", 9000, false});
    CHECK(parts("http://minio.dc1") == P{"http", "minio.dc1", 80, true});
    CHECK(parts("http://minio.dc1").authority() == "minio.dc1");
    CHECK(parts("http://minio.dc1:80") == P{"http", "minio.dc1", 80, true});
    CHECK(parts("https://minio.dc1") == P{"https", "minio.dc1", 443, true});
    CHECK(parts("https://minio.dc1:443/") == P{"https", "minio.dc1", 443, true});
    CHECK(parts("https://minio.dc1:80") == P{"https", "minio.dc1", 80, false});
    CHECK(parts("http://minio.dc1:443") == P{"http", "minio.dc1", 443, false});

    // IPv6: curl keeps the brackets, which is what URLs and Host headers need.
    CHECK(parts("http://[::1]:9000") == P{"http", "[::1]", 9000, false});
    CHECK(parts("http://[::1]:9000").authority() == "[::1]:9000");
    CHECK(parts("http://[::1]") == P{"http", "[::1]", 80, true});
    CHECK(parts("https://[2001:db8::5]:443").authority() == "[2001:db8::5]");

    // AWS default.
    CHECK(parts("") == P{"https", "s3.us-east-1.amazonaws.com", 443, true});
    CHECK(parts("", "eu-west-1") == P{"https", "s3.eu-west-1.amazonaws.com", 443, true});
    CHECK(parts("", "eu-west-1").origin() == "https://s3.eu-west-1.amazonaws.com");
    CHECK(parts("", "cn-north-1").host == "s3.cn-north-1.amazonaws.com.cn");

    s3::config c;
    c.endpoint = "ftp://h";
    CHECK(contains(config_error(s3::parse_endpoint(c)).message, "http or https"));
    c.endpoint = "http://u:" + secret + "@h";
    const error e = config_error(s3::parse_endpoint(c));
    CHECK(contains(e.message, "<redacted>@h"));
    c.endpoint.clear();
    c.region.clear();
    CHECK(contains(config_error(s3::parse_endpoint(c)).message, "region"));
}

// ---- config_from_json --------------------------------------------------------

TEST_CASE("config_from_json: every key", "[s3][config]") {
    temp_dir d;
    const auto ca = d.write("ca.pem", "x");
    const std::string text = R"({
        "endpoint": "https://minio.dc1:9000",
        "region": "eu-central-1",
        "bucket": "chunks.prod",
        "prefix": "cache/",
        "addressing": "virtual",
        "access_key_id": ")" + key_id + R"(",
        "secret_access_key": ")" + secret + R"(",
        "session_token": ")" + token + R"(",
        "commit_mode": "if_none_match",
        "max_idle_connections": 8,
        "timeouts": {"connect_ms": 1500, "low_speed_time_s": 5, "low_speed_limit": 2048, "operation_ms": 0},
        "retry": {"max_attempts": 6, "base_delay_ms": 10, "max_delay_ms": 500},
        "tls": {"verify": false, "ca_file": ")" + ca + R"(", "ca_dir": ")" + d.path.string() + R"("}
    })";
    // The environment must not override anything the JSON sets.
    auto r = s3::config_from_json(text, env_of({{"AWS_ACCESS_KEY_ID", "AKIAENVENVENVENVENV1"},
                                                {"AWS_SECRET_ACCESS_KEY", "envsecret"},
                                                {"AWS_REGION", "ap-south-1"},
                                                {"AWS_ENDPOINT_URL", "http://other:1"}}));
    INFO(r);
    REQUIRE(r);
    const s3::config& c = *r;
    CHECK(c.endpoint == "https://minio.dc1:9000");
    CHECK(c.region == "eu-central-1");
    CHECK(c.bucket == "chunks.prod");
    CHECK(c.prefix == "cache/");
    CHECK(c.addressing_style == s3::addressing::virtual_hosted);
    CHECK(c.creds.access_key_id == key_id);
    CHECK(c.creds.secret_access_key == secret);
    CHECK(c.creds.session_token == token);
    CHECK(c.commit == s3::commit_mode::if_none_match);
    CHECK(c.max_idle_connections == 8);
    CHECK(c.timeouts.connect == 1500ms);
    CHECK(c.timeouts.low_speed_time == 5s);
    CHECK(c.timeouts.low_speed_limit == 2048);
    CHECK(c.timeouts.operation == 0ms);
    CHECK(c.retry.max_attempts == 6);
    CHECK(c.retry.base_delay == 10ms);
    CHECK(c.retry.max_delay == 500ms);
    CHECK_FALSE(c.tls.verify);
    CHECK(c.tls.ca_file == ca);
    CHECK(c.tls.ca_dir == d.path.string());
}

TEST_CASE("config_from_json: the other enum spellings and defaults", "[s3][config]") {
    auto env = env_of({{"AWS_ACCESS_KEY_ID", key_id}, {"AWS_SECRET_ACCESS_KEY", secret}});
    auto r = s3::config_from_json(R"({"bucket": "b", "endpoint": "http://h:1", "addressing": "path",
                                      "commit_mode": "stat_then_put"})",
                                  env);
    REQUIRE(r);
    CHECK(r->addressing_style == s3::addressing::path);
    CHECK(r->commit == s3::commit_mode::stat_then_put);
    r = s3::config_from_json(R"({"bucket": "b", "commit_mode": "auto"})", env);
    REQUIRE(r);
    CHECK(r->commit == s3::commit_mode::auto_detect);
    CHECK(r->endpoint.empty()); // AWS
    CHECK(r->region == "us-east-1");
    const s3::config defaults;
    CHECK(r->timeouts.connect == defaults.timeouts.connect);
    CHECK(r->retry.max_attempts == defaults.retry.max_attempts);
    CHECK(r->max_idle_connections == defaults.max_idle_connections);
    CHECK(r->tls.verify);
}

TEST_CASE("config_from_json: minimal JSON takes the rest from the environment", "[s3][config]") {
    auto r = s3::config_from_json(R"({"endpoint": "http://127.0.0.1:7480", "bucket": "chunks"})",
                                  env_of({{"AWS_ACCESS_KEY_ID", key_id},
                                          {"AWS_SECRET_ACCESS_KEY", secret},
                                          {"AWS_SESSION_TOKEN", token},
                                          {"AWS_REGION", "eu-west-3"},
                                          {"AWS_ENDPOINT_URL", "http://ignored:1"}}));
    INFO(r);
    REQUIRE(r);
    CHECK(r->endpoint == "http://127.0.0.1:7480");
    CHECK(r->region == "eu-west-3");
    CHECK(r->creds.access_key_id == key_id);
    CHECK(r->creds.secret_access_key == secret);
    CHECK(r->creds.session_token == token);

    // Endpoint from the environment too.
    r = s3::config_from_json(R"({"bucket": "chunks"})", env_of({{"AWS_ACCESS_KEY_ID", key_id},
                                                                  {"AWS_SECRET_ACCESS_KEY", secret},
                                                                  {"AWS_ENDPOINT_URL", "http://minio:9000"}}));
    REQUIRE(r);
    CHECK(r->endpoint == "http://minio:9000");

    // Credentials from the shared credentials file.
    temp_dir d;
    const auto file = d.write("creds", "[default]\naws_access_key_id = " + key_id + "\naws_secret_access_key = " +
                                           secret + "\n");
    r = s3::config_from_json(R"({"bucket": "chunks", "endpoint": "http://h:1"})",
                             env_of({{"AWS_SHARED_CREDENTIALS_FILE", file}}));
    REQUIRE(r);
    CHECK(r->creds.access_key_id == key_id);
    CHECK(r->creds.secret_access_key == secret);

    // Partial credentials in the JSON are not completed from the environment.
    const error e = config_error(s3::config_from_json(
        R"({"bucket": "chunks", "endpoint": "http://h:1", "access_key_id": "AKIAJSONJSONJSONJSON"})",
        env_of({{"AWS_ACCESS_KEY_ID", key_id}, {"AWS_SECRET_ACCESS_KEY", secret}})));
    CHECK(contains(e.message, "secret_access_key is empty"));

    // No credentials anywhere.
    const error none = config_error(
        s3::config_from_json(R"({"bucket": "chunks", "endpoint": "http://h:1"})", env_of({})));
    CHECK(contains(none.message, "no credentials"));
}

TEST_CASE("config_from_json: unknown keys at every level", "[s3][config]") {
    json_rejects(R"({"bucket": "b", "bukket": "x"})", "unknown key \"bukket\"");
    const error e = json_rejects(R"({"bucket": "b", "timeouts": {"conect_ms": 1}})", "unknown key \"timeouts.conect_ms\"");
    CHECK(contains(e.message, "connect_ms"));
    json_rejects(R"({"bucket": "b", "retry": {"attempts": 1}})", "unknown key \"retry.attempts\"");
    json_rejects(R"({"bucket": "b", "tls": {"insecure": true}})", "unknown key \"tls.insecure\"");
    // Several problems are reported together.
    const error both = json_rejects(R"({"bucket": 1, "x": 2})", "\"bucket\" must be a string");
    CHECK(contains(both.message, "unknown key \"x\""));
}

TEST_CASE("config_from_json: wrong types name the key", "[s3][config]") {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"("endpoint": 1)", "\"endpoint\" must be a string, not number"},
        {R"("region": true)", "\"region\" must be a string, not boolean"},
        {R"("prefix": {})", "\"prefix\" must be a string, not object"},
        {R"("addressing": 1)", "\"addressing\" must be a string"},
        {R"("access_key_id": null)", "\"access_key_id\" must be a string, not null"},
        {R"("secret_access_key": 1)", "\"secret_access_key\" must be a string"},
        {R"("session_token": [])", "\"session_token\" must be a string, not array"},
        {R"("commit_mode": false)", "\"commit_mode\" must be a string"},
        {R"("max_idle_connections": "64")", "\"max_idle_connections\" must be an integer, not string"},
        {R"("max_idle_connections": 1.5)", "\"max_idle_connections\" must be an integer, not number"},
        {R"("max_idle_connections": -1)", "\"max_idle_connections\" must be an integer between 0 and"},
        {R"("timeouts": 3000)", "\"timeouts\" must be an object, not number"},
        {R"("timeouts": {"connect_ms": "3s"})", "\"timeouts.connect_ms\" must be an integer"},
        {R"("timeouts": {"low_speed_time_s": 1.0})", "\"timeouts.low_speed_time_s\" must be an integer"},
        {R"("timeouts": {"low_speed_time_s": 99999999999})", "\"timeouts.low_speed_time_s\" must be an integer between"},
        {R"("timeouts": {"low_speed_limit": true})", "\"timeouts.low_speed_limit\" must be an integer"},
        {R"("timeouts": {"operation_ms": 18446744073709551615})", "\"timeouts.operation_ms\" must be an integer between"},
        {R"("retry": [])", "\"retry\" must be an object, not array"},
        {R"("retry": {"max_attempts": 4294967296})", "\"retry.max_attempts\" must be an integer between"},
        {R"("retry": {"base_delay_ms": "25"})", "\"retry.base_delay_ms\" must be an integer"},
        {R"("retry": {"max_delay_ms": null})", "\"retry.max_delay_ms\" must be an integer"},
        {R"("tls": true)", "\"tls\" must be an object"},
        {R"("tls": {"verify": "false"})", "\"tls.verify\" must be true or false, not string"},
        {R"("tls": {"ca_file": 1})", "\"tls.ca_file\" must be a string"},
        {R"("tls": {"ca_dir": 1})", "\"tls.ca_dir\" must be a string"},
        {R"("addressing": "virtual_hosted")", "addressing must be \"path\" or \"virtual\""},
        {R"("commit_mode": "always")", "commit_mode must be"},
    };
    for (const auto& [member, needle] : cases) json_rejects(R"({"bucket": "b", )" + member + "}", needle);
    json_rejects(R"({"bucket": ["b"]})", "\"bucket\" must be a string");
}

TEST_CASE("config_from_json: malformed JSON gives the position", "[s3][config]") {
    json_rejects("", "line 1, column 1");
    json_rejects("{", "malformed at line 1, column 2");
    json_rejects("{\n  \"bucket\": \"b\",\n  \"region\": x\n}", "line 3, column 13");
    json_rejects(R"({"bucket": "b",})", "malformed");
    json_rejects("[1, 2]", "the top level must be an object");
    json_rejects("\"just a string\"", "the top level must be an object");
    json_rejects("{\"bucket\": \"b\"} trailing", "malformed");
    json_rejects("{\"bucket\": \"\xff\xfe\"}", "malformed");
    json_rejects("{\"bucket\": \"b\", \"bucket\": \"c\"}", "duplicate key \"bucket\"");
    json_rejects("{\"bucket\": \"b\", \"retry\": {\"max_attempts\": 1, \"max_attempts\": 2}}",
                 "duplicate key \"retry.max_attempts\"");
    json_rejects("{\"bucket\": \"b\" /* comment */}", "malformed");
}

TEST_CASE("config_from_json validates the result", "[s3][config]") {
    json_rejects(R"({"endpoint": "http://h:1"})", "bucket is empty");
    json_rejects(R"({"bucket": "b", "endpoint": "ftp://h"})", "http or https");
    json_rejects(R"({"bucket": "b", "retry": {"max_attempts": 0}})", "retry.max_attempts");
    json_rejects(R"({"bucket": "b", "prefix": "/x"})", "must not start with '/'");
}

// ---- environment --------------------------------------------------------------

TEST_CASE("config_from_env: precedence explicit > environment > file", "[s3][config]") {
    temp_dir d;
    const auto file = d.write("creds", "[default]\naws_access_key_id = AKIAFILEFILEFILEFILE\n"
                                       "aws_secret_access_key = filesecret\n");
    const std::map<std::string, std::string> all = {
        {"AWS_ACCESS_KEY_ID", key_id},          {"AWS_SECRET_ACCESS_KEY", secret},
        {"AWS_SESSION_TOKEN", token},           {"AWS_REGION", "eu-west-1"},
        {"AWS_DEFAULT_REGION", "eu-west-2"},    {"AWS_ENDPOINT_URL_S3", "http://s3-specific:1"},
        {"AWS_ENDPOINT_URL", "http://generic:2"}, {"AWS_SHARED_CREDENTIALS_FILE", file}};

    SECTION("empty base takes everything from the environment") {
        s3::config base;
        base.region.clear();
        auto r = s3::config_from_env(base, env_of(all));
        REQUIRE(r);
        CHECK(r->endpoint == "http://s3-specific:1");
        CHECK(r->region == "eu-west-1");
        CHECK(r->creds.access_key_id == key_id);
        CHECK(r->creds.secret_access_key == secret);
        CHECK(r->creds.session_token == token);
    }
    SECTION("second choices") {
        auto vars = all;
        vars.erase("AWS_ENDPOINT_URL_S3");
        vars.erase("AWS_REGION");
        s3::config base;
        base.region.clear();
        auto r = s3::config_from_env(base, env_of(vars));
        REQUIRE(r);
        CHECK(r->endpoint == "http://generic:2");
        CHECK(r->region == "eu-west-2");
    }
    SECTION("empty environment values count as unset") {
        auto vars = all;
        vars["AWS_ENDPOINT_URL_S3"] = "";
        vars["AWS_REGION"] = "";
        s3::config base;
        base.region.clear();
        auto r = s3::config_from_env(base, env_of(vars));
        REQUIRE(r);
        CHECK(r->endpoint == "http://generic:2");
        CHECK(r->region == "eu-west-2");
    }
    SECTION("nothing set: AWS endpoint, us-east-1") {
        s3::config base;
        base.region.clear();
        base.creds = {key_id, secret, ""};
        auto r = s3::config_from_env(base, env_of({}));
        REQUIRE(r);
        CHECK(r->endpoint.empty());
        CHECK(r->region == "us-east-1");
    }
    SECTION("explicit fields win") {
        s3::config base;
        base.endpoint = "http://explicit:3";
        base.region = "us-west-2";
        base.creds = {"AKIAEXPLICITEXPLICIT", "explicitsecret", ""};
        auto r = s3::config_from_env(base, env_of(all));
        REQUIRE(r);
        CHECK(r->endpoint == "http://explicit:3");
        CHECK(r->region == "us-west-2");
        CHECK(r->creds.access_key_id == "AKIAEXPLICITEXPLICIT");
        CHECK(r->creds.secret_access_key == "explicitsecret");
        CHECK(r->creds.session_token.empty()); // never mixed with AWS_SESSION_TOKEN
    }
    SECTION("a default-constructed base keeps its us-east-1") {
        auto r = s3::config_from_env(s3::config{}, env_of(all));
        REQUIRE(r);
        CHECK(r->region == "us-east-1");
    }
    SECTION("environment keys beat the file; the file is used without them") {
        auto r = s3::credentials_from_env(env_of(all));
        REQUIRE(r);
        CHECK(r->access_key_id == key_id);
        auto vars = all;
        vars.erase("AWS_ACCESS_KEY_ID");
        vars.erase("AWS_SECRET_ACCESS_KEY");
        r = s3::credentials_from_env(env_of(vars));
        REQUIRE(r);
        CHECK(r->access_key_id == "AKIAFILEFILEFILEFILE");
        CHECK(r->secret_access_key == "filesecret");
        CHECK(r->session_token.empty()); // AWS_SESSION_TOKEN belongs to the environment keys only
    }
    SECTION("half the environment keys is an error") {
        auto vars = all;
        vars.erase("AWS_SECRET_ACCESS_KEY");
        CHECK(contains(config_error(s3::credentials_from_env(env_of(vars))).message,
                       "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"));
        vars = all;
        vars.erase("AWS_ACCESS_KEY_ID");
        CHECK(contains(config_error(s3::credentials_from_env(env_of(vars))).message,
                       "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"));
        s3::config base;
        CHECK_FALSE(s3::config_from_env(base, env_of(vars)));
    }
}

TEST_CASE("config_from_env() with the process environment does not throw", "[s3][config]") {
    // The real environment is whatever the machine has: only check it answers.
    const auto r = s3::config_from_env();
    if (!r) {
        CHECK(r.error().code == errc::misconfigured);
    } else {
        CHECK_FALSE(r->region.empty());
    }
    const auto c = s3::credentials_from_env();
    if (!c) CHECK(c.error().code == errc::misconfigured);
}

// ---- shared credentials file ----------------------------------------------------

TEST_CASE("credentials file: profiles, comments, whitespace", "[s3][config]") {
    temp_dir d;
    const std::string text = "\xEF\xBB\xBF# a comment\r\n"
                             "; another comment\n"
                             "\n"
                             "[default]\n"
                             "aws_access_key_id=AKIADEFAULTDEFAULT01\n"
                             "aws_secret_access_key   =   " +
                             secret +
                             "   \n"
                             "\n"
                             "  [ work ]   # trailing comment\r\n"
                             "  AWS_Access_Key_ID = AKIAWORKWORKWORKWORK\r\n"
                             "\taws_secret_access_key\t=\tworksecret+/x=\r\n"
                             "aws_session_token = " +
                             token +
                             "\r\n"
                             "region = eu-north-1\n"
                             "s3 =\n"
                             "    max_concurrent_requests = 20\n"
                             "    aws_access_key_id = NOTTHISONE\n"
                             "[legacy]\n"
                             "aws_access_key_id: AKIALEGACYLEGACYLEGA\n"
                             "aws_secret_access_key: legacy#secret;x\n"
                             "aws_security_token = legacytoken\n"
                             "[default]\n"
                             "aws_session_token = " +
                             token + "\n";
    const auto file = d.write("credentials", text);

    auto r = s3::credentials_from_env(env_of({{"AWS_SHARED_CREDENTIALS_FILE", file}}));
    INFO(r);
    REQUIRE(r);
    CHECK(r->access_key_id == "AKIADEFAULTDEFAULT01");
    CHECK(r->secret_access_key == secret);
    CHECK(r->session_token == token); // repeated sections merge

    r = s3::credentials_from_env(env_of({{"AWS_SHARED_CREDENTIALS_FILE", file}, {"AWS_PROFILE", "work"}}));
    INFO(r);
    REQUIRE(r);
    CHECK(r->access_key_id == "AKIAWORKWORKWORKWORK");
    CHECK(r->secret_access_key == "worksecret+/x=");
    CHECK(r->session_token == token);

    r = s3::credentials_from_env(env_of({{"AWS_SHARED_CREDENTIALS_FILE", file}, {"AWS_PROFILE", "legacy"}}));
    INFO(r);
    REQUIRE(r);
    CHECK(r->access_key_id == "AKIALEGACYLEGACYLEGA");
    CHECK(r->secret_access_key == "legacy#secret;x"); // no inline comments, like the AWS CLI
    CHECK(r->session_token == "legacytoken");
}

TEST_CASE("credentials file: default location is $HOME/.aws/credentials", "[s3][config]") {
    temp_dir home;
    home.write(".aws/credentials", "[default]\naws_access_key_id = AKIAHOMEHOMEHOMEHOME\naws_secret_access_key = s\n");
    auto r = s3::credentials_from_env(env_of({{"HOME", home.path.string()}}));
    REQUIRE(r);
    CHECK(r->access_key_id == "AKIAHOMEHOMEHOMEHOME");

    home.write("elsewhere/creds", "[p]\naws_access_key_id = AKIATILDETILDETILDE1\naws_secret_access_key = s\n");
    r = s3::credentials_from_env(
        env_of({{"HOME", home.path.string()}, {"AWS_SHARED_CREDENTIALS_FILE", "~/elsewhere/creds"}, {"AWS_PROFILE", "p"}}));
    REQUIRE(r);
    CHECK(r->access_key_id == "AKIATILDETILDETILDE1");
}

TEST_CASE("credentials file: errors", "[s3][config]") {
    temp_dir d;
    const auto file = d.write("credentials", "[default]\naws_access_key_id = AKIADEFAULTDEFAULT01\n"
                                             "aws_secret_access_key = " +
                                                 secret + "\n[other]\naws_access_key_id = AKIAOTHEROTHEROTHER1\n");
    auto err = [](std::map<std::string, std::string> vars) { return config_error(s3::credentials_from_env(env_of(std::move(vars)))); };

    SECTION("missing named profile") {
        const error e = err({{"AWS_SHARED_CREDENTIALS_FILE", file}, {"AWS_PROFILE", "prod"}});
        CHECK(contains(e.message, "profile \"prod\" not found in"));
        CHECK(contains(e.message, file));
        CHECK(contains(e.message, "\"default\", \"other\""));
    }
    SECTION("profile without a secret") {
        const error e = err({{"AWS_SHARED_CREDENTIALS_FILE", file}, {"AWS_PROFILE", "other"}});
        CHECK(contains(e.message, "lacks aws_secret_access_key"));
    }
    SECTION("missing explicit file") {
        const error e = err({{"AWS_SHARED_CREDENTIALS_FILE", (d.path / "nope").string()}});
        CHECK(contains(e.message, "AWS_SHARED_CREDENTIALS_FILE names"));
        CHECK(contains(e.message, "does not exist"));
    }
    SECTION("missing default file") {
        CHECK(contains(err({{"HOME", d.path.string()}}).message, "no credentials"));
        CHECK(contains(err({{"HOME", d.path.string()}, {"AWS_PROFILE", "prod"}}).message,
                       "AWS_PROFILE is \"prod\" but the credentials file"));
    }
    SECTION("no HOME and nothing else") { CHECK(contains(err({}).message, "no credentials")); }
    SECTION("a directory instead of a file") {
        CHECK(contains(err({{"AWS_SHARED_CREDENTIALS_FILE", d.path.string()}}).message, "cannot read"));
    }
    SECTION("malformed lines name the line, never its content") {
        const auto bad = d.write("bad", "[default]\naws_access_key_id = AKIADEFAULTDEFAULT01\n" + secret + "\n");
        const error e = err({{"AWS_SHARED_CREDENTIALS_FILE", bad}});
        CHECK(contains(e.message, bad + ":3: expected"));
        const auto early = d.write("early", "aws_secret_access_key = " + secret + "\n[default]\n");
        CHECK(contains(err({{"AWS_SHARED_CREDENTIALS_FILE", early}}).message, ":1: a \"key = value\" line comes before"));
        const auto open = d.write("open", "[default\n");
        CHECK(contains(err({{"AWS_SHARED_CREDENTIALS_FILE", open}}).message, ":1: a section header lacks"));
        const auto trail = d.write("trail", "[default] x\n");
        CHECK(contains(err({{"AWS_SHARED_CREDENTIALS_FILE", trail}}).message, "unexpected text after"));
        const auto empty = d.write("emptyname", "[ ]\n");
        CHECK(contains(err({{"AWS_SHARED_CREDENTIALS_FILE", empty}}).message, "empty section name"));
        const auto nokey = d.write("nokey", "[default]\n = " + secret + "\n");
        CHECK(contains(err({{"AWS_SHARED_CREDENTIALS_FILE", nokey}}).message, ":2: a \"key = value\" line has no key"));
    }
    SECTION("an empty file has no profiles") {
        const auto empty = d.write("empty", "");
        CHECK(contains(err({{"AWS_SHARED_CREDENTIALS_FILE", empty}}).message, "it has no profiles"));
    }
}

// ---- describe and secrets ---------------------------------------------------------

TEST_CASE("describe is one line without secrets", "[s3][config]") {
    auto c = good();
    c.prefix = "cache/";
    const std::string s = s3::describe(c);
    INFO(s);
    CHECK(s.find('\n') == std::string::npos);
    CHECK(contains(s, "endpoint=http://127.0.0.1:7480"));
    CHECK(contains(s, "bucket=chunks"));
    CHECK(contains(s, "prefix=cache/"));
    CHECK(contains(s, "region=us-east-1"));
    CHECK(contains(s, "addressing=path"));
    CHECK(contains(s, "commit=auto"));
    CHECK(contains(s, "credentials=AKIA...MPLE"));
    CHECK(contains(s, "<redacted>"));
    CHECK(contains(s, "session token: present"));
    CHECK_FALSE(leaks(s));

    c.endpoint.clear();
    c.addressing_style = s3::addressing::virtual_hosted;
    c.commit = s3::commit_mode::if_none_match;
    CHECK(contains(s3::describe(c), "endpoint=https://s3.us-east-1.amazonaws.com"));
    CHECK(contains(s3::describe(c), "addressing=virtual"));
    CHECK(contains(s3::describe(c), "commit=if_none_match"));

    c.endpoint = "http://admin:" + secret + "@h:9000";
    c.bucket = "evil\nbucket";
    const std::string u = s3::describe(c);
    CHECK_FALSE(leaks(u));
    CHECK(contains(u, "http://<redacted>@h:9000"));
    CHECK(u.find('\n') == std::string::npos);
}

TEST_CASE("no error message contains the secret or the token", "[s3][config]") {
    std::vector<std::string> messages;
    auto collect = [&](const auto& r) {
        if (!r) {
            messages.push_back(r.error().message);
            messages.push_back(r.error().to_string());
        }
    };
    // Every validation problem at once, with the secrets set.
    s3::config c;
    c.endpoint = "http://user:" + secret + "@h:9000/x";
    c.region = "";
    c.prefix = "/p";
    c.creds = {"", secret + "\n", token + "\n"};
    c.retry.max_attempts = 0;
    collect(s3::validate(c));
    collect(s3::parse_endpoint(c));
    c.endpoint = "http://user:" + secret + "@bad host/";
    collect(s3::validate(c));
    c.endpoint = secret + "@h";
    collect(s3::validate(c));

    // JSON: wrong types and malformed documents around the secret.
    auto env = env_of({});
    collect(s3::config_from_json(R"({"secret_access_key": ")" + secret + R"(", "session_token": ")" + token +
                                     R"(", "retry": ")" + secret + R"("})",
                                 env));
    collect(s3::config_from_json(R"({"secret_access_key": ")" + secret + "\x01\"}", env));
    collect(s3::config_from_json(R"({"secret_access_key": ")" + secret + R"(" )" + token + "}", env));
    collect(s3::config_from_json(R"({"secret_access_key": )" + secret + "}", env));
    collect(s3::config_from_json(R"({"session_token": ")" + token + R"(", "bucket": "b"})", env));
    collect(s3::config_from_json(R"({")" + secret + R"(": 1})", env)); // a secret as a key is its own fault

    // Credentials files with the secret on broken lines.
    temp_dir d;
    const auto f = d.write("c", "[default]\n" + secret + "\n");
    collect(s3::credentials_from_env(env_of({{"AWS_SHARED_CREDENTIALS_FILE", f}})));
    const auto g = d.write("g", "[default]\naws_secret_access_key=" + secret + "\naws_session_token=" + token + "\n");
    collect(s3::credentials_from_env(env_of({{"AWS_SHARED_CREDENTIALS_FILE", g}})));
    collect(s3::credentials_from_env(env_of({{"AWS_SECRET_ACCESS_KEY", secret}, {"AWS_SESSION_TOKEN", token}})));

    REQUIRE(messages.size() >= 20);
    std::size_t leaked = 0;
    for (const auto& m : messages) {
        // The JSON key case above deliberately uses the secret as a key name.
        if (contains(m, "unknown key")) continue;
        INFO(m);
        CHECK_FALSE(leaks(m));
        leaked += leaks(m) ? 1 : 0;
    }
    CHECK(leaked == 0);
}

TEST_CASE("error classes: every libcurl result is classified deliberately, in code and in docs/errors.md", "[classify]") {
    using cachestore::s3::detail::curl_classes;
    // Every CURLcode of the libcurl this was built with, in order, once.
    REQUIRE(std::size(curl_classes) == static_cast<std::size_t>(CURL_LAST) - 1);
    std::ifstream f(CACHESTORE_ERRORS_MD);
    REQUIRE(f.good());
    const std::string doc((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    for (int code = 1; code < static_cast<int>(CURL_LAST); ++code) {
        const auto& row = curl_classes[static_cast<std::size_t>(code) - 1];
        INFO(code << " " << row.name);
        CHECK(row.code == code);
        CHECK(std::string_view(row.why).size() > 10);
        CHECK(cachestore::s3::detail::classify_curl(static_cast<CURLcode>(code)) == row.cls);
        // The docs' row: "| code | `NAME` | `errc` | ..."
        const std::string doc_row = "| " + std::to_string(code) + " | `" + row.name + "` | `" +
                                    std::string(cachestore::to_string(row.cls)) + "` |";
        CHECK(doc.find(doc_row) != std::string::npos);
    }
    // The two rows outcome.hpp refines by context, and the default.
    CHECK(cachestore::s3::detail::classify_curl(CURLE_OUT_OF_MEMORY) == cachestore::errc::io_error);
    CHECK(cachestore::s3::detail::classify_curl(CURLE_PEER_FAILED_VERIFICATION) == cachestore::errc::misconfigured);
    CHECK(cachestore::s3::detail::classify_curl(static_cast<CURLcode>(CURL_LAST + 5)) == cachestore::errc::transient);
}
