// The conformance suite, unchanged, against a real S3 server: built once per
// server with -DS3_SERVER=rgw or -DS3_SERVER=moto.
#include <tuple>

#include "s3_fixture.hpp"

#define S3TEST_CAT2(a, b) a##b
#define S3TEST_CAT(a, b) S3TEST_CAT2(a, b)
using conformance_fixtures = std::tuple<s3test::fixture<s3test::S3TEST_CAT(S3_SERVER, _tag)>>;

#include "../conformance/conformance.hpp"
