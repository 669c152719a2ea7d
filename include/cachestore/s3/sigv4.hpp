// cachestore/s3/sigv4.hpp - AWS Signature Version 4 (Authorization header
// form) with S3's rules, plus the aws-chunked streaming chunk signatures.
//
// S3 differs from the generic SigV4 rules in one way that matters here: the
// path is never normalised (no removal of "." / ".." segments, no merging of
// "//") and is URI-encoded exactly once. The caller encodes the raw object key
// with uri_encode(path, false) and uses the very same string in the URL and in
// request::canonical_uri; likewise canonical_query() is the URL's query
// string. URL and signature therefore cannot disagree.
//
// The canonical request contains exactly the headers the caller passes: pass
// the headers you send and want signed (at least host and x-amz-date, and
// x-amz-security-token with temporary credentials). Header values are trimmed
// and runs of spaces/tabs inside them collapsed to one space; repeated names
// are joined with ',' in the order given.
//
// Thread safety: every free function is reentrant. A signer may be used by any
// number of threads at once; its signing-key cache is mutex-protected and
// keyed by (access key id, secret, date) -- region and service are fixed per
// signer -- so a changed secret is never signed with a stale key.
//
// Errors: malformed arguments (a bad amz_date, a missing host/x-amz-date
// header, a session token without its header) throw std::invalid_argument;
#pragma once

#include "cachestore/s3/credentials.hpp"
#include "cachestore/s3/detail/crypto.hpp"
#include "cachestore/s3/detail/signing_key_cache.hpp"
#include "cachestore/s3/sigv4_canonical.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cachestore::s3::sigv4 {

// ---------------------------------------------------------------------------
// Dates, scope, string to sign, signing key
// ---------------------------------------------------------------------------

/// `tp` as `YYYYMMDDTHHMMSSZ` (UTC), without a trailing NUL.
[[nodiscard]] inline std::array<char, 16> amz_date_chars(std::chrono::system_clock::time_point tp) {
    using namespace std::chrono;
    const auto secs = floor<seconds>(tp);
    const auto day = floor<days>(secs);
    const year_month_day ymd{day};
    const hh_mm_ss<seconds> hms{secs - day};
    std::array<char, 16> out{};
    auto put = [&out](std::size_t at, unsigned v, std::size_t width) {
        for (std::size_t i = width; i-- > 0; v /= 10) out[at + i] = static_cast<char>('0' + v % 10);
    };
    put(0, static_cast<unsigned>(static_cast<int>(ymd.year())), 4);
    put(4, static_cast<unsigned>(ymd.month()), 2);
    put(6, static_cast<unsigned>(ymd.day()), 2);
    out[8] = 'T';
    put(9, static_cast<unsigned>(hms.hours().count()), 2);
    put(11, static_cast<unsigned>(hms.minutes().count()), 2);
    put(13, static_cast<unsigned>(hms.seconds().count()), 2);
    out[15] = 'Z';
    return out;
}

/// `tp` as `YYYYMMDDTHHMMSSZ` (UTC): the x-amz-date value.
[[nodiscard]] inline std::string format_amz_date(std::chrono::system_clock::time_point tp) {
    const auto c = amz_date_chars(tp);
    return {c.data(), c.size()};
}

namespace detail {

/// Throws std::invalid_argument unless `d` has the form YYYYMMDDTHHMMSSZ.
inline void check_amz_date(std::string_view d) {
    bool ok = d.size() == 16 && d[8] == 'T' && d[15] == 'Z';
    for (std::size_t i = 0; ok && i < 15; ++i)
        if (i != 8) ok = d[i] >= '0' && d[i] <= '9';
    if (!ok) throw std::invalid_argument("sigv4: amz_date must have the form YYYYMMDDTHHMMSSZ");
}

} // namespace detail

/// The credential scope `YYYYMMDD/region/service/aws4_request` for an
/// amz_date (`YYYYMMDDTHHMMSSZ`).
[[nodiscard]] inline std::string credential_scope(std::string_view amz_date,
                                                  std::string_view region,
                                                  std::string_view service) {
    detail::check_amz_date(amz_date);
    std::string s;
    s.reserve(8 + region.size() + service.size() + 15);
    s.append(amz_date.substr(0, 8));
    s += '/';
    s.append(region);
    s += '/';
    s.append(service);
    s += "/aws4_request";
    return s;
}

/// The string to sign: `AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256 of
/// the canonical request>`.
[[nodiscard]] inline std::string string_to_sign(std::string_view amz_date, std::string_view scope,
                                                std::string_view canonical_request) {
    std::string s;
    s.reserve(algorithm.size() + amz_date.size() + scope.size() + 3 + 64);
    s.append(algorithm);
    s += '\n';
    s.append(amz_date);
    s += '\n';
    s.append(scope);
    s += '\n';
    const auto h = cachestore::s3::detail::sha256(canonical_request);
    const std::size_t at = s.size();
    s.resize(at + 64);
    cachestore::s3::detail::hex_lower(h.data(), h.size(), s.data() + at);
    return s;
}

/// The SigV4 signing key kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret,
/// date8), region), service), "aws4_request"). `date8` is `YYYYMMDD`.
[[nodiscard]] inline cachestore::s3::detail::digest32 derive_signing_key(std::string_view secret,
                                                                         std::string_view date8,
                                                                         std::string_view region,
                                                                         std::string_view service) {
    namespace c = cachestore::s3::detail;
    c::digest32 k;
    c::cleanse_guard guard_k(k.data(), k.size());
    {
        // "AWS4" + secret, on the stack when it fits, cleansed either way.
        constexpr std::size_t small = 128;
        if (secret.size() + 4 <= small) {
            char buf[small];
            c::cleanse_guard g(buf, sizeof buf);
            // A key of explicit length, not a C string: no terminating NUL.
            std::copy_n("AWS4", 4, buf);
            std::copy_n(secret.data(), secret.size(), buf + 4);
            c::hmac_sha256_into(buf, secret.size() + 4, date8.data(), date8.size(), k.data());
        } else {
            std::string buf;
            buf.reserve(secret.size() + 4);
            buf += "AWS4";
            buf.append(secret);
            c::cleanse_guard g(buf.data(), buf.size());
            c::hmac_sha256_into(buf.data(), buf.size(), date8.data(), date8.size(), k.data());
        }
    }
    c::hmac_sha256_into(k.data(), k.size(), region.data(), region.size(), k.data());
    c::hmac_sha256_into(k.data(), k.size(), service.data(), service.size(), k.data());
    c::hmac_sha256_into(k.data(), k.size(), "aws4_request", 12, k.data());
    c::digest32 out = k; // the guard cleanses k; the caller owns (and should cleanse) out
    return out;
}

// ---------------------------------------------------------------------------
// Signer
// ---------------------------------------------------------------------------

/// Whether a signer caches derived signing keys.
enum class key_cache_mode : std::uint8_t {
    cached,           ///< derive once per (access key id, secret, date); the default
    derive_each_time, ///< derive on every call (a baseline for benchmarks)
};

/// Signs S3 requests for one region and service. Copying gives a signer with
/// the same settings and an empty cache; a moved-from signer may only be
/// assigned to or destroyed.
class signer {
public:
    struct signed_result {
        std::string authorization; ///< the Authorization header value
        std::string signature;     ///< hex; the seed for aws-chunked chunk signatures
    };

    explicit signer(std::string region, std::string service = "s3",
                    key_cache_mode mode = key_cache_mode::cached)
        : region_(std::move(region)), service_(std::move(service)) {
        scope_suffix_.reserve(region_.size() + service_.size() + 15);
        scope_suffix_ += '/';
        scope_suffix_ += region_;
        scope_suffix_ += '/';
        scope_suffix_ += service_;
        scope_suffix_ += "/aws4_request";
        if (mode == key_cache_mode::cached) cache_ = std::make_unique<detail::signing_key_cache>();
    }
    signer(const signer& o) : signer(o.region_, o.service_, o.mode()) {}
    signer& operator=(const signer& o) {
        if (this != &o) *this = signer(o);
        return *this;
    }
    signer(signer&&) noexcept = default;
    signer& operator=(signer&&) noexcept = default;
    ~signer() = default;

    [[nodiscard]] const std::string& region() const noexcept { return region_; }
    [[nodiscard]] const std::string& service() const noexcept { return service_; }
    [[nodiscard]] key_cache_mode mode() const noexcept {
        return cache_ ? key_cache_mode::cached : key_cache_mode::derive_each_time;
    }

    /// `YYYYMMDD/region/service/aws4_request` for an amz_date.
    [[nodiscard]] std::string scope(std::string_view amz_date) const {
        detail::check_amz_date(amz_date);
        std::string s(amz_date.substr(0, 8));
        s += scope_suffix_;
        return s;
    }

    /// Signs `r` at `amz_date` (`YYYYMMDDTHHMMSSZ`, the x-amz-date value; its
    /// first 8 characters are the scope date).
    [[nodiscard]] signed_result sign(const credentials& c, const request& r,
                                     std::string_view amz_date) const {
        signed_result out;
        sign_into(out, c, r, amz_date);
        return out;
    }

    /// As sign(), writing into `out` and reusing its strings' capacity: with a
    /// cached key and warmed-up buffers this allocates nothing in the library
    /// (OpenSSL 3.0 still allocates one provider context per digest init).
    void sign_into(signed_result& out, const credentials& c, const request& r,
                   std::string_view amz_date) const {
        detail::check_amz_date(amz_date);
        auto& s = detail::thread_scratch();

        s.canonical.clear();
        detail::header_presence presence;
        const detail::span_ref sh = detail::append_canonical_request(s.canonical, r, s, &presence);
        if (!presence.host) throw std::invalid_argument("sigv4: the request has no host header");
        if (!presence.amz_date) throw std::invalid_argument("sigv4: the request has no x-amz-date header");
        if (trimmed(presence.amz_date_value) != amz_date)
            throw std::invalid_argument("sigv4: the x-amz-date header differs from amz_date");
        if (!c.session_token.empty() && !presence.security_token)
            throw std::invalid_argument(
                "sigv4: the credentials have a session token but the request has no "
                "x-amz-security-token header");

        const std::string_view date8 = amz_date.substr(0, 8);
        string_to_sign_head(s.to_sign, algorithm, amz_date);
        append_sha256_hex(s.to_sign, s.canonical);

        char sig[64];
        sign_string(c, date8, s.to_sign, sig);
        out.signature.assign(sig, sizeof sig);

        auto& a = out.authorization;
        a.clear();
        a.reserve(algorithm.size() + 12 + c.access_key_id.size() + 1 + 8 + scope_suffix_.size() +
                  16 + sh.len + 12 + sizeof sig);
        a.append(algorithm);
        a.append(" Credential=");
        a.append(c.access_key_id);
        a += '/';
        a.append(date8);
        a.append(scope_suffix_);
        a.append(", SignedHeaders=");
        a.append(detail::view(s.canonical, sh));
        a.append(", Signature=");
        a.append(sig, sizeof sig);
    }

    /// `<algo>\n<amz_date>\n<date><scope suffix>\n` into `out`: the head both
    /// string-to-sign forms (request and aws-chunked chunk) share.
    void string_to_sign_head(std::string& out, std::string_view algo, std::string_view amz_date) const {
        out.clear();
        out.append(algo);
        out += '\n';
        out.append(amz_date);
        out += '\n';
        out.append(amz_date.substr(0, 8));
        out.append(scope_suffix_);
        out += '\n';
    }

    /// The signature of one aws-chunked chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD):
    /// HMAC over `AWS4-HMAC-SHA256-PAYLOAD\n<amz_date>\n<scope>\n<previous
    /// signature>\n<sha256 of "">\n<hex sha256 of the chunk data>`. The first
    /// chunk's previous signature is the seed (the request's) signature; the
    /// final, empty chunk uses empty_payload_sha256.
    [[nodiscard]] std::string chunk_signature(const credentials& c, std::string_view amz_date,
                                              std::string_view previous_signature,
                                              std::string_view chunk_data_sha256_hex) const {
        detail::check_amz_date(amz_date);
        auto& s = detail::thread_scratch();
        const std::string_view date8 = amz_date.substr(0, 8);
        string_to_sign_head(s.to_sign, chunk_algorithm, amz_date);
        s.to_sign.append(previous_signature);
        s.to_sign += '\n';
        s.to_sign.append(empty_payload_sha256);
        s.to_sign += '\n';
        s.to_sign.append(chunk_data_sha256_hex);
        std::string out(64, '\0');
        sign_string(c, date8, s.to_sign, out.data());
        return out;
    }

    /// HMAC-SHA256 of `to_sign` under the signing key for (c, date8), as 64
    /// lowercase hex chars written to `out_hex`. `date8` is `YYYYMMDD`.
    void sign_string(const credentials& c, std::string_view date8, std::string_view to_sign,
                     char* out_hex) const {
        namespace cd = cachestore::s3::detail;
        bool ok = date8.size() == 8;
        for (std::size_t i = 0; ok && i < 8; ++i) ok = date8[i] >= '0' && date8[i] <= '9';
        if (!ok) throw std::invalid_argument("sigv4: the scope date must have the form YYYYMMDD");
        cd::digest32 key;
        cd::cleanse_guard guard(key.data(), key.size());
        signing_key(c, date8, key);
        cd::digest32 mac;
        cd::hmac_sha256_into(key.data(), key.size(), to_sign.data(), to_sign.size(), mac.data());
        cd::hex_lower(mac.data(), mac.size(), out_hex);
    }

private:
    static std::string_view trimmed(std::string_view v) noexcept {
        while (!v.empty() && detail::is_blank(v.front())) v.remove_prefix(1);
        while (!v.empty() && detail::is_blank(v.back())) v.remove_suffix(1);
        return v;
    }

    static void append_sha256_hex(std::string& out, std::string_view data) {
        cachestore::s3::detail::digest32 h;
        cachestore::s3::detail::sha256_into(data.data(), data.size(), h.data());
        const std::size_t at = out.size();
        out.resize(at + 64);
        cachestore::s3::detail::hex_lower(h.data(), h.size(), out.data() + at);
    }

    void signing_key(const credentials& c, std::string_view date8,
                     cachestore::s3::detail::digest32& out) const {
        if (cache_ && cache_->find(c.access_key_id, c.secret_access_key, date8, out)) return;
        out = derive_signing_key(c.secret_access_key, date8, region_, service_);
        if (cache_) cache_->insert(c.access_key_id, c.secret_access_key, date8, out);
    }

    std::string region_;
    std::string service_;
    std::string scope_suffix_; ///< "/region/service/aws4_request"
    std::unique_ptr<detail::signing_key_cache> cache_;
};

/// Signs without any cache: derives the signing key on every call. The
/// benchmark baseline; prefer a long-lived signer.
[[nodiscard]] inline signer::signed_result sign_uncached(const credentials& c, const request& r,
                                                         std::string_view amz_date,
                                                         std::string_view region,
                                                         std::string_view service = "s3") {
    return signer(std::string(region), std::string(service), key_cache_mode::derive_each_time)
        .sign(c, r, amz_date);
}

} // namespace cachestore::s3::sigv4
