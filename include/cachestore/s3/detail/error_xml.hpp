// cachestore/s3/detail/error_xml.hpp - a small, bounded reader for S3 error
// documents: <Error><Code/><Message/><RequestId/><HostId/></Error>.
//
// Not a general XML parser: it finds the first occurrence of each element,
// decodes the five predefined entities and numeric character references, and
// never expands anything else (no DTDs, no external entities). Input beyond
// `max_input` bytes is ignored and every field is capped at `max_field` bytes,
// so a hostile or huge body costs bounded memory and time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cachestore::s3::detail {

struct s3_error_doc {
    std::string code;
    std::string message;
    std::string request_id;
    std::string host_id;
    [[nodiscard]] bool empty() const noexcept { return code.empty() && message.empty() && request_id.empty(); }
};

inline constexpr std::size_t max_error_input = std::size_t{64} * 1024;
inline constexpr std::size_t max_error_field = 512;

/// Appends the UTF-8 encoding of code point `cp` (invalid ones become '?').
inline void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        out += '?';
    } else if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

/// Decodes XML text content: &amp; &lt; &gt; &quot; &apos; &#N; &#xN;. Any
/// other '&' sequence is kept literally. Output is capped at max_field bytes.
inline std::string xml_text(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size() && out.size() < max_error_field; ++i) {
        const char c = s[i];
        if (c != '&') {
            out += c;
            continue;
        }
        const std::size_t semi = s.find(';', i);
        if (semi == std::string_view::npos || semi - i > 10) {
            out += c;
            continue;
        }
        const std::string_view ent = s.substr(i + 1, semi - i - 1);
        if (ent == "amp") out += '&';
        else if (ent == "lt") out += '<';
        else if (ent == "gt") out += '>';
        else if (ent == "quot") out += '"';
        else if (ent == "apos") out += '\'';
        else if (ent.size() >= 2 && ent[0] == '#') {
            const bool hex = ent[1] == 'x' || ent[1] == 'X';
            std::uint32_t cp = 0;
            bool ok = ent.size() > (hex ? 2u : 1u);
            for (std::size_t j = hex ? 2 : 1; ok && j < ent.size(); ++j) {
                const char d = ent[j];
                std::uint32_t v;
                if (d >= '0' && d <= '9') v = static_cast<std::uint32_t>(d - '0');
                else if (hex && d >= 'a' && d <= 'f') v = static_cast<std::uint32_t>(d - 'a' + 10);
                else if (hex && d >= 'A' && d <= 'F') v = static_cast<std::uint32_t>(d - 'A' + 10);
                else { ok = false; break; }
                cp = cp * (hex ? 16 : 10) + v;
                if (cp > 0x10FFFF) ok = false;
            }
            if (!ok) {
                out += c;
                continue;
            }
            append_utf8(out, cp);
        } else {
            out += c;
            continue;
        }
        i = semi;
    }
    if (out.size() > max_error_field) out.resize(max_error_field);
    return out;
}

/// The text of the first <name>...</name> element (empty if none).
inline std::string xml_element(std::string_view doc, std::string_view name) {
    std::string open = "<";
    open += name;
    std::size_t at = 0;
    while ((at = doc.find(open, at)) != std::string_view::npos) {
        const std::size_t after = at + open.size();
        if (after < doc.size() && (doc[after] == '>' || doc[after] == ' ' || doc[after] == '/')) {
            const std::size_t gt = doc.find('>', after);
            if (gt == std::string_view::npos) return {};
            if (doc[gt - 1] == '/') return {}; // <Name/>
            std::string close = "</";
            close += name;
            close += '>';
            const std::size_t end = doc.find(close, gt + 1);
            if (end == std::string_view::npos) return xml_text(doc.substr(gt + 1)); // truncated document
            return xml_text(doc.substr(gt + 1, end - gt - 1));
        }
        at = after;
    }
    return {};
}

/// Reads an S3 error document; fields it cannot find stay empty.
inline s3_error_doc parse_error_xml(std::string_view body) {
    if (body.size() > max_error_input) body = body.substr(0, max_error_input);
    s3_error_doc d;
    d.code = xml_element(body, "Code");
    d.message = xml_element(body, "Message");
    d.request_id = xml_element(body, "RequestId");
    d.host_id = xml_element(body, "HostId");
    return d;
}

} // namespace cachestore::s3::detail
