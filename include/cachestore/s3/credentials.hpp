// cachestore/s3/credentials.hpp - AWS credentials for the S3 driver, and the
// one way to print them (redacted).
//
// The secret access key and the session token never leave this struct through
// any formatting function of this library: there is deliberately no
// operator<<, and redacted() names only the access key id's ends.
#pragma once

#include <string>

namespace cachestore::s3 {

/// An access key pair, optionally with a session token (temporary credentials).
struct credentials {
    std::string access_key_id;
    std::string secret_access_key;
    std::string session_token; ///< empty = none (long-term credentials)
};

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
