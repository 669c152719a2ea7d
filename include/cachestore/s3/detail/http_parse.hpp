// cachestore/s3/detail/http_parse.hpp - the few HTTP header values the driver
// reads: Content-Range, Content-Length and HTTP dates.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include <curl/curl.h>

namespace cachestore::s3::detail {

/// `bytes first-last/total` (total may be `*`).
struct content_range {
    std::int64_t first = 0;
    std::int64_t last = 0;
    std::int64_t total = -1; ///< -1 when the server sent `*`
};

/// Parses an unsigned decimal that fits int64; nullopt on anything else.
inline std::optional<std::int64_t> parse_i64(std::string_view s) {
    if (s.empty() || s.size() > 19) return std::nullopt;
    std::int64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        const int d = c - '0';
        if (v > (std::numeric_limits<std::int64_t>::max() - d) / 10) return std::nullopt;
        v = v * 10 + d;
    }
    return v;
}

inline std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

inline std::optional<content_range> parse_content_range(std::string_view v) {
    v = trim_ows(v);
    if (!v.starts_with("bytes ")) return std::nullopt;
    v.remove_prefix(6);
    const auto dash = v.find('-');
    const auto slash = v.find('/');
    if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) return std::nullopt;
    auto first = parse_i64(v.substr(0, dash));
    auto last = parse_i64(v.substr(dash + 1, slash - dash - 1));
    if (!first || !last || *last < *first) return std::nullopt;
    content_range r{*first, *last, -1};
    const auto total = v.substr(slash + 1);
    if (total != "*") {
        auto t = parse_i64(total);
        if (!t || *t <= *last) return std::nullopt;
        r.total = *t;
    }
    return r;
}

/// IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`: the one form RFC 9110 lets
/// servers send. nullopt for anything else (and for years before 1970 or a
/// leap second), which parse_http_date then hands to libcurl.
inline std::optional<std::chrono::system_clock::time_point> parse_imf_fixdate(std::string_view v) {
    if (v.size() != 29 || v[3] != ',' || v[4] != ' ' || v[7] != ' ' || v[11] != ' ' || v[16] != ' ' || v[19] != ':' ||
        v[22] != ':' || v.substr(25) != " GMT")
        return std::nullopt;
    auto num = [v](std::size_t at, std::size_t n) {
        int x = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const char c = v[at + i];
            if (c < '0' || c > '9') return -1;
            x = x * 10 + (c - '0');
        }
        return x;
    };
    constexpr std::string_view days = "SunMonTueWedThuFriSat";
    constexpr std::string_view months = "JanFebMarAprMayJunJulAugSepOctNovDec";
    const auto d = days.find(v.substr(0, 3));
    const auto m = months.find(v.substr(8, 3));
    const int day = num(5, 2), year = num(12, 4), hh = num(17, 2), mm = num(20, 2), ss = num(23, 2);
    // Years past 2261 go to the general path, which refuses what the clock cannot hold.
    if (d == std::string_view::npos || d % 3 != 0 || m == std::string_view::npos || m % 3 != 0 || day < 1 ||
        year < 1970 || year > 2261 || hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 59)
        return std::nullopt;
    const std::chrono::year_month_day ymd{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(m / 3 + 1)},
                                          std::chrono::day{static_cast<unsigned>(day)}};
    if (!ymd.ok()) return std::nullopt;
    return std::chrono::sys_days{ymd} + std::chrono::hours{hh} + std::chrono::minutes{mm} + std::chrono::seconds{ss};
}

/// An HTTP date (RFC 9110 IMF-fixdate without allocating; the obsolete forms
/// via libcurl).
inline std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view v) {
    v = trim_ows(v);
    if (auto t = parse_imf_fixdate(v)) return t;
    if (v.empty() || v.size() > 64) return std::nullopt;
    const std::string s(v);
    const time_t t = curl_getdate(s.c_str(), nullptr);
    if (t == static_cast<time_t>(-1)) return std::nullopt;
    // system_clock counts nanoseconds: it holds 1677..2262 only. A server's
    // "31 Dec 9999" must be refused, not overflow; and a date before 1970
    // (meaningless for S3) would overflow "date - now" in the callers.
    constexpr auto max_seconds =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::duration::max()).count();
    if (static_cast<long long>(t) > max_seconds || t < 0) return std::nullopt;
    return std::chrono::system_clock::from_time_t(t);
}

} // namespace cachestore::s3::detail
