// cachestore/s3/impl/endpoint.hpp - the endpoint parser's definitions, on
// libcurl's URL API: included by endpoint.hpp (header-only) or compiled once
// through <cachestore/s3/src.hpp> (CACHESTORE_SEPARATE_COMPILATION).
#pragma once

#include <charconv>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <curl/curl.h>

#include "cachestore/s3/endpoint.hpp"

namespace cachestore::s3 {
namespace detail {

// ---- libcurl URL API, RAII-wrapped -----------------------------------------

struct curlu_deleter {
    void operator()(CURLU* u) const noexcept { curl_url_cleanup(u); }
};
using curlu_ptr = std::unique_ptr<CURLU, curlu_deleter>;

struct curl_free_deleter {
    void operator()(char* p) const noexcept { curl_free(p); }
};

/// One part of a parsed URL, or nullopt when absent (CURLUE_NO_QUERY, ...).
[[nodiscard]] inline std::optional<std::string> url_part(CURLU* u, CURLUPart part, unsigned int flags = 0) {
    char* raw = nullptr;
    const CURLUcode rc = curl_url_get(u, part, &raw, flags);
    std::unique_ptr<char, curl_free_deleter> owned(raw);
    if (rc != CURLUE_OK || raw == nullptr) return std::nullopt;
    return std::string(raw);
}

CACHESTORE_S3_DECL std::expected<endpoint_parts, std::string> check_endpoint(const config& c) {
    if (c.endpoint.empty()) {
        if (!valid_region(c.region))
            return std::unexpected(std::string(
                "the endpoint is empty (= AWS), which needs a valid region to name the host: set region or endpoint"));
        return endpoint_parts{"https", aws_host(c.region), 443, true};
    }
    const std::string shown = quote(redact_endpoint(c.endpoint));
    // curl reads a C string: a NUL would silently cut the endpoint short.
    if (has_control(c.endpoint))
        return std::unexpected("endpoint " + shown + " contains a control character: check for a stray newline or NUL");
    curlu_ptr u(curl_url());
    if (!u) return std::unexpected(std::string("out of memory while parsing the endpoint"));
    // CURLU_NON_SUPPORT_SCHEME: parse "s3://..." too, to name the bad scheme.
    const CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, c.endpoint.c_str(), CURLU_NON_SUPPORT_SCHEME);
    if (rc != CURLUE_OK) {
        std::string m = "endpoint " + shown + " is not a valid URL (" + curl_url_strerror(rc) + ")";
        if (c.endpoint.find("://") == std::string::npos)
            m += ": it needs a scheme, e.g. \"http://127.0.0.1:9000\" or \"https://minio.dc1:9000\"";
        else
            m += "; expected scheme://host[:port], e.g. \"http://127.0.0.1:9000\"";
        if (c.endpoint.find('@') != std::string::npos)
            m += "; it seems to contain user info (user:password@), which is not allowed: put the keys in "
                 "access_key_id/secret_access_key";
        return std::unexpected(std::move(m));
    }
    endpoint_parts p;
    p.scheme = lowercase(url_part(u.get(), CURLUPART_SCHEME).value_or(""));
    if (p.scheme != "http" && p.scheme != "https")
        return std::unexpected("endpoint " + shown + ": the scheme must be http or https, not " + quote(p.scheme));
    if (url_part(u.get(), CURLUPART_USER) || url_part(u.get(), CURLUPART_PASSWORD) ||
        url_part(u.get(), CURLUPART_OPTIONS))
        return std::unexpected("endpoint " + shown +
                               " must not contain user info (user:password@); put the keys in "
                               "access_key_id/secret_access_key");
    p.host = url_part(u.get(), CURLUPART_HOST).value_or("");
    if (p.host.empty()) return std::unexpected("endpoint " + shown + " has no host");
    if (url_part(u.get(), CURLUPART_ZONEID))
        return std::unexpected("endpoint " + shown +
                               ": IPv6 zone ids (%25...) are not supported; use a routable address");
    // curl decodes %XX in the host once: "h%2541" would be host "h%41", which
    // the next URL built from it decodes again.
    // The endpoint as written: the authority starts after the scheme's ':' and
    // the slashes that follow (curl accepts "http:/h" too), and ends at / ? #.
    const std::string_view written = c.endpoint;
    std::size_t authority_at = written.find(':');
    if (authority_at != std::string_view::npos) authority_at = written.find_first_not_of('/', authority_at + 1);
    const std::size_t path_at =
        authority_at == std::string_view::npos ? authority_at : written.find_first_of("/?#", authority_at);
    const std::string_view authority = authority_at == std::string_view::npos
                                           ? std::string_view()
                                           : written.substr(authority_at, path_at - authority_at);
    // "65%35" is host "655" to curl, which reads "http://655" as 0.0.2.143.
    if (p.host.find('%') != std::string::npos || authority.find('%') != std::string_view::npos)
        return std::unexpected("endpoint " + shown + ": the host must not be percent-encoded");
    // The path as written, not only as curl returns it: curl removes dot
    // segments, so "http://u/x:secret@h/../" would otherwise pass as "/".
    std::string path = url_part(u.get(), CURLUPART_PATH).value_or("/");
    if (path_at != std::string_view::npos) {
        const std::string_view as_written = written.substr(path_at, written.find_first_of("?#", path_at) - path_at);
        if (as_written.size() > 1) path = as_written;
    }
    if (path != "/" && !path.empty()) {
        // "http://user/name:secret@host": curl sees host "user" and a path that
        // holds the secret, so a path next to an '@' is never shown.
        if (c.endpoint.find('@') != std::string::npos)
            return std::unexpected("endpoint " + shown +
                                   " must not have a path, and seems to contain user info (user:password@), which "
                                   "is not allowed: give scheme://host[:port] only and put the keys in "
                                   "access_key_id/secret_access_key");
        return std::unexpected("endpoint " + shown + " must not have a path (" + quote(path) +
                               "): give scheme://host[:port] only; to store under a key prefix, set prefix");
    }
    if (url_part(u.get(), CURLUPART_QUERY))
        return std::unexpected("endpoint " + shown + " must not have a query (?...): give scheme://host[:port] only");
    if (url_part(u.get(), CURLUPART_FRAGMENT))
        return std::unexpected("endpoint " + shown +
                               " must not have a fragment (#...): give scheme://host[:port] only");
    const int default_port = p.scheme == "https" ? 443 : 80;
    const std::string port = url_part(u.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT).value_or("");
    int n = default_port;
    if (!port.empty()) {
        const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
        if (ec != std::errc{} || ptr != port.data() + port.size()) n = -1;
    }
    if (n < 1 || n > 65535) return std::unexpected("endpoint " + shown + ": the port must be between 1 and 65535");
    p.port = n;
    p.default_port = n == default_port;
    return p;
}

} // namespace detail

CACHESTORE_S3_DECL result<endpoint_parts> parse_endpoint(const config& c) {
    auto p = detail::check_endpoint(c);
    if (!p) return detail::misconfigured(std::move(p.error()));
    return std::move(*p);
}

} // namespace cachestore::s3
