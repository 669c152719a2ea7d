// cachestore/s3/endpoint.hpp - the endpoint URL and bucket/region names:
// parsed with libcurl's URL API (impl/endpoint.hpp) and checked before any
// request is made.
#pragma once

#include <algorithm>
#include "cachestore/detail/expected.hpp"
#include <string>
#include <string_view>

#include "cachestore/error.hpp"
#include "cachestore/s3/config_types.hpp"
#include "cachestore/s3/detail/linkage.hpp"
#include "cachestore/s3/detail/text.hpp"

namespace cachestore::s3 {

/// The parsed endpoint, as the driver needs it for request URLs and the Host
/// header.
struct endpoint_parts {
    std::string scheme; ///< "http" or "https", lowercase
    /// As curl's URL parser returns it: IPv6 literals KEEP their brackets
    /// ("[::1]"), so host can be pasted into a URL or a Host header as is;
    /// the case of names is preserved; IPv4 shorthands are normalised
    /// ("127.1" -> "127.0.0.1").
    std::string host;
    int port = 0;              ///< the explicit port, else the scheme's default (80 / 443)
    bool default_port = true;  ///< port is the scheme's default (also when written explicitly, "http://h:80")

    /// "host" when the port is the scheme's default, else "host:port": the
    /// Host header for path-style requests. For virtual-hosted requests the
    /// header is `bucket + "." + authority()`.
    [[nodiscard]] std::string authority() const {
        if (default_port) return host;
        return host + ":" + std::to_string(port);
    }

    /// "scheme://authority", no trailing '/'.
    [[nodiscard]] std::string origin() const { return scheme + "://" + authority(); }

    friend bool operator==(const endpoint_parts&, const endpoint_parts&) = default;
};

namespace detail {

// ---- names ------------------------------------------------------------------

/// A region we can sign with and put into an AWS host name.
[[nodiscard]] inline bool valid_region(std::string_view r) noexcept {
    if (r.empty() || r.size() > 64) return false;
    return std::all_of(r.begin(), r.end(), [](char ch) { return is_alnum(ch) || ch == '-' || ch == '_' || ch == '.'; });
}

/// "1.2.3.4" (what AWS forbids as a bucket name and what cannot take a
/// virtual-hosted bucket label).
[[nodiscard]] inline bool looks_like_ipv4(std::string_view s) noexcept {
    int parts = 0;
    std::size_t i = 0;
    while (i <= s.size()) {
        std::size_t j = s.find('.', i);
        if (j == std::string_view::npos) j = s.size();
        const std::string_view part = s.substr(i, j - i);
        if (part.empty() || part.size() > 3 || !std::all_of(part.begin(), part.end(), is_digit)) return false;
        ++parts;
        i = j + 1;
    }
    return parts == 4;
}

/// DNS-compatible bucket name, as virtual-hosted addressing needs: 3-63
/// characters of a-z, 0-9, '-', '.'; every dot-separated label non-empty and
/// starting and ending with a letter or digit; not an IPv4 address.
[[nodiscard]] inline bool dns_bucket_name(std::string_view b) noexcept {
    if (b.size() < 3 || b.size() > 63) return false;
    std::size_t i = 0;
    while (true) {
        std::size_t j = b.find('.', i);
        const std::size_t end = j == std::string_view::npos ? b.size() : j;
        const std::string_view label = b.substr(i, end - i);
        if (label.empty()) return false;
        if (!std::all_of(label.begin(), label.end(), [](char ch) { return is_lower(ch) || is_digit(ch) || ch == '-'; }))
            return false;
        if (label.front() == '-' || label.back() == '-') return false;
        if (j == std::string_view::npos) break;
        i = j + 1;
    }
    return !looks_like_ipv4(b);
}

/// Path-style bucket name (relaxed, as Ceph RGW / legacy us-east-1 allow):
/// 1-255 characters of letters, digits, '.', '-', '_'; not "." or "..".
[[nodiscard]] inline bool path_bucket_name(std::string_view b) noexcept {
    if (b.empty() || b.size() > 255 || b == "." || b == "..") return false;
    return std::all_of(b.begin(), b.end(), [](char ch) { return is_alnum(ch) || ch == '.' || ch == '-' || ch == '_'; });
}

[[nodiscard]] inline bool ip_literal_host(std::string_view host) noexcept {
    return (!host.empty() && host.front() == '[') || looks_like_ipv4(host);
}

/// The AWS endpoint host for a region.
[[nodiscard]] inline std::string aws_host(std::string_view region) {
    std::string h = "s3.";
    h += region;
    h += region.starts_with("cn-") ? ".amazonaws.com.cn" : ".amazonaws.com";
    return h;
}

/// Parses and checks the endpoint; the string is the problem (already safe to
/// show: never containing user info).
[[nodiscard]] CACHESTORE_S3_DECL std::expected<endpoint_parts, std::string> check_endpoint(const config& c);

} // namespace detail

/// Parses `c.endpoint` with libcurl's URL API. An empty endpoint gives the AWS
/// default for `c.region`: {"https", "s3.<region>.amazonaws.com", 443, true}.
/// Rejects what validate() rejects about the endpoint: not a URL, a scheme
/// other than http/https, user info, a path other than "/", a query, a
/// fragment, an IPv6 zone id, port 0.
[[nodiscard]] CACHESTORE_S3_DECL result<endpoint_parts> parse_endpoint(const config& c);

} // namespace cachestore::s3

#ifndef CACHESTORE_SEPARATE_COMPILATION
#include "cachestore/s3/impl/endpoint.hpp"
#endif
