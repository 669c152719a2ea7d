// cachestore/s3/config.hpp - the S3 driver's configuration: a plain struct,
// its validation, the endpoint parser, and loaders from JSON and from the
// AWS environment / shared credentials file.
//
// Every problem is reported as `errc::misconfigured` with op "config" and a
// message that says what to fix. No message and no describe() output ever
// contains the secret access key or the session token; user info in an
// endpoint URL (`user:password@`) is shown as `<redacted>@`.
//
// Precedence when several sources set the same field:
//
//     explicit config (struct fields, JSON keys) > environment > shared credentials file
//
// An empty string counts as "not set" everywhere (an empty environment
// variable too). Credentials are taken as a unit from the first source that
// has any of them: the config's own creds, else AWS_ACCESS_KEY_ID +
// AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), else the profile in the shared
// credentials file. They are never mixed across sources.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <expected>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "cachestore/error.hpp"
#include "cachestore/s3/credentials.hpp"

namespace cachestore::s3 {

/// How the bucket appears in request URLs.
enum class addressing {
    path,           ///< `http://host:port/bucket/key` (works with any endpoint, IPs included)
    virtual_hosted, ///< `http://bucket.host:port/key` (needs a DNS-compatible bucket name and a DNS host)
};

/// How put_chunk commits without overwriting an existing chunk.
enum class commit_mode {
    auto_detect,   ///< probe at self_test: use If-None-Match when the backend enforces it
    stat_then_put, ///< HEAD, then PUT when absent (racy window, works everywhere)
    if_none_match, ///< PUT with `If-None-Match: *` (412 -> commit_lost)
};

/// The JSON spelling: "path" / "virtual".
[[nodiscard]] constexpr std::string_view to_string(addressing a) noexcept {
    switch (a) {
    case addressing::path: return "path";
    case addressing::virtual_hosted: return "virtual";
    }
    return "unknown";
}

/// The JSON spelling: "auto" / "stat_then_put" / "if_none_match".
[[nodiscard]] constexpr std::string_view to_string(commit_mode m) noexcept {
    switch (m) {
    case commit_mode::auto_detect: return "auto";
    case commit_mode::stat_then_put: return "stat_then_put";
    case commit_mode::if_none_match: return "if_none_match";
    }
    return "unknown";
}

/// Retries of transient errors: attempt n (1-based) waits a jittered delay of
/// about base_delay * 2^(n-1), capped at max_delay.
struct retry_policy {
    int max_attempts = 4; ///< total attempts including the first; 1..20 (1 = no retries)
    std::chrono::milliseconds base_delay{25};  ///< >= 0
    std::chrono::milliseconds max_delay{2000}; ///< >= base_delay
};

/// Network timeouts. Every duration is at most 24 hours.
struct timeout_policy {
    std::chrono::milliseconds connect{3000};   ///< TCP + TLS connect; > 0
    std::chrono::seconds low_speed_time{10};   ///< abort a transfer slower than low_speed_limit for this long; > 0 unless the limit is 0
    long low_speed_limit = 1024;               ///< bytes/s; 0 disables the low-speed check
    std::chrono::milliseconds operation{30000}; ///< per call when the context has no deadline; 0 = none
};

/// TLS peer verification for https endpoints.
struct tls_policy {
    bool verify = true;  ///< verify the server certificate and host name
    std::string ca_file; ///< PEM bundle instead of the system default (must be a readable file when set)
    std::string ca_dir;  ///< hashed CA directory instead of the system default (must be a directory when set)
};

/// Everything the S3 driver needs. A plain aggregate: fill it by hand, from
/// JSON (config_from_json) or from the environment (config_from_env), then
/// check it with validate() (the loaders' results and the driver do).
struct config {
    /// "http://127.0.0.1:7480", "https://minio.dc1:9000", "http://[::1]:9000".
    /// Scheme + host + optional port, nothing else (a trailing '/' is fine).
    /// Empty = AWS: https://s3.<region>.amazonaws.com (".amazonaws.com.cn" for cn-* regions).
    std::string endpoint;
    /// The SigV4 signing region (and the AWS host when endpoint is empty).
    /// Note: config_from_env(base) fills the region from the environment only
    /// when base.region is empty; this default is non-empty, so clear it to let
    /// AWS_REGION decide. config_from_env() and config_from_json without a
    /// "region" key do that for you.
    std::string region = "us-east-1";
    std::string bucket;
    /// Optional key prefix prepended to every storage path, e.g. "cache/".
    /// Used verbatim (no '/' is added); must not start with '/'.
    std::string prefix;
    addressing addressing_style = addressing::path;
    credentials creds;
    timeout_policy timeouts;
    retry_policy retry;
    tls_policy tls;
    commit_mode commit = commit_mode::auto_detect;
    std::size_t max_idle_connections = 64; ///< idle connections kept for reuse; 0 = close after each call
};

/// Reads one environment variable: its value, or nullopt when unset. The
/// loaders treat an empty value as unset. Inject a fake in tests.
using env_source = std::function<std::optional<std::string>(std::string_view name)>;

/// The process environment (std::getenv). Like getenv itself, not safe
/// against a concurrent setenv/putenv in another thread.
[[nodiscard]] inline std::optional<std::string> process_env(std::string_view name) {
    const char* v = std::getenv(std::string(name).c_str()); // NOLINT(concurrency-mt-unsafe): documented above
    if (v == nullptr) return std::nullopt;
    return std::string(v);
}

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
[[nodiscard]] inline std::expected<endpoint_parts, std::string> check_endpoint(const config& c) {
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
        return std::unexpected("endpoint " + shown + ": IPv6 zone ids (%25...) are not supported; use a routable address");
    // curl decodes %XX in the host once: "h%2541" would be host "h%41", which
    // the next URL built from it decodes again.
    // The endpoint as written: the authority starts after the scheme's ':' and
    // the slashes that follow (curl accepts "http:/h" too), and ends at / ? #.
    const std::string_view written = c.endpoint;
    std::size_t authority_at = written.find(':');
    if (authority_at != std::string_view::npos) authority_at = written.find_first_not_of('/', authority_at + 1);
    const std::size_t path_at =
        authority_at == std::string_view::npos ? authority_at : written.find_first_of("/?#", authority_at);
    const std::string_view authority =
        authority_at == std::string_view::npos ? std::string_view() : written.substr(authority_at, path_at - authority_at);
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
        return std::unexpected("endpoint " + shown + " must not have a fragment (#...): give scheme://host[:port] only");
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

// ---- environment and the shared credentials file ----------------------------

/// The variable's value, or nullopt when unset or empty.
[[nodiscard]] inline std::optional<std::string> env_value(const env_source& env, std::string_view name) {
    if (!env) return std::nullopt;
    auto v = env(name);
    if (!v || v->empty()) return std::nullopt;
    return v;
}

/// profile name -> (lowercased key -> value)
using ini_profiles = std::map<std::string, std::map<std::string, std::string>, std::less<>>;

/// Parses the shared credentials file (INI): `[profile]` sections, `key = value`
/// or `key: value` lines (keys case-insensitive, whitespace around the
/// delimiter and the value trimmed), whole-line comments starting with '#' or
/// ';', CRLF line ends, a UTF-8 BOM. Like the AWS CLI there are no inline
/// comments (`key = v # x` keeps "v # x"), later keys override earlier ones,
/// repeated sections merge, and a key with an empty value opens a nested
/// block whose more-indented lines are skipped. Any other line is an error
/// naming the line number (never its content, which may be a secret).
[[nodiscard]] inline std::expected<ini_profiles, std::string> parse_credentials_ini(std::string_view text,
                                                                                    std::string_view file) {
    if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
    ini_profiles out;
    std::map<std::string, std::string>* section = nullptr;
    bool nested = false;
    std::size_t nested_indent = 0;
    std::size_t lineno = 0;
    std::size_t pos = 0;
    auto bad = [&](std::string_view what) {
        return std::unexpected(std::string(file) + ":" + std::to_string(lineno) + ": " + std::string(what));
    };
    while (pos < text.size()) {
        std::size_t nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        std::string_view line = text.substr(pos, nl - pos);
        pos = nl + 1;
        ++lineno;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        std::size_t indent = 0;
        while (indent < line.size() && (line[indent] == ' ' || line[indent] == '\t')) ++indent;
        const std::string_view t = trim(line);
        if (t.empty() || t.front() == '#' || t.front() == ';') continue;
        if (nested) {
            if (indent > nested_indent) continue;
            nested = false;
        }
        if (t.front() == '[') {
            const std::size_t close = t.find(']');
            if (close == std::string_view::npos) return bad("a section header lacks its closing ']'");
            const std::string_view rest = trim(t.substr(close + 1));
            if (!rest.empty() && rest.front() != '#' && rest.front() != ';')
                return bad("unexpected text after a section header");
            const std::string_view name = trim(t.substr(1, close - 1));
            if (name.empty()) return bad("empty section name");
            section = &out[std::string(name)];
            continue;
        }
        const std::size_t delim = t.find_first_of("=:");
        if (delim == std::string_view::npos) return bad("expected \"[profile]\" or \"key = value\"");
        const std::string key = lowercase(trim(t.substr(0, delim)));
        if (key.empty()) return bad("a \"key = value\" line has no key");
        if (section == nullptr) return bad("a \"key = value\" line comes before any [profile] section");
        const std::string_view value = trim(t.substr(delim + 1));
        if (value.empty()) {
            nested = true;
            nested_indent = indent;
        }
        (*section)[key] = std::string(value);
    }
    return out;
}

/// Reads a small text file; the string is the problem.
[[nodiscard]] inline std::expected<std::string, std::string> read_small_file(const std::filesystem::path& p) {
    constexpr std::uintmax_t max_size = 1u << 20;
    std::error_code ec;
    const auto size = std::filesystem::file_size(p, ec);
    if (ec) return std::unexpected("cannot read " + quote(p.string()) + ": " + ec.message());
    if (size > max_size) return std::unexpected(quote(p.string()) + " is larger than 1 MiB; is it the right file?");
    std::ifstream in(p, std::ios::binary);
    if (!in) return std::unexpected("cannot open " + quote(p.string()));
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) return std::unexpected("error while reading " + quote(p.string()));
    return std::move(ss).str();
}

} // namespace detail

/// Parses `c.endpoint` with libcurl's URL API. An empty endpoint gives the AWS
/// default for `c.region`: {"https", "s3.<region>.amazonaws.com", 443, true}.
/// Rejects what validate() rejects about the endpoint: not a URL, a scheme
/// other than http/https, user info, a path other than "/", a query, a
/// fragment, an IPv6 zone id, port 0.
[[nodiscard]] inline result<endpoint_parts> parse_endpoint(const config& c) {
    auto p = detail::check_endpoint(c);
    if (!p) return detail::misconfigured(std::move(p.error()));
    return std::move(*p);
}

/// Checks everything that can be checked without the network and reports
/// every problem found in one `misconfigured` error (op "config"), joined by
/// "; ". Touches the file system only for tls.ca_file / tls.ca_dir.
[[nodiscard]] inline result<> validate(const config& c) {
    using namespace std::chrono_literals;
    using detail::quote;
    std::vector<std::string> problems;
    auto problem = [&](std::string m) { problems.push_back(std::move(m)); };

    // Enumerations (only wrong through a cast, but cheap to check).
    const bool addressing_ok = c.addressing_style == addressing::path || c.addressing_style == addressing::virtual_hosted;
    if (!addressing_ok) problem("addressing_style is not a valid addressing value");
    if (c.commit != commit_mode::auto_detect && c.commit != commit_mode::stat_then_put &&
        c.commit != commit_mode::if_none_match)
        problem("commit is not a valid commit_mode value");

    // Bucket.
    const bool virtual_hosted = c.addressing_style == addressing::virtual_hosted;
    if (c.bucket.empty()) {
        problem("bucket is empty: set the bucket name");
    } else if (virtual_hosted && !detail::dns_bucket_name(c.bucket)) {
        problem("bucket " + quote(c.bucket) +
                " cannot be used with virtual-hosted addressing, which needs a DNS-compatible name (3-63 characters "
                "of a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit, not "
                "an IP address): rename the bucket or use path addressing");
    } else if (!virtual_hosted && !detail::path_bucket_name(c.bucket)) {
        problem("bucket " + quote(c.bucket) +
                " is not a valid bucket name: use 1-255 characters of letters, digits, '.', '-' and '_'");
    }

    // Region.
    const bool region_ok = detail::valid_region(c.region);
    if (c.region.empty())
        problem("region is empty: set it (S3-compatible servers usually accept \"us-east-1\"), or set AWS_REGION "
                "and load the config with config_from_env");
    else if (!region_ok)
        problem("region " + quote(c.region) + " must be 1-64 characters of letters, digits, '-', '_' and '.'");

    // Endpoint (the AWS default needs the region, already reported above).
    if (!c.endpoint.empty() || region_ok) {
        auto ep = detail::check_endpoint(c);
        if (!ep) {
            problem(std::move(ep.error()));
        } else if (virtual_hosted && detail::ip_literal_host(ep->host)) {
            problem("virtual-hosted addressing needs a DNS host name in the endpoint, not the IP address " +
                    quote(ep->host) + ": use path addressing");
        }
    }

    // Credentials: never echo them.
    const credentials& k = c.creds;
    const std::string where = "set it in the config, in the environment (AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY) or in the shared credentials file profile";
    if (k.access_key_id.empty())
        problem("access_key_id is empty: " + where);
    else if (std::any_of(k.access_key_id.begin(), k.access_key_id.end(),
                         [](char ch) { return detail::is_control(ch) || detail::is_space(ch) || ch == '/'; }))
        problem("access_key_id contains whitespace, a control character or '/': check for a stray newline or a "
                "pasted secret");
    if (k.secret_access_key.empty())
        problem("secret_access_key is empty: " + where);
    else if (detail::has_control(k.secret_access_key))
        problem("secret_access_key contains a control character: check for a stray newline");
    if (detail::has_control(k.session_token))
        problem("session_token contains a control character: check for a stray newline");

    // Prefix.
    if (c.prefix.starts_with('/'))
        problem("prefix " + quote(c.prefix) + " must not start with '/': keys are relative to the bucket (e.g. \"cache/\")");
    if (detail::has_control(c.prefix)) problem("prefix " + quote(c.prefix) + " contains a control character");

    // Retries.
    const retry_policy& r = c.retry;
    constexpr auto max_duration = std::chrono::milliseconds(24h);
    auto ms = [](auto d) { return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()); };
    if (r.max_attempts < 1 || r.max_attempts > 20)
        problem("retry.max_attempts must be between 1 and 20 (got " + std::to_string(r.max_attempts) +
                "; 1 = no retries)");
    if (r.base_delay.count() < 0) problem("retry.base_delay must be >= 0 ms (got " + ms(r.base_delay) + ")");
    if (r.max_delay.count() < 0) problem("retry.max_delay must be >= 0 ms (got " + ms(r.max_delay) + ")");
    if (r.base_delay.count() >= 0 && r.max_delay.count() >= 0 && r.max_delay < r.base_delay)
        problem("retry.max_delay (" + ms(r.max_delay) + " ms) must be >= retry.base_delay (" + ms(r.base_delay) +
                " ms)");
    if (r.base_delay > max_duration || r.max_delay > max_duration)
        problem("retry delays must be at most 24 hours");

    // Timeouts.
    const timeout_policy& t = c.timeouts;
    if (t.connect.count() <= 0) problem("timeouts.connect must be > 0 ms (got " + ms(t.connect) + ")");
    if (t.low_speed_limit < 0)
        problem("timeouts.low_speed_limit must be >= 0 bytes/s (got " + std::to_string(t.low_speed_limit) +
                "; 0 disables the low-speed check)");
    if (t.low_speed_time.count() < 0)
        problem("timeouts.low_speed_time must be >= 0 s (got " + std::to_string(t.low_speed_time.count()) + ")");
    else if (t.low_speed_time.count() == 0 && t.low_speed_limit > 0)
        problem("timeouts.low_speed_time must be > 0 s while low_speed_limit is > 0 (set low_speed_limit to 0 to "
                "disable the low-speed check)");
    if (t.operation.count() < 0)
        problem("timeouts.operation must be >= 0 ms (got " + ms(t.operation) + "; 0 = no per-call timeout)");
    if (t.connect > max_duration || t.low_speed_time > max_duration || t.operation > max_duration)
        problem("timeouts must be at most 24 hours");

    // TLS files.
    std::error_code ec;
    if (!c.tls.ca_file.empty() && !std::filesystem::is_regular_file(c.tls.ca_file, ec))
        problem("tls.ca_file " + quote(c.tls.ca_file) + " is not a readable file");
    if (!c.tls.ca_dir.empty() && !std::filesystem::is_directory(c.tls.ca_dir, ec))
        problem("tls.ca_dir " + quote(c.tls.ca_dir) + " is not a directory");

    if (!problems.empty()) return detail::misconfigured(detail::join(problems));
    return {};
}

/// Credentials from the environment, else from the shared credentials file:
///  1. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN). Only
///     one of the two set is an error.
///  2. The profile AWS_PROFILE (default "default") of AWS_SHARED_CREDENTIALS_FILE
///     (a leading "~/" expands to $HOME) or $HOME/.aws/credentials:
///     aws_access_key_id, aws_secret_access_key, aws_session_token (or the
///     legacy aws_security_token). Section names are matched exactly
///     ("[profile x]" is the ~/.aws/config spelling, not used here).
/// Errors (misconfigured): a named file or profile that does not exist, a
/// malformed file, a profile without both keys, no credentials anywhere.
[[nodiscard]] inline result<credentials> credentials_from_env(const env_source& env) {
    auto id = detail::env_value(env, "AWS_ACCESS_KEY_ID");
    auto secret = detail::env_value(env, "AWS_SECRET_ACCESS_KEY");
    if (id && secret)
        return credentials{std::move(*id), std::move(*secret), detail::env_value(env, "AWS_SESSION_TOKEN").value_or("")};
    if (id) return detail::misconfigured("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both or neither");
    if (secret) return detail::misconfigured("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set both or neither");

    const auto profile_env = detail::env_value(env, "AWS_PROFILE");
    const std::string profile = profile_env.value_or("default");
    const auto home = detail::env_value(env, "HOME");
    const auto file_env = detail::env_value(env, "AWS_SHARED_CREDENTIALS_FILE");
    std::filesystem::path file;
    if (file_env) {
        if (file_env->starts_with("~/") && home)
            file = std::filesystem::path(*home) / file_env->substr(2);
        else
            file = *file_env;
    } else if (home) {
        file = std::filesystem::path(*home) / ".aws" / "credentials";
    } else {
        return detail::misconfigured("no credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set, and "
                                     "neither AWS_SHARED_CREDENTIALS_FILE nor HOME is set to find a credentials file");
    }
    const std::string shown = detail::quote(file.string());

    std::error_code ec;
    const bool exists = std::filesystem::exists(file, ec);
    if (!ec && !exists) {
        if (file_env)
            return detail::misconfigured("AWS_SHARED_CREDENTIALS_FILE names " + shown + ", which does not exist");
        if (profile_env)
            return detail::misconfigured("AWS_PROFILE is " + detail::quote(profile) + " but the credentials file " +
                                         shown + " does not exist");
        return detail::misconfigured("no credentials: set access_key_id/secret_access_key in the config, or "
                                     "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or create " +
                                     shown + " with a [default] profile");
    }
    auto text = detail::read_small_file(file);
    if (!text) return detail::misconfigured("credentials file: " + text.error());
    auto profiles = detail::parse_credentials_ini(*text, file.string());
    if (!profiles) return detail::misconfigured("credentials file " + profiles.error());

    const auto it = profiles->find(profile);
    if (it == profiles->end()) {
        std::string names;
        for (const auto& [name, _] : *profiles) names += (names.empty() ? "" : ", ") + detail::quote(name);
        return detail::misconfigured("profile " + detail::quote(profile) + " not found in " + shown +
                                     (names.empty() ? std::string(" (it has no profiles)") : " (profiles: " + names + ")") +
                                     (profile_env ? "; fix AWS_PROFILE" : "; set AWS_PROFILE or add a [default] profile"));
    }
    const auto& keys = it->second;
    auto get = [&keys](const char* key) -> std::string {
        const auto k = keys.find(key);
        return k == keys.end() ? std::string() : k->second;
    };
    credentials c{get("aws_access_key_id"), get("aws_secret_access_key"), get("aws_session_token")};
    if (c.session_token.empty()) c.session_token = get("aws_security_token");
    if (c.access_key_id.empty() || c.secret_access_key.empty())
        return detail::misconfigured("profile " + detail::quote(profile) + " in " + shown + " lacks " +
                                     (c.access_key_id.empty() ? "aws_access_key_id" : "aws_secret_access_key") +
                                     " (profiles using role_arn, sso_* or credential_process are not supported)");
    return c;
}

/// credentials_from_env(process_env).
[[nodiscard]] inline result<credentials> credentials_from_env() { return credentials_from_env(env_source(process_env)); }

/// Fills what `base` leaves empty from the environment; explicit fields of
/// `base` always win (explicit config > environment > credentials file):
///  - endpoint: AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL (else stays empty = AWS);
///  - region (only when base.region is empty!): AWS_REGION, then
///    AWS_DEFAULT_REGION, else "us-east-1";
///  - creds (only when all three of base.creds are empty): credentials_from_env().
/// Does not validate (there is no environment variable for the bucket); the
/// error cases are those of credentials_from_env.
[[nodiscard]] inline result<config> config_from_env(config base, const env_source& env) {
    if (base.endpoint.empty()) {
        auto ep = detail::env_value(env, "AWS_ENDPOINT_URL_S3");
        if (!ep) ep = detail::env_value(env, "AWS_ENDPOINT_URL");
        if (ep) base.endpoint = std::move(*ep);
    }
    if (base.region.empty()) {
        auto r = detail::env_value(env, "AWS_REGION");
        if (!r) r = detail::env_value(env, "AWS_DEFAULT_REGION");
        base.region = r.value_or("us-east-1");
    }
    const credentials& k = base.creds;
    if (k.access_key_id.empty() && k.secret_access_key.empty() && k.session_token.empty()) {
        auto c = credentials_from_env(env);
        if (!c) return std::unexpected(std::move(c.error()));
        base.creds = std::move(*c);
    }
    return base;
}

/// config_from_env(base, process_env). Mind that a default-constructed config
/// has region "us-east-1", which the environment does not override.
[[nodiscard]] inline result<config> config_from_env(config base) {
    return config_from_env(std::move(base), env_source(process_env));
}

/// A default config resolved from the process environment, the region
/// included (AWS_REGION, AWS_DEFAULT_REGION, else "us-east-1").
[[nodiscard]] inline result<config> config_from_env() {
    config base;
    base.region.clear();
    return config_from_env(std::move(base));
}

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
        static constexpr std::array<std::string_view, 13> top = {
            "endpoint",     "region",        "bucket",         "prefix",         "addressing",
            "access_key_id", "secret_access_key", "session_token", "commit_mode", "max_idle_connections",
            "timeouts",     "retry",         "tls"};
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
        static constexpr std::array<std::string_view, 4> known = {"connect_ms", "low_speed_time_s",
                                                                            "low_speed_limit", "operation_ms"};
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
///   max_idle_connections (integer >= 0),
///   timeouts {connect_ms, low_speed_time_s, low_speed_limit, operation_ms} (integers),
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

/// A one-line summary for logs, e.g.
/// `endpoint=http://127.0.0.1:7480 bucket=b prefix=cache/ region=us-east-1
/// addressing=path commit=auto tls_verify=true max_attempts=4
/// credentials=AKIA...MPLE (secret: <redacted>, session token: absent)`.
/// Never contains the secret, the token, or user info of the endpoint.
[[nodiscard]] inline std::string describe(const config& c) {
    std::string s = "endpoint=";
    if (c.endpoint.empty())
        s += "https://" + detail::aws_host(c.region) + "(aws-default)";
    else
        s += detail::redact_endpoint(c.endpoint);
    s += " bucket=" + c.bucket;
    if (!c.prefix.empty()) s += " prefix=" + c.prefix;
    s += " region=" + c.region;
    s += " addressing=" + std::string(to_string(c.addressing_style));
    s += " commit=" + std::string(to_string(c.commit));
    s += c.tls.verify ? " tls_verify=true" : " tls_verify=false";
    s += " max_attempts=" + std::to_string(c.retry.max_attempts);
    s += " credentials=" + redacted(c.creds);
    // One line, whatever the fields hold.
    for (char& ch : s)
        if (detail::is_control(ch)) ch = '?';
    return s;
}

} // namespace cachestore::s3
