// cachestore/layers/detail/prometheus.hpp - the Prometheus text exposition
// format (version 0.0.4), as much of it as the layers write: HELP and TYPE
// lines, samples with escaped label values, numbers that parse back exactly.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace cachestore::detail::prom {

/// Appends `v` as a label value: backslash, double quote and newline escaped.
inline void append_escaped(std::string& out, std::string_view v) {
    for (const char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
}

/// Appends `name="value"` (escaped), preceded by a comma when `out` already
/// holds a label.
inline void append_label(std::string& out, std::string_view name, std::string_view value) {
    if (!out.empty()) out += ',';
    out += name;
    out += "=\"";
    append_escaped(out, value);
    out += '"';
}

/// The constant labels of one store: `store="name"`, or nothing for an empty name.
[[nodiscard]] inline std::string store_labels(std::string_view name) {
    std::string l;
    if (!name.empty()) append_label(l, "store", name);
    return l;
}

inline void append_number(std::string& out, std::uint64_t v) {
    char b[24];
    const auto r = std::to_chars(b, b + sizeof b, v);
    out.append(b, r.ptr);
}

inline void append_number(std::string& out, std::int64_t v) {
    char b[24];
    const auto r = std::to_chars(b, b + sizeof b, v);
    out.append(b, r.ptr);
}

/// The shortest text that parses back to `v`; +Inf, -Inf and NaN as Prometheus spells them.
inline void append_number(std::string& out, double v) {
    if (std::isnan(v)) {
        out += "NaN";
        return;
    }
    if (std::isinf(v)) {
        out += v > 0 ? "+Inf" : "-Inf";
        return;
    }
    char b[32];
    const auto r = std::to_chars(b, b + sizeof b, v);
    if (r.ec != std::errc()) {
        out += "NaN";
        return;
    }
    out.append(b, r.ptr);
}

/// `# HELP name help` and `# TYPE name type` (counter, gauge, histogram).
inline void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    for (const char c : help) { // HELP escapes backslash and newline only
        if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
}

/// One sample line: `name{labels} value` (`labels` already formatted, may be empty).
template <class V>
void sample(std::string& out, std::string_view name, std::string_view labels, V value) {
    out += name;
    if (!labels.empty()) {
        out += '{';
        out += labels;
        out += '}';
    }
    out += ' ';
    append_number(out, value);
    out += '\n';
}

/// `base` plus one more label.
[[nodiscard]] inline std::string with_label(std::string_view base, std::string_view name, std::string_view value) {
    std::string l(base);
    append_label(l, name, value);
    return l;
}

} // namespace cachestore::detail::prom
