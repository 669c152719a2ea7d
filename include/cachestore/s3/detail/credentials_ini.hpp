// cachestore/s3/detail/credentials_ini.hpp - the AWS shared credentials
// file: an INI parser that never echoes a value, and a bounded file reader.
#pragma once

#include <cstdint>
#include "cachestore/detail/expected.hpp"
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>

#include "cachestore/s3/detail/text.hpp"

namespace cachestore::s3::detail {

/// profile name -> (lowercased key -> value)
using ini_profiles = std::map<std::string, std::map<std::string, std::string>, std::less<>>;

/// Parses the shared credentials file (INI): `[profile]` sections, `key = value`
/// or `key: value` lines (keys case-insensitive, whitespace around the
/// delimiter and the value trimmed), whole-line comments starting with '#' or
/// ';', CRLF line ends, a UTF-8 BOM. Like the AWS CLI there are no inline
/// comments (`key = v # x` keeps "v # x"), later keys override earlier ones,
/// repeated sections merge, and a key with an empty value opens a nested
/// block whose more-indented lines are skipped. Any other line is an error
/// naming the line number (never its content, which may be a secret).
[[nodiscard]] inline std::expected<ini_profiles, std::string> parse_credentials_ini(std::string_view text,
                                                                                    std::string_view file) {
    if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
    ini_profiles out;
    std::map<std::string, std::string>* section = nullptr;
    bool nested = false;
    std::size_t nested_indent = 0;
    std::size_t lineno = 0;
    std::size_t pos = 0;
    auto bad = [&](std::string_view what) {
        return std::unexpected(std::string(file) + ":" + std::to_string(lineno) + ": " + std::string(what));
    };
    while (pos < text.size()) {
        std::size_t nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        std::string_view line = text.substr(pos, nl - pos);
        pos = nl + 1;
        ++lineno;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        std::size_t indent = 0;
        while (indent < line.size() && (line[indent] == ' ' || line[indent] == '\t')) ++indent;
        const std::string_view t = trim(line);
        if (t.empty() || t.front() == '#' || t.front() == ';') continue;
        if (nested) {
            if (indent > nested_indent) continue;
            nested = false;
        }
        if (t.front() == '[') {
            const std::size_t close = t.find(']');
            if (close == std::string_view::npos) return bad("a section header lacks its closing ']'");
            const std::string_view rest = trim(t.substr(close + 1));
            if (!rest.empty() && rest.front() != '#' && rest.front() != ';')
                return bad("unexpected text after a section header");
            const std::string_view name = trim(t.substr(1, close - 1));
            if (name.empty()) return bad("empty section name");
            section = &out[std::string(name)];
            continue;
        }
        const std::size_t delim = t.find_first_of("=:");
        if (delim == std::string_view::npos) return bad("expected \"[profile]\" or \"key = value\"");
        const std::string key = lowercase(trim(t.substr(0, delim)));
        if (key.empty()) return bad("a \"key = value\" line has no key");
        if (section == nullptr) return bad("a \"key = value\" line comes before any [profile] section");
        const std::string_view value = trim(t.substr(delim + 1));
        if (value.empty()) {
            nested = true;
            nested_indent = indent;
        }
        (*section)[key] = std::string(value);
    }
    return out;
}

/// Reads a small text file; the string is the problem.
[[nodiscard]] inline std::expected<std::string, std::string> read_small_file(const std::filesystem::path& p) {
    constexpr std::uintmax_t max_size = 1u << 20;
    std::error_code ec;
    const auto size = std::filesystem::file_size(p, ec);
    if (ec) return std::unexpected("cannot read " + quote(p.string()) + ": " + ec.message());
    if (size > max_size) return std::unexpected(quote(p.string()) + " is larger than 1 MiB; is it the right file?");
    std::ifstream in(p, std::ios::binary);
    if (!in) return std::unexpected("cannot open " + quote(p.string()));
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) return std::unexpected("error while reading " + quote(p.string()));
    return std::move(ss).str();
}

} // namespace cachestore::s3::detail
