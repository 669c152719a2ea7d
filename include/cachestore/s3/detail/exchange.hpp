// cachestore/s3/detail/exchange.hpp - sign, send, classify, retry: how one
// logical request becomes HTTP attempts and one result.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <curl/curl.h>

#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/s3/detail/classify.hpp"
#include "cachestore/s3/detail/error_xml.hpp"
#include "cachestore/s3/detail/request.hpp"
#include "cachestore/s3/detail/state.hpp"
#include "cachestore/s3/detail/transport.hpp"
#include "cachestore/s3/credentials_provider.hpp"
#include "cachestore/s3/sigv4.hpp"

namespace cachestore::s3::detail {

inline std::unexpected<error> fail_ctx(errc code, const request_spec& spec, const response& res, std::string message) {
    error e;
    e.code = code;
    e.op = spec.op;
    e.path = spec.error_path;
    e.http_status = static_cast<int>(res.status);
    e.request_id = res.request_id;
    e.message = std::move(message);
    return std::unexpected(std::move(e));
}

/// The error of one failed attempt, or success.
inline result<> outcome(const request_spec& spec, response& res, const error* refusal) {
    switch (res.reason) {
    case abort_reason::none: break;
    case abort_reason::cancelled: return fail_ctx(errc::cancelled, spec, res, "stop requested");
    case abort_reason::deadline: return fail_ctx(errc::deadline_exceeded, spec, res, "deadline exceeded");
    case abort_reason::sink_stopped: return fail_ctx(errc::cancelled, spec, res, "sink stopped the transfer");
    case abort_reason::source_failed: {
        error e = res.source_error;
        e.op = spec.op;
        e.path = spec.error_path;
        return std::unexpected(std::move(e));
    }
    case abort_reason::source_short:
        return fail_ctx(errc::invalid_argument, spec, res, "source ended before the declared size");
    case abort_reason::source_long:
        return fail_ctx(errc::invalid_argument, spec, res, "source yields more than the declared size");
    case abort_reason::bad_response:
        return fail_ctx(refusal != nullptr ? refusal->code : errc::protocol, spec, res,
                        refusal != nullptr ? refusal->message : "unexpected response");
    case abort_reason::body_too_long:
        return fail_ctx(errc::protocol, spec, res, "server sent more bytes than the range asked for");
    }
    // Every byte asked for arrived, within a Content-Range the sink accepted,
    // and only then did the transfer fail (a chunked body without its final
    // 0-chunk, a reset after the last data): the answer is complete. Retrying
    // would ask for an empty range.
    if (res.curl != CURLE_OK && res.is_2xx() && spec.sink.exact && spec.sink.write != nullptr && res.accepted &&
        spec.sink.limit > 0 && res.delivered == spec.sink.limit)
        return {};
    if (res.curl != CURLE_OK && res.status < 300) { // an HTTP error answer speaks for itself
        std::string msg = "transport: ";
        msg += curl_easy_strerror(res.curl);
        if (res.curl_message[0] != '\0') {
            msg += ": ";
            msg += res.curl_message;
        }
        errc code = classify_curl(res.curl);
        // Not HTTP on a kept-alive connection (stray bytes a server sent
        // after an earlier answer, e.g. a body after a HEAD): the
        // connection was out of step, the endpoint is fine. Retry on a new one.
        if (code == errc::misconfigured && res.reused) {
            code = errc::transient;
            msg += " (on a reused connection)";
        }
        return fail_ctx(code, spec, res, std::move(msg));
    }
    if (res.is_2xx()) {
        // A body that ended cleanly but early (close-delimited, or no body
        // at all) is a truncated answer like any other: retried, resumed.
        if (spec.sink.exact && spec.sink.write != nullptr) {
            if (!res.accepted && spec.sink.accept != nullptr && !spec.sink.accept(spec.sink.self, res))
                return fail_ctx(refusal != nullptr ? refusal->code : errc::protocol, spec, res,
                                refusal != nullptr ? refusal->message : "unexpected response");
            if (res.delivered < spec.sink.limit)
                return fail_ctx(errc::transient, spec, res,
                                "truncated body: received " + std::to_string(res.delivered) + " of " +
                                    std::to_string(spec.sink.limit) + " bytes");
        }
        return {};
    }
    const auto doc = parse_error_xml(res.error_body);
    errc code = classify_http(res.status, doc.code);
    // Only a (conditional) PUT can lose a commit; a 412 to anything else
    // answers a condition we never sent.
    if (code == errc::commit_lost && std::string_view(spec.method) != "PUT") code = errc::protocol;
    std::string msg = doc.message;
    if (msg.empty()) msg = "HTTP " + std::to_string(res.status) + (doc.code.empty() ? "" : " " + doc.code);
    if (doc.code == "NoSuchBucket" || (code == errc::misconfigured && doc.code.empty()))
        msg += " (check the bucket name, region and endpoint)";
    if (doc.code == "RequestTimeTooSkewed") msg += " (the local clock differs from the server's: sync it)";
    auto e = fail_ctx(code, spec, res, std::move(msg));
    e.error().s3_code = doc.code;
    if (!doc.request_id.empty()) e.error().request_id = doc.request_id;
    return e;
}

/// Builds the URL, signs the request and lays out its header lines, all in
/// `c`'s reusable buffers: in a steady state this allocates nothing.
inline result<> sign_into(const store_state& st, const credentials& creds, const request_spec& spec, connection& c) {
    const auto date = sigv4::amz_date_chars(std::chrono::system_clock::now());
    const std::string_view amz_date(date.data(), date.size());
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

/// One attempt: sign with `creds`, send on a pooled connection, classify.
inline result<> attempt_once(store_state& st, const credentials& creds, const context& ctx, const request_spec& spec,
                             response& res, const error* refusal) {
    res = response{};
    auto conn = st.pool.acquire();
    if (!conn->ok()) return fail_ctx(errc::io_error, spec, res, "could not create a libcurl handle");
    if (auto h = sign_into(st, creds, spec, *conn); !h) {
        st.pool.release(std::move(conn));
        return h;
    }
    http_request req;
    req.method = spec.method;
    req.url = conn->url.c_str();
    req.headers = conn->header_nodes.data();
    req.body = spec.body;
    req.sink = spec.sink;
    req.connect_timeout_ms = static_cast<long>(st.cfg.timeouts.connect.count());
    req.low_speed_limit = st.cfg.timeouts.low_speed_limit;
    req.low_speed_time_s = static_cast<long>(st.cfg.timeouts.low_speed_time.count());
    req.max_age_s = static_cast<long>(std::max<std::int64_t>(
        1, std::chrono::duration_cast<std::chrono::seconds>(st.cfg.timeouts.idle).count()));
    req.verify_tls = st.cfg.tls.verify;
    req.ca_file = st.cfg.tls.ca_file.empty() ? nullptr : st.cfg.tls.ca_file.c_str();
    req.ca_dir = st.cfg.tls.ca_dir.empty() ? nullptr : st.cfg.tls.ca_dir.c_str();
    const bool reusable = perform(*conn, req, res, ctx, ctx.deadline());
    if (reusable) st.pool.release(std::move(conn));
    return outcome(spec, res, refusal);
}

/// A HEAD error answer has no body, hence no S3 code: a 400 may be an
/// expired token (auth) or a wrong region (misconfigured), a 301/307 a wrong
/// region. Redirects are named from the status and x-amz-bucket-region; other
/// statuses are asked again as a one-byte GET, whose error document says
/// which class `e` (the HEAD's error) belongs to.
inline void explain_bodiless(store_state& st, const credentials& creds, const context& ctx, const request_spec& head,
                             const response& head_res, error& e) {
    const std::string status = "HTTP " + std::to_string(head_res.status);
    const std::string region_hint =
        head_res.bucket_region.empty()
            ? std::string()
            : " (x-amz-bucket-region: " + head_res.bucket_region + "; set region to it)";
    if (head_res.status == 301 || head_res.status == 302 || head_res.status == 307 || head_res.status == 308 ||
        (!head_res.bucket_region.empty() && head_res.bucket_region != st.cfg.region)) {
        e.code = errc::misconfigured;
        e.message = "HEAD was answered " + status + " (a redirect): the bucket is in another region or the endpoint is wrong" +
                    region_hint + "; check region, endpoint and addressing";
        return;
    }
    request_spec get;
    get.method = "GET";
    get.op = head.op;
    get.error_path = head.error_path;
    get.object_key = head.object_key;
    get.query = head.query;
    get.headers = head.headers;
    get.headers.emplace_back("range", "bytes=0-0");
    get.sink.limit = 1;
    get.sink.accept = [](void*, const response&) { return true; };
    get.sink.write = [](void*, std::span<const std::byte>) { return true; };
    response res;
    auto r = attempt_once(st, creds, ctx, get, res, nullptr);
    if (r) {
        e.message = "HEAD was answered " + status + " without a body, but a GET of the same key succeeded";
        return;
    }
    const error& g = r.error();
    e.code = g.code == errc::out_of_range ? errc::protocol : g.code; // a zero-length object answers 416 to bytes=0-0
    e.s3_code = g.s3_code;
    if (!g.request_id.empty()) e.request_id = g.request_id;
    e.message = g.message + " (HEAD answered " + status + " without a body; a GET of the key gave the reason)";
}

/// `ctx` with the deadline of one public call: the context's, or the
/// configured per-call timeout from now, whichever is earlier. Computed once
/// per call, so a put_chunk's HEAD and PUT share it.
[[nodiscard]] inline context call_context(const store_state& st, const context& ctx) {
    if (st.cfg.timeouts.operation.count() <= 0) return ctx;
    return ctx.with_deadline(std::chrono::steady_clock::now() + st.cfg.timeouts.operation);
}

/// S3 codes that may mean "these credentials", not "this request": a
/// provider may have newer ones. AccessDenied is among them because a key
/// revoked moments ago is refused with it (RGW), not with InvalidAccessKeyId.
[[nodiscard]] inline bool credentials_refused(std::string_view code) noexcept {
    return code == "ExpiredToken" || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" ||
           code == "InvalidToken" || code == "TokenRefreshRequired" || code == "AccessDenied";
}

/// Signs and performs `spec`, retrying transient failures with full-jitter
/// exponential backoff, within `ctx`'s deadline (see call_context). When the
/// server refuses credentials that came from a provider, the provider is asked
/// once for newer ones and the attempt repeated with them.
inline result<> execute(store_state& st, const context& ctx, request_spec& spec, response& res, const error* refusal) {
    const auto deadline = ctx.deadline();
    bool refreshed = false;
    credentials_provider::snapshot snap; // the provider's credentials this attempt signs with
    for (int attempt = 1;; ++attempt) {
        if (auto c = ctx.check(spec.op, spec.error_path); !c) {
            c.error().attempts = attempt - 1;
            return c;
        }
        const credentials* creds = &st.cfg.creds;
        if (st.cfg.credentials_source) {
            if (!snap || !refreshed) {
                auto s = st.cfg.credentials_source->current();
                if (!s) {
                    error e = std::move(s.error());
                    e.op = spec.op;
                    e.path = spec.error_path;
                    return std::unexpected(std::move(e));
                }
                snap = std::move(*s);
            }
            creds = snap.get();
        }
        auto r = attempt_once(st, *creds, ctx, spec, res, refusal);
        if (r) return r;
        error& e = r.error();
        e.attempts = attempt;
        if (std::string_view(spec.method) == "HEAD" && e.code == errc::protocol && !res.is_2xx() && res.status >= 300)
            explain_bodiless(st, *creds, ctx, spec, res, e);
        if (e.code == errc::auth && snap && !refreshed && spec.body_replayable && credentials_refused(e.s3_code)) {
            refreshed = true;
            auto fresh = st.cfg.credentials_source->refresh_after_refusal(snap);
            if (fresh && *fresh != snap) {
                snap = std::move(*fresh);
                if (spec.before_retry != nullptr) spec.before_retry(spec, res, spec.retry_state);
                continue; // at once: nothing about the server is wrong
            }
            return r;
        }
        if (e.code != errc::transient || attempt >= st.cfg.retry.max_attempts || !spec.body_replayable) return r;
        // Full jitter: uniform in [0, min(max_delay, base * 2^(attempt-1))].
        const auto cap = std::min<std::int64_t>(st.cfg.retry.max_delay.count(),
                                                st.cfg.retry.base_delay.count() << std::min(attempt - 1, 20));
        const auto delay = std::chrono::milliseconds(std::uniform_int_distribution<std::int64_t>(0, std::max<std::int64_t>(cap, 0))(process_rng()));
        if (std::chrono::steady_clock::now() + delay >= deadline) {
            e.message += " (no time left for another attempt before the deadline)";
            return r;
        }
        if (!sleep_for(ctx, delay)) {
            auto c = fail_ctx(errc::cancelled, spec, res, "stop requested while waiting to retry");
            c.error().attempts = attempt;
            return c;
        }
        if (spec.before_retry != nullptr) spec.before_retry(spec, res, spec.retry_state);
    }
}

/// A bucket-level or probe request used by self_test.
inline result<> simple(store_state& st, const context& ctx, const char* method, std::string key, header_list query,
                       response& res, std::span<const std::byte> body = {}, header_list headers = {},
                       std::string payload_hash_override = {}) {
    request_spec spec;
    spec.method = method;
    spec.op = "self_test";
    spec.error_path = key;
    spec.object_key = std::move(key);
    spec.query = std::move(query);
    spec.headers = std::move(headers);
    memory_body mb{body};
    if (std::string_view(method) == "PUT") {
        if (payload_hash_override.empty()) {
            auto digest = payload_sha256_hex(body, "self_test");
            if (!digest) return std::unexpected(std::move(digest.error()));
            payload_hash_override = std::move(*digest);
        }
        spec.payload_hash = payload_hash_override;
        mb.attach(spec);
    } else {
        }
    struct collect {
        std::string body;
    } col;
    if (std::string_view(method) == "GET") {
        spec.sink.self = &col;
        spec.sink.limit = 1 << 20;
        spec.sink.accept = [](void*, const response&) { return true; };
        spec.sink.write = [](void* self, std::span<const std::byte> b) {
            static_cast<collect*>(self)->body.append(reinterpret_cast<const char*>(b.data()), b.size());
            return true;
        };
    }
    auto r = execute(st, ctx, spec, res, nullptr);
    if (r && std::string_view(method) == "GET") res.error_body = std::move(col.body); // hand the body back
    return r;
}

} // namespace cachestore::s3::detail
