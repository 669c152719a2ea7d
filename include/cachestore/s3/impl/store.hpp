// cachestore/s3/impl/store.hpp - the S3 driver's definitions: included by
// store.hpp (header-only), or compiled once through <cachestore/s3/src.hpp>
// (CACHESTORE_SEPARATE_COMPILATION).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cachestore/s3/detail/crypto.hpp"
#include "cachestore/s3/detail/exchange.hpp"
#include "cachestore/s3/detail/open_state.hpp"
#include "cachestore/s3/detail/operations.hpp"
#include "cachestore/s3/detail/request.hpp"
#include "cachestore/s3/detail/self_test.hpp"
#include "cachestore/s3/detail/state.hpp"
#include "cachestore/s3/detail/transport.hpp"
#include "cachestore/s3/detail/upload.hpp"
#include "cachestore/s3/sigv4.hpp"
#include "cachestore/s3/store.hpp"

namespace cachestore::s3 {

CACHESTORE_S3_DECL result<store> store::create(config cfg) {
    auto st = detail::open_state(std::move(cfg));
    if (!st) return std::unexpected(std::move(st.error()));
    if ((*st)->cfg.commit == commit_mode::if_none_match) (*st)->conditional_put = true;
    return store(std::move(*st));
}

CACHESTORE_S3_DECL store::store(std::unique_ptr<detail::store_state> st) noexcept : st_(std::move(st)) {}
CACHESTORE_S3_DECL store::store(store&&) noexcept = default;
CACHESTORE_S3_DECL store& store::operator=(store&&) noexcept = default;
CACHESTORE_S3_DECL store::~store() = default;

CACHESTORE_S3_DECL const config& store::settings() const noexcept { return st_->cfg; }

CACHESTORE_S3_DECL result<std::string> store::object_key(const chunk_key& k) const {
    auto p = storage_path(k);
    if (!p) return p;
    return st_->cfg.prefix + *p;
}

CACHESTORE_S3_DECL bool store::conditional_commit() const noexcept { return st_->conditional_put.load(); }

CACHESTORE_S3_DECL self_test_report store::last_self_test() const {
    std::lock_guard lock(st_->report_mu);
    return st_->report;
}

CACHESTORE_S3_DECL std::size_t store::connections_created() const noexcept { return st_->pool.created(); }
CACHESTORE_S3_DECL std::size_t store::idle_connections() const { return st_->pool.idle(); }
CACHESTORE_S3_DECL void store::reap_idle_connections() const { st_->pool.reap(); }

CACHESTORE_S3_DECL result<> store::get_erased(const context& ctx, const chunk_key& key, std::int64_t off,
                                              std::int64_t n, detail::sink_ref sink) {
    if (auto a = cachestore::detail::check_get_args(key, off, n); !a) return a;
    const context cctx = detail::call_context(*st_, ctx);
    detail::get_plan<detail::sink_ref> plan(sink, off, n);
    detail::request_spec spec;
    spec.method = "GET";
    spec.op = "get_chunk";
    prepare_key(spec, key);
    plan.attach(spec);
    detail::response res;
    return plan.finish(detail::execute(*st_, cctx, spec, res, &plan.refusal), spec, res);
}

CACHESTORE_S3_DECL result<> store::put_bytes(const context& ctx, const chunk_key& key, std::int64_t size,
                                             std::span<const std::byte> bytes) {
    return put_impl(ctx, key, size, bytes, {});
}

CACHESTORE_S3_DECL result<> store::put_streamed(const context& ctx, const chunk_key& key, std::int64_t size,
                                                detail::source_ref& src) {
    return put_impl(ctx, key, size, src, {});
}

CACHESTORE_S3_DECL result<> store::put_chunk_prehashed(const context& ctx, const chunk_key& key,
                                                       std::span<const std::byte> bytes, std::string_view sha256_hex) {
    if (auto d = cachestore::detail::check_sha256_hex(sha256_hex); !d) return d;
    return put_impl(ctx, key, static_cast<std::int64_t>(bytes.size()), bytes, sha256_hex);
}

template <class Src>
result<> store::put_impl(const context& ctx, const chunk_key& key, std::int64_t size, Src& src,
                         std::string_view known_digest) {
    if (auto a = cachestore::detail::check_put_args(key, size); !a) return a;
    if (auto a = cachestore::detail::check_source_size(src, size); !a) return a;
    const context cctx = detail::call_context(*st_, ctx); // one deadline for the HEAD, the body and the PUT
    detail::request_spec spec;
    spec.op = "put_chunk";
    prepare_key(spec, key);
    // Stat first: a present chunk is the truth, and uploading is waste.
    {
        detail::request_spec head = spec;
        head.method = "HEAD";
        detail::response res;
        if (auto r = detail::put_head_verdict(detail::execute(*st_, cctx, head, res, nullptr), spec, res); !r) return r;
    }
    // The body: docs/s3.md, "Payload and integrity". In memory: sent in
    // place, replayable; signed with its SHA-256 (the caller's, or ours)
    // unless the policy says unsigned (https). A streaming source is
    // streamed when the policy allows (never spooled: unsigned over https,
    // signed aws-chunked frames over http where the server accepts them),
    // else read into memory first and sent like an in-memory body.
    spec.method = "PUT";
    const bool unsigned_body = detail::unsigned_payloads(*st_);
    std::vector<std::byte> spooled;
    std::span<const std::byte> body;
    if constexpr (cachestore::detail::source_reader<Src>::in_memory) {
        body = std::span<const std::byte>(src);
    } else {
        if (detail::streams(*st_, unsigned_body)) {
            detail::streaming_body<Src> sb(src, size, !unsigned_body, st_->signer);
            sb.attach(spec);
            if (conditional_commit()) spec.headers.emplace_back("if-none-match", "*");
            return finish_put(cctx, spec);
        }
        if (auto sized = cachestore::detail::resize_buffer(spooled, size, "put_chunk", spec.error_path,
                                                           "the spooled upload (streaming sources need https or "
                                                           "aws-chunked support to go unspooled)");
            !sized)
            return sized;
        std::size_t at = 0;
        std::vector<std::byte> scratch(std::min<std::size_t>(spooled.size(), std::size_t{256} * 1024));
        auto r = cachestore::detail::pump_exact(cctx, "put_chunk", spec.error_path, src, size, scratch,
                                                [&](std::span<const std::byte> b) -> result<> {
                                                    std::memcpy(spooled.data() + at, b.data(), b.size());
                                                    at += b.size();
                                                    return {};
                                                });
        if (!r) return r;
        body = spooled;
    }
    std::string digest_hex;
    if (!known_digest.empty()) {
        spec.payload_hash = known_digest; // costs nothing, and the server checks it
    } else if (unsigned_body) {
        spec.payload_hash = sigv4::unsigned_payload;
    } else {
        auto digest = detail::payload_sha256_hex(body, "put_chunk");
        if (!digest) return std::unexpected(std::move(digest.error()));
        digest_hex = std::move(*digest);
        spec.payload_hash = digest_hex;
    }
    if (conditional_commit()) spec.headers.emplace_back("if-none-match", "*");
    detail::memory_body mb{body};
    mb.attach(spec);
    return finish_put(cctx, spec);
}

CACHESTORE_S3_DECL result<> store::finish_put(const context& cctx, detail::request_spec& spec) {
    detail::response res;
    return detail::put_verdict(detail::execute(*st_, cctx, spec, res, nullptr), spec);
}

CACHESTORE_S3_DECL result<info> store::stat(const context& ctx, const chunk_key& key) {
    if (auto v = validate(key, "stat"); !v) return std::unexpected(std::move(v.error()));
    const context cctx = detail::call_context(*st_, ctx);
    detail::request_spec spec;
    spec.method = "HEAD";
    spec.op = "stat";
    prepare_key(spec, key);
    detail::response res;
    return detail::stat_from(detail::execute(*st_, cctx, spec, res, nullptr), spec, res);
}

CACHESTORE_S3_DECL result<> store::remove(const context& ctx, const chunk_key& key) {
    if (auto v = validate(key, "remove"); !v) return v;
    const context cctx = detail::call_context(*st_, ctx);
    detail::request_spec spec;
    spec.method = "DELETE";
    spec.op = "remove";
    prepare_key(spec, key);
    detail::response res;
    return detail::remove_from(detail::execute(*st_, cctx, spec, res, nullptr));
}

CACHESTORE_S3_DECL result<> store::debug_put_with_payload_hash(const context& ctx, std::string object_key,
                                                               std::span<const std::byte> body,
                                                               std::string payload_hash) {
    detail::response res;
    return detail::simple(*st_, detail::call_context(*st_, ctx), "PUT", std::move(object_key), {}, res, body, {},
                          std::move(payload_hash));
}

CACHESTORE_S3_DECL result<> store::debug_put_streaming(const context& ctx, std::string object_key,
                                                       std::span<const std::byte> body, int corrupt_frame) {
    detail::request_spec spec;
    spec.method = "PUT";
    spec.op = "put_chunk";
    spec.error_path = object_key;
    spec.object_key = std::move(object_key);
    auto src = [body, at = std::size_t{0}](std::span<std::byte> buf) mutable -> result<std::size_t> {
        const std::size_t n = std::min(buf.size(), body.size() - at);
        std::memcpy(buf.data(), body.data() + at, n);
        at += n;
        return n;
    };
    detail::streaming_body<decltype(src)> sb(src, static_cast<std::int64_t>(body.size()), true, st_->signer, 8192);
    sb.corrupt_frame(corrupt_frame);
    sb.attach(spec);
    detail::response res;
    return detail::execute(*st_, detail::call_context(*st_, ctx), spec, res, nullptr);
}

CACHESTORE_S3_DECL result<> store::self_test(const context& ctx) {
    return detail::run_self_test(*st_, detail::call_context(*st_, ctx));
}

CACHESTORE_S3_DECL void store::prepare_key(detail::request_spec& spec, const chunk_key& key) const {
    detail::prepare_key(spec, st_->cfg.prefix, key);
}

} // namespace cachestore::s3
