// cachestore/s3/detail/outcome.hpp - one attempt's result: our own aborts,
// transport failures and S3 error answers mapped to an errc (the table in
// docs/s3.md, "Error mapping").
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <curl/curl.h>

#include "cachestore/error.hpp"
#include "cachestore/s3/detail/classify.hpp"
#include "cachestore/s3/detail/error_xml.hpp"
#include "cachestore/s3/detail/request.hpp"
#include "cachestore/s3/detail/transport.hpp"

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
    case abort_reason::caller_threw: // rethrown by attempt_once; the observer sees a cancelled attempt
        return fail_ctx(errc::cancelled, spec, res, "the caller's sink or source threw");
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
        // libcurl 7.88 reports a response header over its limit (100 KiB a
        // line) as out of memory; after a status line that is what it was.
        if (res.curl == CURLE_OUT_OF_MEMORY && res.status != 0) {
            code = errc::protocol;
            msg += " (the server's response headers are larger than libcurl accepts: the server broke HTTP)";
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
    // Only a (conditional) PUT can lose a commit; a 412 to a read that sent
    // If-Match is a changed object; to anything else it answers a condition
    // we never sent.
    if (code == errc::commit_lost && std::string_view(spec.method) != "PUT")
        code = spec.if_match ? errc::changed : errc::protocol;
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

} // namespace cachestore::s3::detail
