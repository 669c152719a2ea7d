// Fuzz target: the S3 error document reader (s3/detail/error_xml.hpp).
//
// Invariants, on any input:
//  - parse_error_xml, xml_element and xml_text never crash and never return a
//    field longer than max_error_field bytes;
//  - xml_text of text without '&' is that text, cut at max_error_field;
//  - a document built from the input by escaping it (predefined entities,
//    decimal and hex character references, chosen per byte) gives the input
//    back as its Code, with the other fields intact;
//  - a numeric character reference decodes to the UTF-8 of its code point, or
//    to '?' for NUL, surrogates and values past U+10FFFF.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "cachestore/s3/detail/error_xml.hpp"
#include "fuzz_support.hpp"

namespace x = cachestore::s3::detail;

namespace {

/// Escapes `s` for XML text content; `salt` varies which form each byte takes.
std::string escape(std::string_view s, unsigned salt) {
    std::string out;
    char buf[16];
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        const unsigned pick = (static_cast<unsigned>(i) + salt) % 3;
        if (c == '&') out += "&amp;";
        else if (c == '<') out += "&lt;";
        else if (c == '>' && pick == 0) out += "&gt;";
        else if (c == '"' && pick == 0) out += "&quot;";
        else if (c == '\'' && pick == 0) out += "&apos;";
        else if (c == 0 || c >= 0x80 || pick == 0) out += static_cast<char>(c);
        else {
            std::snprintf(buf, sizeof buf, pick == 1 ? "&#%u;" : "&#x%X;", static_cast<unsigned>(c));
            out += buf;
        }
    }
    return out;
}

/// Decodes one UTF-8 sequence that must span all of `s`; -1 if it is not one.
long decode_utf8(std::string_view s) {
    if (s.empty()) return -1;
    const auto b0 = static_cast<unsigned char>(s[0]);
    std::size_t len;
    unsigned long cp;
    if (b0 < 0x80) { len = 1; cp = b0; }
    else if ((b0 & 0xE0) == 0xC0) { len = 2; cp = b0 & 0x1Fu; }
    else if ((b0 & 0xF0) == 0xE0) { len = 3; cp = b0 & 0x0Fu; }
    else if ((b0 & 0xF8) == 0xF0) { len = 4; cp = b0 & 0x07u; }
    else return -1;
    if (s.size() != len) return -1;
    for (std::size_t i = 1; i < len; ++i) {
        const auto b = static_cast<unsigned char>(s[i]);
        if ((b & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (b & 0x3Fu);
    }
    // Shortest form only.
    static constexpr unsigned long min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len]) return -1;
    return static_cast<long>(cp);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in = fuzz::as_view(data, size);

    // Raw input as a whole document.
    const x::s3_error_doc raw = x::parse_error_xml(in);
    for (const std::string* f : {&raw.code, &raw.message, &raw.request_id, &raw.host_id})
        FUZZ_CHECK(f->size() <= x::max_error_field);

    // Raw input as text content, and with an element name taken from it.
    const std::string text = x::xml_text(in);
    FUZZ_CHECK(text.size() <= x::max_error_field);
    if (in.find('&') == std::string_view::npos)
        FUZZ_CHECK(text == in.substr(0, x::max_error_field));
    const std::size_t nl = in.find('\n');
    if (nl <= 32) // npos is larger
        FUZZ_CHECK(x::xml_element(in.substr(nl + 1), in.substr(0, nl)).size() <= x::max_error_field);

    // Round trip through an escaped, well-formed document.
    const std::string_view code = in.substr(0, 2 * x::max_error_field);
    const unsigned salt = size == 0 ? 0u : data[0];
    std::string doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>";
    doc += escape(code, salt);
    doc += "</Code><Message>The &lt;key&gt; &amp; &#x263A;</Message>"
           "<RequestId>tx0000-ab&#99;d</RequestId><HostId>h&#47;1</HostId></Error>";
    const x::s3_error_doc rt = x::parse_error_xml(doc);
    FUZZ_CHECK_MSG(rt.code == code.substr(0, x::max_error_field), doc);
    FUZZ_CHECK(rt.message == "The <key> & \xE2\x98\xBA");
    FUZZ_CHECK(rt.request_id == "tx0000-abcd");
    FUZZ_CHECK(rt.host_id == "h/1");
    FUZZ_CHECK(!rt.empty());

    // Numeric character references from the first four bytes.
    if (size >= 4) {
        const std::uint32_t cp = std::uint32_t{data[0]} | (std::uint32_t{data[1]} << 8) |
                                 (std::uint32_t{data[2]} << 16) | (std::uint32_t{data[3] & 0x1Fu} << 24);
        char ref[24];
        std::snprintf(ref, sizeof ref, (data[3] & 0x80) != 0 ? "&#x%x;" : "&#%u;", static_cast<unsigned>(cp));
        const std::string dec = x::xml_text(ref);
        const bool valid = cp != 0 && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
        if (std::string_view(ref).size() - 1 > 10) {
            FUZZ_CHECK_MSG(dec == ref, ref); // too long to be a reference: kept literally
        } else if (cp > 0x10FFFF) {
            FUZZ_CHECK_MSG(dec == ref, ref); // out of range: kept literally
        } else if (!valid) {
            FUZZ_CHECK_MSG(dec == "?", ref);
        } else {
            FUZZ_CHECK_MSG(decode_utf8(dec) == static_cast<long>(cp), ref);
        }
    }
    return 0;
}
