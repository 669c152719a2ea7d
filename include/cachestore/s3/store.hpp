// cachestore/s3/store.hpp - the S3 driver: CacheStore over any S3-compatible
// server, signed with AWS Signature V4, on libcurl and OpenSSL.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <curl/curl.h>

#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/s3/config.hpp"
#include "cachestore/s3/credentials.hpp"
#include "cachestore/s3/detail/classify.hpp"
#include "cachestore/s3/detail/crypto.hpp"
#include "cachestore/s3/detail/error_xml.hpp"
#include "cachestore/s3/detail/http_parse.hpp"
#include "cachestore/s3/detail/transport.hpp"
#include "cachestore/s3/sigv4.hpp"
#include "cachestore/store.hpp"

namespace cachestore::s3 {

/// What the last successful self_test() learned about the server.
struct self_test_report {
    bool ran = false;
    bool conditional_put_enforced = false; ///< If-None-Match: * answered 412 on an existing key
    std::chrono::milliseconds clock_offset{0}; ///< server Date minus local clock (1 s resolution)
};

namespace detail {

using header_list = std::vector<std::pair<std::string, std::string>>;

/// One logical request, replayed by the retry loop.
struct request_spec {
    const char* method = "GET";
    std::string op;                ///< for errors: "get_chunk", "put_chunk", ...
    std::string error_path;        ///< for errors: the chunk's storage path
    std::string object_key;        ///< raw object key inside the bucket; empty = the bucket itself
    header_list query;             ///< raw query parameters
    header_list headers;           ///< extra headers (lowercase names), signed
    /// x-amz-content-sha256: the hex SHA-256 of a body, which outlives the call.
    /// A request without a body has no payload to protect, and UNSIGNED-PAYLOAD
    /// is 48 bytes shorter than the empty body's digest on the wire and in the
    /// canonical request (see docs/performance.md).
    std::string_view payload_hash = sigv4::unsigned_payload;
    body_source body;
    body_sink sink;
    bool body_replayable = true;   ///< false once a streaming source has been read
    /// Called before each retry (after a failed attempt): a GET resumes where
    /// the sink stopped receiving; a PUT rewinds its in-memory body.
    void (*before_retry)(request_spec& self, const response& last, void* state) = nullptr;
    void* retry_state = nullptr;
};

struct store_state {
    config cfg;
    endpoint_parts endpoint;
    std::string host_header;   ///< Host value (bucket. prefix for virtual-hosted)
    std::string url_base;      ///< scheme://host[:port]
    std::string path_base;     ///< "/bucket" (path-style) or "" (virtual-hosted)
    sigv4::signer signer;
    connection_pool pool;
    std::atomic<bool> conditional_put{false};
    std::mutex report_mu;
    self_test_report report;

    explicit store_state(config c, endpoint_parts ep)
        : cfg(std::move(c)), endpoint(std::move(ep)), signer(cfg.region, "s3"), pool(cfg.max_idle_connections) {}
};

/// Hex SHA-256 of a body; OpenSSL failures (which throw in crypto.hpp) become errors.
inline result<std::string> payload_sha256_hex(std::span<const std::byte> body, std::string_view op) {
    try {
        return hex_lower(sha256(std::string_view(reinterpret_cast<const char*>(body.data()), body.size())));
    } catch (const std::exception& e) {
        return fail(errc::io_error, std::string(op), {}, std::string("hashing the body failed: ") + e.what());
    }
}

/// An in-memory request body, replayable from its first byte: by libcurl
/// (rewinding to resend on a fresh connection) and by the retry loop.
struct memory_body {
    std::span<const std::byte> bytes;
    std::size_t pos = 0;

    /// Makes `spec` send these bytes; `*this` must outlive the request.
    void attach(request_spec& spec) {
        spec.body.self = this;
        spec.body.size = static_cast<std::int64_t>(bytes.size());
        spec.body.read = [](void* self, std::span<std::byte> buf, abort_reason&, error&) -> std::optional<std::size_t> {
            auto& m = *static_cast<memory_body*>(self);
            const std::size_t n = std::min(buf.size(), m.bytes.size() - m.pos);
            if (n != 0) std::memcpy(buf.data(), m.bytes.data() + m.pos, n);
            m.pos += n;
            return n;
        };
        spec.body.rewind = [](void* self) {
            static_cast<memory_body*>(self)->pos = 0;
            return true;
        };
        spec.retry_state = this;
        spec.before_retry = [](request_spec&, const response&, void* state) { static_cast<memory_body*>(state)->pos = 0; };
    }
};

inline std::string random_hex(std::size_t bytes) {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < bytes; ++i) {
        const auto v = static_cast<unsigned>(rng() & 0xff);
        s += digits[v >> 4];
        s += digits[v & 0xf];
    }
    return s;
}

/// Sleeps up to `d`, waking at once on a stop request. False if stopped.
inline bool sleep_for(const context& ctx, std::chrono::steady_clock::duration d) {
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    const std::stop_token& token = ctx.stop_token();
    cv.wait_for(lock, token, d, [] { return false; });
    return !token.stop_requested();
}

} // namespace detail

/// The S3 driver. Thread-safe: one store serves every thread of a proxy;
/// connections are pooled and reused. Movable, not copyable.
class store {
public:
    /// Validates `cfg` (every problem is `misconfigured`, reported here and
    /// not at the first request) and prepares the connection pool.
    static result<store> create(config cfg) {
        if (auto v = validate(cfg); !v) return std::unexpected(std::move(v.error()));
        auto ep = parse_endpoint(cfg);
        if (!ep) return std::unexpected(std::move(ep.error()));
        detail::curl_global();
        auto st = std::make_unique<detail::store_state>(std::move(cfg), std::move(*ep));
        const auto& e = st->endpoint;
        std::string host = e.host;
        if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]"; // IPv6 literal
        if (st->cfg.addressing_style == addressing::virtual_hosted) host = st->cfg.bucket + "." + host;
        std::string hostport = host;
        if (!e.default_port) hostport += ":" + std::to_string(e.port);
        st->host_header = hostport;
        st->url_base = e.scheme + "://" + hostport;
        st->path_base = st->cfg.addressing_style == addressing::path ? "/" + st->cfg.bucket : "";
        if (st->cfg.commit == commit_mode::if_none_match) st->conditional_put = true;
        return store(std::move(st));
    }

    store(store&&) noexcept = default;
    store& operator=(store&&) noexcept = default;

    [[nodiscard]] const config& settings() const noexcept { return st_->cfg; }

    /// The object key a chunk is stored under: prefix + storage path.
    [[nodiscard]] result<std::string> object_key(const chunk_key& k) const {
        auto p = storage_path(k);
        if (!p) return p;
        return st_->cfg.prefix + *p;
    }

    /// Whether commits use If-None-Match: * (configured, or proven by self_test in auto mode).
    [[nodiscard]] bool conditional_commit() const noexcept { return st_->conditional_put.load(); }

    [[nodiscard]] self_test_report last_self_test() const {
        std::lock_guard lock(st_->report_mu);
        return st_->report;
    }

    /// Connection objects created so far; equals the peak number of
    /// concurrently active calls when connections are reused.
    [[nodiscard]] std::size_t connections_created() const noexcept { return st_->pool.created(); }

    // ---- CacheStore ------------------------------------------------------

    template <chunk_sink Sink>
    result<> get_chunk(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, Sink&& sink) {
        if (auto a = cachestore::detail::check_get_args(key, off, n); !a) return a;
        struct get_state {
            std::remove_reference_t<Sink>* sink;
            std::int64_t off, n;
            std::int64_t done = 0;      ///< bytes delivered in earlier attempts
            std::int64_t start = 0;     ///< first byte asked for in this attempt
            error refusal;              ///< why accept() refused a response
        } gs{&sink, off, n, 0, off, {}};
        detail::request_spec spec;
        spec.method = "GET";
        spec.op = "get_chunk";
        auto ok = prepare_key(spec, key);
        if (!ok) return ok;
        gs.start = off;
        spec.headers.emplace_back("range", range_header(off, n));
        spec.sink.self = &gs;
        spec.sink.limit = n;
        spec.sink.exact = true;
        spec.sink.accept = [](void* self, const detail::response& r) {
            auto& g = *static_cast<get_state*>(self);
            const std::int64_t want_first = g.start, want_last = g.off + g.n - 1;
            if (r.status == 206) {
                if (!r.range)
                    return refuse(g.refusal, errc::protocol, "206 without a valid Content-Range");
                if (r.range->first != want_first)
                    return refuse(g.refusal, errc::protocol, "Content-Range starts at " + std::to_string(r.range->first) +
                                                                 ", asked for " + std::to_string(want_first));
                if (r.range->last != want_last) {
                    if (r.range->last < want_last && r.range->total == r.range->last + 1)
                        return refuse(g.refusal, errc::out_of_range,
                                      "range ends at " + std::to_string(g.off + g.n) + " but the chunk holds " +
                                          std::to_string(r.range->total) + " bytes");
                    return refuse(g.refusal, errc::protocol, "Content-Range ends at " + std::to_string(r.range->last) +
                                                                 ", asked for " + std::to_string(want_last));
                }
                if (r.content_length >= 0 && r.content_length != want_last - want_first + 1)
                    return refuse(g.refusal, errc::protocol, "Content-Length disagrees with Content-Range");
                return true;
            }
            if (r.status == 200) {
                // Only when the whole object is provably exactly the range.
                if (want_first == 0 && r.content_length == want_last + 1) return true;
                if (r.content_length >= 0 && r.content_length < want_last + 1)
                    return refuse(g.refusal, errc::out_of_range,
                                  "range ends at " + std::to_string(g.off + g.n) + " but the chunk holds " +
                                      std::to_string(r.content_length) + " bytes");
                return refuse(g.refusal, errc::protocol, "server ignored the Range header (200 with a different body)");
            }
            return refuse(g.refusal, errc::protocol, "unexpected 2xx status " + std::to_string(r.status));
        };
        spec.sink.write = [](void* self, std::span<const std::byte> b) {
            auto& g = *static_cast<get_state*>(self);
            return static_cast<bool>((*g.sink)(b));
        };
        spec.retry_state = &gs;
        spec.before_retry = [](detail::request_spec& s, const detail::response& last, void* state) {
            // Resume after the bytes the sink already has: it sees each byte once.
            auto& g = *static_cast<get_state*>(state);
            g.done += last.delivered;
            g.start = g.off + g.done;
            s.sink.limit = g.n - g.done;
            s.headers[0].second = range_header(g.start, g.n - g.done);
        };
        detail::response res;
        auto r = execute(ctx, spec, res, &gs.refusal);
        if (!r) return r;
        const std::int64_t total = gs.done + res.delivered;
        if (total != n)
            return fail_ctx(errc::transient, spec, res, "truncated body: received " + std::to_string(total) + " of " +
                                                            std::to_string(n) + " bytes");
        return {};
    }

    template <chunk_source Src>
    result<> put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src&& src) {
        return put_impl(ctx, key, size, src, {});
    }

    /// put_chunk for bytes whose SHA-256 (64 lowercase hex digits) the caller
    /// already has, e.g. hashed while they arrived from the origin: the driver
    /// then does not hash them again (about 4.5 ms per 8 MiB with SHA-NI). The
    /// digest is still signed and the server still checks it against the bytes
    /// (a wrong digest is refused with XAmzContentSHA256Mismatch and, like any
    /// corrupted upload, retried and then reported as `transient`).
    result<> put_chunk_prehashed(const context& ctx, const chunk_key& key, std::span<const std::byte> bytes,
                                 std::string_view sha256_hex) {
        if (auto d = cachestore::detail::check_sha256_hex(sha256_hex); !d) return d;
        return put_impl(ctx, key, static_cast<std::int64_t>(bytes.size()), bytes, sha256_hex);
    }

private:
    template <class Src>
    result<> put_impl(const context& ctx, const chunk_key& key, std::int64_t size, Src& src, std::string_view known_digest) {
        if (auto a = cachestore::detail::check_put_args(key, size); !a) return a;
        if (auto a = cachestore::detail::check_source_size(src, size); !a) return a;
        detail::request_spec spec;
        spec.op = "put_chunk";
        auto ok = prepare_key(spec, key);
        if (!ok) return ok;
        // Stat first: a present chunk is the truth, and uploading is waste.
        {
            detail::request_spec head = spec;
            head.method = "HEAD";
            detail::response res;
            auto r = execute(ctx, head, res, nullptr);
            if (r) return fail_ctx(errc::commit_lost, spec, res, "chunk already committed");
            if (r.error().code != errc::not_found) return r;
        }
        // In-memory bodies are hashed and signed: the server rejects a
        // corrupted upload (XAmzContentSHA256Mismatch), and a retry replays the
        // same bytes. A streaming source is read once into memory first, so it
        // gets the same guarantees (see docs/s3.md, "Payload").
        std::vector<std::byte> spooled;
        std::span<const std::byte> body;
        if constexpr (cachestore::detail::source_reader<std::remove_reference_t<Src>>::in_memory) {
            body = std::span<const std::byte>(src);
        } else {
            spooled.resize(static_cast<std::size_t>(size));
            std::size_t at = 0;
            std::vector<std::byte> scratch(std::min<std::size_t>(spooled.size(), std::size_t{256} * 1024));
            auto r = cachestore::detail::pump_exact(ctx, "put_chunk", spec.error_path, src, size, scratch,
                                                    [&](std::span<const std::byte> b) -> result<> {
                                                        std::memcpy(spooled.data() + at, b.data(), b.size());
                                                        at += b.size();
                                                        return {};
                                                    });
            if (!r) return r;
            body = spooled;
        }
        spec.method = "PUT";
        std::string digest_hex;
        if (known_digest.empty()) {
            auto digest = detail::payload_sha256_hex(body, "put_chunk");
            if (!digest) return std::unexpected(std::move(digest.error()));
            digest_hex = std::move(*digest);
            spec.payload_hash = digest_hex;
        } else {
            spec.payload_hash = known_digest;
        }
        if (conditional_commit()) spec.headers.emplace_back("if-none-match", "*");
        detail::memory_body mb{body};
        mb.attach(spec);
        detail::response res;
        auto r = execute(ctx, spec, res, nullptr);
        if (!r && r.error().code == errc::commit_lost) r.error().message = "another writer committed this chunk first (412)";
        return r;
    }

public:
    result<info> stat(const context& ctx, const chunk_key& key) {
        if (auto v = validate(key, "stat"); !v) return std::unexpected(std::move(v.error()));
        detail::request_spec spec;
        spec.method = "HEAD";
        spec.op = "stat";
        if (auto ok = prepare_key(spec, key); !ok) return std::unexpected(std::move(ok.error()));
        detail::response res;
        if (auto r = execute(ctx, spec, res, nullptr); !r) return std::unexpected(std::move(r.error()));
        if (res.content_length < 0)
            return fail_ctx(errc::protocol, spec, res, "HEAD answer has no Content-Length");
        auto when = detail::parse_http_date(res.last_modified);
        if (!when) return fail_ctx(errc::protocol, spec, res, "HEAD answer has no valid Last-Modified");
        return info{res.content_length, *when};
    }

    result<> remove(const context& ctx, const chunk_key& key) {
        if (auto v = validate(key, "remove"); !v) return v;
        detail::request_spec spec;
        spec.method = "DELETE";
        spec.op = "remove";
        if (auto ok = prepare_key(spec, key); !ok) return ok;
        detail::response res;
        auto r = execute(ctx, spec, res, nullptr);
        if (!r && r.error().code == errc::not_found && r.error().s3_code != "NoSuchBucket") return {};
        return r;
    }

    /// Test hook: PUTs `body` to `object_key` (inside the bucket, no prefix)
    /// signed with `payload_hash` instead of the body's real hash, to prove the
    /// server rejects a corrupted upload. Not for production use.
    result<> debug_put_with_payload_hash(const context& ctx, std::string object_key, std::span<const std::byte> body,
                                         std::string payload_hash) {
        detail::response res;
        return simple(ctx, "PUT", std::move(object_key), {}, res, body, {}, std::move(payload_hash));
    }

    /// Proves the bucket fit for stat-then-put before a proxy serves traffic.
    /// Every failure says what to fix. See docs/s3.md, "Self-test".
    result<> self_test(const context& ctx);

private:
    explicit store(std::unique_ptr<detail::store_state> st) : st_(std::move(st)) {}

    static bool refuse(error& out, errc code, std::string msg) {
        out.code = code;
        out.message = std::move(msg);
        return false;
    }

    static std::string range_header(std::int64_t off, std::int64_t n) {
        return "bytes=" + std::to_string(off) + "-" + std::to_string(off + n - 1);
    }

    result<> prepare_key(detail::request_spec& spec, const chunk_key& key) const {
        if (auto v = validate(key, spec.op); !v) return v;
        spec.error_path.clear();
        cachestore::detail::append_storage_path(spec.error_path, key);
        spec.object_key = st_->cfg.prefix + spec.error_path;
        return {};
    }

    static std::unexpected<error> fail_ctx(errc code, const detail::request_spec& spec, const detail::response& res,
                                           std::string message) {
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
    static result<> outcome(const detail::request_spec& spec, detail::response& res, const error* refusal) {
        using detail::abort_reason;
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
        if (res.curl != CURLE_OK && res.status < 300) { // an HTTP error answer speaks for itself
            std::string msg = "transport: ";
            msg += curl_easy_strerror(res.curl);
            if (res.curl_message[0] != '\0') {
                msg += ": ";
                msg += res.curl_message;
            }
            errc code = detail::classify_curl(res.curl);
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
        const auto doc = detail::parse_error_xml(res.error_body);
        errc code = detail::classify_http(res.status, doc.code);
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

    /// Signs and performs `spec`, retrying transient failures with full-jitter
    /// exponential backoff, within the context's and the operation's deadline.
    result<> execute(const context& ctx, detail::request_spec& spec, detail::response& res, const error* refusal) {
        auto& st = *st_;
        auto deadline = ctx.deadline();
        if (st.cfg.timeouts.operation.count() > 0) {
            const auto op_deadline = std::chrono::steady_clock::now() + st.cfg.timeouts.operation;
            deadline = std::min(deadline, op_deadline);
        }
        const context op_ctx = ctx.with_deadline(deadline);
        static thread_local std::mt19937_64 rng{std::random_device{}()};
        for (int attempt = 1;; ++attempt) {
            if (auto c = op_ctx.check(spec.op, spec.error_path); !c) {
                c.error().attempts = attempt - 1;
                return c;
            }
            res = detail::response{};
            auto conn = st.pool.acquire();
            if (!conn->ok()) return fail_ctx(errc::io_error, spec, res, "could not create a libcurl handle");
            if (auto h = sign_into(spec, *conn); !h) {
                st.pool.release(std::move(conn));
                return h;
            }
            detail::http_request req;
            req.method = spec.method;
            req.url = conn->url.c_str();
            req.headers = conn->header_nodes.data();
            req.body = spec.body;
            req.sink = spec.sink;
            req.connect_timeout_ms = static_cast<long>(st.cfg.timeouts.connect.count());
            req.low_speed_limit = st.cfg.timeouts.low_speed_limit;
            req.low_speed_time_s = static_cast<long>(st.cfg.timeouts.low_speed_time.count());
            req.verify_tls = st.cfg.tls.verify;
            req.ca_file = st.cfg.tls.ca_file.empty() ? nullptr : st.cfg.tls.ca_file.c_str();
            req.ca_dir = st.cfg.tls.ca_dir.empty() ? nullptr : st.cfg.tls.ca_dir.c_str();
            const bool reusable = detail::perform(*conn, req, res, op_ctx, deadline);
            if (reusable) st.pool.release(std::move(conn));
            auto r = outcome(spec, res, refusal);
            if (r) return r;
            error& e = r.error();
            e.attempts = attempt;
            if (e.code != errc::transient || attempt >= st.cfg.retry.max_attempts || !spec.body_replayable) return r;
            // Full jitter: uniform in [0, min(max_delay, base * 2^(attempt-1))].
            const auto cap = std::min<std::int64_t>(st.cfg.retry.max_delay.count(),
                                                    st.cfg.retry.base_delay.count() << std::min(attempt - 1, 20));
            const auto delay = std::chrono::milliseconds(std::uniform_int_distribution<std::int64_t>(0, std::max<std::int64_t>(cap, 0))(rng));
            if (std::chrono::steady_clock::now() + delay >= deadline) {
                e.message += " (no time left for another attempt before the deadline)";
                return r;
            }
            if (!detail::sleep_for(op_ctx, delay)) {
                auto c = fail_ctx(errc::cancelled, spec, res, "stop requested while waiting to retry");
                c.error().attempts = attempt;
                return c;
            }
            if (spec.before_retry != nullptr) spec.before_retry(spec, res, spec.retry_state);
        }
    }

    /// Builds the URL, signs the request and lays out its header lines, all in
    /// `c`'s reusable buffers: in a steady state this allocates nothing.
    result<> sign_into(const detail::request_spec& spec, detail::connection& c) const {
        auto& st = *st_;
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
            if (!st.cfg.creds.session_token.empty()) h.emplace_back("x-amz-security-token", st.cfg.creds.session_token);
            for (const auto& kv : spec.headers) h.emplace_back(kv.first, kv.second);
            sigv4::request req;
            req.method = spec.method;
            req.canonical_uri = std::string_view(url).substr(uri_at, uri_len);
            req.query = spec.query;
            req.headers = std::span<const std::pair<std::string_view, std::string_view>>(h);
            req.payload_hash = spec.payload_hash;
            sigv4::signer::signed_result sig{std::move(c.authorization), std::move(c.signature)};
            st.signer.sign_into(sig, st.cfg.creds, req, amz_date);
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

    /// A bucket-level or probe request used by self_test.
    result<> simple(const context& ctx, const char* method, std::string key, detail::header_list query,
                    detail::response& res, std::span<const std::byte> body = {}, detail::header_list headers = {},
                    std::string payload_hash_override = {}) {
        detail::request_spec spec;
        spec.method = method;
        spec.op = "self_test";
        spec.error_path = key;
        spec.object_key = std::move(key);
        spec.query = std::move(query);
        spec.headers = std::move(headers);
        detail::memory_body mb{body};
        if (std::string_view(method) == "PUT") {
            if (payload_hash_override.empty()) {
                auto digest = detail::payload_sha256_hex(body, "self_test");
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
            spec.sink.accept = [](void*, const detail::response&) { return true; };
            spec.sink.write = [](void* self, std::span<const std::byte> b) {
                static_cast<collect*>(self)->body.append(reinterpret_cast<const char*>(b.data()), b.size());
                return true;
            };
        }
        auto r = execute(ctx, spec, res, nullptr);
        if (r && std::string_view(method) == "GET") res.error_body = std::move(col.body); // hand the body back
        return r;
    }

    std::unique_ptr<detail::store_state> st_;
};

inline result<> store::self_test(const context& ctx) {
    auto& st = *st_;
    auto fail_st = [](errc code, std::string msg, const error* cause = nullptr) {
        error e = cause != nullptr ? *cause : error{};
        e.code = code;
        e.op = "self_test";
        e.message = cause != nullptr ? msg + " [" + cause->message + "]" : std::move(msg);
        return std::unexpected(std::move(e));
    };
    auto explain = [&](const error& e, const std::string& what) -> std::unexpected<error> {
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
        detail::response res;
        auto r = simple(ctx, "GET", "", {{"versioning", ""}}, res);
        if (!r) return explain(r.error(), "reading the bucket's versioning state (GetBucketVersioning)");
        const auto status = detail::xml_element(res.error_body, "Status");
        if (status == "Enabled" || status == "Suspended")
            return fail_st(errc::misconfigured,
                           "bucket '" + st.cfg.bucket + "' has versioning " + status +
                               "; use an unversioned bucket: overwrites and deletes would keep old versions forever");
        if (auto d = detail::parse_http_date(res.date)) {
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
        detail::response res;
        auto r = simple(ctx, "GET", probe_prefix + "absent-" + detail::random_hex(16), {}, res);
        if (r) return fail_st(errc::protocol, "GET of a random absent key succeeded; the store does not report misses");
        if (r.error().code == errc::auth && (r.error().s3_code == "AccessDenied" || r.error().s3_code.empty()))
            return fail_st(errc::auth, "a missing key answers 403, not 404: grant s3:ListBucket on the bucket so misses are "
                                       "reported as not found", &r.error());
        if (r.error().code != errc::not_found) return explain(r.error(), "GET of an absent key");
        detail::response head;
        auto h = simple(ctx, "HEAD", probe_prefix + "absent-" + detail::random_hex(16), {}, head);
        if (h || h.error().code != errc::not_found)
            return fail_st(h ? errc::protocol : h.error().code,
                           "HEAD of an absent key did not answer 404 (got HTTP " + std::to_string(head.status) +
                               "); stat-then-put needs 404 for misses: grant s3:ListBucket");
    }
    // 4. Read-after-write: PUT a probe, HEAD it, GET it back byte-exact, DELETE it.
    const std::string probe = probe_prefix + "probe-" + detail::random_hex(16);
    std::string payload = "cachestore self-test " + detail::random_hex(24);
    const auto body = as_bytes(payload);
    auto cleanup = [&] {
        detail::response res;
        (void)simple(context::with_timeout(std::chrono::seconds(5)), "DELETE", probe, {}, res);
    };
    {
        detail::response res;
        if (auto r = simple(ctx, "PUT", probe, {}, res, body); !r) return explain(r.error(), "PUT of the probe object");
    }
    {
        detail::response res;
        auto r = simple(ctx, "HEAD", probe, {}, res);
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
        detail::response res;
        auto r = simple(ctx, "GET", probe, {}, res);
        if (!r || res.error_body != payload) {
            cleanup();
            return fail_st(r ? errc::protocol : r.error().code, "GET of the probe did not return the bytes written",
                           r ? nullptr : &r.error());
        }
    }
    // 5. Does the server enforce If-None-Match: * on PUT? (412 = yes.)
    bool enforced = false;
    {
        detail::response res;
        auto r = simple(ctx, "PUT", probe, {}, res, body, {{"if-none-match", "*"}});
        if (!r && r.error().code == errc::commit_lost) enforced = true;
        else if (!r && r.error().code != errc::protocol && r.error().http_status != 501 && r.error().http_status != 400) {
            cleanup();
            return explain(r.error(), "conditional PUT probe");
        }
    }
    {
        detail::response res;
        if (auto r = simple(ctx, "DELETE", probe, {}, res); !r) return explain(r.error(), "DELETE of the probe object");
        detail::response head;
        auto h = simple(ctx, "HEAD", probe, {}, head);
        if (h) return fail_st(errc::misconfigured, "the probe is still visible after DELETE: deletes are not read-after-write");
    }
    if (st.cfg.commit == commit_mode::auto_detect) st.conditional_put = enforced;
    if (st.cfg.commit == commit_mode::if_none_match && !enforced)
        return fail_st(errc::misconfigured, "commit_mode is if_none_match but the server does not enforce If-None-Match: * "
                                            "(a second conditional PUT succeeded); use auto or stat_then_put");
    std::lock_guard lock(st.report_mu);
    st.report.ran = true;
    st.report.conditional_put_enforced = enforced;
    return {};
}

static_assert(CacheStore<store>);

} // namespace cachestore::s3
