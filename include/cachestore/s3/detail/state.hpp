// cachestore/s3/detail/state.hpp - what one S3 store owns: its settings, the
// signer, the connection pool and what the self-test learned. Shared by every
// copy of the store's handle and every thread.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <utility>

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
    std::mutex report_mu;
    self_test_report report;

    explicit store_state(config c, endpoint_parts ep)
        : cfg(std::move(c)), endpoint(std::move(ep)), signer(cfg.region, "s3"), pool(cfg.max_idle_connections, cfg.timeouts.idle) {}
};

} // namespace cachestore::s3::detail
