// Fuzz target: the shared credentials file parser (s3/config.hpp,
// detail::parse_credentials_ini). The file is outside input: whatever
// ~/.aws/credentials holds.
//
// Invariants:
//  - never crashes or throws;
//  - an error is "<file>:<line>: <one of the fixed reasons>", with a line
//    number within the input: it never echoes the file's content (which may
//    hold a secret);
//  - a success has non-empty, trimmed section names without ']', lowercase
//    keys that are non-empty, trimmed and hold no '=' or ':', trimmed values;
//  - writing the profiles back as "[name]" and "key = value" lines and
//    parsing that again gives the same profiles.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cachestore/s3/config.hpp"
#include "fuzz_support.hpp"

namespace d = cachestore::s3::detail;

namespace {

constexpr std::string_view file = "/home/u/.aws/credentials";

bool trimmed(std::string_view s) { return d::trim(s) == s; }

std::size_t count_lines(std::string_view text) {
    if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
    std::size_t n = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
    if (!text.empty() && text.back() != '\n') ++n;
    return n;
}

void check_error(std::string_view text, const std::string& msg) {
    const std::string head = std::string(file) + ":";
    FUZZ_CHECK_MSG(msg.starts_with(head), msg);
    std::size_t i = head.size();
    std::size_t line = 0;
    FUZZ_CHECK_MSG(i < msg.size() && d::is_digit(msg[i]), msg);
    for (; i < msg.size() && d::is_digit(msg[i]); ++i) line = line * 10 + static_cast<std::size_t>(msg[i] - '0');
    FUZZ_CHECK_MSG(line >= 1 && line <= count_lines(text), msg);
    const std::string_view reason = std::string_view(msg).substr(i);
    static constexpr std::string_view reasons[] = {
        ": a section header lacks its closing ']'",
        ": unexpected text after a section header",
        ": empty section name",
        ": expected \"[profile]\" or \"key = value\"",
        ": a \"key = value\" line has no key",
        ": a \"key = value\" line comes before any [profile] section",
    };
    FUZZ_CHECK_MSG(std::find(std::begin(reasons), std::end(reasons), reason) != std::end(reasons), msg);
}

void check_profiles(const d::ini_profiles& profiles) {
    for (const auto& [name, keys] : profiles) {
        FUZZ_CHECK(!name.empty() && trimmed(name));
        FUZZ_CHECK(name.find(']') == std::string::npos && name.find('\n') == std::string::npos);
        for (const auto& [key, value] : keys) {
            FUZZ_CHECK(!key.empty() && trimmed(key));
            FUZZ_CHECK(d::lowercase(key) == key);
            FUZZ_CHECK(key.find_first_of("=:\n") == std::string::npos);
            FUZZ_CHECK(trimmed(value) && value.find('\n') == std::string::npos);
        }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text = fuzz::as_view(data, size);
    const auto r = d::parse_credentials_ini(text, file);
    if (!r) {
        check_error(text, r.error());
        return 0;
    }
    check_profiles(*r);

    std::string out;
    for (const auto& [name, keys] : *r) {
        out.append("[").append(name).append("]\n");
        for (const auto& [key, value] : keys) out.append(key).append(" = ").append(value).append("\n");
    }
    const auto again = d::parse_credentials_ini(out, file);
    FUZZ_CHECK_MSG(again.has_value(), again ? out : again.error() + "\n" + out);
    FUZZ_CHECK_MSG(*again == *r, out);
    return 0;
}
