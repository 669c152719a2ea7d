// Fuzz target: the SigV4 URI encoder and canonical request builder
// (s3/sigv4.hpp).
//
// Input (see fuzz_support.hpp for the escapes), one field per line:
//   METHOD
//   RAW PATH (unencoded object key path)
//   PAYLOAD HASH
//   ?name=value      a query parameter (no '=': empty value)
//   name:value       a header
//
// Invariants:
//  - uri_encode(s, false) holds only A-Za-z0-9-_.~, '/' and %XX (uppercase
//    hex), never encodes an unreserved byte, and percent-decoding it gives s;
//    uri_encode(s, true) is the same with every '/' as %2F;
//  - canonical_query is independent of the order of the pairs and equals a
//    straightforward reference (encode, sort by name then value, join);
//  - canonical_request equals a straightforward reference built with a
//    std::map (lowercase names, values trimmed with inner blank runs
//    collapsed, repeated names joined with ',' in arrival order), for owned
//    and view pair lists alike, and does not change when headers are
//    reordered without reordering equal names;
//  - sign() with those headers plus host and x-amz-date succeeds, its
//    signature is 64 lowercase hex digits, its SignedHeaders are the
//    canonical request's, and it refuses a request without host.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cachestore/s3/sigv4.hpp"
#include "fuzz_support.hpp"

namespace sigv4 = cachestore::s3::sigv4;
using owned_pairs = std::vector<std::pair<std::string, std::string>>;
using view_pairs = std::vector<std::pair<std::string_view, std::string_view>>;

namespace {

bool unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '~';
}

std::string ref_encode(std::string_view s, bool encode_slash) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (unreserved(c) || (c == '/' && !encode_slash)) {
            out += ch;
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

/// Checks the shape of an encoding and returns it decoded.
std::string check_and_decode(std::string_view e, bool encode_slash) {
    std::string out;
    for (std::size_t i = 0; i < e.size(); ++i) {
        const auto c = static_cast<unsigned char>(e[i]);
        if (c == '%') {
            FUZZ_CHECK(i + 2 < e.size());
            const char h1 = e[i + 1], h2 = e[i + 2];
            FUZZ_CHECK((h1 >= '0' && h1 <= '9') || (h1 >= 'A' && h1 <= 'F'));
            FUZZ_CHECK((h2 >= '0' && h2 <= '9') || (h2 >= 'A' && h2 <= 'F'));
            const auto v = static_cast<unsigned char>(fuzz::hex_digit(h1) * 16 + fuzz::hex_digit(h2));
            FUZZ_CHECK_MSG(!unreserved(v) && (encode_slash || v != '/'), e); // encoded only when it must be
            out += static_cast<char>(v);
            i += 2;
        } else {
            FUZZ_CHECK_MSG(unreserved(c) || (c == '/' && !encode_slash), e);
            out += static_cast<char>(c);
        }
    }
    return out;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

std::string trim_collapse(std::string_view v) {
    std::string out;
    bool pending = false;
    for (const char c : v) {
        if (c == ' ' || c == '\t') {
            pending = !out.empty();
            continue;
        }
        if (pending) out += ' ';
        pending = false;
        out += c;
    }
    return out;
}

std::string_view trim_blanks(std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return v;
}

std::string ref_query(const owned_pairs& q) {
    std::vector<std::pair<std::string, std::string>> enc;
    for (const auto& [n, v] : q) enc.emplace_back(ref_encode(n, true), ref_encode(v, true));
    std::sort(enc.begin(), enc.end());
    std::string out;
    for (const auto& [n, v] : enc) {
        if (!out.empty()) out += '&';
        out.append(n).append("=").append(v);
    }
    return out;
}

std::string ref_canonical(std::string_view method, std::string_view uri, const owned_pairs& q,
                          const owned_pairs& headers, std::string_view payload_hash, std::string* signed_out) {
    std::map<std::string, std::vector<std::string>> h;
    for (const auto& [n, v] : headers) h[lower(n)].push_back(trim_collapse(v));
    std::string out(method);
    out += '\n';
    out += uri.empty() ? std::string_view("/") : uri;
    out += '\n';
    out += ref_query(q);
    out += '\n';
    std::string signed_headers;
    bool first = true;
    for (const auto& [n, vs] : h) {
        out += n + ":";
        for (std::size_t i = 0; i < vs.size(); ++i) out += (i == 0 ? "" : ",") + vs[i];
        out += '\n';
        if (!first) signed_headers += ';';
        first = false;
        signed_headers += n;
    }
    out += '\n';
    out += signed_headers;
    out += '\n';
    out += payload_hash;
    if (signed_out != nullptr) *signed_out = signed_headers;
    return out;
}

view_pairs views(const owned_pairs& p) {
    view_pairs v;
    for (const auto& [a, b] : p) v.emplace_back(a, b);
    return v;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in = fuzz::as_view(data, size);

    // The encoder on the raw input.
    for (const bool slash : {false, true}) {
        const std::string e = sigv4::uri_encode(in, slash);
        FUZZ_CHECK(e == ref_encode(in, slash));
        FUZZ_CHECK(check_and_decode(e, slash) == in);
        std::string appended = "x";
        sigv4::uri_encode_append(appended, in, slash);
        FUZZ_CHECK(appended == "x" + e);
    }

    auto l = fuzz::lines(in);
    if (l.size() < 3) l.resize(3);
    const std::string& method = l[0];
    const std::string uri = sigv4::uri_encode(l[1], false);
    FUZZ_CHECK(check_and_decode(uri, false) == l[1]);
    const std::string& payload_hash = l[2];
    owned_pairs query, headers;
    for (std::size_t i = 3; i < l.size() && i < 64; ++i) {
        const std::string& f = l[i];
        if (!f.empty() && f[0] == '?') {
            const std::size_t eq = f.find('=');
            if (eq == std::string::npos) query.emplace_back(f.substr(1), "");
            else query.emplace_back(f.substr(1, eq - 1), f.substr(eq + 1));
        } else {
            const std::size_t colon = f.find(':');
            if (colon == std::string::npos) headers.emplace_back(f, "");
            else headers.emplace_back(f.substr(0, colon), f.substr(colon + 1));
        }
    }

    // Canonical query: reference, order independence, owned = view.
    const std::string cq = sigv4::canonical_query(query);
    FUZZ_CHECK_MSG(cq == ref_query(query), cq);
    owned_pairs rq(query.rbegin(), query.rend());
    FUZZ_CHECK(sigv4::canonical_query(rq) == cq);
    const view_pairs qv = views(query);
    FUZZ_CHECK(sigv4::canonical_query(qv) == cq);

    // Canonical request: reference, owned = view, stable reordering.
    const view_pairs hv = views(headers);
    sigv4::request r{method, uri, query, headers, payload_hash};
    const std::string cr = sigv4::canonical_request(r);
    std::string signed_headers;
    FUZZ_CHECK_MSG(cr == ref_canonical(method, uri, query, headers, payload_hash, &signed_headers), cr);
    const sigv4::request rv{method, uri, qv, hv, payload_hash};
    FUZZ_CHECK(sigv4::canonical_request(rv) == cr);
    owned_pairs sorted = headers;
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto& a, const auto& b) { return lower(a.first) > lower(b.first); });
    const sigv4::request rs{method, uri, rq, sorted, payload_hash};
    FUZZ_CHECK(sigv4::canonical_request(rs) == cr);

    // Signing: with host and x-amz-date added it succeeds; without host it refuses.
    owned_pairs with = headers;
    const bool has_host = std::any_of(headers.begin(), headers.end(), [](const auto& p) { return lower(p.first) == "host"; });
    const bool has_date = std::any_of(headers.begin(), headers.end(), [](const auto& p) { return lower(p.first) == "x-amz-date"; });
    const std::string amz_date = "20240102T030405Z";
    if (!has_host) with.emplace_back("Host", "bucket.example:9000");
    if (!has_date) with.emplace_back("X-Amz-Date", amz_date);
    const cachestore::s3::credentials creds{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
    const sigv4::signer signer("us-east-1");
    sigv4::request rw{method, uri, query, with, payload_hash};
    std::string want_signed;
    (void)ref_canonical(method, uri, query, with, payload_hash, &want_signed);
    // The signer requires the first x-amz-date header, trimmed, to equal amz_date.
    bool date_ok = !has_date;
    for (const auto& [n, v] : headers)
        if (lower(n) == "x-amz-date") {
            date_ok = trim_blanks(v) == amz_date;
            break;
        }
    try {
        const auto s = signer.sign(creds, rw, amz_date);
        FUZZ_CHECK(date_ok);
        FUZZ_CHECK(s.signature.size() == 64);
        FUZZ_CHECK(std::all_of(s.signature.begin(), s.signature.end(),
                               [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }));
        FUZZ_CHECK(s.authorization.find(", SignedHeaders=" + want_signed + ", Signature=" + s.signature) !=
                   std::string::npos);
        FUZZ_CHECK(signer.sign(creds, rw, amz_date).authorization == s.authorization); // cached key, same result
    } catch (const std::invalid_argument&) {
        FUZZ_CHECK(!date_ok);
    }
    if (!has_host) {
        owned_pairs no_host = headers;
        if (!has_date) no_host.emplace_back("x-amz-date", amz_date);
        bool threw = false;
        try {
            (void)signer.sign(creds, sigv4::request{method, uri, query, no_host, payload_hash}, amz_date);
        } catch (const std::invalid_argument&) {
            threw = true;
        }
        FUZZ_CHECK(threw);
    }
    return 0;
}
