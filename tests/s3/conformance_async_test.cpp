// The conformance suite, unchanged, through the S3 driver's async engine
// (s3::async_store, docs/async.md): each call initiates on the engine's loop
// and waits for its completion (waiting<>). Against RGW over http, or over
// https with CACHESTORE_CONFORMANCE_SERVER=rgw-tls; alone and under
// metered<breaker<...>>.
#include <chrono>
#include <optional>
#include <stdexcept>
#include <tuple>

#include "cachestore/async/waiting.hpp"
#include "cachestore/layers.hpp"
#include "cachestore/s3/async.hpp"
#include "s3_fixture.hpp"

static_assert(cachestore::AsyncCacheStore<cachestore::s3::async_store>);
static_assert(cachestore::CacheStore<cachestore::waiting<cachestore::s3::async_store&>>);
static_assert(cachestore::AsyncCacheStore<cachestore::metered<cachestore::breaker<cachestore::s3::async_store&>>>);

namespace {

/// One async store per process, self-tested once (through blocking()).
struct shared_async {
    std::optional<cachestore::s3::async_store> store;
    cachestore::error err;
    static shared_async& get() {
        static shared_async s = [] {
            shared_async r;
            const s3test::target t = s3test::conformance_target();
            if (t.server == nullptr) {
                r.err = cachestore::fail(cachestore::errc::misconfigured, "test setup", {}, "no conformance server chosen").error();
                return r;
            }
            auto cfg = s3test::server_config(t.server, "BUCKET", t.tls);
            if (!cfg) {
                r.err = cfg.error();
                return r;
            }
            auto st = cachestore::s3::async_store::create(*cfg, {.max_connections = 8});
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
    cachestore::result<> ready() const {
        if (!store) return std::unexpected(err);
        return {};
    }
};

struct async_fixture {
    static inline const char* const name = "waiting<s3::async_store>";
    static constexpr bool plain_origin = false;
    shared_async& shared = shared_async::get();
    std::optional<cachestore::waiting<cachestore::s3::async_store&>> s;
    cachestore::result<> ready() const { return shared.ready(); }
    bool atomic_commit() const { return shared.store->blocking().conditional_commit(); }
    auto& store() {
        if (!shared.store) throw std::logic_error("async_fixture: store() without a successful ready()");
        if (!s) s.emplace(*shared.store);
        return *s;
    }
};

struct layered_async_fixture {
    static inline const char* const name = "waiting<metered<breaker<s3::async_store>>>";
    static constexpr bool plain_origin = false;
    using stack = cachestore::metered<cachestore::breaker<cachestore::s3::async_store&>>;
    shared_async& shared = shared_async::get();
    std::optional<cachestore::waiting<stack>> s;
    cachestore::result<> ready() const { return shared.ready(); }
    bool atomic_commit() const { return shared.store->blocking().conditional_commit(); }
    auto& store() {
        if (!shared.store) throw std::logic_error("layered_async_fixture: store() without a successful ready()");
        if (!s) s.emplace(std::in_place, std::in_place, cachestore::metered_options{}, std::in_place,
                          cachestore::breaker_options{}, *shared.store);
        return *s;
    }
};

} // namespace

using conformance_fixtures = std::tuple<async_fixture, layered_async_fixture>;

#include "../conformance/conformance.hpp"
#include "../conformance/read_range_cases.hpp"
