// cachestore/s3/config_types.hpp - the S3 driver's configuration: a plain
// aggregate and its policies. Loading it: config_json.hpp, config_env.hpp;
// checking it: validate.hpp; everything at once: config.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cachestore/s3/credentials.hpp"
#include "cachestore/s3/observer.hpp"

namespace cachestore::s3 {

class credentials_provider;

/// How the bucket appears in request URLs.
enum class addressing {
    path,           ///< `http://host:port/bucket/key` (works with any endpoint, IPs included)
    virtual_hosted, ///< `http://bucket.host:port/key` (needs a DNS-compatible bucket name and a DNS host)
};

/// How put_chunk commits without overwriting an existing chunk.
enum class commit_mode {
    auto_detect,   ///< probe at self_test: use If-None-Match when the backend enforces it
    stat_then_put, ///< HEAD, then PUT when absent (racy window, works everywhere)
    if_none_match, ///< PUT with `If-None-Match: *` (412 -> commit_lost)
};

/// What x-amz-content-sha256 a PUT body carries (docs/s3.md, "Payload").
enum class payload_signing {
    auto_select, ///< unsigned over https (TLS protects the bytes in transit), signed over http
    sha256,      ///< the body's SHA-256, signed: the server recomputes it and refuses a corrupted body
    unsigned_payload, ///< UNSIGNED-PAYLOAD, no hashing; https endpoints only
};

/// How put_chunk sends a streaming source (a source function).
enum class streaming_upload {
    auto_detect, ///< stream it (over http as signed aws-chunked, where self_test proved the server accepts that); else spool
    stream,      ///< always stream it (self_test fails if the server refuses aws-chunked where it is needed)
    spool,       ///< read it into memory first: replayable, costs one buffer of the chunk's size
};

/// The JSON spelling: "auto" / "signed" / "unsigned".
[[nodiscard]] constexpr std::string_view to_string(payload_signing p) noexcept {
    switch (p) {
    case payload_signing::auto_select: return "auto";
    case payload_signing::sha256: return "signed";
    case payload_signing::unsigned_payload: return "unsigned";
    }
    return "unknown";
}

/// The JSON spelling: "auto" / "stream" / "spool".
[[nodiscard]] constexpr std::string_view to_string(streaming_upload s) noexcept {
    switch (s) {
    case streaming_upload::auto_detect: return "auto";
    case streaming_upload::stream: return "stream";
    case streaming_upload::spool: return "spool";
    }
    return "unknown";
}

/// The JSON spelling: "path" / "virtual".
[[nodiscard]] constexpr std::string_view to_string(addressing a) noexcept {
    switch (a) {
    case addressing::path: return "path";
    case addressing::virtual_hosted: return "virtual";
    }
    return "unknown";
}

/// The JSON spelling: "auto" / "stat_then_put" / "if_none_match".
[[nodiscard]] constexpr std::string_view to_string(commit_mode m) noexcept {
    switch (m) {
    case commit_mode::auto_detect: return "auto";
    case commit_mode::stat_then_put: return "stat_then_put";
    case commit_mode::if_none_match: return "if_none_match";
    }
    return "unknown";
}

/// Retries of transient errors: attempt n (1-based) waits a jittered delay of
/// about base_delay * 2^(n-1), capped at max_delay.
struct retry_policy {
    int max_attempts = 4; ///< total attempts including the first; 1..20 (1 = no retries)
    std::chrono::milliseconds base_delay{25};  ///< >= 0
    std::chrono::milliseconds max_delay{2000}; ///< >= base_delay
};

/// Network timeouts. Every duration is at most 24 hours.
struct timeout_policy {
    std::chrono::milliseconds connect{3000};   ///< TCP + TLS connect; > 0
    std::chrono::seconds low_speed_time{10};   ///< abort a transfer slower than low_speed_limit for this long; > 0 unless the limit is 0
    long low_speed_limit = 1024;               ///< bytes/s; 0 disables the low-speed check
    std::chrono::milliseconds operation{30000}; ///< per call (all its attempts) when the context has no earlier deadline; 0 = none
    std::chrono::milliseconds idle{20000};      ///< pooled connections idle longer are closed, not reused; > 0
};

/// TLS peer verification for https endpoints.
struct tls_policy {
    bool verify = true;  ///< verify the server certificate and host name
    std::string ca_file; ///< PEM bundle instead of the system default (must be a readable file when set)
    std::string ca_dir;  ///< hashed CA directory instead of the system default (must be a directory when set)
};

/// Everything the S3 driver needs. A plain aggregate: fill it by hand, from
/// JSON (config_from_json) or from the environment (config_from_env), then
/// check it with validate() (the loaders' results and the driver do).
struct config {
    /// "http://127.0.0.1:7480", "https://minio.dc1:9000", "http://[::1]:9000".
    /// Scheme + host + optional port, nothing else (a trailing '/' is fine).
    /// Empty = AWS: https://s3.<region>.amazonaws.com (".amazonaws.com.cn" for cn-* regions).
    std::string endpoint;
    /// The SigV4 signing region (and the AWS host when endpoint is empty).
    /// Note: config_from_env(base) fills the region from the environment only
    /// when base.region is empty; this default is non-empty, so clear it to let
    /// AWS_REGION decide. config_from_env() and config_from_json without a
    /// "region" key do that for you.
    std::string region = "us-east-1";
    std::string bucket;
    /// Optional key prefix prepended to every storage path, e.g. "cache/".
    /// Used verbatim (no '/' is added); must not start with '/'.
    std::string prefix;
    addressing addressing_style = addressing::path;
    credentials creds;
    /// When set, the store signs with what this provider supplies (refreshed
    /// ahead of expiry, re-read when its source changes) instead of `creds`;
    /// see credentials_provider.hpp. config_from_env sets it for credentials
    /// from the shared credentials file. Shared, not copied, with the store.
    std::shared_ptr<credentials_provider> credentials_source;
    timeout_policy timeouts;
    retry_policy retry;
    tls_policy tls;
    commit_mode commit = commit_mode::auto_detect;
    payload_signing payload = payload_signing::auto_select;
    streaming_upload streaming = streaming_upload::auto_detect;
    std::size_t max_idle_connections = 64; ///< idle connections kept for reuse; 0 = close after each call
    /// Called once per HTTP attempt with its status, ids, sizes and timings
    /// (observer.hpp). Unset: no timings are gathered.
    request_observer observer;
};

/// Reads one environment variable: its value, or nullopt when unset. The
/// loaders treat an empty value as unset. Inject a fake in tests.
using env_source = std::function<std::optional<std::string>(std::string_view name)>;

/// The process environment (std::getenv). Like getenv itself, not safe
/// against a concurrent setenv/putenv in another thread.
[[nodiscard]] inline std::optional<std::string> process_env(std::string_view name) {
    const char* v = std::getenv(std::string(name).c_str()); // NOLINT(concurrency-mt-unsafe): documented above
    if (v == nullptr) return std::nullopt;
    return std::string(v);
}

} // namespace cachestore::s3
