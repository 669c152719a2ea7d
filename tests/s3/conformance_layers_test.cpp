// The conformance suite, unchanged, through a stack of all three layers
// (metered<breaker<hedged<...>>>, docs/layers.md) around the S3 driver
// against Ceph RGW, and through a tiered store (docs/tiered.md) with a
// bounded POSIX near tier in front of it. The stack refers to the one self-tested store of the
// process (hedged<s3::store&>), which shows that a layer may wrap a store it
// does not own.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
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
static_assert(cachestore::CacheStore<cachestore::tiered<cachestore::posix_store, cachestore::s3::store>>);
static_assert(cachestore::CacheStore<cachestore::metered<cachestore::tiered<cachestore::breaker<cachestore::posix_store>,
                                                                            cachestore::hedged<cachestore::s3::store>>>>);
static_assert(cachestore::detail::has_put_chunk_prehashed<cachestore::tiered<cachestore::posix_store, cachestore::s3::store>>);
static_assert(cachestore::detail::has_get_chunk_into<cachestore::tiered<cachestore::posix_store, cachestore::s3::store>>);

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

/// tiered<posix bounded, s3::store&> (docs/tiered.md): a bounded local disk
/// (1 MiB, so the suite's writes evict) in front of RGW.
struct tiered_rgw_fixture {
    static constexpr const char* name = "tiered<posix bounded, s3/ceph-rgw>";
    static constexpr bool plain_origin = false;
    s3test::shared_store& shared = s3test::shared_store::get(s3test::rgw);
    std::string root;
    std::optional<cachestore::tiered<cachestore::posix_store, cachestore::s3::store&>> s;
    tiered_rgw_fixture() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "cachestore-conf-tiered-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) != nullptr) root = tmpl;
    }
    ~tiered_rgw_fixture() {
        s.reset(); // promotions end before the root goes
        std::error_code ec;
        if (!root.empty()) std::filesystem::remove_all(root, ec);
    }
    tiered_rgw_fixture(const tiered_rgw_fixture&) = delete;
    tiered_rgw_fixture& operator=(const tiered_rgw_fixture&) = delete;
    cachestore::result<> ready() {
        if (auto r = shared.ready(); !r) return r;
        auto near = cachestore::posix_store::open(root, {.fsync = false,
                                                          .max_bytes = std::int64_t{1} << 20,
                                                          .recency_granularity = std::chrono::milliseconds(0),
                                                          .sweep_interval = std::chrono::milliseconds(10)});
        if (!near) return std::unexpected(near.error());
        cachestore::tiered_options o;
        o.name = "rgw-tiered";
        s.emplace(std::move(*near), shared.engaged(), std::move(o));
        return {};
    }
    bool atomic_commit() const { return shared.engaged().conditional_commit(); }
    auto& store() {
        if (!s) throw std::logic_error("tiered_rgw_fixture: store() without a successful ready()");
        return *s;
    }
};

} // namespace

using conformance_fixtures = std::tuple<layered_rgw_fixture, tiered_rgw_fixture>;

#include "../conformance/conformance.hpp"
#include "../conformance/read_range_cases.hpp"
