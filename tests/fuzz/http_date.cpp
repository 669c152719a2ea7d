// Fuzz target: HTTP date parsing (s3/detail/http_parse.hpp, parse_http_date
// over curl_getdate).
//
// Invariants:
//  - any input parses or is refused without crashing; inputs longer than 64
//    bytes after trimming are refused;
//  - surrounding spaces, tabs and CR/LF do not change the result;
//  - a result is exactly the second libcurl read, and a time the clock can
//    hold (see out_of_range_dates_refused below);
//  - a time taken from the input (years 1970..2099) formatted in each of the
//    three HTTP-date forms of RFC 9110 section 5.6.7 (IMF-fixdate, RFC 850 for
//    years 1971..2069, asctime) parses back to exactly that second.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include "cachestore/s3/detail/http_parse.hpp"
#include "fuzz_support.hpp"

namespace h = cachestore::s3::detail;

namespace {

// parse_http_date used to pass whatever curl_getdate returned to
// system_clock::from_time_t, whose nanoseconds overflow outside 1677..2262
// (undefined behaviour for a server's "Fri, 31 Dec 9999 23:59:59 GMT"); it
// refuses those now. With this false, inputs curl reads as such a time would
// not be passed to it (the switch stays for the next parser of this kind).
constexpr bool out_of_range_dates_refused = true;

// The S3 driver's self_test computes "server Date - now", which overflowed
// for a Date before about 1730 (corpus: date-minus-now-overflows.txt) until
// parse_http_date refused dates before 1970. Every result is checked for that.
constexpr bool results_subtractable_from_now = true;

/// Seconds since the epoch that system_clock::time_point can hold.
constexpr std::int64_t max_clock_seconds =
    std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::duration::max()).count();

/// curl_getdate's reading of `v` as parse_http_date passes it on, or nullopt.
std::optional<std::int64_t> curl_seconds(std::string_view v) {
    v = h::trim_ows(v);
    if (v.empty() || v.size() > 64) return std::nullopt;
    const std::string s(v);
    const time_t t = curl_getdate(s.c_str(), nullptr);
    if (t == static_cast<time_t>(-1)) return std::nullopt;
    return static_cast<std::int64_t>(t);
}

constexpr const char* wkday[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* weekday[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
constexpr const char* month[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

std::string two(int v) {
    std::string s = std::to_string(v);
    return s.size() < 2 ? "0" + s : s;
}

/// The three forms, built by hand (strftime's names depend on the locale).
std::string imf_fixdate(const std::tm& t) {
    return std::string(wkday[t.tm_wday]) + ", " + two(t.tm_mday) + " " + month[t.tm_mon] + " " +
           std::to_string(t.tm_year + 1900) + " " + two(t.tm_hour) + ":" + two(t.tm_min) + ":" + two(t.tm_sec) +
           " GMT";
}
std::string rfc850(const std::tm& t) {
    return std::string(weekday[t.tm_wday]) + ", " + two(t.tm_mday) + "-" + month[t.tm_mon] + "-" +
           two(t.tm_year % 100) + " " + two(t.tm_hour) + ":" + two(t.tm_min) + ":" + two(t.tm_sec) + " GMT";
}
std::string asctime_form(const std::tm& t) {
    std::string day = std::to_string(t.tm_mday);
    if (day.size() < 2) day = " " + day;
    return std::string(wkday[t.tm_wday]) + " " + month[t.tm_mon] + " " + day + " " + two(t.tm_hour) + ":" +
           two(t.tm_min) + ":" + two(t.tm_sec) + " " + std::to_string(t.tm_year + 1900);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in = fuzz::as_view(data, size);

    auto parse = [](std::string_view v) {
        const auto secs = curl_seconds(v);
        const bool representable = !secs || (*secs >= -max_clock_seconds && *secs <= max_clock_seconds);
        if (!out_of_range_dates_refused && !representable) return;
        const auto r = h::parse_http_date(v);
        if (h::trim_ows(v).size() > 64) FUZZ_CHECK(!r);
        if (r) {
            // What curl read, exactly, and only times the clock can hold.
            FUZZ_CHECK(representable && secs.has_value());
            FUZZ_CHECK(std::chrono::duration_cast<std::chrono::seconds>(r->time_since_epoch()).count() == *secs);
            if (results_subtractable_from_now) {
                // As callers use it (the self-test's clock offset): UBSan catches an overflow here.
                const volatile auto ticks = (*r - std::chrono::system_clock::now()).count();
                (void)ticks;
            }
        }
        FUZZ_CHECK(h::parse_http_date(" \t" + std::string(v) + "\r\n") == r);
    };
    parse(in);
    for (const auto& line : fuzz::lines(in)) parse(line);

    // Round trips of a time from the input.
    fuzz::bytes_reader br(in);
    constexpr std::int64_t max_t = 4102444799; // 2099-12-31T23:59:59Z
    const auto t = static_cast<std::time_t>(br.u64() % static_cast<std::uint64_t>(max_t + 1));
    std::tm tm{};
    FUZZ_CHECK(gmtime_r(&t, &tm) != nullptr);
    const auto want = std::chrono::system_clock::from_time_t(t);
    const std::string a = imf_fixdate(tm);
    FUZZ_CHECK_MSG(h::parse_http_date(a) == want, a);
    const std::string c = asctime_form(tm);
    FUZZ_CHECK_MSG(h::parse_http_date(c) == want, c);
    // Two-digit years: libcurl reads 71..99 as 19xx and 00..70 as 20xx, so
    // 1970 itself cannot be written in this form.
    if (tm.tm_year + 1900 > 1970 && tm.tm_year + 1900 < 2070) {
        const std::string b = rfc850(tm);
        FUZZ_CHECK_MSG(h::parse_http_date(b) == want, b);
    }
    return 0;
}
