// cachestore/s3/observer.hpp - what the S3 driver reports about each HTTP
// attempt, for metrics, logs and traces (config::observer).
//
// The observer is called once per attempt (a retried GET calls it once per
// request sent), on the calling thread, after the attempt ended and before
// any back-off wait. It must not throw and should be quick: it delays the
// call it observes. Nothing in an event is a secret: no key, token,
// signature or header value other than the ones named here.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "cachestore/error.hpp"

namespace cachestore::s3 {

/// One HTTP attempt of one call. The views are valid only during the
/// observer's call: copy what you keep.
struct request_event {
    using duration = std::chrono::microseconds;

    std::string_view op;          ///< "get_chunk", "put_chunk", "stat", "remove", "self_test"
    std::string_view method;      ///< "GET", "PUT", "HEAD", "DELETE"
    std::string_view path;        ///< the chunk's storage path (self-test: the probe key)
    int attempt = 1;              ///< 1 for the first request of the call's step, then 2, 3...
    int http_status = 0;          ///< 0 when no answer arrived
    std::string_view s3_code;     ///< S3 error Code, when the answer had one
    std::string_view request_id;  ///< x-amz-request-id
    std::string_view amz_id_2;    ///< x-amz-id-2 (the host id AWS support asks for)
    std::int64_t bytes_sent = 0;      ///< request body bytes sent
    std::int64_t bytes_received = 0;  ///< response body bytes received (delivered to the sink for a GET)
    bool connection_reused = false;   ///< went out on a kept-alive connection
    duration pool_wait{0};        ///< waiting for a pooled connection (or creating one)
    duration connect{0};          ///< TCP connect (0 on a reused connection)
    duration tls{0};              ///< TLS handshake (0 on a reused connection or over http)
    duration first_byte{0};       ///< from the start of the attempt to the first response byte
    duration total{0};            ///< the whole attempt
    std::optional<errc> outcome;  ///< nullopt: success; else the attempt's error class
};

/// Called once per attempt; see request_event. Unset (the default): the
/// driver gathers no timings and calls nothing.
using request_observer = std::function<void(const request_event&)>;

} // namespace cachestore::s3
