// Parses Prometheus text exposition (format 0.0.4) line by line and checks
// what a scraper relies on; the layer tests run it on every writer's output.
//
// Checked: every line is a HELP, a TYPE or a sample; names and label names
// are valid; label values use only the \\ \" \n escapes; each family has one
// HELP and one TYPE, before its samples, and its samples are contiguous; a
// sample belongs to the family declared last (histograms: _bucket with an
// `le`, _sum, _count); counters end in _total; no series appears twice;
// values parse as numbers; a histogram's buckets are cumulative, in
// increasing `le`, end with +Inf, and +Inf equals _count.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace layertest {

struct prom_sample {
    std::string name;
    std::map<std::string, std::string> labels;
    double value = 0;
};

struct prom_family {
    std::string name, type, help;
    std::vector<prom_sample> samples;
};

struct prom_parsed {
    std::vector<prom_family> families;
    std::vector<std::string> problems;

    /// The value of the series `name{labels}`, if present.
    [[nodiscard]] std::optional<double> value(std::string_view name, const std::map<std::string, std::string>& labels) const {
        for (const auto& f : families)
            for (const auto& s : f.samples)
                if (s.name == name && s.labels == labels) return s.value;
        return std::nullopt;
    }
};

namespace prom_detail {

inline bool name_char(char c, bool first, bool colon) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
    return alpha || (!first && c >= '0' && c <= '9');
}

inline bool valid_name(std::string_view s, bool colon) {
    if (s.empty()) return false;
    for (std::size_t i = 0; i < s.size(); ++i)
        if (!name_char(s[i], i == 0, colon)) return false;
    return true;
}

inline std::optional<double> number(std::string_view s) {
    if (s == "+Inf") return HUGE_VAL;
    if (s == "-Inf") return -HUGE_VAL;
    if (s == "NaN") return std::nan("");
    double v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

/// Parses `name{a="b",...} value`; an error text on failure.
inline std::optional<std::string> parse_sample(std::string_view line, prom_sample& out) {
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    out.name = std::string(line.substr(0, i));
    if (!valid_name(out.name, true)) return "invalid metric name '" + out.name + "'";
    if (i < line.size() && line[i] == '{') {
        ++i;
        while (i < line.size() && line[i] != '}') {
            std::size_t eq = line.find('=', i);
            if (eq == std::string_view::npos) return std::string("label without '='");
            const std::string lname(line.substr(i, eq - i));
            if (!valid_name(lname, false) || lname.starts_with("__")) return "invalid label name '" + lname + "'";
            i = eq + 1;
            if (i >= line.size() || line[i] != '"') return "label " + lname + ": value not quoted";
            ++i;
            std::string v;
            for (;;) {
                if (i >= line.size()) return "label " + lname + ": unterminated value";
                const char c = line[i++];
                if (c == '"') break;
                if (c == '\\') {
                    if (i >= line.size()) return std::string("dangling backslash");
                    const char e = line[i++];
                    if (e == 'n') v += '\n';
                    else if (e == '\\' || e == '"') v += e;
                    else return std::string("invalid escape \\") + e;
                } else {
                    v += c;
                }
            }
            if (!out.labels.emplace(lname, v).second) return "label " + lname + " twice";
            if (i < line.size() && line[i] == ',') ++i;
            else if (i >= line.size() || line[i] != '}') return std::string("expected ',' or '}' after a label");
        }
        if (i >= line.size()) return std::string("unterminated label set");
        ++i;
    }
    if (i >= line.size() || line[i] != ' ') return std::string("expected one space before the value");
    const std::string_view rest = line.substr(i + 1);
    if (rest.find(' ') != std::string_view::npos) return std::string("unexpected timestamp or trailing text");
    const auto v = number(rest);
    if (!v) return "value '" + std::string(rest) + "' is not a number";
    out.value = *v;
    return std::nullopt;
}

/// The concatenation of `parts` (one allocation).
inline std::string cat(std::initializer_list<std::string_view> parts) {
    std::string out;
    for (const auto p : parts) out += p;
    return out;
}

inline std::string series_id(const prom_sample& s) {
    std::string id = s.name + "{";
    for (const auto& [k, v] : s.labels) {
        id += k;
        id += '=';
        id += v;
        id += ',';
    }
    return id + "}";
}

inline void check_histograms(const prom_family& f, std::vector<std::string>& problems) {
    // Group by the labels without `le`.
    std::map<std::map<std::string, std::string>, std::vector<const prom_sample*>> buckets;
    std::map<std::map<std::string, std::string>, double> counts;
    for (const auto& s : f.samples) {
        if (s.name == f.name + "_bucket") {
            auto key = s.labels;
            key.erase("le");
            buckets[key].push_back(&s);
        } else if (s.name == f.name + "_count") {
            counts[s.labels] = s.value;
        }
    }
    for (const auto& [key, list] : buckets) {
        double last_le = -HUGE_VAL, last_v = 0;
        for (const auto* s : list) {
            const auto le = number(s->labels.at("le"));
            if (!le || !(*le > last_le)) problems.push_back(f.name + ": bucket le not increasing");
            if (s->value < last_v) problems.push_back(f.name + ": buckets not cumulative");
            last_le = le.value_or(last_le);
            last_v = s->value;
        }
        if (!std::isinf(last_le)) problems.push_back(f.name + ": last bucket is not +Inf");
        if (!counts.contains(key)) problems.push_back(f.name + ": a bucket set without _count");
        else if (counts[key] != last_v) problems.push_back(f.name + ": +Inf bucket differs from _count");
    }
}

} // namespace prom_detail

inline prom_parsed parse_prometheus(std::string_view text) {
    using namespace prom_detail;
    prom_parsed p;
    std::set<std::string> seen_series, declared;
    prom_family* cur = nullptr;
    std::string pending_help_name, pending_help;
    if (!text.empty() && text.back() != '\n') p.problems.emplace_back("text does not end with a newline");
    std::size_t start = 0, lineno = 0;
    while (start < text.size()) {
        const std::size_t nl = text.find('\n', start);
        const std::string_view line = text.substr(start, (nl == std::string_view::npos ? text.size() : nl) - start);
        start = nl == std::string_view::npos ? text.size() : nl + 1;
        ++lineno;
        const std::string where = "line " + std::to_string(lineno) + ": ";
        if (line.empty()) {
            p.problems.push_back(where + "empty line");
            continue;
        }
        if (line.starts_with("# HELP ")) {
            const std::string_view rest = line.substr(7);
            const auto sp = rest.find(' ');
            pending_help_name = std::string(rest.substr(0, sp));
            pending_help = sp == std::string_view::npos ? std::string() : std::string(rest.substr(sp + 1));
            if (!valid_name(pending_help_name, true)) p.problems.push_back(where + "HELP for an invalid name");
            continue;
        }
        if (line.starts_with("# TYPE ")) {
            const std::string_view rest = line.substr(7);
            const auto sp = rest.find(' ');
            const std::string name(rest.substr(0, sp));
            const std::string type = sp == std::string_view::npos ? std::string() : std::string(rest.substr(sp + 1));
            if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" && type != "untyped")
                p.problems.push_back(cat({where, "unknown type '", type, "'"}));
            if (!declared.insert(name).second) p.problems.push_back(cat({where, "family ", name, " declared twice"}));
            if (pending_help_name != name) p.problems.push_back(cat({where, "TYPE ", name, " without its HELP line just before"}));
            if (type == "counter" && !name.ends_with("_total"))
                p.problems.push_back(cat({where, "counter ", name, " does not end in _total"}));
            p.families.push_back(prom_family{name, type, pending_help, {}});
            cur = &p.families.back();
            pending_help_name.clear();
            continue;
        }
        if (line.starts_with("#")) continue; // a comment
        prom_sample s;
        if (auto err = parse_sample(line, s)) {
            p.problems.push_back(where + *err);
            continue;
        }
        if (cur == nullptr) {
            p.problems.push_back(where + "sample before any TYPE");
            continue;
        }
        bool belongs = s.name == cur->name;
        if (cur->type == "histogram") {
            belongs = s.name == cur->name + "_sum" || s.name == cur->name + "_count" ||
                      (s.name == cur->name + "_bucket" && s.labels.contains("le"));
        }
        if (!belongs) p.problems.push_back(where + "sample " + s.name + " outside its family (last TYPE: " + cur->name + ")");
        if (!seen_series.insert(series_id(s)).second) p.problems.push_back(where + "series " + series_id(s) + " twice");
        cur->samples.push_back(std::move(s));
    }
    for (const auto& f : p.families)
        if (f.type == "histogram") check_histograms(f, p.problems);
    return p;
}

} // namespace layertest
