// cachestore/s3/detail/request.hpp - one logical S3 request as the retry
// loop replays it, and the small pieces every operation builds it from.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/s3/credentials.hpp"
#include "cachestore/s3/detail/crypto.hpp"
#include "cachestore/s3/detail/transport.hpp"
#include "cachestore/s3/sigv4.hpp"

namespace cachestore::s3::detail {

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
    bool if_match = false;         ///< sends If-Match: a 412 means the object changed (errc::changed)
    bool keep_etag = false;        ///< keep the response's ETag (response::etag)
    /// Called after each signing with the x-amz-date, the request's signature
    /// and the credentials used (a streaming body chains its frame signatures
    /// to them); the credentials outlive the attempt.
    void (*on_signed)(void* self, std::string_view amz_date, std::string_view signature, const credentials& c) = nullptr;
    void* signed_state = nullptr;
    /// Called before each retry (after a failed attempt): a GET resumes where
    /// the sink stopped receiving; a PUT rewinds its in-memory body.
    void (*before_retry)(request_spec& self, const response& last, void* state) = nullptr;
    void* retry_state = nullptr;
};

/// A sink's accept() refusing a response: records why in `out` (the error
/// the request then fails with) and returns false.
inline bool refuse(error& out, errc code, std::string msg) {
    out.code = code;
    out.message = std::move(msg);
    return false;
}

/// The Range header value for `n` bytes from `off`: "bytes=OFF-LAST".
[[nodiscard]] inline std::string range_header(std::int64_t off, std::int64_t n) {
    return "bytes=" + std::to_string(off) + "-" + std::to_string(off + n - 1);
}

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

/// This thread's random generator, reseeded in a forked child: a child that
/// kept its parent's state would pick the parent's probe names and retry
/// delays (two self-tests deleting each other's probe; retries in lockstep).
inline std::mt19937_64& process_rng() {
    struct seeded {
        std::mt19937_64 rng{0}; // NOLINT(cert-msc51-cpp): reseeded from random_device below before any use, in each process
        pid_t pid = -1;
    };
    static thread_local seeded s;
    const pid_t me = ::getpid();
    if (s.pid != me) {
        std::random_device rd;
        s.rng.seed((static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ static_cast<std::uint64_t>(me));
        s.pid = me;
    }
    return s.rng;
}

inline std::string random_hex(std::size_t bytes) {
    auto& rng = process_rng();
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

} // namespace cachestore::s3::detail
