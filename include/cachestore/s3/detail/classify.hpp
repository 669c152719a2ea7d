// cachestore/s3/detail/classify.hpp - S3 and transport failures to errc.
// The table is documented in docs/s3.md ("Error mapping"); keep them in step.
#pragma once

#include <cstddef>
#include <iterator>
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

/// How each libcurl result is classified, and why: every CURLcode below
/// CURL_LAST of libcurl 7.88, in order (entry i-1 is code i) (tests/s3/config_test.cpp walks it;
/// docs/errors.md shows it). Our own aborts (a sink that stopped, a deadline,
/// a source that failed) carry an abort_reason and never reach this table;
/// outcome.hpp refines two rows by context: a misconfigured-looking answer on
/// a reused connection is transient, and CURLE_OUT_OF_MEMORY after a status
/// line is a header over libcurl's limit (protocol).
struct curl_class {
    const char* name;
    const char* why;
    int code; ///< the CURLcode's value (numbers, so that the table compiles with any libcurl)
    errc cls;
};

inline constexpr const char* not_http = "another protocol's failure: an HTTP(S) transfer does not produce it";

// clang-format off
inline constexpr curl_class curl_classes[] = {
    {"CURLE_UNSUPPORTED_PROTOCOL", "the endpoint names a scheme libcurl cannot speak", 1, errc::misconfigured},
    {"CURLE_FAILED_INIT", "libcurl could not set up the transfer (also our multi-handle failures)", 2, errc::io_error},
    {"CURLE_URL_MALFORMAT", "the endpoint or key makes no valid URL", 3, errc::misconfigured},
    {"CURLE_NOT_BUILT_IN", "this libcurl lacks a feature the configuration asks for (e.g. https)", 4, errc::misconfigured},
    {"CURLE_COULDNT_RESOLVE_PROXY", "a proxy from the environment could not be resolved: DNS may recover", 5, errc::transient},
    {"CURLE_COULDNT_RESOLVE_HOST", "DNS failed: a resolver outage recovers, a wrong name fails every attempt", 6, errc::transient},
    {"CURLE_COULDNT_CONNECT", "refused or unreachable: a restarting server recovers", 7, errc::transient},
    {"CURLE_WEIRD_SERVER_REPLY", "not HTTP: a stray byte on a kept-alive connection, or a server mid-restart", 8, errc::transient},
    {"CURLE_REMOTE_ACCESS_DENIED", not_http, 9, errc::io_error},
    {"CURLE_FTP_ACCEPT_FAILED", not_http, 10, errc::io_error},
    {"CURLE_FTP_WEIRD_PASS_REPLY", not_http, 11, errc::io_error},
    {"CURLE_FTP_ACCEPT_TIMEOUT", not_http, 12, errc::io_error},
    {"CURLE_FTP_WEIRD_PASV_REPLY", not_http, 13, errc::io_error},
    {"CURLE_FTP_WEIRD_227_FORMAT", not_http, 14, errc::io_error},
    {"CURLE_FTP_CANT_GET_HOST", not_http, 15, errc::io_error},
    {"CURLE_HTTP2", "HTTP/2 framing failed: a new connection may not", 16, errc::transient},
    {"CURLE_FTP_COULDNT_SET_TYPE", not_http, 17, errc::io_error},
    {"CURLE_PARTIAL_FILE", "the body ended before its Content-Length: a truncated answer", 18, errc::transient},
    {"CURLE_FTP_COULDNT_RETR_FILE", not_http, 19, errc::io_error},
    {"CURLE_OBSOLETE20", "unused by libcurl", 20, errc::io_error},
    {"CURLE_QUOTE_ERROR", not_http, 21, errc::io_error},
    {"CURLE_HTTP_RETURNED_ERROR", "only with CURLOPT_FAILONERROR, which this driver never sets", 22, errc::io_error},
    {"CURLE_WRITE_ERROR", "our write callback refused bytes without saying why (our aborts carry their own reason)", 23, errc::io_error},
    {"CURLE_OBSOLETE24", "unused by libcurl", 24, errc::io_error},
    {"CURLE_UPLOAD_FAILED", "the upload could not be sent (the server stopped reading): the body is sent again", 25, errc::transient},
    {"CURLE_READ_ERROR", "our read callback failed without saying why (our aborts carry their own reason)", 26, errc::io_error},
    {"CURLE_OUT_OF_MEMORY", "memory ran out; after a status line libcurl 7.88 also says this of a header over its limit: then protocol", 27, errc::io_error},
    {"CURLE_OPERATION_TIMEDOUT", "the low-speed limit or connect timeout: a stalled server may recover", 28, errc::transient},
    {"CURLE_OBSOLETE29", "unused by libcurl", 29, errc::io_error},
    {"CURLE_FTP_PORT_FAILED", not_http, 30, errc::io_error},
    {"CURLE_FTP_COULDNT_USE_REST", not_http, 31, errc::io_error},
    {"CURLE_OBSOLETE32", "unused by libcurl", 32, errc::io_error},
    {"CURLE_RANGE_ERROR", "the server did not honour a range (only with CURLOPT_RANGE, which this driver never sets)", 33, errc::protocol},
    {"CURLE_HTTP_POST_ERROR", not_http, 34, errc::io_error},
    {"CURLE_SSL_CONNECT_ERROR", "the TLS handshake failed: a reset recovers; tls.hpp makes a non-TLS port misconfigured", 35, errc::transient},
    {"CURLE_BAD_DOWNLOAD_RESUME", "only with CURLOPT_RESUME_FROM, which this driver never sets", 36, errc::io_error},
    {"CURLE_FILE_COULDNT_READ_FILE", not_http, 37, errc::io_error},
    {"CURLE_LDAP_CANNOT_BIND", not_http, 38, errc::io_error},
    {"CURLE_LDAP_SEARCH_FAILED", not_http, 39, errc::io_error},
    {"CURLE_OBSOLETE40", "unused by libcurl", 40, errc::io_error},
    {"CURLE_FUNCTION_NOT_FOUND", "unused by libcurl", 41, errc::io_error},
    {"CURLE_ABORTED_BY_CALLBACK", "a progress callback aborted; this driver sets none", 42, errc::io_error},
    {"CURLE_BAD_FUNCTION_ARGUMENT", "a libcurl call was given a bad argument: a bug", 43, errc::io_error},
    {"CURLE_OBSOLETE44", "unused by libcurl", 44, errc::io_error},
    {"CURLE_INTERFACE_FAILED", "only with CURLOPT_INTERFACE, which this driver never sets", 45, errc::io_error},
    {"CURLE_OBSOLETE46", "unused by libcurl", 46, errc::io_error},
    {"CURLE_TOO_MANY_REDIRECTS", "redirects are not followed: a 3xx answer is classified by its status", 47, errc::io_error},
    {"CURLE_UNKNOWN_OPTION", "this libcurl does not know an option the driver sets", 48, errc::io_error},
    {"CURLE_SETOPT_OPTION_SYNTAX", "an option string was malformed: a bug", 49, errc::io_error},
    {"CURLE_OBSOLETE50", "unused by libcurl", 50, errc::io_error},
    {"CURLE_OBSOLETE51", "unused by libcurl", 51, errc::io_error},
    {"CURLE_GOT_NOTHING", "the connection closed before any answer: typical of a kept-alive connection the server dropped", 52, errc::transient},
    {"CURLE_SSL_ENGINE_NOTFOUND", "the configured TLS engine does not exist", 53, errc::misconfigured},
    {"CURLE_SSL_ENGINE_SETFAILED", "the configured TLS engine could not be used", 54, errc::misconfigured},
    {"CURLE_SEND_ERROR", "sending failed (reset, broken pipe)", 55, errc::transient},
    {"CURLE_RECV_ERROR", "receiving failed (reset)", 56, errc::transient},
    {"CURLE_OBSOLETE57", "unused by libcurl", 57, errc::io_error},
    {"CURLE_SSL_CERTPROBLEM", "the client certificate is unusable", 58, errc::misconfigured},
    {"CURLE_SSL_CIPHER", "no usable cipher", 59, errc::misconfigured},
    {"CURLE_PEER_FAILED_VERIFICATION", "the server certificate is not trusted or not for this host", 60, errc::misconfigured},
    {"CURLE_BAD_CONTENT_ENCODING", "the server sent a body in an encoding nobody asked for", 61, errc::protocol},
    {"CURLE_OBSOLETE62", "unused by libcurl", 62, errc::io_error},
    {"CURLE_FILESIZE_EXCEEDED", "only with CURLOPT_MAXFILESIZE, which this driver never sets", 63, errc::io_error},
    {"CURLE_USE_SSL_FAILED", "TLS was required and could not be had", 64, errc::misconfigured},
    {"CURLE_SEND_FAIL_REWIND", "a kept-alive connection died under an upload whose body cannot be replayed by libcurl; the driver sends it again", 65, errc::transient},
    {"CURLE_SSL_ENGINE_INITFAILED", "the TLS engine did not initialise", 66, errc::misconfigured},
    {"CURLE_LOGIN_DENIED", not_http, 67, errc::io_error},
    {"CURLE_TFTP_NOTFOUND", not_http, 68, errc::io_error},
    {"CURLE_TFTP_PERM", not_http, 69, errc::io_error},
    {"CURLE_REMOTE_DISK_FULL", not_http, 70, errc::io_error},
    {"CURLE_TFTP_ILLEGAL", not_http, 71, errc::io_error},
    {"CURLE_TFTP_UNKNOWNID", not_http, 72, errc::io_error},
    {"CURLE_REMOTE_FILE_EXISTS", not_http, 73, errc::io_error},
    {"CURLE_TFTP_NOSUCHUSER", not_http, 74, errc::io_error},
    {"CURLE_OBSOLETE75", "unused by libcurl", 75, errc::io_error},
    {"CURLE_OBSOLETE76", "unused by libcurl", 76, errc::io_error},
    {"CURLE_SSL_CACERT_BADFILE", "tls.ca_file / tls.ca_dir cannot be read", 77, errc::misconfigured},
    {"CURLE_REMOTE_FILE_NOT_FOUND", not_http, 78, errc::io_error},
    {"CURLE_SSH", not_http, 79, errc::io_error},
    {"CURLE_SSL_SHUTDOWN_FAILED", "the TLS close failed: the connection is gone, a new one works", 80, errc::transient},
    {"CURLE_AGAIN", "the socket was not ready (only from curl_easy_send/recv)", 81, errc::transient},
    {"CURLE_SSL_CRL_BADFILE", "the CRL file cannot be read", 82, errc::misconfigured},
    {"CURLE_SSL_ISSUER_ERROR", "the issuer check failed", 83, errc::misconfigured},
    {"CURLE_FTP_PRET_FAILED", not_http, 84, errc::io_error},
    {"CURLE_RTSP_CSEQ_ERROR", not_http, 85, errc::io_error},
    {"CURLE_RTSP_SESSION_ERROR", not_http, 86, errc::io_error},
    {"CURLE_FTP_BAD_FILE_LIST", not_http, 87, errc::io_error},
    {"CURLE_CHUNK_FAILED", not_http, 88, errc::io_error},
    {"CURLE_NO_CONNECTION_AVAILABLE", "no connection could be had now (CURLOPT_CONNECT_ONLY limits)", 89, errc::transient},
    {"CURLE_SSL_PINNEDPUBKEYNOTMATCH", "the server key is not the pinned one", 90, errc::misconfigured},
    {"CURLE_SSL_INVALIDCERTSTATUS", "the certificate status (OCSP) check failed", 91, errc::misconfigured},
    {"CURLE_HTTP2_STREAM", "an HTTP/2 stream was reset: another stream may succeed", 92, errc::transient},
    {"CURLE_RECURSIVE_API_CALL", "libcurl was called from its own callback: a bug", 93, errc::io_error},
    {"CURLE_AUTH_ERROR", "only from libcurl's own authentication, which this driver does not use (it signs requests itself)", 94, errc::io_error},
    {"CURLE_HTTP3", "HTTP/3 failed: a new connection may not", 95, errc::transient},
    {"CURLE_QUIC_CONNECT_ERROR", "QUIC connect failed", 96, errc::transient},
    {"CURLE_PROXY", "a proxy from the environment failed its handshake", 97, errc::transient},
    {"CURLE_SSL_CLIENTCERT", "the server requires a client certificate", 98, errc::misconfigured},
    {"CURLE_UNRECOVERABLE_POLL", "poll failed: the next attempt gets a new connection", 99, errc::transient},
};
// clang-format on
// A libcurl with more codes compiles too: the newer ones take the default below
// (and tests/s3/config_test.cpp fails until they are classified here).

/// Classifies a libcurl transfer failure that is not our own abort.
[[nodiscard]] inline errc classify_curl(CURLcode rc) noexcept {
    const auto i = static_cast<std::size_t>(rc);
    if (i >= 1 && i <= std::size(curl_classes)) return curl_classes[i - 1].cls;
    return errc::transient; // a code newer than this table: a transfer failure, worth another attempt
}

} // namespace cachestore::s3::detail
