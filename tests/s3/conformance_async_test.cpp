// The conformance suite, unchanged, through the S3 driver's async engine
// (s3::async_store, docs/async.md): each call initiates on the engine's loop
// and waits for its completion (waiting<>). Against RGW over http, or over
// https with CACHESTORE_CONFORMANCE_SERVER=rgw-tls; alone and under
// metered<breaker<...>>.
#include <optional>
#include <tuple>

#include "cachestore/async/waiting.hpp"
#include "cachestore/layers.hpp"
#include "cachestore/s3/async.hpp"
#include "s3_fixture.hpp"

static_assert(cachestore::AsyncCacheStore<cachestore::s3::async_store>);
static_assert(cachestore::CacheStore<cachestore::waiting<cachestore::s3::async_store&>>);
static_assert(cachestore::AsyncCacheStore<cachestore::metered<cachestore::breaker<cachestore::s3::async_store&>>>);

namespace {

/// The one async store of the process, self-tested once (through blocking()).
using shared_async = s3test::shared_of<cachestore::s3::async_store>;
shared_async& process_store() {
    return shared_async::get(s3test::conformance_target(), cachestore::s3::async_options{.max_connections = 8});
}

struct async_fixture {
    static inline const char* const name = "waiting<s3::async_store>";
    static constexpr bool plain_origin = false;
    shared_async& shared = process_store();
    std::optional<cachestore::waiting<cachestore::s3::async_store&>> s;
    cachestore::result<> ready() const { return shared.ready(); }
    bool atomic_commit() const { return shared.engaged().blocking().conditional_commit(); }
    auto& store() {
        if (!s) s.emplace(shared.engaged());
        return *s;
    }
};

struct layered_async_fixture {
    static inline const char* const name = "waiting<metered<breaker<s3::async_store>>>";
    static constexpr bool plain_origin = false;
    using stack = cachestore::metered<cachestore::breaker<cachestore::s3::async_store&>>;
    shared_async& shared = process_store();
    std::optional<cachestore::waiting<stack>> s;
    cachestore::result<> ready() const { return shared.ready(); }
    bool atomic_commit() const { return shared.engaged().blocking().conditional_commit(); }
    auto& store() {
        if (!s) s.emplace(std::in_place, std::in_place, cachestore::metered_options{}, std::in_place,
                          cachestore::breaker_options{}, shared.engaged());
        return *s;
    }
};

} // namespace

using conformance_fixtures = std::tuple<async_fixture, layered_async_fixture>;

#include "../conformance/conformance.hpp"
#include "../conformance/read_range_cases.hpp"
