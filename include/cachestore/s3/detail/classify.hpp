// cachestore/s3/detail/classify.hpp - S3 and transport failures to errc.
// The table is documented in docs/s3.md ("Error mapping"); keep them in step.
#pragma once

#include <string_view>

#include <curl/curl.h>

#include "cachestore/error.hpp"

namespace cachestore::s3::detail {

/// Classifies an HTTP error answer. `code` is the S3 error Code (empty for
/// HEAD, which has no body: then the status alone decides).
[[nodiscard]] inline errc classify_http(long status, std::string_view code) noexcept {
    // Codes first: they are more precise than statuses.
    if (code == "NoSuchKey") return errc::not_found;
    if (code == "NoSuchBucket" || code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" ||
        code == "InvalidBucketName" || code == "IllegalLocationConstraintException" || code == "InvalidRegion")
        return errc::misconfigured;
    if (code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId" || code == "ExpiredToken" ||
        code == "InvalidToken" || code == "TokenRefreshRequired" || code == "RequestTimeTooSkewed" ||
        code == "AccessDenied" || code == "AllAccessDisabled" || code == "AccountProblem" ||
        code == "InvalidSecurity" || code == "MissingSecurityHeader" || code == "NotSignedUp")
        return errc::auth;
    if (code == "SlowDown" || code == "RequestTimeout" || code == "InternalError" || code == "ServiceUnavailable" ||
        code == "ConditionalRequestConflict" || code == "OperationAborted" || code == "BadDigest" ||
        code == "XAmzContentSHA256Mismatch" || code == "IncompleteBody" || code == "RequestTimeTooSkewedRetry")
        return errc::transient;
    if (code == "PreconditionFailed") return errc::commit_lost;
    if (code == "InvalidRange") return errc::out_of_range;
    if (status == 404) return errc::not_found;
    if (status == 401 || status == 403) return errc::auth;
    if (status == 412) return errc::commit_lost;
    if (status == 416) return errc::out_of_range;
    if (status == 408 || status == 409 || status == 429 || status >= 500) return errc::transient;
    return errc::protocol;
}

/// Classifies a libcurl transfer failure that is not our own abort.
[[nodiscard]] inline errc classify_curl(CURLcode rc) noexcept {
    switch (rc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        return errc::misconfigured;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_BAD_FUNCTION_ARGUMENT:
        return errc::io_error;
    default:
        // Resolve/connect failures, resets, partial bodies, timeouts of the
        // low-speed limit, TLS handshake hiccups: worth retrying.
        return errc::transient;
    }
}

} // namespace cachestore::s3::detail
