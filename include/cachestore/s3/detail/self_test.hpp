// cachestore/s3/detail/self_test.hpp - the S3 self-test: proves a bucket fit
// for stat-then-put (docs/s3.md, "Self-test") and learns what the server enforces.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <span>
#include <mutex>
#include <string>
#include <string_view>

#include <curl/curl.h>

#include "cachestore/bytes.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/s3/detail/error_xml.hpp"
#include "cachestore/s3/detail/exchange.hpp"
#include "cachestore/s3/detail/http_parse.hpp"
#include "cachestore/s3/detail/request.hpp"
#include "cachestore/s3/detail/state.hpp"
#include "cachestore/s3/detail/tls.hpp"
#include "cachestore/s3/detail/upload.hpp"

namespace cachestore::s3::detail {

/// Why a failed self-test request says the endpoint itself is wrong -- not
/// reachable, not speaking TLS as configured, or not an S3 server -- or ""
/// when the answer was S3 (then the error's own class stands). `res` is the
/// last attempt's response.
inline std::string endpoint_problem(const store_state& st, const response& res, const error& e) {
    const std::string ep = "endpoint " + st.url_base;
    if (res.status == 0) {
        if (is_tls_failure(res.curl)) return ep + ": " + e.message; // "TLS: ...; what to set"
        switch (res.curl) {
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
            if (st.endpoint.scheme != "http") return {};
            return ep + " closed the connection without an HTTP answer (" + e.message +
                   "): TLS? if that port serves TLS, use https:// in the endpoint";
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
            return ep + " cannot be resolved (" + e.message + "): check the host name";
        case CURLE_COULDNT_CONNECT:
            return ep + " refuses connections (" + e.message + "): check the host and port, and that the server runs";
        case CURLE_OPERATION_TIMEDOUT:
            if (e.code == errc::deadline_exceeded) return {};
            if (res.connected)
                return ep + " accepted the connection but did not answer (" + e.message +
                       "): check that the port is the S3 API and that the server is not hung";
            return ep + " does not answer (" + e.message + "): check the host, port and firewalls";
        default: return {};
        }
    }
    if (res.is_2xx() || e.code == errc::auth) return {};
    // An HTTP answer without an S3 error document: another kind of server.
    const bool html = res.error_body.find("<html") != std::string::npos || res.error_body.find("<HTML") != std::string::npos ||
                      res.error_body.find("<!DOCTYPE html") != std::string::npos;
    if (!e.s3_code.empty() && !html) return {};
    if (res.status >= 500 && res.status != 501) return {}; // an S3 server in trouble answers 503 without a body too
    std::string what = "HTTP " + std::to_string(res.status);
    what += html ? " with an HTML page" : (res.error_body.empty() ? " without a body" : " without an S3 error document");
    if (res.request_id.empty()) what += ", no x-amz-request-id";
    return ep + " does not look like an S3 server (" + what + "): check the endpoint's host and port, and that it "
                "is the S3 API and not a console, a web server or a proxy";
}

/// Why the self-test's first request says the endpoint stalls -- it took the
/// connection and sent no HTTP answer before the deadline, `waited` after the
/// self-test began -- or "" when it did not. A server that answers nothing to
/// a bucket GET within the whole timeout is not a usable S3 endpoint; a
/// later request that times out stays `deadline_exceeded` (the server has
/// answered, it may be slow).
inline std::string stalled_endpoint(const store_state& st, const response& res, const error& e,
                                    std::chrono::steady_clock::duration waited) {
    if (e.code != errc::deadline_exceeded || res.reason != abort_reason::deadline || res.status != 0 || !res.connected)
        return {};
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.1f", std::chrono::duration<double>(waited).count());
    return "endpoint " + st.url_base + " accepted the connection but did not answer within the timeout (" + secs +
           " s: the call's deadline or timeouts.operation, whichever came first): check that the port is the S3 API "
           "and that the server is not hung";
}

/// PUTs 20,000 bytes as signed aws-chunked frames of 8 KiB to `key`, reads
/// them back and deletes them: "" when the server stored them decoded, else
/// what went wrong.
inline std::string probe_aws_chunked(store_state& st, const context& ctx, const std::string& key) {
    std::string payload(20000, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + (i * 7) % 26);
    auto src = [&payload, at = std::size_t{0}](std::span<std::byte> buf) mutable -> result<std::size_t> {
        const std::size_t n = std::min(buf.size(), payload.size() - at);
        std::memcpy(buf.data(), payload.data() + at, n);
        at += n;
        return n;
    };
    request_spec spec;
    spec.method = "PUT";
    spec.op = "self_test";
    spec.error_path = key;
    spec.object_key = key;
    streaming_body<decltype(src)> body(src, static_cast<std::int64_t>(payload.size()), true, st.signer, 8192);
    body.attach(spec);
    response res;
    std::string why;
    if (auto r = execute(st, ctx, spec, res, nullptr); !r) {
        why = "PUT answered " + r.error().to_string();
    } else {
        response got;
        auto g = simple(st, ctx, "GET", key, {}, got);
        if (!g) why = "reading it back: " + g.error().to_string();
        else if (got.error_body != payload)
            why = "it was stored with its framing (" + std::to_string(got.error_body.size()) + " bytes for " +
                  std::to_string(payload.size()) + ")";
    }
    response del;
    (void)simple(st, context::with_timeout(std::chrono::seconds(5)), "DELETE", key, {}, del);
    return why;
}

inline result<> run_self_test(store_state& st, const context& ctx) {
    const auto t0 = std::chrono::steady_clock::now();
    auto fail_st = [](errc code, std::string msg, const error* cause = nullptr) {
        error e = cause != nullptr ? *cause : error{};
        e.code = code;
        e.op = "self_test";
        e.message = cause != nullptr ? msg + " [" + cause->message + "]" : std::move(msg);
        return std::unexpected(std::move(e));
    };
    // `problem` (an endpoint_problem or stalled_endpoint) already quotes what it needs of e.
    auto endpoint_failure = [&](const error& e, const std::string& what, const std::string& problem) {
        auto u = fail_st(errc::misconfigured, {}, &e);
        u.error().message = what + ": " + problem;
        return u;
    };
    auto explain = [&](const error& e, const response& res, const std::string& what) -> std::unexpected<error> {
        if (auto p = endpoint_problem(st, res, e); !p.empty()) return endpoint_failure(e, what, p);
        switch (e.code) {
        case errc::auth:
            return fail_st(errc::auth, what + ": the credentials were refused (" +
                                           (e.s3_code.empty() ? std::string("HTTP ") + std::to_string(e.http_status) : e.s3_code) +
                                           "); check the access key, secret key, session token, region and clock", &e);
        case errc::misconfigured:
            return fail_st(errc::misconfigured, what + ": the bucket or endpoint is wrong (" + e.s3_code +
                                                    "); check bucket '" + st.cfg.bucket + "', region and endpoint", &e);
        default: return fail_st(e.code, what + " failed", &e);
        }
    };
    const std::string probe_prefix = st.cfg.prefix + ".cachestore-selftest/";

    // 1. Versioning must be off: stat-then-put and lifecycle expiry assume one version per key.
    {
        response res;
        const std::string what = "reading the bucket's versioning state (GetBucketVersioning)";
        auto r = simple(st, ctx, "GET", "", {{"versioning", ""}}, res);
        if (!r) {
            if (auto p = stalled_endpoint(st, res, r.error(), std::chrono::steady_clock::now() - t0); !p.empty())
                return endpoint_failure(r.error(), what, p);
            return explain(r.error(), res, what);
        }
        // AWS and RGW answer <VersioningConfiguration>, moto <GetBucketVersioningResponse>;
        // a web server that is not S3 answers a page.
        if (res.error_body.find("Versioning") == std::string::npos)
            return fail_st(errc::misconfigured,
                           what + ": endpoint " + st.url_base + " does not look like an S3 server (HTTP " +
                               std::to_string(res.status) + " without a bucket versioning document" +
                               (res.request_id.empty() ? ", no x-amz-request-id" : "") +
                               "): check the endpoint's host and port, and that it is the S3 API");
        const auto status = xml_element(res.error_body, "Status");
        if (status == "Enabled" || status == "Suspended")
            return fail_st(errc::misconfigured,
                           "bucket '" + st.cfg.bucket + "' has versioning " + status +
                               "; use an unversioned bucket: overwrites and deletes would keep old versions forever");
        if (auto d = parse_http_date(res.date)) {
            const auto offset = std::chrono::duration_cast<std::chrono::milliseconds>(*d - std::chrono::system_clock::now());
            std::lock_guard lock(st.report_mu);
            st.report.clock_offset = offset;
        }
    }
    // 2. Clock: SigV4 requests are refused beyond 15 minutes of skew.
    {
        std::chrono::milliseconds offset;
        {
            std::lock_guard lock(st.report_mu);
            offset = st.report.clock_offset;
        }
        if (std::chrono::abs(offset) > std::chrono::minutes(15))
            return fail_st(errc::auth, "the local clock is " + std::to_string(offset.count() / 1000) +
                                           " s away from the server's; S3 refuses signatures beyond 15 minutes: sync the clock (NTP)");
    }
    // 3. A missing key must read as 404: a 403 means no s3:ListBucket permission,
    //    and every miss would look like an auth failure.
    {
        response res;
        auto r = simple(st, ctx, "GET", probe_prefix + "absent-" + random_hex(16), {}, res);
        if (r) return fail_st(errc::protocol, "GET of a random absent key succeeded; the store does not report misses");
        if (r.error().code == errc::auth && (r.error().s3_code == "AccessDenied" || r.error().s3_code.empty()))
            return fail_st(errc::auth, "a missing key answers 403, not 404: grant s3:ListBucket on the bucket so misses are "
                                       "reported as not found", &r.error());
        if (r.error().code != errc::not_found) return explain(r.error(), res, "GET of an absent key");
        if (auto p = endpoint_problem(st, res, r.error()); !p.empty())
            return fail_st(errc::misconfigured, "GET of an absent key: " + p, &r.error());
        response head;
        auto h = simple(st, ctx, "HEAD", probe_prefix + "absent-" + random_hex(16), {}, head);
        if (h || h.error().code != errc::not_found)
            return fail_st(h ? errc::protocol : h.error().code,
                           "HEAD of an absent key did not answer 404 (got HTTP " + std::to_string(head.status) +
                               "); stat-then-put needs 404 for misses: grant s3:ListBucket");
    }
    // 4. Read-after-write: PUT a probe, HEAD it, GET it back byte-exact, DELETE it.
    const std::string probe = probe_prefix + "probe-" + random_hex(16);
    std::string payload = "cachestore self-test " + random_hex(24);
    const auto body = as_bytes(payload);
    auto cleanup = [&] {
        response res;
        (void)simple(st, context::with_timeout(std::chrono::seconds(5)), "DELETE", probe, {}, res);
    };
    {
        response res;
        if (auto r = simple(st, ctx, "PUT", probe, {}, res, body); !r) return explain(r.error(), res, "PUT of the probe object");
    }
    {
        response res;
        auto r = simple(st, ctx, "HEAD", probe, {}, res);
        if (!r) {
            cleanup();
            return fail_st(r.error().code == errc::not_found ? errc::misconfigured : r.error().code,
                           "HEAD right after PUT did not see the probe: this store lacks read-after-write "
                           "consistency, which stat-then-put requires", &r.error());
        }
        if (res.content_length != static_cast<std::int64_t>(payload.size())) {
            cleanup();
            return fail_st(errc::protocol, "HEAD of the probe reports " + std::to_string(res.content_length) +
                                               " bytes, wrote " + std::to_string(payload.size()));
        }
    }
    {
        response res;
        auto r = simple(st, ctx, "GET", probe, {}, res);
        if (!r || res.error_body != payload) {
            cleanup();
            return fail_st(r ? errc::protocol : r.error().code, "GET of the probe did not return the bytes written",
                           r ? nullptr : &r.error());
        }
    }
    // 5. Does the server enforce If-None-Match: * on PUT? (412 = yes.)
    bool enforced = false;
    {
        response res;
        auto r = simple(st, ctx, "PUT", probe, {}, res, body, {{"if-none-match", "*"}});
        if (!r && r.error().code == errc::commit_lost) enforced = true;
        else if (!r && r.error().code != errc::protocol && r.error().http_status != 501 && r.error().http_status != 400) {
            cleanup();
            return explain(r.error(), res, "conditional PUT probe");
        }
    }
    {
        response res;
        if (auto r = simple(st, ctx, "DELETE", probe, {}, res); !r) return explain(r.error(), res, "DELETE of the probe object");
        response head;
        auto h = simple(st, ctx, "HEAD", probe, {}, head);
        if (h) return fail_st(errc::misconfigured, "the probe is still visible after DELETE: deletes are not read-after-write");
    }
    // 6. Streaming uploads that must be signed (http) go as aws-chunked
    //    frames: does the server store them decoded? Asked only when needed.
    bool chunked_ok = false;
    if (st.cfg.streaming != streaming_upload::spool && !unsigned_payloads(st)) {
        auto why = probe_aws_chunked(st, ctx, probe_prefix + "stream-probe-" + random_hex(16));
        chunked_ok = why.empty();
        if (!chunked_ok && st.cfg.streaming == streaming_upload::stream)
            return fail_st(errc::misconfigured, "streaming is \"stream\" but the server does not accept signed aws-chunked "
                                                "uploads (" + why + "): set streaming to \"auto\" or \"spool\", or use "
                                                "https with unsigned payloads");
    }
    st.aws_chunked = chunked_ok;
    if (st.cfg.commit == commit_mode::auto_detect) st.conditional_put = enforced;
    if (st.cfg.commit == commit_mode::if_none_match && !enforced)
        return fail_st(errc::misconfigured, "commit_mode is if_none_match but the server does not enforce If-None-Match: * "
                                            "(a second conditional PUT succeeded); use auto or stat_then_put");
    std::lock_guard lock(st.report_mu);
    st.report.ran = true;
    st.report.conditional_put_enforced = enforced;
    st.report.aws_chunked_accepted = chunked_ok;
    return {};
}

} // namespace cachestore::s3::detail
