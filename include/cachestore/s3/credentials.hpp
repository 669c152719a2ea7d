// cachestore/s3/credentials.hpp - AWS credentials for the S3 driver, and the
// one way to print them (redacted).
//
// The secret access key and the session token never leave this struct through
// any formatting function of this library: there is deliberately no
// operator<<, and redacted() names only the access key id's ends.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace cachestore::s3 {

/// An access key pair, optionally with a session token (temporary credentials).
struct credentials {
    std::string access_key_id;
    std::string secret_access_key;
    std::string session_token; ///< empty = none (long-term credentials)
    /// When temporary credentials stop working (a credentials_provider
    /// fetches new ones ahead of it); nullopt = no known expiry.
    std::optional<std::chrono::system_clock::time_point> expiration{};
};

namespace detail {

/// Whether `a` and `b` sign the same way (the expiration aside).
[[nodiscard]] inline bool same_keys(const credentials& a, const credentials& b) noexcept {
    return a.access_key_id == b.access_key_id && a.secret_access_key == b.secret_access_key &&
           a.session_token == b.session_token;
}

/// What is wrong with `c` as a signing input ("" when nothing): an empty id or
/// secret, or characters that would corrupt a header line. Never quotes them.
[[nodiscard]] inline std::string credentials_problem(const credentials& c) {
    auto control = [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; };
    std::string p;
    auto add = [&p](const char* m) {
        if (!p.empty()) p += "; ";
        p += m;
    };
    bool id_bad = false;
    for (const char ch : c.access_key_id) id_bad = id_bad || control(ch) || ch == ' ' || ch == '/';
    if (c.access_key_id.empty()) add("access_key_id is empty");
    else if (id_bad) add("access_key_id contains whitespace, a control character or '/': check for a stray newline or a pasted secret");
    bool secret_bad = false;
    for (const char ch : c.secret_access_key) secret_bad = secret_bad || control(ch);
    if (c.secret_access_key.empty()) add("secret_access_key is empty");
    else if (secret_bad) add("secret_access_key contains a control character: check for a stray newline");
    bool token_bad = false;
    for (const char ch : c.session_token) token_bad = token_bad || control(ch);
    if (token_bad) add("session_token contains a control character: check for a stray newline");
    return p;
}

} // namespace detail

/// A description of `c` that is safe to log, e.g.
/// `AKIA...MPLE (secret: <redacted>, session token: present)`.
/// Only the first and last four characters of the access key id are shown
/// (fewer when the id is short); the secret and the token are never printed.
[[nodiscard]] inline std::string redacted(const credentials& c) {
    std::string s;
    const std::string& id = c.access_key_id;
    if (id.empty()) {
        s += "<no access key id>";
    } else if (id.size() <= 8) {
        // Too short to show both ends without showing (nearly) all of it.
        s.append(id, 0, id.size() / 2);
        s += "...";
    } else {
        s.append(id, 0, 4);
        s += "...";
        s.append(id, id.size() - 4, 4);
    }
    s += " (secret: ";
    s += c.secret_access_key.empty() ? "<empty>" : "<redacted>";
    s += ", session token: ";
    s += c.session_token.empty() ? "absent" : "present";
    s += ')';
    return s;
}

} // namespace cachestore::s3
