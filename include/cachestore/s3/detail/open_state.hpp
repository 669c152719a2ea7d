// cachestore/s3/detail/open_state.hpp - a validated configuration made into
// the state one S3 client shares across threads: the store's and the
// origin's (s3/store.hpp, s3/origin.hpp).
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "cachestore/error.hpp"
#include "cachestore/s3/config.hpp"
#include "cachestore/s3/detail/connection_pool.hpp"
#include "cachestore/s3/detail/state.hpp"

namespace cachestore::s3::detail {

/// Validates `cfg` (every problem is `misconfigured`, reported here and not
/// at the first request), asks a credentials provider for its first
/// credentials, and prepares the connection pool and the request bases.
inline result<std::unique_ptr<store_state>> open_state(config cfg) {
    if (auto v = validate(cfg); !v) return std::unexpected(std::move(v.error()));
    auto ep = parse_endpoint(cfg);
    if (!ep) return std::unexpected(std::move(ep.error()));
    if (cfg.credentials_source) { // the first credentials now, not at the first request
        if (auto c = cfg.credentials_source->current(); !c) {
            error e = std::move(c.error());
            e.op = "config";
            return std::unexpected(std::move(e));
        }
    }
    curl_global();
    auto st = std::make_unique<store_state>(std::move(cfg), std::move(*ep));
    const auto& e = st->endpoint;
    std::string host = e.host;
    if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]"; // IPv6 literal
    if (st->cfg.addressing_style == addressing::virtual_hosted) host = st->cfg.bucket + "." + host;
    std::string hostport = host;
    if (!e.default_port) hostport += ":" + std::to_string(e.port);
    st->host_header = hostport;
    st->url_base = e.scheme + "://" + hostport;
    st->path_base = st->cfg.addressing_style == addressing::path ? "/" + st->cfg.bucket : "";
    return st;
}

} // namespace cachestore::s3::detail
