// Fuzz target: the response header callback of the transport
// (s3/detail/transport.hpp, exchange::on_header), fed header lines as libcurl
// delivers them (one call per line, CRLF included).
//
// Input: raw header lines separated by '\n' (each passed on with its '\n').
//
// Invariants:
//  - on_header consumes every line (returns its length) and never crashes;
//  - status is 0..999, content_length is -1 or >= 0, a stored Content-Range
//    is well-formed (0 <= first <= last, total -1 or > last), the request id
//    is at most 128 bytes;
//  - after each line, the stored values equal those of an independent
//    reference that applies the same header rules (last header wins, a new
//    status line forgets the previous response's headers).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cachestore/context.hpp"
#include "cachestore/s3/detail/transport.hpp"
#include "fuzz_support.hpp"

namespace t = cachestore::s3::detail;

namespace {

// transport.hpp did not clear res.date on a new status line (the Date of a
// 100 Continue survived into the final answer; corpus:
// date-survives-new-status-line.txt). Fixed; the reference checks it.
constexpr bool status_line_forgets_date = true;

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

struct reference {
    long status = 0;
    std::int64_t content_length = -1;
    std::optional<t::content_range> range;
    std::string last_modified, date, request_id;

    void line(std::string_view l) {
        if (l.starts_with("HTTP/")) {
            content_length = -1;
            range.reset();
            last_modified.clear();
            request_id.clear();
            if (status_line_forgets_date) date.clear();
            const std::size_t sp = l.find(' ');
            status = sp == std::string_view::npos ? 0 : static_cast<long>(t::parse_i64(l.substr(sp + 1, 3)).value_or(0));
            return;
        }
        const std::size_t colon = l.find(':');
        if (colon == std::string_view::npos) return;
        const std::string name = lower(l.substr(0, colon));
        const std::string_view value = t::trim_ows(l.substr(colon + 1));
        if (name == "content-length") content_length = t::parse_i64(value).value_or(-1);
        else if (name == "content-range") range = t::parse_content_range(value);
        else if (name == "last-modified") last_modified = value;
        else if (name == "date") date = value;
        else if (name == "x-amz-request-id") request_id = value.substr(0, 128);
    }
};

bool same_range(const std::optional<t::content_range>& a, const std::optional<t::content_range>& b) {
    if (a.has_value() != b.has_value()) return false;
    return !a || (a->first == b->first && a->last == b->last && a->total == b->total);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in = fuzz::as_view(data, size);
    t::http_request req;
    t::response res;
    const cachestore::context ctx;
    t::exchange x{req, res, ctx, std::chrono::steady_clock::time_point::max()};
    reference ref;

    std::size_t pos = 0;
    while (pos < in.size()) {
        std::size_t end = in.find('\n', pos);
        end = end == std::string_view::npos ? in.size() : end + 1;
        std::string line(in.substr(pos, end - pos)); // a private, exactly sized copy for ASan
        pos = end;
        FUZZ_CHECK(t::exchange::on_header(line.data(), 1, line.size(), &x) == line.size());
        ref.line(line);

        FUZZ_CHECK(res.status >= 0 && res.status <= 999);
        FUZZ_CHECK(res.content_length >= -1);
        if (res.range) FUZZ_CHECK(res.range->first >= 0 && res.range->first <= res.range->last &&
                                  (res.range->total == -1 || res.range->total > res.range->last));
        FUZZ_CHECK(res.request_id.size() <= 128);
        FUZZ_CHECK_MSG(res.status == ref.status, line);
        FUZZ_CHECK_MSG(res.content_length == ref.content_length, line);
        FUZZ_CHECK_MSG(same_range(res.range, ref.range), line);
        FUZZ_CHECK_MSG(res.last_modified == ref.last_modified, line);
        FUZZ_CHECK_MSG(res.date == ref.date, line);
        FUZZ_CHECK_MSG(res.request_id == ref.request_id, line);
    }
    return 0;
}
