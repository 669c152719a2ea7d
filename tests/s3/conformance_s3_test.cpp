// The conformance suite, unchanged, against a real S3 server. One binary
// serves every server: CACHESTORE_CONFORMANCE_SERVER (rgw, rgw-tls or moto,
// set per test by tests/meson.build) picks the one a run tests.
#include <tuple>

#include "s3_fixture.hpp"

namespace {

struct s3_fixture {
    static inline const s3test::target chosen = s3test::conformance_target();
    static inline const char* const name = chosen.name;
    static inline const bool plain_origin = chosen.plain_origin;
    s3test::shared_store& shared = s3test::shared_store::get(chosen);
    cachestore::result<> ready() const { return shared.ready(); }
    bool atomic_commit() const { return shared.engaged().conditional_commit(); }
    cachestore::s3::store& store() { return shared.engaged(); }
};

} // namespace

using conformance_fixtures = std::tuple<s3_fixture>;

#include "../conformance/conformance.hpp"
#include "../conformance/read_range_cases.hpp"
