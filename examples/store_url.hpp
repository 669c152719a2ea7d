// examples/store_url.hpp - choose a cachestore driver at run time from a URL,
// without bringing virtual dispatch into the library.
//
//   mem:                                   memory_store (this process only)
//   file:///var/cache/chunks[?PARAMS]      posix_store rooted at /var/cache/chunks
//   s3://BUCKET[/PREFIX][?PARAMS]          s3::store
//   tiered:NEAR|FAR                        cachestore::tiered<Near, Far>: the store NEAR in
//                                          front of the store FAR (docs/operations.md)
//
// A tiered URL is "tiered:", the near tier's URL, '|', the far tier's URL:
//   tiered:file:///var/cache/chunks?max_bytes=10G|s3://bucket/prefix?region=eu-west-1
// Each tier is one of the URLs above, with its own parameters; a '|' inside
// a tier's URL is written %7C (a '|' outside a tiered URL is refused too). The near
// tier is local, mem: or file://; the far tier is shared, file:// or s3://
// (the pairs store_holder holds: tiered_stores below). A tiered store is not a
// tier, and the two tiers of one are not the same directory. Errors in a tier start "near tier: " or "far tier: ". Quote the URL
// in a shell: '|' and '&' are shell syntax.
//
// S3 parameters (all optional; percent-decode as usual, '+' is a literal '+'):
//   endpoint=URL         e.g. http%3A%2F%2F127.0.0.1%3A7480 (else AWS_ENDPOINT_URL_S3 /
//                        AWS_ENDPOINT_URL, else AWS)
//   region=NAME          signing region (else AWS_REGION / AWS_DEFAULT_REGION, else us-east-1)
//   addressing=path|virtual
//   commit=auto|stat_then_put|if_none_match
//   config=/path/to/config.json
//                        a JSON config (docs/s3.md), a regular file of at most 1 MiB;
//                        the URL's bucket, prefix and parameters override the file's values
// POSIX parameters (all optional; posix_options in docs/operations.md):
//   create=1             create the root (and its parents) with mode 0700 when it is
//                        missing; without it a missing root is misconfigured (exit 7)
//   fsync=0              commit without fsync (faster, not crash-safe)
//   max_bytes=SIZE       bound the chunks' total size (64G, 500M, ...): least recently
//                        used chunks are evicted
//   min_free=SIZE        keep this much free space on the filesystem
//   low_water=F          an evicting sweep stops at F x max_bytes (0.5 .. 1, default 0.9)
//   sweep_interval=S     a background sweeper every S seconds (default none)
//   orphan_age=S         temp and probe files older than S seconds are orphans (3600)
// PREFIX is a folder: "s3://b/cache" and "s3://b/cache/" both store under
// "cache/". Credentials never go into the URL: they come from the JSON config
// or the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN, the shared credentials file).
//
// Usage:
//
//   cachestore::examples::store_holder store;        // not movable: lives where it is declared
//   if (auto r = store.open("file:///tmp/chunks"); !r) ...;
//   int rc = store.visit([&]<cachestore::CacheStore S>(S& s) { return work(s); });
//
// The work is a template over the concept; std::visit picks the driver once,
// at the top, and every call inside is direct. Each driver the holder can hold
// instantiates the work once more (the tiered pairs included: keep that list short).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "cachestore/layers/tiered.hpp"
#include "cachestore/memory_store.hpp"
#include "cachestore/posix_store.hpp"
#include "cachestore/cachestore.hpp"
#include "cachestore/s3.hpp"
#include "cachestore/s3/config_json.hpp"
#include "common.hpp"

namespace cachestore::examples {

/// `mem:`
struct memory_spec {};

/// `file:///root?params`
struct posix_spec {
    std::string root;
    posix_options opts; ///< from the URL's parameters
};

/// `s3://bucket/prefix?...`: a resolved, validated configuration.
struct s3_spec {
    s3::config cfg;
    std::string config_file; ///< the JSON file it came from, if any (for messages)
};

/// One store that is not tiered: what each tier of a tiered URL names.
using tier_spec = std::variant<memory_spec, posix_spec, s3_spec>;

/// `tiered:NEAR|FAR`: the near tier in front of the far tier.
struct tiered_spec {
    tier_spec near;
    tier_spec far;
};

/// What a store URL names. Holds no open resource: it can be copied, and a
/// forked child can open its own store from it.
using store_spec = std::variant<memory_spec, posix_spec, s3_spec, tiered_spec>;

/// The tiered stores a store_holder can hold, and so the tier pairs a tiered
/// URL may name: a local near tier (mem: or file://) in front of a shared far
/// tier (file://, e.g. on NFS, or s3://):
///
///   tiered<posix_store, s3::store>     a bounded local disk in front of S3 (the product)
///   tiered<posix_store, posix_store>   a local disk in front of a shared filesystem (and the
///                                      tests of every program without a server)
///   tiered<memory_store, s3::store>    memory in front of S3 (a host without a cache disk)
///   tiered<memory_store, posix_store>  memory in front of a disk
///
/// Every pair here instantiates each program's work once more (GCC 12 -O2,
/// per program and pair: 1.5 to 3.5 s of compile time and about 60 MB of
/// compiler memory), so the list holds the useful pairs only (drop one here
/// and the parser refuses it): S3 is never the near tier (the near tier is the local one), and mem:
/// never the far tier (the far tier is the one the processes share; a memory
/// store dies with its process).
using tiered_stores = std::tuple<tiered<posix_store, s3::store>, tiered<posix_store, posix_store>,
                                 tiered<memory_store, s3::store>, tiered<memory_store, posix_store>>;

/// The store a spec opens.
template <class Spec>
struct store_for;
template <>
struct store_for<memory_spec> {
    using type = memory_store;
};
template <>
struct store_for<posix_spec> {
    using type = posix_store;
};
template <>
struct store_for<s3_spec> {
    using type = s3::store;
};
template <class Spec>
using store_for_t = typename store_for<Spec>::type;

namespace url_detail {
template <class T, class Tuple>
struct tuple_has;
template <class T, class... Ts>
struct tuple_has<T, std::tuple<Ts...>> : std::bool_constant<(std::is_same_v<T, Ts> || ...)> {};
} // namespace url_detail

/// Whether a store_holder holds `tiered<store_for_t<NearSpec>, store_for_t<FarSpec>>`.
template <class NearSpec, class FarSpec>
inline constexpr bool tiered_supported =
    url_detail::tuple_has<tiered<store_for_t<NearSpec>, store_for_t<FarSpec>>, tiered_stores>::value;

namespace url_detail {

inline std::unexpected<error> bad_url(std::string message) {
    return fail(errc::invalid_argument, "store URL", {}, std::move(message));
}

inline std::unexpected<error> misconfigured(std::string message) {
    return fail(errc::misconfigured, "store URL", {}, std::move(message));
}

[[nodiscard]] constexpr int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/// Decodes %XX escapes (RFC 3986; '+' stays '+'). A malformed escape or an
/// encoded NUL is an error; `what` names the component for the message.
[[nodiscard]] inline result<std::string> percent_decode(std::string_view s, std::string_view what) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        if (i + 2 >= s.size() || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0)
            return bad_url("malformed percent-escape in the " + std::string(what) +
                           " (a '%' must be followed by two hex digits; write a literal '%' as %25)");
        const char c = static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
        if (c == '\0') return bad_url("the " + std::string(what) + " contains an encoded NUL (%00)");
        out += c;
        i += 2;
    }
    return out;
}

struct curlu_deleter {
    void operator()(CURLU* u) const noexcept { curl_url_cleanup(u); }
};

/// A part of a parsed URL, raw (not decoded), or nullopt when absent.
[[nodiscard]] inline std::optional<std::string> part(CURLU* u, CURLUPart which) {
    char* raw = nullptr;
    if (curl_url_get(u, which, &raw, 0) != CURLUE_OK || raw == nullptr) return std::nullopt;
    std::string s(raw);
    curl_free(raw);
    return s;
}

/// Lowercase ASCII copy.
[[nodiscard]] inline std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

/// The largest config file read_config_file accepts (a config is a few hundred bytes).
inline constexpr std::size_t max_config_file = std::size_t{1} << 20;

/// " (a directory)" and the like, for a file that is not a regular one.
[[nodiscard]] inline std::string_view file_kind(mode_t mode) noexcept {
    if (S_ISDIR(mode)) return " (a directory)";
    if (S_ISCHR(mode)) return " (a character device)";
    if (S_ISBLK(mode)) return " (a block device)";
    if (S_ISFIFO(mode)) return " (a FIFO)";
    if (S_ISSOCK(mode)) return " (a socket)";
    return "";
}

/// read_config_file's work on the open file.
[[nodiscard]] inline result<std::string> read_config_fd(int fd, const std::string& shown) {
    struct ::stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        return misconfigured("cannot read the config file " + shown + ": " + cachestore::detail::posix::errno_text(err));
    }
    if (!S_ISREG(st.st_mode))
        return misconfigured("the config file " + shown + " is not a regular file" + std::string(file_kind(st.st_mode)));
    const std::string too_big = "the config file " + shown + " is larger than 1 MiB";
    if (st.st_size > static_cast<off_t>(max_config_file)) return misconfigured(too_big);
    std::string text;
    char buf[16 * 1024];
    for (;;) { // up to one byte past the limit: the file may have grown since fstat
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int err = errno;
            return misconfigured("error while reading the config file " + shown + ": " +
                                 cachestore::detail::posix::errno_text(err));
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > max_config_file) return misconfigured(too_big);
    }
    return text;
}

/// Reads a config file: a regular file of at most 1 MiB. Anything else (a
/// directory, /dev/zero, a FIFO) is refused before a byte is read, so that it
/// can neither block nor fill memory. Messages name the path, never the
/// content (a config file may hold a secret key).
[[nodiscard]] inline result<std::string> read_config_file(const std::string& path) {
    const std::string shown = s3::detail::quote(path);
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused
    // then); it changes nothing for the reads of a regular file.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        const int err = errno;
        return misconfigured("cannot read the config file " + shown + ": " + cachestore::detail::posix::errno_text(err));
    }
    auto text = read_config_fd(fd, shown);
    ::close(fd);
    return text;
}

struct s3_params {
    std::optional<std::string> endpoint, region, addressing, commit, config;
};

/// A boolean URL parameter: 1/true/yes or 0/false/no.
[[nodiscard]] inline result<bool> url_bool(std::string_view name, std::string_view v) {
    if (v == "1" || v == "true" || v == "yes") return true;
    if (v == "0" || v == "false" || v == "no") return false;
    return bad_url("parameter " + std::string(name) + " takes 1 or 0, got " + s3::detail::quote(v));
}

/// Splits a URL query into percent-decoded `name=value` pairs and calls
/// `take(name, value) -> result<>` for each; a parameter given twice, without
/// a value or with an empty one is an error naming the `kind` of URL.
template <class Take>
[[nodiscard]] result<> for_each_query_param(std::string_view query, std::string_view kind, Take&& take) {
    std::vector<std::string> seen;
    std::size_t i = 0;
    while (i <= query.size()) {
        std::size_t amp = query.find('&', i);
        if (amp == std::string_view::npos) amp = query.size();
        const std::string_view item = query.substr(i, amp - i);
        i = amp + 1;
        if (item.empty()) continue;
        const std::size_t eq = item.find('=');
        auto name = percent_decode(item.substr(0, eq), "query parameter name");
        if (!name) return std::unexpected(std::move(name.error()));
        if (std::find(seen.begin(), seen.end(), *name) != seen.end())
            return bad_url("parameter " + *name + " is given twice in the " + std::string(kind) + " URL");
        seen.push_back(*name);
        if (eq == std::string_view::npos) return bad_url("parameter " + *name + " needs a value (" + *name + "=...)");
        auto value = percent_decode(item.substr(eq + 1), "value of " + *name);
        if (!value) return std::unexpected(std::move(value.error()));
        if (value->empty()) return bad_url("parameter " + *name + " has an empty value");
        if (auto r = take(*name, *value); !r) return r;
    }
    return {};
}

/// The parameters of a file URL into `opts`; unknown, repeated and empty ones are errors.
[[nodiscard]] inline result<> parse_file_query(std::string_view query, posix_options& opts) {
    return for_each_query_param(query, "file", [&opts](const std::string& name, const std::string& value) -> result<> {
        auto size = [&](std::int64_t& out) -> result<> {
            const auto n = parse_size(value);
            if (!n) return bad_url("parameter " + name + " takes a size such as 64G or 500M, got " + s3::detail::quote(value));
            out = *n;
            return {};
        };
        auto seconds = [&](auto& out) -> result<> {
            const auto n = parse_int(value);
            if (!n || *n < 0 || *n > std::int64_t{86400} * 365)
                return bad_url("parameter " + name + " takes whole seconds, got " + s3::detail::quote(value));
            out = std::chrono::seconds(*n);
            return {};
        };
        auto flag = [&](bool& out) -> result<> {
            auto b = url_bool(name, value);
            if (!b) return std::unexpected(std::move(b.error()));
            out = *b;
            return {};
        };
        auto fraction = [&](double& out) -> result<> {
            char* end = nullptr;
            const double f = std::strtod(value.c_str(), &end);
            if (end != value.c_str() + value.size() || !(f >= 0.5 && f <= 1.0))
                return bad_url("parameter low_water takes a fraction from 0.5 to 1, got " + s3::detail::quote(value));
            out = f;
            return {};
        };
        if (name == "max_bytes") return size(opts.max_bytes);
        if (name == "min_free") return size(opts.min_free_bytes);
        if (name == "low_water") return fraction(opts.low_water);
        if (name == "sweep_interval") return seconds(opts.sweep_interval);
        if (name == "orphan_age") return seconds(opts.orphan_age);
        if (name == "create") return flag(opts.create_root);
        if (name == "fsync") return flag(opts.fsync);
        return bad_url("unknown parameter " + s3::detail::quote(name) +
                       " in the file URL (known: create, fsync, max_bytes, min_free, low_water, sweep_interval, "
                       "orphan_age)");
    });
}

/// Splits and decodes the query; unknown, repeated and empty parameters are errors.
[[nodiscard]] inline result<s3_params> parse_s3_query(std::string_view query) {
    s3_params p;
    auto ok = for_each_query_param(query, "s3", [&p](const std::string& name, std::string& value) -> result<> {
        std::optional<std::string>* slot = nullptr;
        if (name == "endpoint") slot = &p.endpoint;
        else if (name == "region") slot = &p.region;
        else if (name == "addressing") slot = &p.addressing;
        else if (name == "commit") slot = &p.commit;
        else if (name == "config") slot = &p.config;
        else
            return bad_url("unknown parameter " + s3::detail::quote(name) +
                           " in the s3 URL (known: endpoint, region, addressing, commit, config; credentials go in the "
                           "environment or the config file, never in the URL)");
        *slot = std::move(value);
        return {};
    });
    if (!ok) return std::unexpected(std::move(ok.error()));
    return p;
}

/// The bucket of an s3 URL: the URL's own text between "s3://" and the first
/// '/', '?' or '#', percent-decoded once. Never curl's host part: curl has
/// already decoded it, and rewrites a name that looks like an IPv4 number
/// ("s3://1234" would name bucket "0.0.4.210"). Whether the decoded name is
/// a valid bucket name is s3::validate's to say.
[[nodiscard]] inline result<std::string> s3_bucket(std::string_view url) {
    constexpr std::string_view scheme = "s3://";
    if (url.size() < scheme.size() || lower(url.substr(0, scheme.size())) != scheme)
        return bad_url("an s3 URL starts with s3:// and its bucket: s3://BUCKET/PREFIX");
    std::string_view raw = url.substr(scheme.size());
    raw = raw.substr(0, raw.find_first_of("/?#"));
    if (raw.empty()) return bad_url("an s3 URL names its bucket first: s3://BUCKET/PREFIX (got an empty bucket)");
    if (raw.find(':') != std::string_view::npos)
        return bad_url("an s3 URL takes no port: the server goes in endpoint=...");
    return percent_decode(raw, "bucket");
}

[[nodiscard]] inline result<s3_spec> parse_s3(std::string_view url, CURLU* u, const s3::env_source& env) {
    if (part(u, CURLUPART_USER) || part(u, CURLUPART_PASSWORD))
        return bad_url("the s3 URL contains user info ('...@'): never put credentials in a URL; use the "
                       "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or a config file");
    if (part(u, CURLUPART_FRAGMENT)) return bad_url("an s3 URL takes no fragment ('#...')");
    auto bucket = s3_bucket(url);
    if (!bucket) return std::unexpected(std::move(bucket.error()));
    auto raw_path = part(u, CURLUPART_PATH).value_or("/");
    auto path = percent_decode(raw_path, "prefix");
    if (!path) return std::unexpected(std::move(path.error()));
    std::string prefix = path->substr(path->starts_with('/') ? 1 : 0);
    if (!prefix.empty() && !prefix.ends_with('/')) prefix += '/';
    if (prefix.starts_with('/')) return bad_url("the prefix of an s3 URL must not start with '/' (s3://bucket//x)");

    auto parsed = parse_s3_query(part(u, CURLUPART_QUERY).value_or(""));
    if (!parsed) return std::unexpected(std::move(parsed.error()));
    const s3_params& params = *parsed;

    s3::config cfg;
    auto set_enums = [&](s3::config& c) -> result<> {
        if (params.addressing) {
            if (*params.addressing == "path") c.addressing_style = s3::addressing::path;
            else if (*params.addressing == "virtual") c.addressing_style = s3::addressing::virtual_hosted;
            else return bad_url("addressing must be path or virtual");
        }
        if (params.commit) {
            if (*params.commit == "auto") c.commit = s3::commit_mode::auto_detect;
            else if (*params.commit == "stat_then_put") c.commit = s3::commit_mode::stat_then_put;
            else if (*params.commit == "if_none_match") c.commit = s3::commit_mode::if_none_match;
            else return bad_url("commit must be auto, stat_then_put or if_none_match");
        }
        return {};
    };

    { // a bad value in the URL is the URL's problem (invalid_argument), not the config file's
        s3::config scratch;
        if (auto r = set_enums(scratch); !r) return std::unexpected(std::move(r.error()));
    }

    s3_spec spec;
    if (params.config) {
        // The file is the base; the URL's values override it. The merged
        // document goes through config_from_json, which fills the rest from
        // the environment and validates; its messages never echo values.
        spec.config_file = *params.config;
        auto text = read_config_file(*params.config);
        if (!text) return std::unexpected(std::move(text.error()));
        const std::string where = "config file " + s3::detail::quote(*params.config) + ": ";
        nlohmann::json doc = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
        if (doc.is_discarded() || !doc.is_object()) {
            auto r = s3::config_from_json(*text, env); // for its message (line and column)
            error e = r ? error{} : r.error();
            e.code = errc::misconfigured;
            e.op = "store URL";
            e.message = where + (r ? std::string("must be a JSON object") : e.message);
            return std::unexpected(std::move(e));
        }
        doc["bucket"] = *bucket;
        if (!prefix.empty()) doc["prefix"] = prefix;
        if (params.endpoint) doc["endpoint"] = *params.endpoint;
        if (params.region) doc["region"] = *params.region;
        if (params.addressing) doc["addressing"] = *params.addressing;
        if (params.commit) doc["commit_mode"] = *params.commit;
        // Invalid UTF-8 (a bucket spelled "%FF") must not throw: replace it,
        // and validation then refuses the name.
        auto c = s3::config_from_json(doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), env);
        if (!c) {
            error e = std::move(c.error());
            e.message = where + e.message;
            return std::unexpected(std::move(e));
        }
        spec.cfg = std::move(*c);
        if (auto r = set_enums(spec.cfg); !r) return std::unexpected(std::move(r.error()));
    } else {
        cfg.bucket = *bucket;
        cfg.prefix = prefix;
        cfg.endpoint = params.endpoint.value_or("");
        cfg.region = params.region.value_or(""); // empty: the environment decides
        if (auto r = set_enums(cfg); !r) return std::unexpected(std::move(r.error()));
        auto c = s3::config_from_env(std::move(cfg), env);
        if (!c) return std::unexpected(std::move(c.error()));
        if (auto v = s3::validate(*c); !v) return std::unexpected(std::move(v.error()));
        spec.cfg = std::move(*c);
    }
    return spec;
}

/// The URL forms, for messages.
inline constexpr std::string_view url_forms = "mem:, file:///path, s3://bucket/prefix or tiered:NEAR|FAR";

/// One store URL that is not tiered (parse_store_url's work on mem:, file: and s3: URLs).
[[nodiscard]] inline result<tier_spec> parse_tier_url(std::string_view url, const s3::env_source& env) {
    if (url.find('\0') != std::string_view::npos) return bad_url("the store URL contains a NUL byte");
    if (url.find('|') != std::string_view::npos)
        return bad_url("a '|' joins the two tiers of a tiered store URL, tiered:NEAR|FAR; inside a URL, write it "
                       "as %7C");
    const std::string low = lower(url.substr(0, std::min<std::size_t>(url.size(), 8)));
    if (low == "mem:" || low == "mem://" || low == "memory:") return tier_spec{memory_spec{}};
    if (low.starts_with("mem:") || low.starts_with("memory:"))
        return bad_url("a memory store URL is just mem: (nothing after it)");
    if (url.starts_with("/") || url.starts_with("."))
        return bad_url("the store URL is a path, not a URL: write file:///absolute/path");

    std::unique_ptr<CURLU, curlu_deleter> u(curl_url());
    if (!u) return fail(errc::io_error, "store URL", {}, "out of memory");
    const std::string s(url);
    const CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, s.c_str(),
                                      CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS | CURLU_ALLOW_SPACE);
    if (rc != CURLUE_OK) {
        std::string why = curl_url_strerror(rc);
        if (low.starts_with("file:")) why += " (a file URL is file:///absolute/path or file://localhost/absolute/path)";
        return bad_url("cannot parse the store URL: " + why);
    }
    const std::string scheme = lower(part(u.get(), CURLUPART_SCHEME).value_or(""));
    if (scheme == "file") {
        if (part(u.get(), CURLUPART_FRAGMENT)) return bad_url("a file URL takes no fragment ('#...')");
        auto path = percent_decode(part(u.get(), CURLUPART_PATH).value_or(""), "file path");
        if (!path) return std::unexpected(std::move(path.error()));
        if (!path->starts_with('/'))
            return bad_url("a file URL needs an absolute path: file:///var/cache/chunks (three slashes)");
        posix_spec spec{std::move(*path), {}};
        if (auto q = parse_file_query(part(u.get(), CURLUPART_QUERY).value_or(""), spec.opts); !q)
            return std::unexpected(std::move(q.error()));
        return tier_spec{std::move(spec)};
    }
    if (scheme == "s3") {
        auto spec = parse_s3(s, u.get(), env);
        if (!spec) return std::unexpected(std::move(spec.error()));
        return tier_spec{std::move(*spec)};
    }
    return bad_url("unsupported store URL scheme " + s3::detail::quote(scheme) + ": use " + std::string(url_forms));
}

inline constexpr std::string_view unsupported_tiers =
    "this pair of tiers is not supported: the near tier is mem: or file://, the far tier file:// or s3://";

/// `e` with its message starting "near tier: " or "far tier: ".
[[nodiscard]] inline error in_tier(std::string_view tier, error e) {
    e.message = std::string(tier) + " tier: " + e.message;
    return e;
}

/// A posix root without its trailing slashes ("/" stays "/"), to compare two roots.
[[nodiscard]] inline std::string_view root_of(std::string_view root) noexcept {
    while (root.size() > 1 && root.ends_with('/')) root.remove_suffix(1);
    return root;
}

/// `rest` is what follows "tiered:": NEAR|FAR.
[[nodiscard]] inline result<tiered_spec> parse_tiered(std::string_view rest, const s3::env_source& env) {
    static constexpr std::string_view form =
        "tiered:NEAR|FAR, e.g. tiered:file:///var/cache/chunks?max_bytes=10G|s3://bucket/prefix";
    const std::size_t bar = rest.find('|');
    if (bar == std::string_view::npos)
        return bad_url("a tiered store URL names two stores joined by '|': " + std::string(form) + " (no '|' found)");
    const std::string_view near = rest.substr(0, bar), far = rest.substr(bar + 1);
    if (near.empty()) return bad_url("the near tier of the tiered store URL is empty: " + std::string(form));
    if (far.empty()) return bad_url("the far tier of the tiered store URL is empty: " + std::string(form));
    auto nested = [](std::string_view side) { return lower(side.substr(0, std::min<std::size_t>(side.size(), 7))) == "tiered:"; };
    for (const auto& [name, side] : {std::pair{"near", near}, std::pair{"far", far}})
        if (nested(side))
            return std::unexpected(in_tier(name, bad_url("a tiered store cannot be a tier of another tiered store").error()));
    if (far.find('|') != std::string_view::npos)
        return bad_url("a tiered store URL has exactly two tiers, one '|' between them: " + std::string(form) +
                       " (inside a tier's URL, write a '|' as %7C)");
    // Refused before it is parsed: an s3 URL's parse reads the environment and its config file.
    if (lower(near.substr(0, std::min<std::size_t>(near.size(), 3))) == "s3:")
        return std::unexpected(in_tier("near", bad_url("an s3 store cannot be the near tier: the near tier is the local "
                                                       "one, mem: or file:///path (s3:// goes after the '|')")
                                                   .error()));
    auto n = parse_tier_url(near, env);
    if (!n) return std::unexpected(in_tier("near", std::move(n.error())));
    auto f = parse_tier_url(far, env);
    if (!f) return std::unexpected(in_tier("far", std::move(f.error())));
    if (std::holds_alternative<memory_spec>(*f))
        return std::unexpected(in_tier("far", bad_url("a memory store cannot be the far tier: the far tier is the one "
                                                      "processes share, file:///path or s3://bucket (mem: may be the "
                                                      "near tier)")
                                                  .error()));
    const bool supported =
        std::visit([]<class N, class F>(const N&, const F&) { return tiered_supported<N, F>; }, *n, *f);
    if (!supported) return bad_url(std::string(unsupported_tiers));
    const auto* pn = std::get_if<posix_spec>(&*n);
    const auto* pf = std::get_if<posix_spec>(&*f);
    if (pn != nullptr && pf != nullptr && root_of(pn->root) == root_of(pf->root))
        return bad_url("the near and far tiers are the same directory " + pn->root + ": give each tier its own");
    return tiered_spec{std::move(*n), std::move(*f)};
}

} // namespace url_detail

/// Parses a store URL into the configuration of one driver (or, for a
/// tiered URL, of its two tiers). For s3 URLs it also resolves the
/// environment (endpoint, region, credentials) and reads the config file, and
/// validates the result. A malformed URL is `invalid_argument`; a well-formed
/// one that cannot work (no credentials, a bad endpoint, an unreadable config
/// file) is `misconfigured`. An error in a tier of a tiered URL says which
/// ("near tier: ...", "far tier: ..."). No message contains a secret or the
/// URL's user info.
[[nodiscard]] inline result<store_spec> parse_store_url(std::string_view url,
                                                        const s3::env_source& env = s3::env_source(s3::process_env)) {
    using namespace url_detail;
    if (url.empty())
        return bad_url("no store URL given: use " + std::string(url_forms) + " (flag --store or CACHESTORE_URL)");
    if (url.find('\0') != std::string_view::npos) return bad_url("the store URL contains a NUL byte");
    if (lower(url.substr(0, std::min<std::size_t>(url.size(), 7))) == "tiered:") {
        auto t = parse_tiered(url.substr(7), env);
        if (!t) return std::unexpected(std::move(t.error()));
        return store_spec{std::move(*t)};
    }
    auto one = parse_tier_url(url, env);
    if (!one) return std::unexpected(std::move(one.error()));
    return std::visit([](auto& s) { return store_spec{std::move(s)}; }, *one);
}

/// An error of posix_store::open in the URL's terms: the library's message
/// for a missing root names posix_options::create_root, which a URL sets as
/// create=1. Other errors come back unchanged.
[[nodiscard]] inline error in_url_terms(error e, const posix_spec& p) {
    if (e.code != errc::misconfigured || e.op != "open" || e.sys_errno != ENOENT || p.opts.create_root) return e;
    const std::string url = "file://" + p.root + "?create=1";
    e.message = "the root directory " + p.root + " does not exist (create it with mode 0700, or let the store create " +
                "it: add create=1 to the store URL, " + url + " (&create=1 after other parameters))";
    return e;
}

/// A one-line description of a spec, safe to print (no secret: s3::describe).
[[nodiscard]] inline std::string describe(const store_spec& spec) {
    struct v {
        std::string operator()(const memory_spec&) const { return "memory store (this process only)"; }
        std::string operator()(const posix_spec& p) const {
            std::string d = "posix store at " + p.root;
            if (p.opts.max_bytes > 0) d += " max_bytes=" + std::to_string(p.opts.max_bytes);
            if (p.opts.min_free_bytes > 0) d += " min_free=" + std::to_string(p.opts.min_free_bytes);
            return d;
        }
        std::string operator()(const s3_spec& s) const {
            std::string d = "s3 store: " + s3::describe(s.cfg);
            if (!s.config_file.empty()) d += " config_file=" + s.config_file;
            return d;
        }
        std::string operator()(const tiered_spec& t) const {
            return "tiered store: near tier " + std::visit(*this, t.near) + "; far tier " + std::visit(*this, t.far);
        }
    };
    return std::visit(v{}, spec);
}

/// The driver's short name: "memory", "posix", "s3" or "tiered".
[[nodiscard]] inline std::string_view driver_name(const store_spec& spec) noexcept {
    static constexpr std::string_view names[] = {"memory", "posix", "s3", "tiered"};
    static_assert(std::size(names) == std::variant_size_v<store_spec>);
    return names[spec.index()];
}

/// A tier's short name: "memory", "posix" or "s3".
[[nodiscard]] inline std::string_view driver_name(const tier_spec& spec) noexcept {
    static constexpr std::string_view names[] = {"memory", "posix", "s3"};
    static_assert(std::size(names) == std::variant_size_v<tier_spec>);
    return names[spec.index()];
}

/// The S3 configuration of a spec: the s3 store's, or a tiered store's far tier's; else null.
[[nodiscard]] inline s3_spec* s3_part(store_spec& spec) noexcept {
    if (auto* t = std::get_if<tiered_spec>(&spec)) return std::get_if<s3_spec>(&t->far);
    return std::get_if<s3_spec>(&spec);
}

/// The options of the tiered stores a store_holder opens: tiered_options'
/// defaults, with metrics under store="tiered".
[[nodiscard]] inline tiered_options holder_tiered_options() {
    tiered_options o;
    o.name = "tiered";
    return o;
}

namespace url_detail {

template <class V, class Tuple>
struct with_tiered;
template <class... Vs, class... Ts>
struct with_tiered<std::variant<Vs...>, std::tuple<Ts...>> {
    using type = std::variant<Vs..., Ts...>;
};

/// A memory tier: built in place inside the tiered store (memory_store cannot move).
struct memory_tier {};

/// One tier, opened: a store to move into the tiered store (or memory_tier).
[[nodiscard]] inline result<memory_tier> open_tier(const memory_spec&) { return memory_tier{}; }
[[nodiscard]] inline result<posix_store> open_tier(const posix_spec& p) {
    auto s = posix_store::open(p.root, p.opts);
    if (!s) return std::unexpected(in_url_terms(std::move(s.error()), p));
    return s;
}
[[nodiscard]] inline result<s3::store> open_tier(const s3_spec& p) { return s3::store::create(p.cfg); }

/// The arguments that build an opened tier inside the tiered store.
[[nodiscard]] inline std::tuple<> tier_args(memory_tier&) noexcept { return {}; }
template <class S>
[[nodiscard]] std::tuple<S&&> tier_args(S& s) noexcept {
    return std::forward_as_tuple(std::move(s));
}

} // namespace url_detail

/// Holds one open driver in place. Not copyable or movable (memory_store
/// holds a mutex), so declare it where it is used and open() it there.
class store_holder {
public:
    /// What it can hold: nothing, each driver, and the tiered_stores.
    using stores = url_detail::with_tiered<std::variant<std::monostate, memory_store, posix_store, s3::store>,
                                           tiered_stores>::type;

    store_holder() = default;
    store_holder(const store_holder&) = delete;
    store_holder& operator=(const store_holder&) = delete;

    /// Opens the driver `spec` names, replacing any open one. A tiered spec
    /// opens the near tier, then the far tier; an error says which failed.
    result<> open(const store_spec& spec) {
        close();
        struct opener {
            store_holder& h;
            result<> operator()(const memory_spec&) const {
                h.v_.emplace<memory_store>();
                return {};
            }
            result<> operator()(const posix_spec& p) const {
                auto s = url_detail::open_tier(p);
                if (!s) return std::unexpected(std::move(s.error()));
                h.v_.emplace<posix_store>(std::move(*s));
                return {};
            }
            result<> operator()(const s3_spec& p) const {
                auto s = url_detail::open_tier(p);
                if (!s) return std::unexpected(std::move(s.error()));
                h.v_.emplace<s3::store>(std::move(*s));
                return {};
            }
            result<> operator()(const tiered_spec& t) const {
                return std::visit([this]<class N, class F>(const N& near, const F& far) { return h.open_tiered(near, far); },
                                  t.near, t.far);
            }
        };
        return std::visit(opener{*this}, spec);
    }

    /// parse_store_url(url) then open().
    result<> open(std::string_view url) {
        auto spec = parse_store_url(url);
        if (!spec) return std::unexpected(std::move(spec.error()));
        return open(*spec);
    }

    void close() { v_ = std::monostate{}; }
    [[nodiscard]] bool is_open() const noexcept { return v_.index() != 0; }

    /// Whether racing writers of one chunk get exactly one winner: always for
    /// memory and POSIX; for S3 once If-None-Match commits are on (configured,
    /// or proven by self_test in auto mode). A tiered store: as its far tier,
    /// which decides every commit.
    [[nodiscard]] bool atomic_commit() const noexcept {
        if (const auto* s = s3_in(v_)) return s->conditional_commit();
        return is_open();
    }

    /// The POSIX driver, when that is what is open (for du and sweep).
    [[nodiscard]] posix_store* posix() noexcept { return std::get_if<posix_store>(&v_); }

    /// The S3 driver, when that is what is open or is the far tier of the
    /// tiered store that is (for S3-only details).
    [[nodiscard]] s3::store* s3() noexcept { return s3_in(v_); }

    /// Calls `f(driver&)` with the open driver's concrete type. `f` is
    /// typically a generic lambda or a function template over
    /// cachestore::CacheStore; it is instantiated once per driver (and per
    /// tiered pair), and the choice is made here, once. Precondition: is_open().
    template <class F>
    decltype(auto) visit(F&& f) {
        using R = std::invoke_result_t<F&, memory_store&>;
        return std::visit(
            [&]<class S>(S& s) -> R {
                if constexpr (std::is_same_v<S, std::monostate>) {
                    std::fputs("store_holder::visit: no store is open\n", stderr);
                    std::abort();
                } else {
                    static_assert(CacheStore<S>);
                    return f(s);
                }
            },
            v_);
    }

private:
    /// The S3 store in `v` (stores or const stores): the open one, or the far
    /// tier of the open tiered one. With get_if only: nothing here can throw.
    template <class V, class P = std::conditional_t<std::is_const_v<V>, const s3::store*, s3::store*>>
    static P s3_in(V& v) noexcept {
        if (auto* s = std::get_if<s3::store>(&v)) return s;
        return far_s3<V, P>(v, static_cast<tiered_stores*>(nullptr));
    }
    template <class V, class P, class... T>
    static P far_s3(V& v, std::tuple<T...>* /*the tiered types*/) noexcept {
        P found = nullptr;
        (
            [&]() noexcept {
                if constexpr (std::is_same_v<typename T::far_type, s3::store>)
                    if (auto* t = std::get_if<T>(&v); t != nullptr) found = &t->far();
            }(),
            ...);
        return found;
    }

    /// Opens both tiers, then builds the tiered store in place.
    template <class NearSpec, class FarSpec>
    result<> open_tiered(const NearSpec& near_spec, const FarSpec& far_spec) {
        if constexpr (!tiered_supported<NearSpec, FarSpec>) {
            return url_detail::bad_url(std::string(url_detail::unsupported_tiers));
        } else {
            auto near = url_detail::open_tier(near_spec);
            if (!near) return std::unexpected(url_detail::in_tier("near", std::move(near.error())));
            auto far = url_detail::open_tier(far_spec);
            if (!far) return std::unexpected(url_detail::in_tier("far", std::move(far.error())));
            using T = tiered<store_for_t<NearSpec>, store_for_t<FarSpec>>;
            v_.emplace<T>(std::piecewise_construct, url_detail::tier_args(*near), url_detail::tier_args(*far),
                          holder_tiered_options());
            return {};
        }
    }

    stores v_;
};

} // namespace cachestore::examples
