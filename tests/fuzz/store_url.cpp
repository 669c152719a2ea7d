// Fuzz target: the examples' store URL parser (examples/store_url.hpp,
// parse_store_url), with an injected environment that holds credentials.
//
// Input: line 1 is the URL (escapes as in fuzz_support.hpp); an optional
// line 2 makes the URL line1 + SECRET + line2, so that a secret can sit in
// user info or anywhere else. A config=PATH parameter is only followed into a
// sandbox of files this harness writes (see sandbox below: small configs, one
// over the 1 MiB limit, a FIFO); other paths are skipped, so that the fuzzer
// cannot make it read /dev/zero.
//
// Invariants:
//  - no exception escapes parse_store_url;
//  - a failure is invalid_argument or misconfigured;
//  - mem: gives the memory driver, file: an absolute path, s3: a config that
//    validates, with a bucket and a prefix that is empty or ends (and does
//    not start) with '/';
//  - tiered:NEAR|FAR gives a near tier that is mem: or file: and a far tier
//    that is file: or s3:, split at the first '|', each checked as above
//    against its own part of the URL, never two tiers in one directory;
//  - no message and no describe() output holds the environment's secret key
//    or session token, the config files' secret key, or a secret placed in
//    the URL's user info;
//  - a config file that is not a regular file, or is over 1 MiB, is never
//    accepted (and a FIFO does not block the parser).
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>

#include <sys/stat.h>
#include <unistd.h>

#include "examples/store_url.hpp"
#include "fuzz_support.hpp"

namespace ex = cachestore::examples;
namespace s3 = cachestore::s3;

namespace {

// Fixed issue: with config=FILE, parse_s3 put the decoded bucket into a
// nlohmann::json document and dump()ed it, which threw type_error 316 for
// invalid UTF-8 ("s3://%FF/x?config=..."). Set this to false to skip that
// exception again. Seed: corpus/store_url/uncaught-json-type-error-316.txt.
constexpr bool invalid_utf8_bucket_fixed = true;

// Fixed issue: the bucket was taken from curl's parsed host, which curl had
// already rewritten: a host that looks like an IPv4 number became dotted
// ("s3://123456/x" named bucket "0.1.226.64"), and %XX was decoded by curl and
// then again by parse_s3 ("s3://a%2541" named "aA"). The bucket is now the
// URL's own text, decoded once, and is checked for every input. Seeds:
// corpus/store_url/numeric-bucket-rewritten-as-ipv4.txt,
// corpus/store_url/bucket-percent-decoded-twice.txt.
constexpr bool bucket_taken_verbatim = true;

constexpr std::string_view env_secret = "EnvS3cr3t/Qz8+Lm";
constexpr std::string_view env_token = "EnvT0ken/Wv5+Rt";
constexpr std::string_view url_secret = "UrlPa55Xk";
constexpr std::string_view file_secret = "FileS3cr3t/Zp4+Yy";

/// A directory of config files the URLs may name (config=/tmp/cachestore-fuzz-store-url/NAME).
const std::string& sandbox() {
    static const std::string dir = [] {
        std::string d = "/tmp/cachestore-fuzz-store-url";
        std::error_code ec;
        std::filesystem::create_directories(d, ec);
        // Written to a private name, then renamed: concurrent runs never see a partial file.
        auto put = [&d](const char* name, std::string_view text) {
            const std::string tmp = d + "/." + name + "." + std::to_string(::getpid());
            std::ofstream(tmp, std::ios::binary | std::ios::trunc) << text;
            std::error_code ec;
            std::filesystem::rename(tmp, d + "/" + name, ec);
        };
        const std::string secret_field = R"("secret_access_key": ")" + std::string(file_secret) + '"';
        put("valid.json", R"({"endpoint": "http://127.0.0.1:7480", "bucket": "file-bucket", "region": "eu-west-1",
                              "access_key_id": "AKIDFILE", )" + secret_field + "}");
        put("no-creds.json", R"({"endpoint": "http://127.0.0.1:7480", "commit_mode": "if_none_match"})");
        put("array.json", "[1, 2]");
        put("malformed.json", "{" + secret_field + R"( "x"})");
        put("empty.json", "");
        // A valid config one byte over the 1 MiB limit (white space inside).
        std::string big = R"({"endpoint": "http://127.0.0.1:7480", "access_key_id": "AKIDFILE", )" + secret_field;
        big.resize((std::size_t{1} << 20), ' ');
        put("too-big.json", big + "}");
        // Opening a FIFO for reading waits for a writer, unless the parser takes care.
        ::mkfifo((d + "/fifo").c_str(), 0600);
        return d;
    }();
    return dir;
}

std::optional<std::string> env(std::string_view name) {
    if (name == "AWS_ACCESS_KEY_ID") return std::string("AKIDENV");
    if (name == "AWS_SECRET_ACCESS_KEY") return std::string(env_secret);
    if (name == "AWS_SESSION_TOKEN") return std::string(env_token);
    return std::nullopt;
}

/// Percent-decoding that never fails (for deciding which checks apply).
std::string loose_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && fuzz::hex_digit(s[i + 1]) >= 0 && fuzz::hex_digit(s[i + 2]) >= 0) {
            out += static_cast<char>(fuzz::hex_digit(s[i + 1]) * 16 + fuzz::hex_digit(s[i + 2]));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

/// Whether the URL names a config file outside the sandbox (then it is not parsed).
bool leaves_sandbox(const std::string& url) {
    const std::string d = loose_decode(url);
    for (std::size_t at = d.find("config"); at != std::string::npos; at = d.find("config", at + 1)) {
        const std::size_t eq = d.find('=', at);
        if (eq == std::string::npos) return false;
        const std::string_view v = std::string_view(d).substr(eq + 1);
        if (!v.starts_with(sandbox() + "/") || v.find("..") != std::string_view::npos) return true;
    }
    return false;
}

/// Where the authority starts ("scheme://" at the front), or npos.
std::size_t authority_start(std::string_view url) {
    const std::size_t colon = url.find(':');
    if (colon == std::string_view::npos || colon == 0 || !url.substr(colon).starts_with("://")) return std::string_view::npos;
    for (const char c : url.substr(0, colon))
        if (!(std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '-' || c == '.'))
            return std::string_view::npos;
    return colon + 3;
}

bool holds(std::string_view s, std::string_view needle) { return s.find(needle) != std::string_view::npos; }

/// Where the store URL holding byte `at` starts and ends: the whole URL, or
/// for a tiered one ("tiered:NEAR|FAR", split at the first '|') its tier.
std::pair<std::size_t, std::size_t> tier_around(std::string_view url, std::size_t at) {
    std::string head(url.substr(0, std::min<std::size_t>(url.size(), 7)));
    for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (head != "tiered:") return {0, url.size()};
    const std::size_t bar = url.find('|', 7);
    if (bar == std::string_view::npos || at < bar) return {7, std::min(bar, url.size())};
    return {bar + 1, url.size()};
}

/// The checks of one store that is not tiered, parsed from `url` (`spec`: a
/// store_spec or a tier_spec).
template <class Spec>
void check_tier(const Spec& spec, const std::string& url) {
    if (const auto* p = std::get_if<ex::posix_spec>(&spec)) {
        FUZZ_CHECK_MSG(p->root.starts_with('/'), p->root);
    } else if (const auto* s = std::get_if<ex::s3_spec>(&spec)) {
        FUZZ_CHECK(s3::validate(s->cfg).has_value());
        FUZZ_CHECK(!s->cfg.bucket.empty());
        if (!s->config_file.empty()) {
            std::error_code ec;
            FUZZ_CHECK_MSG(std::filesystem::is_regular_file(s->config_file, ec) &&
                               std::filesystem::file_size(s->config_file, ec) <= (std::uintmax_t{1} << 20),
                           s->config_file);
        }
        // The bucket is the URL's authority, percent-decoded once, verbatim
        // (an authority with a ':' is refused: an s3 URL takes no port).
        const std::size_t start = authority_start(url);
        FUZZ_CHECK_MSG(start != std::string::npos, url); // an s3 URL starts with s3://
        const std::size_t end = std::min(url.find_first_of("/?#", start), url.size());
        const std::string_view authority = std::string_view(url).substr(start, end - start);
        FUZZ_CHECK_MSG(authority.find(':') == std::string_view::npos, url);
        if (bucket_taken_verbatim) FUZZ_CHECK_MSG(s->cfg.bucket == loose_decode(authority), url + " -> " + s->cfg.bucket);
        const std::string& prefix = s->cfg.prefix;
        FUZZ_CHECK_MSG(prefix.empty() || (prefix.ends_with('/') && !prefix.starts_with('/')), prefix);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto l = fuzz::lines(fuzz::as_view(data, size));
    std::string url = l.empty() ? std::string() : l[0];
    const bool with_secret = l.size() >= 2;
    std::size_t secret_at = std::string::npos;
    if (with_secret) {
        secret_at = url.size();
        url += url_secret;
        url += l[1];
    }
    if (leaves_sandbox(url)) return 0;

    cachestore::result<ex::store_spec> r;
    try {
        r = ex::parse_store_url(url, s3::env_source(env));
    } catch (const nlohmann::json::type_error& e) {
        if (!invalid_utf8_bucket_fixed && e.id == 316) return 0;
        fuzz::check_failed("no exception escapes parse_store_url", __FILE__, __LINE__, url + " -> " + e.what());
    } catch (const std::exception& e) {
        fuzz::check_failed("no exception escapes parse_store_url", __FILE__, __LINE__, url + " -> " + e.what());
    }

    // Which secrets must not show: those the input does not hold itself.
    const std::string decoded = loose_decode(url);
    std::string hidden[4];
    if (!holds(decoded, env_secret) && !holds(url, env_secret)) hidden[0] = env_secret;
    if (!holds(decoded, env_token) && !holds(url, env_token)) hidden[1] = env_token;
    if (!holds(decoded, file_secret) && !holds(url, file_secret)) hidden[3] = file_secret;
    if (with_secret && std::string(l[0] + "\n" + l[1]).find(url_secret) == std::string::npos) {
        // User info as RFC 3986 has it: in the authority (after "scheme://",
        // up to the first '/', '?' or '#'; in a tiered URL, of the tier the
        // secret is in, and up to its '|'), before its last '@'. (A secret
        // with an unencoded '/' ends the authority early and lands in the
        // prefix: see the report; the endpoint target checks the stricter rule.)
        const auto [tier_begin, tier_end] = tier_around(url, secret_at);
        const std::string_view tier_url = std::string_view(url).substr(tier_begin, tier_end - tier_begin);
        const std::size_t scheme_end = authority_start(tier_url);
        if (scheme_end != std::string::npos) {
            const std::size_t start = tier_begin + scheme_end;
            const std::size_t end = std::min(url.find_first_of("/?#|", start), url.size());
            const std::size_t at = url.rfind('@', end == 0 ? 0 : end - 1);
            if (at != std::string::npos && at >= start && secret_at >= start && secret_at + url_secret.size() <= at)
                hidden[2] = url_secret;
        }
    }
    auto check_hidden = [&](const std::string& text) {
        for (const auto& h : hidden) FUZZ_CHECK_MSG(h.empty() || !holds(text, h), std::string(url).append(" -> ").append(text));
    };

    if (!r) {
        const cachestore::error& e = r.error();
        FUZZ_CHECK_MSG(e.code == cachestore::errc::invalid_argument || e.code == cachestore::errc::misconfigured,
                       e.to_string());
        check_hidden(e.to_string());
        return 0;
    }
    const ex::store_spec& spec = *r;
    check_hidden(ex::describe(spec));
    FUZZ_CHECK_MSG(hidden[2].empty(), url); // user info is refused
    if (const auto* t = std::get_if<ex::tiered_spec>(&spec)) {
        const std::size_t bar = url.find('|');
        FUZZ_CHECK_MSG(bar != std::string::npos && url.find('|', bar + 1) == std::string::npos, url);
        FUZZ_CHECK_MSG(std::holds_alternative<ex::memory_spec>(t->near) || std::holds_alternative<ex::posix_spec>(t->near),
                       url);
        FUZZ_CHECK_MSG(std::holds_alternative<ex::posix_spec>(t->far) || std::holds_alternative<ex::s3_spec>(t->far), url);
        const auto* pn = std::get_if<ex::posix_spec>(&t->near);
        const auto* pf = std::get_if<ex::posix_spec>(&t->far);
        if (pn != nullptr && pf != nullptr) FUZZ_CHECK_MSG(ex::url_detail::root_of(pn->root) != ex::url_detail::root_of(pf->root), url);
        if (pn != nullptr) FUZZ_CHECK_MSG(pn->root.starts_with('/'), pn->root);
        check_tier(t->far, url.substr(bar + 1));
        return 0;
    }
    check_tier(spec, url);
    return 0;
}
