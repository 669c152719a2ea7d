// Fuzz target: the JSON configuration loader (s3/config.hpp,
// config_from_json) with an injected, empty environment (so nothing outside
// the input decides the result and no credentials file is read).
//
// Invariants:
//  - no exception escapes config_from_json, whatever the input;
//  - a failure is errc::misconfigured with op "config";
//  - a success validates, has a bucket and credentials, and survives a round
//    trip: the config written back as JSON loads to an equal config;
//  - no message and no describe() output contains the secret access key or
//    the session token: the input (when it is a JSON object) is reloaded with
//    marker secrets, also cut short and with a bad byte right after the
//    secret, and no message or description may contain a marker.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cachestore/s3/config.hpp"
#include "cachestore/s3/config_json.hpp"
#include "fuzz_support.hpp"

namespace s3 = cachestore::s3;
using nlohmann::json;

namespace {

constexpr std::string_view secret_marker = "S3cr3tMark/zQ9+Kx";
constexpr std::string_view token_marker = "T0kenMark/yW7+Pq";

const s3::env_source& empty_env() {
    static const s3::env_source env = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
    return env;
}

cachestore::result<s3::config> load(std::string_view text) {
    try {
        return s3::config_from_json(text, empty_env());
    } catch (const std::exception& e) {
        fuzz::check_failed("no exception escapes config_from_json", __FILE__, __LINE__, e.what());
    } catch (...) {
        fuzz::check_failed("no exception escapes config_from_json", __FILE__, __LINE__, "non-std exception");
    }
}

json to_json(const s3::config& c) {
    json j;
    j["endpoint"] = c.endpoint;
    j["region"] = c.region;
    j["bucket"] = c.bucket;
    j["prefix"] = c.prefix;
    j["addressing"] = std::string(s3::to_string(c.addressing_style));
    j["access_key_id"] = c.creds.access_key_id;
    j["secret_access_key"] = c.creds.secret_access_key;
    j["session_token"] = c.creds.session_token;
    j["commit_mode"] = std::string(s3::to_string(c.commit));
    j["max_idle_connections"] = static_cast<std::uint64_t>(c.max_idle_connections);
    j["timeouts"] = {{"connect_ms", c.timeouts.connect.count()},
                     {"low_speed_time_s", c.timeouts.low_speed_time.count()},
                     {"low_speed_limit", c.timeouts.low_speed_limit},
                     {"operation_ms", c.timeouts.operation.count()},
                     {"idle_ms", c.timeouts.idle.count()}};
    j["retry"] = {{"max_attempts", c.retry.max_attempts},
                  {"base_delay_ms", c.retry.base_delay.count()},
                  {"max_delay_ms", c.retry.max_delay.count()}};
    j["tls"] = {{"verify", c.tls.verify}, {"ca_file", c.tls.ca_file}, {"ca_dir", c.tls.ca_dir}};
    return j;
}

bool same(const s3::config& a, const s3::config& b) {
    return a.endpoint == b.endpoint && a.region == b.region && a.bucket == b.bucket && a.prefix == b.prefix &&
           a.addressing_style == b.addressing_style && a.creds.access_key_id == b.creds.access_key_id &&
           a.creds.secret_access_key == b.creds.secret_access_key &&
           a.creds.session_token == b.creds.session_token && a.commit == b.commit &&
           a.max_idle_connections == b.max_idle_connections && a.timeouts.connect == b.timeouts.connect &&
           a.timeouts.low_speed_time == b.timeouts.low_speed_time &&
           a.timeouts.low_speed_limit == b.timeouts.low_speed_limit && a.timeouts.operation == b.timeouts.operation && a.timeouts.idle == b.timeouts.idle &&
           a.retry.max_attempts == b.retry.max_attempts && a.retry.base_delay == b.retry.base_delay &&
           a.retry.max_delay == b.retry.max_delay && a.tls.verify == b.tls.verify && a.tls.ca_file == b.tls.ca_file &&
           a.tls.ca_dir == b.tls.ca_dir;
}

bool has_marker(std::string_view s) {
    return s.find(secret_marker) != std::string_view::npos || s.find(token_marker) != std::string_view::npos;
}

/// Loads `text`; checks the error shape, or validation, the round trip and
/// describe() on success. With `secrets_marked`, no output may hold a marker.
void check(std::string_view text, bool secrets_marked) {
    const auto r = load(text);
    if (!r) {
        const cachestore::error& e = r.error();
        FUZZ_CHECK(e.code == cachestore::errc::misconfigured);
        FUZZ_CHECK(e.op == "config");
        FUZZ_CHECK(!e.message.empty());
        if (secrets_marked) FUZZ_CHECK_MSG(!has_marker(e.to_string()), e.to_string());
        return;
    }
    const s3::config& c = *r;
    FUZZ_CHECK(s3::validate(c).has_value());
    FUZZ_CHECK(!c.bucket.empty());
    FUZZ_CHECK(!c.region.empty());
    FUZZ_CHECK(!c.creds.access_key_id.empty() && !c.creds.secret_access_key.empty());
    const std::string d = s3::describe(c);
    FUZZ_CHECK(std::none_of(d.begin(), d.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x20; }));
    if (secrets_marked) FUZZ_CHECK_MSG(!has_marker(d), d);
    const std::string again_text = to_json(c).dump();
    const auto again = load(again_text);
    FUZZ_CHECK_MSG(again.has_value(), again ? std::string() : again.error().to_string());
    FUZZ_CHECK_MSG(same(c, *again), again_text);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in = fuzz::as_view(data, size);
    check(in, false);

    // The same document with marker secrets, when it is a JSON object.
    json j = json::parse(in.begin(), in.end(), nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || has_marker(j.dump(-1, ' ', false, json::error_handler_t::replace))) return 0;
    j["secret_access_key"] = secret_marker;
    if (!j.contains("session_token") || (size > 0 && (data[0] & 1) != 0)) j["session_token"] = token_marker;
    const std::string marked = j.dump(-1, ' ', false, json::error_handler_t::replace);
    check(marked, true);

    // Broken right after the secret (the parser stops inside or just past it).
    const std::size_t at = marked.find(secret_marker);
    if (at != std::string::npos) {
        const std::size_t end = at + secret_marker.size();
        for (const std::string& broken : {marked.substr(0, end) + "\x01" + marked.substr(end),
                                          marked.substr(0, end) + "\"" + marked.substr(end),
                                          marked.substr(0, end), marked.substr(0, end + 1)})
            check(broken, true);
    }
    // Cut short at a point from the input.
    if (size >= 2) check(marked.substr(0, (std::size_t{data[1]} * marked.size()) / 256), true);
    return 0;
}
