// cachestore/s3/config_json.hpp - the JSON config loader: every problem
// reported at once, naming the key, never echoing a value.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cachestore/error.hpp"
#include "cachestore/s3/config_env.hpp"
#include "cachestore/s3/config_types.hpp"
#include "cachestore/s3/detail/text.hpp"
#include "cachestore/s3/validate.hpp"

namespace cachestore::s3 {

namespace detail {

using json = nlohmann::json;

/// Reads a JSON config object into a config, recording every problem.
class json_reader {
public:
    std::vector<std::string> problems;
    bool has_region = false;

    void read(const json& root, config& c) {
        if (!root.is_object()) {
            problems.push_back(std::string("the top level must be an object ({...}), not ") + root.type_name());
            return;
        }
        static constexpr std::array<std::string_view, 15> top = {
            "endpoint",     "region",        "bucket",         "prefix",         "addressing",
            "access_key_id", "secret_access_key", "session_token", "commit_mode", "max_idle_connections",
            "timeouts",     "retry",         "tls",            "payload_signing", "streaming"};
        for (const auto& [key, v] : root.items()) {
            if (key == "endpoint") string_value(key, v, c.endpoint);
            else if (key == "region") { string_value(key, v, c.region); has_region = true; }
            else if (key == "bucket") string_value(key, v, c.bucket);
            else if (key == "prefix") string_value(key, v, c.prefix);
            else if (key == "access_key_id") string_value(key, v, c.creds.access_key_id);
            else if (key == "secret_access_key") string_value(key, v, c.creds.secret_access_key);
            else if (key == "session_token") string_value(key, v, c.creds.session_token);
            else if (key == "addressing") {
                std::string s;
                if (!string_value(key, v, s)) continue;
                if (s == "path") c.addressing_style = addressing::path;
                else if (s == "virtual") c.addressing_style = addressing::virtual_hosted;
                else problems.emplace_back("addressing must be \"path\" or \"virtual\"");
            } else if (key == "commit_mode") {
                std::string s;
                if (!string_value(key, v, s)) continue;
                if (s == "auto") c.commit = commit_mode::auto_detect;
                else if (s == "stat_then_put") c.commit = commit_mode::stat_then_put;
                else if (s == "if_none_match") c.commit = commit_mode::if_none_match;
                else problems.emplace_back("commit_mode must be \"auto\", \"stat_then_put\" or \"if_none_match\"");
            } else if (key == "payload_signing") {
                std::string s;
                if (!string_value(key, v, s)) continue;
                if (s == "auto") c.payload = payload_signing::auto_select;
                else if (s == "signed") c.payload = payload_signing::sha256;
                else if (s == "unsigned") c.payload = payload_signing::unsigned_payload;
                else problems.emplace_back("payload_signing must be \"auto\", \"signed\" or \"unsigned\"");
            } else if (key == "streaming") {
                std::string s;
                if (!string_value(key, v, s)) continue;
                if (s == "auto") c.streaming = streaming_upload::auto_detect;
                else if (s == "stream") c.streaming = streaming_upload::stream;
                else if (s == "spool") c.streaming = streaming_upload::spool;
                else problems.emplace_back("streaming must be \"auto\", \"stream\" or \"spool\"");
            } else if (key == "max_idle_connections") {
                std::uint64_t n = 0;
                if (integer_value<std::uint64_t>(key, v, n, 0, std::numeric_limits<std::size_t>::max()))
                    c.max_idle_connections = static_cast<std::size_t>(n);
            } else if (key == "timeouts") read_timeouts(v, c.timeouts);
            else if (key == "retry") read_retry(v, c.retry);
            else if (key == "tls") read_tls(v, c.tls);
            else unknown("", key, top);
        }
    }

private:
    static std::string known_list(std::span<const std::string_view> known) {
        std::string s;
        for (auto k : known) {
            if (!s.empty()) s += ", ";
            s += k;
        }
        return s;
    }

    void unknown(std::string_view parent, std::string_view key, std::span<const std::string_view> known) {
        std::string full(parent);
        if (!full.empty()) full += '.';
        full += key;
        problems.push_back("unknown key " + quote(full) + " (known keys" +
                           (parent.empty() ? std::string() : " in " + std::string(parent)) + ": " + known_list(known) +
                           ")");
    }

    void wrong_type(std::string_view key, std::string_view want, const json& v) {
        problems.push_back(quote(key) + " must be " + std::string(want) + ", not " + v.type_name());
    }

    bool string_value(std::string_view key, const json& v, std::string& out) {
        if (!v.is_string()) {
            wrong_type(key, "a string", v);
            return false;
        }
        out = v.get<std::string>();
        return true;
    }

    bool bool_value(std::string_view key, const json& v, bool& out) {
        if (!v.is_boolean()) {
            wrong_type(key, "true or false", v);
            return false;
        }
        out = v.get<bool>();
        return true;
    }

    /// An integer within [lo, hi]; T is std::int64_t or std::uint64_t.
    template <class T>
    bool integer_value(std::string_view key, const json& v, T& out, T lo, T hi) {
        if (!v.is_number_integer()) {
            wrong_type(key, "an integer", v);
            return false;
        }
        bool in_range = false;
        if (v.is_number_unsigned()) {
            const auto u = v.get<std::uint64_t>();
            if constexpr (std::is_signed_v<T>) {
                in_range = u <= static_cast<std::uint64_t>(hi) && (lo <= 0 || u >= static_cast<std::uint64_t>(lo));
            } else {
                in_range = u >= lo && u <= hi;
            }
            if (in_range) out = static_cast<T>(u);
        } else {
            const auto s = v.get<std::int64_t>();
            if constexpr (std::is_signed_v<T>) {
                in_range = s >= lo && s <= hi;
            } else {
                in_range = s >= 0 && static_cast<std::uint64_t>(s) >= lo && static_cast<std::uint64_t>(s) <= hi;
            }
            if (in_range) out = static_cast<T>(s);
        }
        if (!in_range)
            problems.push_back(quote(key) + " must be an integer between " + std::to_string(lo) + " and " +
                               std::to_string(hi));
        return in_range;
    }

    bool int64_value(std::string_view key, const json& v, std::int64_t& out) {
        return integer_value<std::int64_t>(key, v, out, std::numeric_limits<std::int64_t>::min(),
                                           std::numeric_limits<std::int64_t>::max());
    }

    bool object_value(std::string_view key, const json& v) {
        if (v.is_object()) return true;
        wrong_type(key, "an object", v);
        return false;
    }

    void read_timeouts(const json& o, timeout_policy& t) {
        if (!object_value("timeouts", o)) return;
        static constexpr std::array<std::string_view, 5> known = {"connect_ms", "low_speed_time_s",
                                                                            "low_speed_limit", "operation_ms", "idle_ms"};
        for (const auto& [key, v] : o.items()) {
            const std::string full = "timeouts." + key;
            std::int64_t n = 0;
            if (key == "connect_ms") {
                if (int64_value(full, v, n)) t.connect = std::chrono::milliseconds(n);
            } else if (key == "low_speed_time_s") {
                // Bounded so that a later conversion to milliseconds cannot overflow.
                if (integer_value<std::int64_t>(full, v, n, -1'000'000'000, 1'000'000'000))
                    t.low_speed_time = std::chrono::seconds(n);
            } else if (key == "low_speed_limit") {
                if (integer_value<std::int64_t>(full, v, n, std::numeric_limits<long>::min(),
                                                std::numeric_limits<long>::max()))
                    t.low_speed_limit = static_cast<long>(n);
            } else if (key == "operation_ms") {
                if (int64_value(full, v, n)) t.operation = std::chrono::milliseconds(n);
            } else if (key == "idle_ms") {
                if (int64_value(full, v, n)) t.idle = std::chrono::milliseconds(n);
            } else {
                unknown("timeouts", key, known);
            }
        }
    }

    void read_retry(const json& o, retry_policy& r) {
        if (!object_value("retry", o)) return;
        static constexpr std::array<std::string_view, 3> known = {"max_attempts", "base_delay_ms",
                                                                            "max_delay_ms"};
        for (const auto& [key, v] : o.items()) {
            const std::string full = "retry." + key;
            std::int64_t n = 0;
            if (key == "max_attempts") {
                if (integer_value<std::int64_t>(full, v, n, std::numeric_limits<int>::min(),
                                                std::numeric_limits<int>::max()))
                    r.max_attempts = static_cast<int>(n);
            } else if (key == "base_delay_ms") {
                if (int64_value(full, v, n)) r.base_delay = std::chrono::milliseconds(n);
            } else if (key == "max_delay_ms") {
                if (int64_value(full, v, n)) r.max_delay = std::chrono::milliseconds(n);
            } else {
                unknown("retry", key, known);
            }
        }
    }

    void read_tls(const json& o, tls_policy& t) {
        if (!object_value("tls", o)) return;
        static constexpr std::array<std::string_view, 3> known = {"verify", "ca_file", "ca_dir"};
        for (const auto& [key, v] : o.items()) {
            const std::string full = "tls." + key;
            if (key == "verify") bool_value(full, v, t.verify);
            else if (key == "ca_file") string_value(full, v, t.ca_file);
            else if (key == "ca_dir") string_value(full, v, t.ca_dir);
            else unknown("tls", key, known);
        }
    }
};

/// "line L, column C" of the byte nlohmann reports (1-based, the last byte read).
[[nodiscard]] inline std::string json_position(std::string_view text, std::size_t byte) {
    const std::size_t consumed = std::min(byte, text.size() + 1);
    const std::string_view before = text.substr(0, consumed > 0 ? std::min(consumed - 1, text.size()) : 0);
    const std::size_t line = 1 + static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
    const std::size_t last_nl = before.rfind('\n');
    const std::size_t column = last_nl == std::string_view::npos ? consumed : consumed - (last_nl + 1);
    return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

/// The reason of a nlohmann parse error without its "last read: '...'" part,
/// which echoes input (possibly a secret).
[[nodiscard]] inline std::string json_reason(std::string_view what) {
    const std::size_t start = what.find("syntax error");
    if (start == std::string_view::npos) return "syntax error";
    std::string_view r = what.substr(start);
    const std::size_t cut = r.find("; last read");
    if (cut != std::string_view::npos) r = r.substr(0, cut);
    return std::string(r);
}

} // namespace detail

/// Parses a JSON config, fills what it leaves out from the environment
/// (config_from_env: endpoint, region, credentials), and validates the result.
///
/// Keys (all optional; unknown keys at any level are errors):
///   endpoint, region, bucket, prefix (strings), addressing ("path" | "virtual"),
///   access_key_id, secret_access_key, session_token (strings),
///   commit_mode ("auto" | "stat_then_put" | "if_none_match"),
///   payload_signing ("auto" | "signed" | "unsigned"), streaming ("auto" | "stream" | "spool"),
///   max_idle_connections (integer >= 0),
///   timeouts {connect_ms, low_speed_time_s, low_speed_limit, operation_ms, idle_ms} (integers),
///   retry {max_attempts, base_delay_ms, max_delay_ms} (integers),
///   tls {verify (bool), ca_file, ca_dir (strings)}.
/// JSON values win over the environment; an empty string counts as absent. If
/// any of the three credential keys is given, the JSON is the only source of
/// credentials. Malformed JSON (with its line and column), duplicate keys,
/// unknown keys and wrong types are `misconfigured` naming the key; no
/// exception escapes and no message echoes a JSON value.
[[nodiscard]] inline result<config> config_from_json(std::string_view text, const env_source& env) {
    using json = detail::json;
    config c;
    bool has_region = false;
    try {
        // Duplicate keys: nlohmann keeps the last silently; we refuse them.
        std::vector<std::set<std::string>> seen;
        std::vector<std::string> path;
        std::string duplicate;
        json::parser_callback_t cb = [&](int, json::parse_event_t ev, json& parsed) {
            switch (ev) {
            case json::parse_event_t::object_start:
                seen.emplace_back();
                path.emplace_back();
                break;
            case json::parse_event_t::key:
                if (!seen.empty()) {
                    const auto& k = parsed.get_ref<const std::string&>();
                    path.back() = k;
                    if (!seen.back().insert(k).second && duplicate.empty()) duplicate = detail::join(path, ".");
                }
                break;
            case json::parse_event_t::object_end:
                if (!seen.empty()) {
                    seen.pop_back();
                    path.pop_back();
                }
                break;
            default: break;
            }
            return true;
        };
        const json root = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true,
                                      /*ignore_comments=*/false);
        if (!duplicate.empty())
            return detail::misconfigured("JSON config: duplicate key " + detail::quote(duplicate));
        detail::json_reader reader;
        reader.read(root, c);
        if (!reader.problems.empty()) return detail::misconfigured("JSON config: " + detail::join(reader.problems));
        has_region = reader.has_region;
    } catch (const json::parse_error& e) {
        return detail::misconfigured("JSON config is malformed at " + detail::json_position(text, e.byte) + ": " +
                                     detail::json_reason(e.what()));
    } catch (const std::exception&) {
        // Not e.what(): nlohmann messages may quote input.
        return detail::misconfigured("JSON config could not be read (internal error while parsing)");
    }
    if (!has_region || c.region.empty()) c.region.clear(); // let the environment decide
    auto resolved = config_from_env(std::move(c), env);
    if (!resolved) return resolved;
    if (auto ok = validate(*resolved); !ok) return std::unexpected(std::move(ok.error()));
    return resolved;
}

/// config_from_json(text, process_env).
[[nodiscard]] inline result<config> config_from_json(std::string_view text) {
    return config_from_json(text, env_source(process_env));
}

} // namespace cachestore::s3
