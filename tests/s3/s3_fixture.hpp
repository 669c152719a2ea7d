// Fixtures that connect the S3 driver to the local servers started by
// tests/servers/with-servers.sh (which exports CACHESTORE_<SERVER>_* variables).
#pragma once

#include <chrono>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>

#include "cachestore/cachestore.hpp"
#include "cachestore/s3.hpp"

namespace s3test {

inline std::string env(const std::string& name) {
    const char* v = std::getenv(name.c_str()); // NOLINT(concurrency-mt-unsafe): test setup; nothing in the tests calls setenv
    return v == nullptr ? std::string() : std::string(v);
}

/// A config for server `server` ("RGW", "MOTO") from the environment, or the
/// reason there is none. With `tls`, its https endpoint (TLS_ENDPOINT),
/// verified with the private CA that signed its certificate (CA_FILE).
inline cachestore::result<cachestore::s3::config> server_config(const std::string& server, const std::string& bucket_var = "BUCKET",
                                                                bool tls = false) {
    const std::string p = "CACHESTORE_" + server + "_";
    cachestore::s3::config c;
    c.endpoint = env(p + (tls ? "TLS_ENDPOINT" : "ENDPOINT"));
    if (tls) c.tls.ca_file = env(p + "CA_FILE");
    if (c.endpoint.empty())
        return cachestore::fail(cachestore::errc::misconfigured, "test setup", {},
                                p + "ENDPOINT is not set: run the tests through tests/servers/with-servers.sh");
    c.bucket = env(p + bucket_var);
    c.region = env(p + "REGION").empty() ? "us-east-1" : env(p + "REGION");
    c.creds.access_key_id = env(p + "ACCESS_KEY");
    c.creds.secret_access_key = env(p + "SECRET_KEY");
    c.timeouts.operation = std::chrono::seconds(60);
    return c;
}

/// A server the conformance suite runs against.
struct target {
    const char* name = "";                   ///< for messages
    const char* server = nullptr;            ///< "RGW" or "MOTO" (the CACHESTORE_<server>_* variables); null: none chosen
    bool plain_origin = false;               ///< see conformance::plain_origin
    bool tls = false;                        ///< its https endpoint, verified with the private CA
};
inline constexpr target rgw{"s3/ceph-rgw", "RGW", false, false};
inline constexpr target rgw_tls{"s3/ceph-rgw over https (private CA)", "RGW", false, true};
// moto re-signs the decoded path, so keys with + % ( ) etc. or non-ASCII
// fail its signature check (TESTING.md); those run against RGW.
inline constexpr target moto{"s3/moto(auth on)", "MOTO", true, false};

/// Names the conformance run's server: rgw, rgw-tls or moto (tests/meson.build sets it per test).
inline constexpr const char* conformance_server_var = "CACHESTORE_CONFORMANCE_SERVER";

/// The target conformance_server_var names; one with a null `server` when it names none.
inline target conformance_target() {
    const std::string v = env(conformance_server_var);
    if (v == "rgw") return rgw;
    if (v == "rgw-tls") return rgw_tls;
    if (v == "moto") return moto;
    return target{"s3 (no server chosen)", nullptr, false, false};
}

/// One store of type S per process (s3::store, s3::async_store), for the one
/// target a process tests: S::create(config, args...), self-tested once
/// (which, in auto mode, turns on If-None-Match commits where the server
/// enforces them).
template <class S>
struct shared_of {
    std::optional<S> store;
    cachestore::error err;
    /// A fixture's ready(): the store, or why there is none.
    cachestore::result<> ready() const {
        if (!store) return std::unexpected(err);
        return {};
    }
    /// The store, for a fixture whose ready() succeeded.
    S& engaged() {
        if (!store) throw std::logic_error("s3test: the store is used without a successful ready()");
        return *store;
    }
    template <class... Args>
    static shared_of& get(const target& t, const Args&... args) {
        static shared_of s = [&] {
            shared_of r;
            if (t.server == nullptr) {
                r.err = cachestore::fail(cachestore::errc::misconfigured, "test setup", {},
                                         std::string(conformance_server_var) + " is not rgw, rgw-tls or moto")
                            .error();
                return r;
            }
            auto cfg = server_config(t.server, "BUCKET", t.tls);
            if (!cfg) {
                r.err = cfg.error();
                return r;
            }
            auto st = S::create(*cfg, args...);
            if (!st) {
                r.err = st.error();
                return r;
            }
            if (auto ok = st->self_test(cachestore::context::with_timeout(std::chrono::seconds(60))); !ok) {
                r.err = ok.error();
                return r;
            }
            r.store.emplace(std::move(*st));
            return r;
        }();
        return s;
    }
};
using shared_store = shared_of<cachestore::s3::store>;

} // namespace s3test
