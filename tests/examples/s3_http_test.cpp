// examples/s3_http.hpp, case by case: what range_proxy answers to each Range
// header (as S3 reads it) and to each error class.
#include "examples/s3_http.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <string>

using namespace cachestore;
using namespace cachestore::examples;

namespace {

std::string show(const range_reply& r, std::int64_t size) {
    switch (r.kind) {
    case range_reply::whole: return "200 " + std::to_string(r.length);
    case range_reply::partial: return "206 " + r.content_range(size);
    case range_reply::unsatisfiable: return "416 " + r.content_range(size);
    }
    return "?";
}

std::string answer(const char* header, std::int64_t size) {
    return show(answer_range(header == nullptr ? std::nullopt : std::optional<std::string_view>(header), size), size);
}

} // namespace

TEST_CASE("answer_range: each form of a Range header, as S3 answers it", "[examples][range]") {
    CHECK(answer(nullptr, 1000) == "200 1000");
    CHECK(answer("bytes=0-0", 1000) == "206 bytes 0-0/1000");
    CHECK(answer("bytes=0-999", 1000) == "206 bytes 0-999/1000");
    CHECK(answer("bytes=10-5000", 1000) == "206 bytes 10-999/1000"); // the last byte clamped
    CHECK(answer("bytes=990-", 1000) == "206 bytes 990-999/1000");
    CHECK(answer("bytes=-10", 1000) == "206 bytes 990-999/1000");
    CHECK(answer("bytes=-5000", 1000) == "206 bytes 0-999/1000");
    CHECK(answer("BYTES=1-2", 1000) == "206 bytes 1-2/1000"); // the unit is case-insensitive
    CHECK(answer(" bytes=1 - 2 ", 1000) == "206 bytes 1-2/1000"); // spaces around the numbers tolerated
    CHECK(answer("bytes=99999999999999999999999-", 1000) == "416 bytes */1000"); // saturates, still past the end
    CHECK(answer("bytes=0-99999999999999999999999", 1000) == "206 bytes 0-999/1000");
    // Unsatisfiable: 416.
    CHECK(answer("bytes=1000-", 1000) == "416 bytes */1000");
    CHECK(answer("bytes=1000-1001", 1000) == "416 bytes */1000");
    CHECK(answer("bytes=-0", 1000) == "416 bytes */1000");
    CHECK(answer("bytes=0-", 0) == "416 bytes */0");
    CHECK(answer("bytes=-1", 0) == "416 bytes */0");
    // Ignored: the whole object.
    CHECK(answer("bytes=0-1,5-6", 1000) == "200 1000");
    CHECK(answer("bytes=5-3", 1000) == "200 1000");
    CHECK(answer("bytes=a-b", 1000) == "200 1000");
    CHECK(answer("bytes=", 1000) == "200 1000");
    CHECK(answer("bytes=-", 1000) == "200 1000");
    CHECK(answer("items=0-1", 1000) == "200 1000");
    CHECK(answer("bytes 0-1", 1000) == "200 1000");
    CHECK(answer("bytes = 0-1", 1000) == "200 1000");
    CHECK(answer("", 1000) == "200 1000");
    CHECK(answer(nullptr, 0) == "200 0");
}

TEST_CASE("s3_reply_for: the status and S3 code of each error class", "[examples][range]") {
    CHECK(s3_reply_for(errc::not_found).status == 404);
    CHECK(s3_reply_for(errc::not_found).code == "NoSuchKey");
    CHECK(s3_reply_for(errc::unavailable).status == 503);
    CHECK(s3_reply_for(errc::unavailable).code == "SlowDown");
    for (const errc e : {errc::changed, errc::transient, errc::auth, errc::misconfigured, errc::protocol})
        CHECK(s3_reply_for(e).status == 502);
    CHECK(s3_reply_for(errc::deadline_exceeded).status == 504);
    CHECK(s3_reply_for(errc::io_error).status == 500);
    CHECK(s3_error_xml("NoSuchKey", "a <b> & 'c'", "/b/k\"", "id1") ==
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>a &lt;b&gt; &amp; "
          "&apos;c&apos;</Message><Resource>/b/k&quot;</Resource><RequestId>id1</RequestId></Error>\n");
}
