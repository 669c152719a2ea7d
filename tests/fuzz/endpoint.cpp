// Fuzz target: the endpoint parser and its redaction (s3/config.hpp:
// parse_endpoint, validate, describe, redact_endpoint).
//
// Input: line 1 is the endpoint; an optional line 2 is a second part: the
// endpoint is then line1 + SECRET + line2, so that the secret sits wherever
// the fuzzer puts it.
//
// Invariants:
//  - a parsed endpoint has scheme http or https, a non-empty host without
//    '@', '/', '%', whitespace or control characters, a port in 1..65535 and
//    default_port exactly when the port is the scheme's default; parsing its
//    origin() again gives the same parts;
//  - whenever the secret lies inside user info (between "://" and the last
//    '@'), neither parse_endpoint's nor validate's message nor describe()
//    contains it, and redact_endpoint() removes it;
//  - the endpoint is refused when it has user info.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cachestore/s3/config.hpp"
#include "fuzz_support.hpp"

namespace s3 = cachestore::s3;

namespace {

constexpr std::string_view secret = "pA55w0rdZq";

s3::config base(std::string endpoint) {
    s3::config c;
    c.endpoint = std::move(endpoint);
    c.bucket = "bucket";
    c.creds = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", ""};
    return c;
}

void check_parts(const s3::endpoint_parts& p) {
    FUZZ_CHECK(p.scheme == "http" || p.scheme == "https");
    FUZZ_CHECK(!p.host.empty());
    for (const char ch : p.host) {
        const auto u = static_cast<unsigned char>(ch);
        FUZZ_CHECK_MSG(u > 0x20 && u != 0x7f && ch != '@' && ch != '/' && ch != '%', p.host);
    }
    FUZZ_CHECK(p.port >= 1 && p.port <= 65535);
    FUZZ_CHECK(p.default_port == (p.port == (p.scheme == "https" ? 443 : 80)));
    const auto again = s3::parse_endpoint(base(p.origin()));
    FUZZ_CHECK_MSG(again.has_value(), p.origin());
    FUZZ_CHECK_MSG(*again == p, p.origin());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in = fuzz::as_view(data, size);
    const auto l = fuzz::lines(in);
    std::string ep = l.empty() ? std::string() : l[0];
    // The secret is inserted once; an input that holds it already proves nothing.
    const bool with_secret = l.size() >= 2 && (l[0] + "\n" + l[1]).find(secret) == std::string::npos;
    std::size_t secret_at = std::string::npos;
    if (with_secret) {
        secret_at = ep.size();
        ep += secret;
        ep += l[1];
    }
    const s3::config c = base(ep);

    const auto p = s3::parse_endpoint(c);
    const auto v = s3::validate(c);
    if (p) {
        check_parts(*p);
    } else {
        FUZZ_CHECK(p.error().code == cachestore::errc::misconfigured);
        FUZZ_CHECK(!v.has_value());
    }
    const std::string redacted = s3::detail::redact_endpoint(ep);

    // Is the secret inside the user info (between "://" and the last '@')?
    if (with_secret) {
        const std::size_t scheme_end = ep.find("://");
        const std::size_t start = scheme_end == std::string::npos ? 0 : scheme_end + 3;
        const std::size_t at = ep.rfind('@');
        const bool in_userinfo = at != std::string::npos && secret_at >= start && secret_at + secret.size() <= at;
        if (in_userinfo) {
            FUZZ_CHECK_MSG(!p.has_value(), ep); // user info is refused
            FUZZ_CHECK_MSG(redacted.find(secret) == std::string::npos, redacted);
            FUZZ_CHECK_MSG(p.error().to_string().find(secret) == std::string::npos, p.error().to_string());
            FUZZ_CHECK_MSG(v.error().to_string().find(secret) == std::string::npos, v.error().to_string());
            FUZZ_CHECK_MSG(s3::describe(c).find(secret) == std::string::npos, s3::describe(c));
        }
    }
    const std::string d = s3::describe(c);
    for (const char ch : d) FUZZ_CHECK(static_cast<unsigned char>(ch) >= 0x20 && ch != 0x7f);
    return 0;
}
