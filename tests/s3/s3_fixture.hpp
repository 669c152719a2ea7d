// Fixtures that connect the S3 driver to the local servers started by
// tests/servers/with-servers.sh (which exports CACHESTORE_<SERVER>_* variables).
#pragma once

#include <chrono>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>

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

/// One store per server per process, self-tested once (which, in auto mode,
/// turns on If-None-Match commits where the server enforces them).
template <class Tag>
struct shared_store {
    std::optional<cachestore::s3::store> store;
    cachestore::error err;
    static shared_store& get() {
        static shared_store s = [] {
            shared_store r;
            auto cfg = server_config(Tag::server, "BUCKET", Tag::tls);
            if (!cfg) {
                r.err = cfg.error();
                return r;
            }
            auto st = cachestore::s3::store::create(*cfg);
            if (!st) {
                r.err = st.error();
                return r;
            }
            if (auto t = st->self_test(cachestore::context::with_timeout(std::chrono::seconds(60))); !t) {
                r.err = t.error();
                return r;
            }
            r.store.emplace(std::move(*st));
            return r;
        }();
        return s;
    }
};

template <class Tag>
struct fixture {
    static constexpr const char* name = Tag::name;
    static constexpr bool plain_origin = Tag::plain_origin;
    shared_store<Tag>& shared = shared_store<Tag>::get();
    cachestore::result<> ready() {
        if (!shared.store) return std::unexpected(shared.err);
        return {};
    }
    bool atomic_commit() const { return engaged().conditional_commit(); }
    cachestore::s3::store& store() { return engaged(); }

  private:
    cachestore::s3::store& engaged() const {
        if (!shared.store) throw std::logic_error("s3test::fixture: the store is used without a successful ready()");
        return *shared.store;
    }
};

struct rgw_tag {
    static constexpr const char* name = "s3/ceph-rgw";
    static constexpr const char* server = "RGW";
    static constexpr bool plain_origin = false;
    static constexpr bool tls = false;
};
struct rgw_tls_tag {
    static constexpr const char* name = "s3/ceph-rgw over https (private CA)";
    static constexpr const char* server = "RGW";
    static constexpr bool plain_origin = false;
    static constexpr bool tls = true;
};
struct moto_tag {
    static constexpr const char* name = "s3/moto(auth on)";
    static constexpr const char* server = "MOTO";
    // moto re-signs the decoded path, so keys with + % ( ) etc. or non-ASCII
    // fail its signature check (TESTING.md); those run against RGW.
    static constexpr bool plain_origin = true;
    static constexpr bool tls = false;
};

} // namespace s3test
