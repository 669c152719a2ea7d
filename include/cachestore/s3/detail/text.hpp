// cachestore/s3/detail/text.hpp - small text helpers of the configuration
// code: character classes, trimming, quoting for messages, redaction.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cachestore/error.hpp"

namespace cachestore::s3::detail {

inline constexpr std::string_view config_op = "config";

[[nodiscard]] inline std::unexpected<error> misconfigured(std::string message) {
    return fail(errc::misconfigured, std::string(config_op), {}, std::move(message));
}

[[nodiscard]] constexpr bool is_digit(char ch) noexcept { return ch >= '0' && ch <= '9'; }
[[nodiscard]] constexpr bool is_lower(char ch) noexcept { return ch >= 'a' && ch <= 'z'; }
[[nodiscard]] constexpr bool is_upper(char ch) noexcept { return ch >= 'A' && ch <= 'Z'; }
[[nodiscard]] constexpr bool is_alnum(char ch) noexcept { return is_digit(ch) || is_lower(ch) || is_upper(ch); }
[[nodiscard]] constexpr bool is_control(char ch) noexcept {
    const auto u = static_cast<unsigned char>(ch);
    return u < 0x20 || u == 0x7f;
}
[[nodiscard]] constexpr bool is_space(char ch) noexcept {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

[[nodiscard]] inline bool has_control(std::string_view s) noexcept {
    return std::any_of(s.begin(), s.end(), is_control);
}

[[nodiscard]] inline std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

[[nodiscard]] inline std::string lowercase(std::string_view s) {
    std::string out(s);
    for (char& ch : out)
        if (is_upper(ch)) ch = static_cast<char>(ch - 'A' + 'a');
    return out;
}

/// `"s"` with non-printable bytes as \xNN: safe to put a user's bucket name,
/// prefix, path or file name into a one-line message. Never use it on secrets.
[[nodiscard]] inline std::string quote(std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "\"";
    for (char ch : s) {
        const auto u = static_cast<unsigned char>(ch);
        if (u < 0x20 || u == 0x7f || ch == '"' || ch == '\\') {
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 0xf];
        } else {
            out += ch;
        }
    }
    out += '"';
    return out;
}

/// An endpoint string safe for messages: everything between "://" (or the
/// start) and the LAST '@' becomes "<redacted>" - user info may itself
/// contain '/', '?' or '#' (unencoded secrets), so the authority's end cannot
/// be trusted. Works on strings curl cannot parse too.
[[nodiscard]] inline std::string redact_endpoint(std::string_view ep) {
    std::size_t start = ep.find("://");
    start = start == std::string_view::npos ? 0 : start + 3;
    const std::size_t at = ep.rfind('@');
    if (at == std::string_view::npos || at < start) return std::string(ep);
    std::string out(ep.substr(0, start));
    out += "<redacted>";
    out += ep.substr(at);
    return out;
}

/// Joins problems into one message: "a; b; c".
[[nodiscard]] inline std::string join(const std::vector<std::string>& parts, std::string_view sep = "; ") {
    std::string out;
    for (const auto& p : parts) {
        if (!out.empty()) out += sep;
        out += p;
    }
    return out;
}

} // namespace cachestore::s3::detail
