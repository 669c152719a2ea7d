// cachestore/s3/sigv4_canonical.hpp - the SigV4 canonical request with S3's
// rules: URI encoding (never normalised), canonical query and headers. See
// sigv4.hpp for the signer that hashes and signs it.
#pragma once

#include "cachestore/s3/credentials.hpp"
#include "cachestore/s3/detail/crypto.hpp"

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

inline constexpr std::string_view algorithm = "AWS4-HMAC-SHA256";
inline constexpr std::string_view chunk_algorithm = "AWS4-HMAC-SHA256-PAYLOAD";
inline constexpr std::string_view unsigned_payload = "UNSIGNED-PAYLOAD";
inline constexpr std::string_view streaming_payload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// Hex SHA-256 of the empty string (the payload hash of a request with no body).
inline constexpr std::string_view empty_payload_sha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// ---------------------------------------------------------------------------
// URI encoding
// ---------------------------------------------------------------------------

namespace detail {

inline constexpr std::array<bool, 256> unreserved_table = [] {
    std::array<bool, 256> t{};
    for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (char c : {'-', '_', '.', '~'}) t[static_cast<unsigned char>(c)] = true;
    return t;
}();

[[nodiscard]] constexpr bool kept(unsigned char c, bool encode_slash) noexcept {
    return unreserved_table[c] || (c == '/' && !encode_slash);
}

} // namespace detail

/// Appends the S3 URI encoding of `s` to `out`: every byte other than
/// `A-Za-z0-9-_.~` (and `/` when `encode_slash` is false) becomes `%XX` with
/// uppercase hex. Bytes are encoded one by one (UTF-8 stays UTF-8), nothing is
/// normalised and `%` itself is encoded, so the input is the raw, unencoded
/// string.
inline void uri_encode_append(std::string& out, std::string_view s, bool encode_slash) {
    std::size_t n = 0;
    for (const char ch : s) n += detail::kept(static_cast<unsigned char>(ch), encode_slash) ? 1u : 3u;
    const std::size_t at = out.size();
    out.resize(at + n);
    char* p = out.data() + at;
    if (n == s.size()) {
        if (n != 0) std::memcpy(p, s.data(), n);
        return;
    }
    constexpr char hex[] = "0123456789ABCDEF";
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (detail::kept(c, encode_slash)) {
            *p++ = ch;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0x0f];
        }
    }
}

/// The S3 URI encoding of `s` (see uri_encode_append).
[[nodiscard]] inline std::string uri_encode(std::string_view s, bool encode_slash) {
    std::string out;
    uri_encode_append(out, s, encode_slash);
    return out;
}

// ---------------------------------------------------------------------------
// Name/value lists
// ---------------------------------------------------------------------------

/// A non-owning view of a contiguous list of name/value pairs, built
/// implicitly from a std::vector (or array, or span) of
/// std::pair<std::string, std::string> or of
/// std::pair<std::string_view, std::string_view>. Like std::span, it must not
/// outlive the list it views.
class pairs_view {
public:
    using owned_pair = std::pair<std::string, std::string>;
    using view_pair = std::pair<std::string_view, std::string_view>;

    constexpr pairs_view() noexcept = default;
    constexpr pairs_view(std::span<const owned_pair> s) noexcept
        : data_(s.data()), size_(s.size()), owned_(true) {}
    constexpr pairs_view(std::span<const view_pair> s) noexcept
        : data_(s.data()), size_(s.size()), owned_(false) {}

    template <class R>
        requires std::ranges::contiguous_range<const R&> && std::ranges::sized_range<const R&> &&
                 (std::same_as<std::ranges::range_value_t<const R&>, owned_pair> ||
                  std::same_as<std::ranges::range_value_t<const R&>, view_pair>)
    constexpr pairs_view(const R& r) noexcept // NOLINT(google-explicit-constructor)
        : pairs_view(std::span(std::ranges::data(r), std::ranges::size(r))) {}

    [[nodiscard]] constexpr std::size_t size() const noexcept { return size_; }
    [[nodiscard]] constexpr bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] view_pair operator[](std::size_t i) const noexcept {
        if (owned_) {
            const auto& p = static_cast<const owned_pair*>(data_)[i];
            return {p.first, p.second};
        }
        return static_cast<const view_pair*>(data_)[i];
    }

private:
    const void* data_ = nullptr;
    std::size_t size_ = 0;
    bool owned_ = true;
};

/// What a signature covers. Every member is a view: keep the underlying
/// strings and lists alive while signing.
struct request {
    std::string_view method; ///< "GET", "PUT", ... (as sent; not case-folded)
    /// The path, ALREADY encoded with uri_encode(raw_path, false); the same
    /// string goes into the URL. Empty means "/".
    std::string_view canonical_uri;
    /// Raw (unencoded) query parameters; a value may be empty ("?lifecycle" is
    /// {"lifecycle", ""}). Order does not matter.
    pairs_view query;
    /// Raw headers to sign, names in any case. Must include host (with :port
    /// when not the scheme's default) and x-amz-date.
    pairs_view headers;
    /// Hex SHA-256 of the body, unsigned_payload or streaming_payload. It is
    /// also expected as the value of an x-amz-content-sha256 header (S3).
    std::string_view payload_hash;
};

// ---------------------------------------------------------------------------
// Canonical request
// ---------------------------------------------------------------------------

namespace detail {

struct span_ref {
    std::size_t off;
    std::size_t len;
};

struct query_entry {
    span_ref name;
    span_ref value;
};

struct header_entry {
    span_ref name; ///< lowercased copy in scratch::names
    std::size_t index; ///< position in request::headers (arrival order)
};

/// Per-thread scratch buffers, so that steady-state signing reuses capacity
/// instead of allocating.
struct scratch {
    std::string query_buf;
    std::vector<query_entry> query;
    std::string names;
    std::vector<header_entry> headers;
    std::string canonical;
    std::string to_sign;
};

[[nodiscard]] inline scratch& thread_scratch() {
    thread_local scratch s;
    return s;
}

[[nodiscard]] inline std::string_view view(const std::string& buf, span_ref r) noexcept {
    return {buf.data() + r.off, r.len};
}

/// Appends the canonical query string of `q` to `out`, using `buf`/`idx` as
/// scratch space.
inline void append_canonical_query(std::string& out, pairs_view q, std::string& buf,
                                   std::vector<query_entry>& idx) {
    buf.clear();
    idx.clear();
    if (q.empty()) return;
    idx.reserve(q.size());
    for (std::size_t i = 0; i < q.size(); ++i) {
        const auto [name, value] = q[i];
        query_entry e{};
        e.name.off = buf.size();
        uri_encode_append(buf, name, true);
        e.name.len = buf.size() - e.name.off;
        e.value.off = buf.size();
        uri_encode_append(buf, value, true);
        e.value.len = buf.size() - e.value.off;
        idx.push_back(e);
    }
    // Byte-wise order of the encoded name, then of the encoded value.
    std::sort(idx.begin(), idx.end(), [&buf](const query_entry& a, const query_entry& b) {
        if (const int c = view(buf, a.name).compare(view(buf, b.name)); c != 0) return c < 0;
        return view(buf, a.value) < view(buf, b.value);
    });
    bool first = true;
    for (const auto& e : idx) {
        if (!first) out += '&';
        first = false;
        out.append(view(buf, e.name));
        out += '=';
        out.append(view(buf, e.value));
    }
}

[[nodiscard]] constexpr bool is_blank(char c) noexcept { return c == ' ' || c == '\t'; }

/// Appends `v` with leading/trailing spaces and tabs removed and every inner
/// run of them replaced by one space.
inline void append_trimmed(std::string& out, std::string_view v) {
    std::size_t b = 0, e = v.size();
    while (b < e && is_blank(v[b])) ++b;
    while (e > b && is_blank(v[e - 1])) --e;
    while (b < e) {
        std::size_t r = b;
        while (r < e && !is_blank(v[r])) ++r;
        out.append(v.data() + b, r - b);
        if (r == e) break;
        out += ' ';
        while (is_blank(v[r])) ++r; // r < e: v[e-1] is not blank
        b = r;
    }
}

/// Which headers a request carries, as far as sign() checks.
struct header_presence {
    bool host = false;
    bool amz_date = false;
    std::string_view amz_date_value;
    bool security_token = false;
};

/// Appends the canonical request to `out`; returns where the signed-headers
/// line lies within `out`.
inline span_ref append_canonical_request(std::string& out, const request& r, scratch& s,
                                         header_presence* presence = nullptr) {
    out.append(r.method);
    out += '\n';
    out.append(r.canonical_uri.empty() ? std::string_view("/") : r.canonical_uri);
    out += '\n';
    append_canonical_query(out, r.query, s.query_buf, s.query);
    out += '\n';

    // Lowercase the header names into one buffer, then sort an index by
    // (name, arrival position): equal names keep the order they came in.
    s.names.clear();
    s.headers.clear();
    s.headers.reserve(r.headers.size());
    for (std::size_t i = 0; i < r.headers.size(); ++i) {
        const std::string_view name = r.headers[i].first;
        header_entry e{{s.names.size(), name.size()}, i};
        for (char c : name)
            s.names += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        s.headers.push_back(e);
    }
    std::sort(s.headers.begin(), s.headers.end(),
              [&s](const header_entry& a, const header_entry& b) {
                  if (const int c = view(s.names, a.name).compare(view(s.names, b.name)); c != 0)
                      return c < 0;
                  return a.index < b.index;
              });

    for (std::size_t i = 0; i < s.headers.size(); ++i) {
        const std::string_view name = view(s.names, s.headers[i].name);
        const std::string_view value = r.headers[s.headers[i].index].second;
        const bool continues = i > 0 && name == view(s.names, s.headers[i - 1].name);
        if (continues) {
            out += ',';
        } else {
            if (i > 0) out += '\n';
            out.append(name);
            out += ':';
        }
        append_trimmed(out, value);
        if (presence != nullptr && !continues) {
            if (name == "host") {
                presence->host = true;
            } else if (name == "x-amz-date") {
                presence->amz_date = true;
                presence->amz_date_value = value;
            } else if (name == "x-amz-security-token") {
                presence->security_token = true;
            }
        }
    }
    if (!s.headers.empty()) out += '\n';
    out += '\n';

    const std::size_t signed_at = out.size();
    for (std::size_t i = 0; i < s.headers.size(); ++i) {
        const std::string_view name = view(s.names, s.headers[i].name);
        if (i > 0 && name == view(s.names, s.headers[i - 1].name)) continue;
        if (i > 0) out += ';';
        out.append(name);
    }
    const span_ref signed_headers{signed_at, out.size() - signed_at};
    out += '\n';
    out.append(r.payload_hash);
    return signed_headers;
}

} // namespace detail

/// The canonical query string: names and values URI-encoded (encode_slash =
/// true), sorted by encoded name then encoded value, joined as `a=b&c=`. Use
/// it verbatim as the URL's query string.
[[nodiscard]] inline std::string canonical_query(pairs_view query) {
    std::string out;
    auto& s = detail::thread_scratch();
    detail::append_canonical_query(out, query, s.query_buf, s.query);
    return out;
}

/// The SigV4 canonical request of `r`:
/// method, canonical URI, canonical query, canonical headers, a blank line,
/// signed headers and the payload hash, separated by '\n'.
[[nodiscard]] inline std::string canonical_request(const request& r) {
    std::string out;
    detail::append_canonical_request(out, r, detail::thread_scratch());
    return out;
}

} // namespace cachestore::s3::sigv4
