// cachestore/s3/validate.hpp - everything about a config that can be checked
// without the network, and its one-line description for logs.
#pragma once

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "cachestore/error.hpp"
#include "cachestore/s3/config_types.hpp"
#include "cachestore/s3/credentials.hpp"
#include "cachestore/s3/detail/text.hpp"
#include "cachestore/s3/endpoint.hpp"

namespace cachestore::s3 {

/// Checks everything that can be checked without the network and reports
/// every problem found in one `misconfigured` error (op "config"), joined by
/// "; ". Touches the file system only for tls.ca_file / tls.ca_dir.
[[nodiscard]] inline result<> validate(const config& c) {
    using namespace std::chrono_literals;
    using detail::quote;
    std::vector<std::string> problems;
    auto problem = [&](std::string m) { problems.push_back(std::move(m)); };

    // Enumerations (only wrong through a cast, but cheap to check).
    const bool addressing_ok = c.addressing_style == addressing::path || c.addressing_style == addressing::virtual_hosted;
    if (!addressing_ok) problem("addressing_style is not a valid addressing value");
    if (c.commit != commit_mode::auto_detect && c.commit != commit_mode::stat_then_put &&
        c.commit != commit_mode::if_none_match)
        problem("commit is not a valid commit_mode value");
    if (c.payload != payload_signing::auto_select && c.payload != payload_signing::sha256 &&
        c.payload != payload_signing::unsigned_payload)
        problem("payload is not a valid payload_signing value");
    if (c.streaming != streaming_upload::auto_detect && c.streaming != streaming_upload::stream &&
        c.streaming != streaming_upload::spool)
        problem("streaming is not a valid streaming_upload value");

    // Bucket.
    const bool virtual_hosted = c.addressing_style == addressing::virtual_hosted;
    if (c.bucket.empty()) {
        problem("bucket is empty: set the bucket name");
    } else if (virtual_hosted && !detail::dns_bucket_name(c.bucket)) {
        problem("bucket " + quote(c.bucket) +
                " cannot be used with virtual-hosted addressing, which needs a DNS-compatible name (3-63 characters "
                "of a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit, not "
                "an IP address): rename the bucket or use path addressing");
    } else if (!virtual_hosted && !detail::path_bucket_name(c.bucket)) {
        problem("bucket " + quote(c.bucket) +
                " is not a valid bucket name: use 1-255 characters of letters, digits, '.', '-' and '_'");
    }

    // Region.
    const bool region_ok = detail::valid_region(c.region);
    if (c.region.empty())
        problem("region is empty: set it (S3-compatible servers usually accept \"us-east-1\"), or set AWS_REGION "
                "and load the config with config_from_env");
    else if (!region_ok)
        problem("region " + quote(c.region) + " must be 1-64 characters of letters, digits, '-', '_' and '.'");

    // Endpoint (the AWS default needs the region, already reported above).
    if (!c.endpoint.empty() || region_ok) {
        auto ep = detail::check_endpoint(c);
        if (!ep) {
            problem(std::move(ep.error()));
        } else if (c.payload == payload_signing::unsigned_payload && ep->scheme != "https") {
            problem("payload_signing \"unsigned\" needs an https endpoint: over http nothing would protect the "
                    "bytes of an upload; use \"auto\" or \"signed\"");
        } else if (virtual_hosted && detail::ip_literal_host(ep->host)) {
            problem("virtual-hosted addressing needs a DNS host name in the endpoint, not the IP address " +
                    quote(ep->host) + ": use path addressing");
        }
    }

    // Credentials: never echo them.
    // The provider's credentials are checked when it supplies them.
    if (!c.credentials_source) {
        const std::string where = "set it in the config, in the environment (AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY) or in the shared credentials file profile";
        const std::string p = detail::credentials_problem(c.creds);
        if (!p.empty()) problem(p.find("is empty") != std::string::npos ? p + ": " + where : p);
    }

    // Prefix.
    if (c.prefix.starts_with('/'))
        problem("prefix " + quote(c.prefix) + " must not start with '/': keys are relative to the bucket (e.g. \"cache/\")");
    if (detail::has_control(c.prefix)) problem("prefix " + quote(c.prefix) + " contains a control character");

    // Retries.
    const retry_policy& r = c.retry;
    constexpr auto max_duration = std::chrono::milliseconds(24h);
    auto ms = [](auto d) { return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()); };
    if (r.max_attempts < 1 || r.max_attempts > 20)
        problem("retry.max_attempts must be between 1 and 20 (got " + std::to_string(r.max_attempts) +
                "; 1 = no retries)");
    if (r.base_delay.count() < 0) problem("retry.base_delay must be >= 0 ms (got " + ms(r.base_delay) + ")");
    if (r.max_delay.count() < 0) problem("retry.max_delay must be >= 0 ms (got " + ms(r.max_delay) + ")");
    if (r.base_delay.count() >= 0 && r.max_delay.count() >= 0 && r.max_delay < r.base_delay)
        problem("retry.max_delay (" + ms(r.max_delay) + " ms) must be >= retry.base_delay (" + ms(r.base_delay) +
                " ms)");
    if (r.base_delay > max_duration || r.max_delay > max_duration)
        problem("retry delays must be at most 24 hours");

    // Timeouts.
    const timeout_policy& t = c.timeouts;
    if (t.connect.count() <= 0) problem("timeouts.connect must be > 0 ms (got " + ms(t.connect) + ")");
    if (t.low_speed_limit < 0)
        problem("timeouts.low_speed_limit must be >= 0 bytes/s (got " + std::to_string(t.low_speed_limit) +
                "; 0 disables the low-speed check)");
    if (t.low_speed_time.count() < 0)
        problem("timeouts.low_speed_time must be >= 0 s (got " + std::to_string(t.low_speed_time.count()) + ")");
    else if (t.low_speed_time.count() == 0 && t.low_speed_limit > 0)
        problem("timeouts.low_speed_time must be > 0 s while low_speed_limit is > 0 (set low_speed_limit to 0 to "
                "disable the low-speed check)");
    if (t.operation.count() < 0)
        problem("timeouts.operation must be >= 0 ms (got " + ms(t.operation) + "; 0 = no per-call timeout)");
    if (t.idle.count() <= 0) problem("timeouts.idle must be > 0 ms (got " + ms(t.idle) + ")");
    if (t.connect > max_duration || t.low_speed_time > max_duration || t.operation > max_duration ||
        t.idle > max_duration)
        problem("timeouts must be at most 24 hours");

    // TLS files.
    std::error_code ec;
    if (!c.tls.ca_file.empty() && !std::filesystem::is_regular_file(c.tls.ca_file, ec))
        problem("tls.ca_file " + quote(c.tls.ca_file) + " is not a readable file");
    if (!c.tls.ca_dir.empty() && !std::filesystem::is_directory(c.tls.ca_dir, ec))
        problem("tls.ca_dir " + quote(c.tls.ca_dir) + " is not a directory");

    if (!problems.empty()) return detail::misconfigured(detail::join(problems));
    return {};
}

/// A one-line summary for logs, e.g.
/// `endpoint=http://127.0.0.1:7480 bucket=b prefix=cache/ region=us-east-1
/// addressing=path commit=auto tls_verify=true max_attempts=4
/// credentials=AKIA...MPLE (secret: <redacted>, session token: absent)`.
/// Never contains the secret, the token, or user info of the endpoint.
[[nodiscard]] inline std::string describe(const config& c) {
    std::string s = "endpoint=";
    if (c.endpoint.empty())
        s += "https://" + detail::aws_host(c.region) + "(aws-default)";
    else
        s += detail::redact_endpoint(c.endpoint);
    s += " bucket=" + c.bucket;
    if (!c.prefix.empty()) s += " prefix=" + c.prefix;
    s += " region=" + c.region;
    s += " addressing=" + std::string(to_string(c.addressing_style));
    s += " commit=" + std::string(to_string(c.commit));
    s += " payload_signing=" + std::string(to_string(c.payload));
    s += " streaming=" + std::string(to_string(c.streaming));
    s += c.tls.verify ? " tls_verify=true" : " tls_verify=false";
    if (!c.tls.ca_file.empty()) s += " tls_ca_file=" + c.tls.ca_file;
    s += " max_attempts=" + std::to_string(c.retry.max_attempts);
    s += " credentials=" + redacted(c.creds);
    // One line, whatever the fields hold.
    for (char& ch : s)
        if (detail::is_control(ch)) ch = '?';
    return s;
}

} // namespace cachestore::s3
