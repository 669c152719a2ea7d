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
#include "cachestore/s3/detail/outcome.hpp"
#include "cachestore/s3/detail/request.hpp"
#include "cachestore/s3/detail/request_buffers.hpp"
#include "cachestore/s3/detail/sign_request.hpp"
#include "cachestore/s3/detail/state.hpp"
#include "cachestore/s3/detail/tls.hpp"
#include "cachestore/s3/observer.hpp"
#include "cachestore/s3/detail/transport.hpp"
#include "cachestore/s3/credentials_provider.hpp"
#include "cachestore/s3/sigv4.hpp"

namespace cachestore::s3::detail {

/// Rewrites a TLS failure's error: says "TLS:", what to set, and makes a
/// configuration problem `misconfigured` (retrying cannot fix it). A
/// handshake that failed for another reason (a reset) stays `transient`.
inline void explain_tls(const store_state& st, const response& res, error& e) {
    if (!is_tls_failure(res.curl)) return;
    const std::string_view m = res.curl_message;
    const std::string advice = tls_advice(res.curl, m, st.endpoint.host);
    const bool config_problem = res.curl != CURLE_SSL_CONNECT_ERROR || not_tls_at_all(m);
    if (config_problem) e.code = errc::misconfigured;
    e.message = "TLS: " + std::string(curl_easy_strerror(res.curl)) + (m.empty() ? "" : ": ") + std::string(m) +
                (advice.empty() ? std::string() : "; " + advice);
}

/// The transfer options of one request on `st`'s endpoint, over the URL and
/// header lines signed into `b`.
[[nodiscard]] inline http_request request_for(const store_state& st, const request_spec& spec, request_buffers& b) {
    http_request req;
    req.method = spec.method;
    req.url = b.url.c_str();
    req.headers = b.header_nodes.data();
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
    req.share = st.endpoint.scheme == "https" ? st.tls_share.get() : nullptr;
    req.keep_etag = spec.keep_etag;
    return req;
}

/// The start of every attempt, whichever driver sends it: sign `spec` with
/// `creds` into `b`, tell a streaming body its seed signature, and return
/// the request to send.
[[nodiscard]] inline result<http_request> begin_attempt(const store_state& st, const credentials& creds,
                                                        const request_spec& spec, request_buffers& b) {
    if (auto h = sign_into(st, creds, spec, b); !h) return std::unexpected(std::move(h.error()));
    if (spec.on_signed != nullptr) spec.on_signed(spec.signed_state, b.date(), b.signature, creds);
    return request_for(st, spec, b);
}

/// The end of every attempt, whichever driver sent it: classify the
/// response and, when `ev` is given (an observer is set), complete the
/// event and hand it to the observer.
inline result<> end_attempt(const store_state& st, const request_spec& spec, response& res, const error* refusal,
                            int attempt, request_event* ev) {
    auto r = outcome(spec, res, refusal);
    if (!r) explain_tls(st, res, r.error());
    if (ev != nullptr) {
        ev->op = spec.op;
        ev->method = spec.method;
        ev->path = spec.error_path;
        ev->attempt = attempt;
        ev->http_status = static_cast<int>(res.status);
        ev->request_id = res.request_id;
        ev->amz_id_2 = res.amz_id_2;
        ev->connection_reused = res.reused;
        if (!r) {
            ev->outcome = r.error().code;
            ev->s3_code = r.error().s3_code;
        }
        st.cfg.observer(*ev);
    }
    return r;
}

/// One attempt: sign with `creds`, send on a pooled connection, classify,
/// and tell the observer (when there is one).
inline result<> attempt_once(store_state& st, const credentials& creds, const context& ctx, const request_spec& spec,
                             response& res, const error* refusal, int attempt = 1) {
    using sclock = std::chrono::steady_clock;
    const bool observed = static_cast<bool>(st.cfg.observer);
    const auto t0 = observed ? sclock::now() : sclock::time_point{};
    res = response{};
    auto conn = st.pool.acquire();
    if (!conn->ok()) return fail_ctx(errc::io_error, spec, res, "could not create a libcurl handle");
    const auto t_conn = observed ? sclock::now() : sclock::time_point{};
    auto req = begin_attempt(st, creds, spec, conn->bufs);
    if (!req) {
        st.pool.release(std::move(conn));
        return std::unexpected(std::move(req.error()));
    }
    const bool reusable = perform(*conn, *req, res, ctx, ctx.deadline());
    request_event ev;
    if (observed) ev = observe(conn->easy, t0, t_conn);
    if (reusable) st.pool.release(std::move(conn));
    auto r = end_attempt(st, spec, res, refusal, attempt, observed ? &ev : nullptr);
    // The caller's sink or source threw inside libcurl: the transfer has
    // been aborted and the connection closed or pooled; now it may unwind.
    if (res.thrown) std::rethrow_exception(res.thrown);
    return r;
}

/// A HEAD error answer has no body, hence no S3 code: a 400 may be an
/// expired token (auth) or a wrong region (misconfigured), a 301/307 a wrong
/// region. Whether `e` (the HEAD's failure) needs that explained.
[[nodiscard]] inline bool bodiless_failure(const request_spec& spec, const response& res, const error& e) noexcept {
    return std::string_view(spec.method) == "HEAD" && e.code == errc::protocol && !res.is_2xx() && res.status >= 300;
}

/// Redirects are named from the status and x-amz-bucket-region: true when
/// `e` now says so (misconfigured); false when a probe must ask.
inline bool bodiless_redirect(const store_state& st, const response& head_res, error& e) {
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
        return true;
    }
    return false;
}

/// The probe for any other status: a one-byte GET of the same key, whose
/// error document says which class the HEAD's failure belongs to.
[[nodiscard]] inline request_spec bodiless_probe(const request_spec& head) {
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
    get.sink.write = [](void*, std::span<const std::byte>) { return sink_verdict::proceed; };
    return get;
}

/// Rewrites `e` (the HEAD's failure, answered `head_res`) from the probe's result `r`.
inline void apply_bodiless_probe(const result<>& r, const response& head_res, error& e) {
    const std::string status = "HTTP " + std::to_string(head_res.status);
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

/// explain_bodiless for the blocking path: the probe runs inline.
inline void explain_bodiless(store_state& st, const credentials& creds, const context& ctx, const request_spec& head,
                             const response& head_res, error& e) {
    if (bodiless_redirect(st, head_res, e)) return;
    const request_spec get = bodiless_probe(head);
    response res;
    apply_bodiless_probe(attempt_once(st, creds, ctx, get, res, nullptr, 1), head_res, e);
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

/// Full jitter: uniform in [0, min(max_delay, base * 2^(attempt-1))].
[[nodiscard]] inline std::chrono::milliseconds backoff_delay(const retry_policy& p, int attempt) {
    const auto cap = std::min<std::int64_t>(p.max_delay.count(), p.base_delay.count() << std::min(attempt - 1, 20));
    return std::chrono::milliseconds(
        std::uniform_int_distribution<std::int64_t>(0, std::max<std::int64_t>(cap, 0))(process_rng()));
}

/// What the retry loop does after attempt `attempt` failed with `e`.
struct next_step {
    enum kind : std::uint8_t {
        give_up,             ///< return `e` (its message says so when the deadline is why)
        refresh_credentials, ///< ask the provider for newer ones (refresh_after_refusal), then adopt_refreshed
        retry,               ///< after `delay`, then spec.before_retry
    } what = give_up;
    std::chrono::milliseconds delay{0};
};

/// The retry rules, one copy for every driver: a refusal of credentials that
/// came from a provider asks it once for newer ones; a transient failure is
/// retried with backoff_delay while attempts, a replayable body and the time
/// before `deadline` last. `from_provider`: the attempt signed with a
/// provider's snapshot; `refreshed`: that was already asked once.
[[nodiscard]] inline next_step after_failure(const store_state& st, const request_spec& spec, error& e, int attempt,
                                             bool from_provider, bool refreshed,
                                             std::chrono::steady_clock::time_point deadline) {
    e.attempts = attempt;
    if (e.code == errc::auth && from_provider && !refreshed && spec.body_replayable && credentials_refused(e.s3_code))
        return {next_step::refresh_credentials};
    if (e.code != errc::transient || attempt >= st.cfg.retry.max_attempts || !spec.body_replayable) return {};
    const auto delay = backoff_delay(st.cfg.retry, attempt);
    if (std::chrono::steady_clock::now() + delay >= deadline) {
        e.message += " (no time left for another attempt before the deadline)";
        return {};
    }
    return {next_step::retry, delay};
}

/// Whether the provider's answer to a refusal is worth another attempt (then
/// it becomes `snap`). Compares what was fetched, not the snapshot: the same
/// credentials refused again would only double every refused request.
inline bool adopt_refreshed(credentials_provider::snapshot& snap, result<credentials_provider::snapshot>& fresh) {
    if (!fresh || *fresh == snap || same_keys(**fresh, *snap)) return false;
    snap = std::move(*fresh);
    return true;
}

/// Signs and performs `spec`, retrying transient failures with full-jitter
/// exponential backoff, within `ctx`'s deadline (see call_context). When the
/// server refuses credentials that came from a provider, the provider is asked
/// once for newer ones and the attempt repeated with them.
inline result<> execute(store_state& st, const context& ctx, request_spec& spec, response& res, const error* refusal) {
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
        auto r = attempt_once(st, *creds, ctx, spec, res, refusal, attempt);
        if (r) return r;
        error& e = r.error();
        if (bodiless_failure(spec, res, e)) explain_bodiless(st, *creds, ctx, spec, res, e);
        const auto next = after_failure(st, spec, e, attempt, static_cast<bool>(snap), refreshed, ctx.deadline());
        if (next.what == next_step::give_up) return r;
        if (next.what == next_step::refresh_credentials) {
            refreshed = true;
            auto fresh = st.cfg.credentials_source->refresh_after_refusal(snap);
            if (!adopt_refreshed(snap, fresh)) return r;
            // at once: nothing about the server is wrong
        } else if (!sleep_for(ctx, next.delay)) {
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
            return sink_verdict::proceed;
        };
    }
    auto r = execute(st, ctx, spec, res, nullptr);
    if (r && std::string_view(method) == "GET") res.error_body = std::move(col.body); // hand the body back
    return r;
}

} // namespace cachestore::s3::detail
