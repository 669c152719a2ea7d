// examples/snippets/rgw_env.hpp - for the snippet programs that run against
// the local Ceph RGW the tests start (tests/servers/with-servers.sh exports
// CACHESTORE_RGW_*). Outside the regions the docs show.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include <cachestore/s3/config.hpp>

namespace snippet {

inline std::string env(const char* name) {
    const char* v = std::getenv(name); // NOLINT(concurrency-mt-unsafe): single-threaded main
    return v == nullptr ? std::string() : std::string(v);
}

/// The RGW's config, or nullopt when CACHESTORE_RGW_ENDPOINT is not set:
/// then `who` says it was not run and `exit_code` is 1 under CI=true (a
/// missing server fails there), else 0.
inline std::optional<cachestore::s3::config> rgw_config(const char* who, int& exit_code) {
    if (env("CACHESTORE_RGW_ENDPOINT").empty()) {
        const bool ci = env("CI") == "true" || env("CI") == "1";
        std::fprintf(ci ? stderr : stdout, "%s: CACHESTORE_RGW_ENDPOINT not set, not run%s\n", who,
                     ci ? " (CI=true: failing)" : "");
        exit_code = ci ? 1 : 0;
        return std::nullopt;
    }
    cachestore::s3::config cfg;
    cfg.endpoint = env("CACHESTORE_RGW_ENDPOINT");
    cfg.bucket = env("CACHESTORE_RGW_BUCKET");
    cfg.creds.access_key_id = env("CACHESTORE_RGW_ACCESS_KEY");
    cfg.creds.secret_access_key = env("CACHESTORE_RGW_SECRET_KEY");
    return cfg;
}

} // namespace snippet
