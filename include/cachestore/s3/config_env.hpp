// cachestore/s3/config_env.hpp - the AWS environment loaders: endpoint,
// region and credentials from AWS_* variables and the shared credentials file.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "cachestore/error.hpp"
#include "cachestore/s3/config_types.hpp"
#include "cachestore/s3/credentials.hpp"
#include "cachestore/s3/detail/credentials_ini.hpp"
#include "cachestore/s3/detail/text.hpp"

namespace cachestore::s3 {

namespace detail {

/// The variable's value, or nullopt when unset or empty.
[[nodiscard]] inline std::optional<std::string> env_value(const env_source& env, std::string_view name) {
    if (!env) return std::nullopt;
    auto v = env(name);
    if (!v || v->empty()) return std::nullopt;
    return v;
}

} // namespace detail

/// Credentials from the environment, else from the shared credentials file:
///  1. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN). Only
///     one of the two set is an error.
///  2. The profile AWS_PROFILE (default "default") of AWS_SHARED_CREDENTIALS_FILE
///     (a leading "~/" expands to $HOME) or $HOME/.aws/credentials:
///     aws_access_key_id, aws_secret_access_key, aws_session_token (or the
///     legacy aws_security_token). Section names are matched exactly
///     ("[profile x]" is the ~/.aws/config spelling, not used here).
/// Errors (misconfigured): a named file or profile that does not exist, a
/// malformed file, a profile without both keys, no credentials anywhere.
[[nodiscard]] inline result<credentials> credentials_from_env(const env_source& env) {
    auto id = detail::env_value(env, "AWS_ACCESS_KEY_ID");
    auto secret = detail::env_value(env, "AWS_SECRET_ACCESS_KEY");
    if (id && secret)
        return credentials{std::move(*id), std::move(*secret), detail::env_value(env, "AWS_SESSION_TOKEN").value_or("")};
    if (id) return detail::misconfigured("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both or neither");
    if (secret) return detail::misconfigured("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set both or neither");

    const auto profile_env = detail::env_value(env, "AWS_PROFILE");
    const std::string profile = profile_env.value_or("default");
    const auto home = detail::env_value(env, "HOME");
    const auto file_env = detail::env_value(env, "AWS_SHARED_CREDENTIALS_FILE");
    std::filesystem::path file;
    if (file_env) {
        if (file_env->starts_with("~/") && home)
            file = std::filesystem::path(*home) / file_env->substr(2);
        else
            file = *file_env;
    } else if (home) {
        file = std::filesystem::path(*home) / ".aws" / "credentials";
    } else {
        return detail::misconfigured("no credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set, and "
                                     "neither AWS_SHARED_CREDENTIALS_FILE nor HOME is set to find a credentials file");
    }
    const std::string shown = detail::quote(file.string());

    std::error_code ec;
    const bool exists = std::filesystem::exists(file, ec);
    if (!ec && !exists) {
        if (file_env)
            return detail::misconfigured("AWS_SHARED_CREDENTIALS_FILE names " + shown + ", which does not exist");
        if (profile_env)
            return detail::misconfigured("AWS_PROFILE is " + detail::quote(profile) + " but the credentials file " +
                                         shown + " does not exist");
        return detail::misconfigured("no credentials: set access_key_id/secret_access_key in the config, or "
                                     "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or create " +
                                     shown + " with a [default] profile");
    }
    auto text = detail::read_small_file(file);
    if (!text) return detail::misconfigured("credentials file: " + text.error());
    auto profiles = detail::parse_credentials_ini(*text, file.string());
    if (!profiles) return detail::misconfigured("credentials file " + profiles.error());

    const auto it = profiles->find(profile);
    if (it == profiles->end()) {
        std::string names;
        for (const auto& [name, _] : *profiles) names += (names.empty() ? "" : ", ") + detail::quote(name);
        return detail::misconfigured("profile " + detail::quote(profile) + " not found in " + shown +
                                     (names.empty() ? std::string(" (it has no profiles)") : " (profiles: " + names + ")") +
                                     (profile_env ? "; fix AWS_PROFILE" : "; set AWS_PROFILE or add a [default] profile"));
    }
    const auto& keys = it->second;
    auto get = [&keys](const char* key) -> std::string {
        const auto k = keys.find(key);
        return k == keys.end() ? std::string() : k->second;
    };
    credentials c{get("aws_access_key_id"), get("aws_secret_access_key"), get("aws_session_token")};
    if (c.session_token.empty()) c.session_token = get("aws_security_token");
    if (c.access_key_id.empty() || c.secret_access_key.empty())
        return detail::misconfigured("profile " + detail::quote(profile) + " in " + shown + " lacks " +
                                     (c.access_key_id.empty() ? "aws_access_key_id" : "aws_secret_access_key") +
                                     " (profiles using role_arn, sso_* or credential_process are not supported)");
    return c;
}

/// credentials_from_env(process_env).
[[nodiscard]] inline result<credentials> credentials_from_env() { return credentials_from_env(env_source(process_env)); }

/// Fills what `base` leaves empty from the environment; explicit fields of
/// `base` always win (explicit config > environment > credentials file):
///  - endpoint: AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL (else stays empty = AWS);
///  - region (only when base.region is empty!): AWS_REGION, then
///    AWS_DEFAULT_REGION, else "us-east-1";
///  - creds (only when all three of base.creds are empty): credentials_from_env().
/// Does not validate (there is no environment variable for the bucket); the
/// error cases are those of credentials_from_env.
[[nodiscard]] inline result<config> config_from_env(config base, const env_source& env) {
    if (base.endpoint.empty()) {
        auto ep = detail::env_value(env, "AWS_ENDPOINT_URL_S3");
        if (!ep) ep = detail::env_value(env, "AWS_ENDPOINT_URL");
        if (ep) base.endpoint = std::move(*ep);
    }
    if (base.region.empty()) {
        auto r = detail::env_value(env, "AWS_REGION");
        if (!r) r = detail::env_value(env, "AWS_DEFAULT_REGION");
        base.region = r.value_or("us-east-1");
    }
    const credentials& k = base.creds;
    if (k.access_key_id.empty() && k.secret_access_key.empty() && k.session_token.empty()) {
        auto c = credentials_from_env(env);
        if (!c) return std::unexpected(std::move(c.error()));
        base.creds = std::move(*c);
    }
    return base;
}

/// config_from_env(base, process_env). Mind that a default-constructed config
/// has region "us-east-1", which the environment does not override.
[[nodiscard]] inline result<config> config_from_env(config base) {
    return config_from_env(std::move(base), env_source(process_env));
}

/// A default config resolved from the process environment, the region
/// included (AWS_REGION, AWS_DEFAULT_REGION, else "us-east-1").
[[nodiscard]] inline result<config> config_from_env() {
    config base;
    base.region.clear();
    return config_from_env(std::move(base));
}

} // namespace cachestore::s3
