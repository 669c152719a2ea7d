// The conformance suite, unchanged, through a stack of all three layers
// (metered<breaker<hedged<...>>>, docs/layers.md) around the S3 driver
// against Ceph RGW. The stack refers to the one self-tested store of the
// process (hedged<s3::store&>), which shows that a layer may wrap a store it
// does not own.
#include <optional>
#include <stdexcept>
#include <tuple>

#include "cachestore/layers.hpp"
#include "s3_fixture.hpp"

// The layers over the S3 driver, proven here rather than in the layer headers,
// which must not pull libcurl into the core.
static_assert(cachestore::CacheStore<cachestore::metered<cachestore::s3::store>>);
static_assert(cachestore::CacheStore<cachestore::breaker<cachestore::s3::store>>);
static_assert(cachestore::CacheStore<cachestore::hedged<cachestore::s3::store>>);
static_assert(cachestore::detail::has_put_chunk_prehashed<cachestore::metered<cachestore::breaker<cachestore::s3::store>>>);
static_assert(cachestore::detail::has_put_chunk_prehashed<cachestore::hedged<cachestore::s3::store>>);

namespace {

using stack = cachestore::metered<cachestore::breaker<cachestore::hedged<cachestore::s3::store&>>>;

struct layered_rgw_fixture {
    static constexpr const char* name = "metered<breaker<hedged<s3/ceph-rgw>>>";
    static constexpr bool plain_origin = false;
    s3test::shared_store& shared = s3test::shared_store::get(s3test::rgw);
    std::optional<stack> s;
    cachestore::result<> ready() {
        if (auto r = shared.ready(); !r) return r;
        cachestore::s3::store& st = shared.engaged();
        cachestore::metered_options m;
        m.name = "rgw";
        s.emplace(cachestore::breaker<cachestore::hedged<cachestore::s3::store&>>(cachestore::hedged<cachestore::s3::store&>(st)),
                  m);
        return {};
    }
    bool atomic_commit() const { return shared.engaged().conditional_commit(); }
    stack& store() {
        if (!s) throw std::logic_error("layered_rgw_fixture: store() without a successful ready()");
        return *s;
    }
};

} // namespace

using conformance_fixtures = std::tuple<layered_rgw_fixture>;

#include "../conformance/conformance.hpp"
#include "../conformance/read_range_cases.hpp"
