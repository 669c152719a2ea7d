// examples/s3_http.hpp - what an S3-compatible read-only HTTP front answers:
// a Range header's meaning for an object of known size (as S3 reads it), and
// the status, S3 error code and XML error document for a cachestore error.
// No HTTP library here: range_proxy.cpp puts it on cpp-httplib, and
// tests/examples/s3_http_test.cpp checks every case.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cachestore/error.hpp"

namespace cachestore::examples {

/// What to send for a GET with a `Range` header.
struct range_reply {
    enum kind_t { whole, partial, unsatisfiable } kind = whole;
    std::int64_t first = 0;  ///< partial: the first byte
    std::int64_t length = 0; ///< partial: the byte count; whole: the object's size

    /// "bytes FIRST-LAST/SIZE" (partial) or "bytes */SIZE" (unsatisfiable).
    [[nodiscard]] std::string content_range(std::int64_t size) const {
        if (kind == unsatisfiable) return "bytes */" + std::to_string(size);
        return "bytes " + std::to_string(first) + "-" + std::to_string(first + length - 1) + "/" + std::to_string(size);
    }
};

namespace http_detail {

/// Digits only; saturates at INT64_MAX (a larger number is still a number).
inline std::optional<std::int64_t> digits(std::string_view s) {
    if (s.empty()) return std::nullopt;
    std::int64_t v = 0;
    for (const char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        const int d = c - '0';
        v = v > (INT64_MAX - d) / 10 ? INT64_MAX : v * 10 + d;
    }
    return v;
}

inline std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

} // namespace http_detail

/// The reply to `Range: <header>` for an object of `size` bytes, as S3 gives
/// it: `bytes=a-b` (b clamped to the last byte), `bytes=a-`, `bytes=-n` (the
/// last n bytes; the whole object when n >= size) are partial; a first byte
/// at or past the end, `-0`, or any range of an empty object is
/// unsatisfiable (416); no header, several ranges, another unit or a
/// malformed one (`5-3`, `abc`) is ignored: the whole object (200).
[[nodiscard]] inline range_reply answer_range(std::optional<std::string_view> header, std::int64_t size) {
    using http_detail::digits;
    range_reply whole{range_reply::whole, 0, size};
    if (!header) return whole;
    std::string_view h = http_detail::trim(*header);
    constexpr std::string_view unit = "bytes=";
    if (h.size() < unit.size()) return whole;
    for (std::size_t i = 0; i < unit.size(); ++i)
        if ((h[i] | 0x20) != unit[i] && h[i] != unit[i]) return whole;
    h = http_detail::trim(h.substr(unit.size()));
    if (h.find(',') != std::string_view::npos) return whole; // S3 serves no multipart ranges
    const auto dash = h.find('-');
    if (dash == std::string_view::npos) return whole;
    const auto a = http_detail::trim(h.substr(0, dash)), b = http_detail::trim(h.substr(dash + 1));
    const range_reply none{range_reply::unsatisfiable, 0, 0};
    if (a.empty()) { // -n: the last n bytes
        const auto n = digits(b);
        if (!n) return whole;
        if (*n == 0 || size == 0) return none;
        const std::int64_t len = std::min(*n, size);
        return {range_reply::partial, size - len, len};
    }
    const auto first = digits(a);
    if (!first) return whole;
    std::int64_t last = INT64_MAX;
    if (!b.empty()) {
        const auto l = digits(b);
        if (!l || *l < *first) return whole;
        last = *l;
    }
    if (*first >= size) return none;
    last = std::min(last, size - 1);
    return {range_reply::partial, *first, last - *first + 1};
}

/// The HTTP answer to a cachestore error, as an S3 server's.
struct s3_error_reply {
    int status = 500;
    std::string code; ///< the S3 error Code
};

/// not_found: 404 NoSuchKey; unavailable (the origin cap's queue is full):
/// 503 SlowDown; the origin's own failures: 502 with a code naming it;
/// deadline_exceeded: 504; the rest: 500 InternalError.
[[nodiscard]] inline s3_error_reply s3_reply_for(errc e) {
    switch (e) {
    case errc::not_found: return {404, "NoSuchKey"};
    case errc::unavailable: return {503, "SlowDown"};
    case errc::changed: return {502, "OriginObjectChanged"};
    case errc::transient: return {502, "OriginUnreachable"};
    case errc::auth: return {502, "OriginAccessDenied"};
    case errc::misconfigured: return {502, "OriginMisconfigured"};
    case errc::protocol: return {502, "OriginProtocolError"};
    case errc::deadline_exceeded: return {504, "GatewayTimeout"};
    default: return {500, "InternalError"};
    }
}

[[nodiscard]] inline std::string xml_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (const char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&apos;"; break;
        default: out += c;
        }
    }
    return out;
}

/// An S3 error document.
[[nodiscard]] inline std::string s3_error_xml(std::string_view code, std::string_view message, std::string_view resource,
                                              std::string_view request_id) {
    std::string x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>";
    x += xml_escape(code);
    x += "</Code><Message>";
    x += xml_escape(message);
    x += "</Message><Resource>";
    x += xml_escape(resource);
    x += "</Resource><RequestId>";
    x += xml_escape(request_id);
    x += "</RequestId></Error>\n";
    return x;
}

} // namespace cachestore::examples
