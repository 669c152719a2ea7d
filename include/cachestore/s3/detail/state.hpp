// cachestore/s3/detail/state.hpp - what one S3 store owns: its settings, the
// signer, the connection pool and what the self-test learned. Shared by every
// copy of the store's handle and every thread.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <utility>

#include "cachestore/detail/fork_safe_mutex.hpp"
#include "cachestore/s3/config.hpp"
#include "cachestore/s3/detail/tls.hpp"
#include "cachestore/s3/detail/transport.hpp"
#include "cachestore/s3/self_test_report.hpp"
#include "cachestore/s3/sigv4.hpp"

namespace cachestore::s3::detail {

struct store_state {
    config cfg;
    endpoint_parts endpoint;
    std::string host_header;   ///< Host value (bucket. prefix for virtual-hosted)
    std::string url_base;      ///< scheme://host[:port]
    std::string path_base;     ///< "/bucket" (path-style) or "" (virtual-hosted)
    sigv4::signer signer;
    tls_session_share tls_share; ///< declared before the pool: it must outlive every connection
    connection_pool pool;
    std::atomic<bool> conditional_put{false};
    std::atomic<bool> aws_chunked{false}; ///< self_test proved signed aws-chunked uploads are stored decoded
    cachestore::detail::fork_safe_mutex report_mu; ///< a forked child never inherits it locked
    self_test_report report;

    explicit store_state(config c, endpoint_parts ep)
        : cfg(std::move(c)), endpoint(std::move(ep)), signer(cfg.region, "s3"), pool(cfg.max_idle_connections, cfg.timeouts.idle) {}
};

/// PUT bodies go unsigned (UNSIGNED-PAYLOAD): the policy says so, or auto
/// over https, where TLS protects the bytes in transit.
[[nodiscard]] inline bool unsigned_payloads(const store_state& st) noexcept {
    const auto p = st.cfg.payload;
    return p == payload_signing::unsigned_payload || (p == payload_signing::auto_select && st.endpoint.scheme == "https");
}

/// A streaming source is streamed rather than spooled.
[[nodiscard]] inline bool streams(const store_state& st, bool unsigned_body) noexcept {
    switch (st.cfg.streaming) {
    case streaming_upload::spool: return false;
    case streaming_upload::stream: return true;
    case streaming_upload::auto_detect: return unsigned_body || st.aws_chunked.load();
    }
    return false;
}

} // namespace cachestore::s3::detail
