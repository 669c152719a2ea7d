// Fuzz target: Content-Range and decimal parsing (s3/detail/http_parse.hpp).
//
// Invariants:
//  - parse_i64 accepts exactly the strings of 1-19 ASCII digits whose value
//    fits int64 (checked against an independent reference), and the value is
//    right;
//  - parse_content_range on any input either fails or gives
//    0 <= first <= last and (total == -1 or total > last), and formatting that
//    result and parsing it again gives the same range;
//  - ranges built from the input's numbers and formatted as a server would
//    (with optional whitespace around) parse back exactly, and those that
//    break the rules (last < first, total <= last) are refused.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "cachestore/s3/detail/http_parse.hpp"
#include "fuzz_support.hpp"

namespace h = cachestore::s3::detail;

namespace {

__extension__ typedef unsigned __int128 u128; // NOLINT(modernize-use-using): __extension__ needs typedef (-Wpedantic)

/// Reference: 1-19 digits, value <= INT64_MAX, computed in 128 bits.
std::optional<std::int64_t> ref_i64(std::string_view s) {
    if (s.empty() || s.size() > 19) return std::nullopt;
    u128 v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v > static_cast<u128>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return static_cast<std::int64_t>(v);
}

std::string format(const h::content_range& r) {
    std::string s = "bytes " + std::to_string(r.first) + "-" + std::to_string(r.last) + "/";
    s += r.total < 0 ? std::string("*") : std::to_string(r.total);
    return s;
}

void check_valid(const h::content_range& r) {
    FUZZ_CHECK(r.first >= 0);
    FUZZ_CHECK(r.first <= r.last);
    FUZZ_CHECK(r.total == -1 || r.total > r.last);
}

/// Any input as a header value.
void check_raw(std::string_view in) {
    const auto r = h::parse_content_range(in);
    if (!r) return;
    check_valid(*r);
    const auto again = h::parse_content_range(format(*r));
    FUZZ_CHECK(again.has_value());
    FUZZ_CHECK(again->first == r->first && again->last == r->last && again->total == r->total);
}

/// A range from the input's numbers, formatted as a server would.
void check_built(fuzz::bytes_reader br) {
    const auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    const auto first = static_cast<std::int64_t>(br.u64() & max);
    const auto last = static_cast<std::int64_t>(br.u64() & max);
    const auto total = static_cast<std::int64_t>(br.u64() & max);
    const std::uint8_t mode = br.byte();
    const bool star = (mode & 1) != 0;
    const std::string numbers = std::to_string(first) + "-" + std::to_string(last) + "/" +
                                (star ? std::string("*") : std::to_string(total));
    std::string value = "bytes " + numbers;
    if ((mode & 2) != 0) value = " \t" + value;
    if ((mode & 4) != 0) value += "\r\n";
    const auto r = h::parse_content_range(value);
    const bool ok = first <= last && (star || total > last);
    FUZZ_CHECK_MSG(r.has_value() == ok, value);
    if (r) {
        check_valid(*r);
        FUZZ_CHECK(r->first == first && r->last == last);
        FUZZ_CHECK(r->total == (star ? -1 : total));
    }
    // Mangled forms are refused.
    for (const std::string& bad : {"bytes=" + numbers, "bits " + numbers,
                                   "bytes " + std::to_string(first) + "/" + std::to_string(total),
                                   "bytes -" + numbers})
        FUZZ_CHECK_MSG(!h::parse_content_range(bad).has_value(), bad);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in = fuzz::as_view(data, size);

    // parse_i64 against the reference, on the whole input and on each line.
    FUZZ_CHECK(h::parse_i64(in) == ref_i64(in));
    for (const auto& line : fuzz::lines(in)) FUZZ_CHECK_MSG(h::parse_i64(line) == ref_i64(line), line);

    check_raw(in);
    check_built(fuzz::bytes_reader(in));
    return 0;
}
