// cachestore/s3/detail/sign_request.hpp - a request's URL, SigV4 signature
// and header lines, built in reusable buffers (request_buffers.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstring>
#include <exception>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <curl/curl.h>

#include "cachestore/error.hpp"
#include "cachestore/s3/credentials.hpp"
#include "cachestore/s3/detail/request.hpp"
#include "cachestore/s3/detail/request_buffers.hpp"
#include "cachestore/s3/detail/state.hpp"
#include "cachestore/s3/sigv4.hpp"

namespace cachestore::s3::detail {

/// Builds the URL, signs the request and lays out its header lines, all in
/// the reusable buffers `c`: in a steady state this allocates nothing.
inline result<> sign_into(const store_state& st, const credentials& creds, const request_spec& spec, request_buffers& c) {
    c.amz_date = sigv4::amz_date_chars(std::chrono::system_clock::now());
    const std::string_view amz_date(c.amz_date.data(), c.amz_date.size());
    try {
        // URL = url_base + canonical URI [+ '?' + canonical query]; the
        // canonical URI is signed as the very bytes sent.
        std::string& url = c.url;
        url.assign(st.url_base);
        const std::size_t uri_at = url.size();
        url += st.path_base;
        url += '/';
        sigv4::uri_encode_append(url, spec.object_key, false);
        const std::size_t uri_len = url.size() - uri_at;
        if (!spec.query.empty()) {
            url += '?';
            url += sigv4::canonical_query(spec.query);
        }
        auto& h = c.signed_headers;
        h.clear();
        h.emplace_back("host", st.host_header);
        h.emplace_back("x-amz-date", amz_date);
        h.emplace_back("x-amz-content-sha256", spec.payload_hash);
        if (!creds.session_token.empty()) h.emplace_back("x-amz-security-token", creds.session_token);
        for (const auto& kv : spec.headers) h.emplace_back(kv.first, kv.second);
        sigv4::request req;
        req.method = spec.method;
        req.canonical_uri = std::string_view(url).substr(uri_at, uri_len);
        req.query = spec.query;
        req.headers = std::span<const std::pair<std::string_view, std::string_view>>(h);
        req.payload_hash = spec.payload_hash;
        sigv4::signer::signed_result sig{std::move(c.authorization), std::move(c.signature)};
        st.signer.sign_into(sig, creds, req, amz_date);
        c.authorization = std::move(sig.authorization);
        c.signature = std::move(sig.signature);

        // Header lines, NUL-terminated, one after the other; then a
        // curl_slist over them (curl only reads the list).
        std::string& t = c.header_text;
        t.clear();
        std::size_t lines = 0;
        auto line = [&](std::string_view name, std::string_view sep, std::string_view value) {
            t.append(name);
            t.append(sep);
            t.append(value);
            t += '\0';
            ++lines;
        };
        // curl drops "Name:" with no value; "Name;" sends it empty, as signed.
        for (const auto& [name, value] : h) value.empty() ? line(name, ";", {}) : line(name, ": ", value);
        line("authorization", ": ", c.authorization);
        // Every byte here costs ~100 instructions in libcurl's header
        // formatting, so only what matters: no "Expect: 100-continue"
        // round trip before a body (curl adds none to bodiless requests),
        // and a User-Agent for the server's logs. No Accept-Encoding: with
        // none, servers do not compress (S3, RGW and nginx all need it).
        if (spec.body.size >= 0) line("Expect:", {}, {});
        line("User-Agent: cachestore/0.1", {}, {});
        c.header_nodes.resize(lines);
        char* p = t.data();
        for (std::size_t i = 0; i < lines; ++i) {
            c.header_nodes[i].data = p;
            c.header_nodes[i].next = i + 1 < lines ? &c.header_nodes[i + 1] : nullptr;
            p += std::strlen(p) + 1;
        }
        h.clear(); // its views point at this frame's date and the caller's spec
    } catch (const std::bad_alloc&) {
        return fail(errc::io_error, spec.op, spec.error_path, "out of memory building the request");
    } catch (const std::exception& e) { // OpenSSL failure or a malformed header: never a secret in what()
        return fail(errc::io_error, spec.op, spec.error_path, std::string("signing failed: ") + e.what());
    }
    return {};
}

} // namespace cachestore::s3::detail
