// tests/fuzz/fuzz_support.hpp - what every fuzz harness shares: an invariant
// check that aborts (so libFuzzer and the replay tests both see a crash), and
// a reader that splits an input into escaped, human-writable lines.
//
// Seed files are text: one field per line, where a field may use the escapes
// \n \r \t \0 \\ and \xHH to carry any byte. The fuzzer's mutations reach
// every byte string through the escapes, and people can still read and write
// the seeds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace fuzz {

[[noreturn]] inline void check_failed(const char* expr, const char* file, int line, std::string_view detail) {
    std::fprintf(stderr, "%s:%d: invariant violated: %s\n", file, line, expr);
    if (!detail.empty()) std::fprintf(stderr, "  detail: %.*s\n", static_cast<int>(detail.size()), detail.data());
    std::abort();
}

/// The input as a string_view.
inline std::string_view as_view(const std::uint8_t* data, std::size_t size) noexcept {
    return size == 0 ? std::string_view() : std::string_view(reinterpret_cast<const char*>(data), size);
}

[[nodiscard]] constexpr int hex_digit(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/// Decodes the escapes described above; an unknown or cut escape is kept literally.
inline std::string unescape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\' || i + 1 == s.size()) {
            out += s[i];
            continue;
        }
        const char e = s[i + 1];
        if (e == 'n') out += '\n';
        else if (e == 'r') out += '\r';
        else if (e == 't') out += '\t';
        else if (e == '0') out += '\0';
        else if (e == '\\') out += '\\';
        else if (e == 'x' && i + 3 < s.size() && hex_digit(s[i + 2]) >= 0 && hex_digit(s[i + 3]) >= 0) {
            out += static_cast<char>(hex_digit(s[i + 2]) * 16 + hex_digit(s[i + 3]));
            i += 2;
        } else {
            out += '\\';
            continue;
        }
        ++i;
    }
    return out;
}

/// The input's lines ('\n'-separated; a final empty line is dropped), each unescaped.
inline std::vector<std::string> lines(std::string_view in) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < in.size()) {
        std::size_t nl = in.find('\n', pos);
        if (nl == std::string_view::npos) nl = in.size();
        out.push_back(unescape(in.substr(pos, nl - pos)));
        pos = nl + 1;
    }
    return out;
}

/// Reads little-endian integers from the front of a byte string (zeros when it runs out).
class bytes_reader {
public:
    explicit bytes_reader(std::string_view s) noexcept : s_(s) {}
    std::uint64_t u64() noexcept {
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v |= std::uint64_t{byte()} << (8 * i);
        return v;
    }
    std::uint8_t byte() noexcept {
        if (s_.empty()) return 0;
        const auto b = static_cast<std::uint8_t>(s_.front());
        s_.remove_prefix(1);
        return b;
    }
    [[nodiscard]] std::string_view rest() const noexcept { return s_; }

private:
    std::string_view s_;
};

} // namespace fuzz

/// Aborts with the expression (and an optional detail string) when `cond` is false.
#define FUZZ_CHECK(cond)                                                                         \
    do {                                                                                         \
        if (!(cond)) ::fuzz::check_failed(#cond, __FILE__, __LINE__, {});                       \
    } while (0)
#define FUZZ_CHECK_MSG(cond, detail)                                                             \
    do {                                                                                         \
        if (!(cond)) ::fuzz::check_failed(#cond, __FILE__, __LINE__, (detail));                 \
    } while (0)
