// cachestore/error.hpp - the error model: an errc enum, an error value with
// context, and result<T> = std::expected<T, error>.
#pragma once

#include <cstdint>
#include "cachestore/detail/expected.hpp"
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

namespace cachestore {

/// What went wrong, as a caller must react to it. Keep this set small: every
/// value is a different reaction, documented in docs/errors.md.
enum class errc : std::uint8_t {
    not_found = 1,         ///< the chunk is not stored (404, NoSuchKey, ENOENT)
    transient,             ///< worth retrying later: 5xx, 429, resets, truncated bodies
    auth,                  ///< credentials or permissions (401/403, bad signature, clock skew)
    commit_lost,           ///< another writer already committed this chunk; it is the truth
    invalid_argument,      ///< the call was malformed (bad key, off < 0, n <= 0, size mismatch)
    out_of_range,          ///< the requested bytes lie past the end of the stored chunk
    misconfigured,         ///< the store itself is unusable as configured (NoSuchBucket, bad root)
    cancelled,             ///< the context's stop token was triggered (or a sink asked to stop)
    deadline_exceeded,     ///< the context's deadline passed
    io_error,              ///< a local I/O failure that retrying will not fix (EIO, ENOSPC, EROFS)
    protocol,              ///< the server broke the protocol in a way retrying will not fix
    unavailable,           ///< refused without I/O: a circuit breaker (cachestore::breaker) is open
    changed,               ///< the origin object changed: its ETag is no longer the one asked for (412 to If-Match)
};

/// The stable lowercase name of an errc, e.g. "not_found".
[[nodiscard]] constexpr std::string_view to_string(errc e) noexcept {
    switch (e) {
    case errc::not_found: return "not_found";
    case errc::transient: return "transient";
    case errc::auth: return "auth";
    case errc::commit_lost: return "commit_lost";
    case errc::invalid_argument: return "invalid_argument";
    case errc::out_of_range: return "out_of_range";
    case errc::misconfigured: return "misconfigured";
    case errc::cancelled: return "cancelled";
    case errc::deadline_exceeded: return "deadline_exceeded";
    case errc::io_error: return "io_error";
    case errc::protocol: return "protocol";
    case errc::unavailable: return "unavailable";
    case errc::changed: return "changed";
    }
    return "unknown";
}

/// True for the classes a caller may retry as they are.
[[nodiscard]] constexpr bool is_retryable(errc e) noexcept { return e == errc::transient; }

/// An error with the context an operator needs. It never holds a secret:
/// drivers fill it from status lines, S3 error documents and errno only.
struct error {
    errc code = errc::transient;
    std::string op;         ///< the operation: "get_chunk", "put_chunk", "stat", ...
    std::string path;       ///< the chunk's storage path (or object key) when known
    std::string message;    ///< human-readable detail
    int http_status = 0;    ///< HTTP status when a server answered, else 0
    std::string s3_code;    ///< S3 error Code, e.g. "NoSuchBucket"
    std::string request_id; ///< S3 RequestId (x-amz-request-id) when present
    int sys_errno = 0;      ///< errno of a failed system call, else 0
    int attempts = 0;       ///< attempts made (retries + 1) when the driver retries

    [[nodiscard]] std::string to_string() const {
        std::string s = "cachestore: ";
        s += cachestore::to_string(code);
        auto field = [&s](std::string_view name, std::string_view v) {
            if (v.empty()) return;
            s += ' ';
            s += name;
            s += '=';
            s += v;
        };
        field("op", op);
        field("path", path);
        if (http_status != 0) field("http", std::to_string(http_status));
        field("s3_code", s3_code);
        field("request_id", request_id);
        if (sys_errno != 0) field("errno", std::to_string(sys_errno));
        if (attempts > 1) field("attempts", std::to_string(attempts));
        if (!message.empty()) {
            s += ": ";
            s += message;
        }
        return s;
    }
};

[[nodiscard]] inline std::string to_string(const error& e) { return e.to_string(); }

inline std::ostream& operator<<(std::ostream& os, errc e) { return os << to_string(e); }
inline std::ostream& operator<<(std::ostream& os, const error& e) { return os << e.to_string(); }

template <class T = void>
using result = std::expected<T, error>;

/// Builds an unexpected error in one expression: `return fail(errc::auth, "stat", path, "...")`.
[[nodiscard]] inline std::unexpected<error> fail(errc code, std::string op, std::string path,
                                                 std::string message) {
    error e;
    e.code = code;
    e.op = std::move(op);
    e.path = std::move(path);
    e.message = std::move(message);
    return std::unexpected<error>(std::move(e));
}

/// Prints a result for test frameworks and logs: "ok" or the error.
template <class T>
std::ostream& operator<<(std::ostream& os, const result<T>& r) {
    if (r) return os << "ok";
    return os << r.error();
}

} // namespace cachestore
