// cachestore/s3/detail/operations.hpp - what each chunk operation asks of S3
// and how it reads the answer: one copy for every driver of the request path
// (the blocking store today; docs/async.md, "One request path, two drivers").
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "cachestore/async.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/s3/detail/http_parse.hpp"
#include "cachestore/s3/detail/outcome.hpp"
#include "cachestore/s3/detail/request.hpp"
#include "cachestore/s3/detail/transport.hpp"

namespace cachestore::s3::detail {

/// Names `spec`'s object: the chunk's storage path (for errors) under
/// `prefix`. Precondition: `key` was validated.
inline void prepare_key(request_spec& spec, std::string_view prefix, const chunk_key& key) {
    spec.error_path.clear();
    cachestore::detail::append_storage_path(spec.error_path, key);
    spec.object_key.reserve(prefix.size() + spec.error_path.size());
    spec.object_key.assign(prefix);
    spec.object_key += spec.error_path;
}

/// A ranged GET of `n` bytes from `off` into `sink` (called with each span;
/// false stops the transfer, or, for a sink returning sink_verdict, its
/// verdict). A retried attempt asks only for the bytes the
/// sink has not had: it sees each byte once. Must outlive the request.
template <class Sink>
struct get_plan {
    Sink sink;
    std::int64_t off = 0, n = 0;
    std::int64_t done = 0;  ///< bytes delivered in earlier attempts
    std::int64_t start = 0; ///< first byte asked for in this attempt
    std::size_t range_at = 0; ///< the Range header's index in spec.headers
    error refusal;          ///< why accept() refused a response: the request's `refusal`

    get_plan(Sink s, std::int64_t off_, std::int64_t n_) : sink(std::move(s)), off(off_), n(n_), start(off_) {}

    /// Makes `spec` (method, op and key set by the caller) this GET.
    void attach(request_spec& spec) {
        range_at = spec.headers.size();
        spec.headers.emplace_back("range", range_header(off, n));
        spec.sink.self = this;
        spec.sink.limit = n;
        spec.sink.exact = true;
        spec.sink.accept = [](void* self, const response& r) { return static_cast<get_plan*>(self)->accept(r); };
        spec.sink.write = [](void* self, std::span<const std::byte> b) {
            auto& g = *static_cast<get_plan*>(self);
            if constexpr (std::is_same_v<decltype(g.sink(b)), sink_verdict>) {
                return g.sink(b); // a pausing sink (the async engine's)
            } else {
                return g.sink(b) ? sink_verdict::proceed : sink_verdict::stop;
            }
        };
        spec.retry_state = this;
        spec.before_retry = [](request_spec& s, const response& last, void* state) {
            auto& g = *static_cast<get_plan*>(state);
            g.done += last.delivered;
            g.start = g.off + g.done;
            s.sink.limit = g.n - g.done;
            s.headers[g.range_at].second = range_header(g.start, g.n - g.done);
        };
    }

    /// A 2xx answer's status and headers, before its first byte: is its body
    /// exactly the bytes asked for?
    bool accept(const response& r) {
        const std::int64_t want_first = start, want_last = off + n - 1;
        if (r.status == 206) {
            if (!r.range) return refuse(refusal, errc::protocol, "206 without a valid Content-Range");
            if (r.range->first != want_first)
                return refuse(refusal, errc::protocol,
                              "Content-Range starts at " + std::to_string(r.range->first) + ", asked for " +
                                  std::to_string(want_first));
            if (r.range->last != want_last) {
                if (r.range->last < want_last && r.range->total == r.range->last + 1)
                    return refuse(refusal, errc::out_of_range,
                                  "range ends at " + std::to_string(off + n) + " but the chunk holds " +
                                      std::to_string(r.range->total) + " bytes");
                return refuse(refusal, errc::protocol,
                              "Content-Range ends at " + std::to_string(r.range->last) + ", asked for " +
                                  std::to_string(want_last));
            }
            if (r.content_length >= 0 && r.content_length != want_last - want_first + 1)
                return refuse(refusal, errc::protocol, "Content-Length disagrees with Content-Range");
            return true;
        }
        if (r.status == 200) {
            // Only when the whole object is provably exactly the range.
            if (want_first == 0 && r.content_length == want_last + 1) return true;
            if (r.content_length >= 0 && r.content_length < want_last + 1)
                return refuse(refusal, errc::out_of_range,
                              "range ends at " + std::to_string(off + n) + " but the chunk holds " +
                                  std::to_string(r.content_length) + " bytes");
            return refuse(refusal, errc::protocol, "server ignored the Range header (200 with a different body)");
        }
        return refuse(refusal, errc::protocol, "unexpected 2xx status " + std::to_string(r.status));
    }

    /// The request's result `r` once it is final (`last`: the last attempt's
    /// response): success only with all `n` bytes delivered.
    result<> finish(result<> r, const request_spec& spec, const response& last) const {
        if (!r) return r;
        const std::int64_t total = done + last.delivered;
        if (total != n)
            return fail_ctx(errc::transient, spec, last,
                            "truncated body: received " + std::to_string(total) + " of " + std::to_string(n) + " bytes");
        return {};
    }
};

/// put_chunk's HEAD before the upload, from its result: a present chunk is
/// the truth (commit_lost); not_found lets the upload go on (an empty result).
[[nodiscard]] inline result<> put_head_verdict(result<> head, const request_spec& spec, const response& res) {
    if (head) return fail_ctx(errc::commit_lost, spec, res, "chunk already committed");
    if (head.error().code != errc::not_found) return head;
    return {};
}

/// put_chunk's PUT result, its messages made specific.
[[nodiscard]] inline result<> put_verdict(result<> r, const request_spec& spec) {
    if (!r && r.error().code == errc::commit_lost) r.error().message = "another writer committed this chunk first (412)";
    if (!r && !spec.body_replayable && r.error().code == errc::transient)
        r.error().message += " (a streamed body cannot be sent again: not retried; nothing was committed)";
    return r;
}

/// stat's answer from its HEAD's result and response.
[[nodiscard]] inline result<info> stat_from(result<> r, const request_spec& spec, const response& res) {
    if (!r) return std::unexpected(std::move(r.error()));
    if (res.content_length < 0) return fail_ctx(errc::protocol, spec, res, "HEAD answer has no Content-Length");
    auto when = parse_http_date(res.last_modified);
    if (!when) return fail_ctx(errc::protocol, spec, res, "HEAD answer has no valid Last-Modified");
    return info{res.content_length, *when};
}

/// remove's answer from its DELETE's result: a chunk already gone is
/// removed; a missing bucket is not.
[[nodiscard]] inline result<> remove_from(result<> r) {
    if (!r && r.error().code == errc::not_found && r.error().s3_code != "NoSuchBucket") return {};
    return r;
}

} // namespace cachestore::s3::detail
