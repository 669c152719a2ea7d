// cachestore/s3/impl/origin.hpp - s3::origin's definitions: included by
// origin.hpp (header-only), or compiled once through <cachestore/s3/src.hpp>
// (CACHESTORE_SEPARATE_COMPILATION).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "cachestore/s3/detail/exchange.hpp"
#include "cachestore/s3/detail/open_state.hpp"
#include "cachestore/s3/detail/request.hpp"
#include "cachestore/s3/detail/state.hpp"
#include "cachestore/s3/origin.hpp"

namespace cachestore::s3 {

namespace detail {

template <class G>
bool origin_accept(G& g, const detail::response& r) {
    const auto refuse = [&g](errc code, const std::string& msg) { return detail::refuse(g.refusal, code, msg); };
    if (!r.etag.empty() && r.etag != *g.etag)
        return refuse(errc::changed, "the object's ETag is now " + r.etag + ", not " + *g.etag +
                                         " (the server answered despite If-Match)");
    const std::int64_t first = g.offset + g.done, last = g.offset + static_cast<std::int64_t>(g.out.size()) - 1;
    if (r.status == 206) {
        if (!r.range) return refuse(errc::protocol, "206 without a valid Content-Range");
        if (r.range->first != first || r.range->last != last)
            return refuse(errc::protocol, "Content-Range " + std::to_string(r.range->first) + "-" +
                                              std::to_string(r.range->last) + ", asked for " + std::to_string(first) +
                                              "-" + std::to_string(last));
        return true;
    }
    if (r.status == 200 && first == 0 && r.content_length == last + 1) return true; // the whole object is the range
    if (r.status == 200) return refuse(errc::protocol, "server ignored the Range header (200 with a different body)");
    return refuse(errc::protocol, "unexpected 2xx status " + std::to_string(r.status));
}

} // namespace detail

CACHESTORE_S3_DECL result<origin> origin::create(config cfg) {
    auto st = detail::open_state(std::move(cfg));
    if (!st) return std::unexpected(std::move(st.error()));
    return origin(std::move(*st));
}

CACHESTORE_S3_DECL origin::origin(std::unique_ptr<detail::store_state> st) noexcept : st_(std::move(st)) {}
CACHESTORE_S3_DECL origin::origin(origin&&) noexcept = default;
CACHESTORE_S3_DECL origin& origin::operator=(origin&&) noexcept = default;
CACHESTORE_S3_DECL origin::~origin() = default;

CACHESTORE_S3_DECL const config& origin::settings() const noexcept { return st_->cfg; }

CACHESTORE_S3_DECL result<fill::object_meta> origin::head(const context& ctx, const fill::object_ref& ref) {
    detail::request_spec spec;
    spec.method = "HEAD";
    if (auto ok = prepare(spec, "origin_head", ref.bucket, ref.object_key); !ok)
        return std::unexpected(std::move(ok.error()));
    spec.keep_etag = true;
    detail::response res;
    if (auto r = detail::execute(*st_, detail::call_context(*st_, ctx), spec, res, nullptr); !r)
        return std::unexpected(std::move(r.error()));
    if (res.content_length < 0) return detail::fail_ctx(errc::protocol, spec, res, "HEAD answer has no Content-Length");
    return fill::object_meta{res.content_length, std::move(res.etag), std::move(res.last_modified)};
}

CACHESTORE_S3_DECL result<std::size_t> origin::get(const context& ctx, const origin_object& obj, std::int64_t offset,
                                                   std::span<std::byte> out) {
    if (offset < 0) return fail(errc::invalid_argument, "origin_get", obj.object_key, "offset < 0");
    if (obj.etag.empty())
        return fail(errc::invalid_argument, "origin_get", obj.object_key, "no ETag to send as If-Match");
    if (out.empty()) return std::size_t{0};
    detail::request_spec spec;
    spec.method = "GET";
    if (auto ok = prepare(spec, "origin_get", obj.bucket, obj.object_key); !ok)
        return std::unexpected(std::move(ok.error()));
    struct get_state {
        std::span<std::byte> out;
        std::int64_t offset = 0;
        const std::string* etag = nullptr;
        std::int64_t done = 0; ///< bytes delivered in earlier attempts
        error refusal;
    } gs{out, offset, &obj.etag, 0, {}};
    const auto n = static_cast<std::int64_t>(out.size());
    spec.headers.emplace_back("range", detail::range_header(offset, n));
    spec.headers.emplace_back("if-match", obj.etag);
    spec.if_match = true;
    spec.keep_etag = true;
    spec.sink.self = &gs;
    spec.sink.limit = n;
    spec.sink.exact = true;
    spec.sink.accept = [](void* self, const detail::response& r) {
        return detail::origin_accept(*static_cast<get_state*>(self), r);
    };
    spec.sink.write = [](void* self, std::span<const std::byte> b) {
        auto& g = *static_cast<get_state*>(self);
        std::memcpy(g.out.data() + g.done, b.data(), b.size()); // the transport caps the body at sink.limit
        g.done += static_cast<std::int64_t>(b.size());
        return sink_verdict::proceed;
    };
    spec.retry_state = &gs;
    spec.before_retry = [](detail::request_spec& s, const detail::response&, void* state) {
        auto& g = *static_cast<get_state*>(state); // resume after the bytes already in `out`
        const auto left = static_cast<std::int64_t>(g.out.size()) - g.done;
        s.sink.limit = left;
        s.headers[0].second = detail::range_header(g.offset + g.done, left);
    };
    detail::response res;
    if (auto r = detail::execute(*st_, detail::call_context(*st_, ctx), spec, res, &gs.refusal); !r)
        return std::unexpected(std::move(r.error()));
    if (gs.done != n)
        return detail::fail_ctx(errc::transient, spec, res,
                                "truncated body: received " + std::to_string(gs.done) + " of " + std::to_string(n) +
                                    " bytes");
    return out.size();
}

CACHESTORE_S3_DECL result<> origin::prepare(detail::request_spec& spec, const char* op, const std::string& bucket,
                                            const std::string& key) const {
    spec.op = op;
    spec.error_path = key;
    if (key.empty()) return fail(errc::invalid_argument, op, key, "empty object key");
    if (!bucket.empty() && bucket != st_->cfg.bucket)
        return fail(errc::invalid_argument, op, key, "this origin reads bucket " + st_->cfg.bucket + ", not " + bucket);
    spec.object_key = st_->cfg.prefix + key;
    return {};
}

} // namespace cachestore::s3
