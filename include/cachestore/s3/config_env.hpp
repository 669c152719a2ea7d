// cachestore/s3/config_env.hpp - the AWS environment loaders: endpoint,
// region and credentials from AWS_* variables and the shared credentials file.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>

#include "cachestore/error.hpp"
#include "cachestore/s3/config_types.hpp"
#include "cachestore/s3/credentials.hpp"
#include "cachestore/s3/credentials_provider.hpp"
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

namespace detail {

/// Where the shared credentials file says to look.
struct credentials_file_ref {
    std::filesystem::path file;
    std::string profile;
    bool file_named = false;    ///< AWS_SHARED_CREDENTIALS_FILE chose the file
    bool profile_named = false; ///< AWS_PROFILE chose the profile
};

/// The credentials of `ref` (the file read and parsed now).
[[nodiscard]] inline result<credentials> read_credentials_file(const credentials_file_ref& ref) {
    const std::filesystem::path& file = ref.file;
    const std::string& profile = ref.profile;
    const std::string shown = quote(file.string());
    std::error_code ec;
    const bool exists = std::filesystem::exists(file, ec);
    if (!ec && !exists) {
        if (ref.file_named) return misconfigured("AWS_SHARED_CREDENTIALS_FILE names " + shown + ", which does not exist");
        if (ref.profile_named)
            return misconfigured("AWS_PROFILE is " + quote(profile) + " but the credentials file " + shown +
                                 " does not exist");
        return misconfigured("no credentials: set access_key_id/secret_access_key in the config, or "
                             "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or create " +
                             shown + " with a [default] profile");
    }
    auto text = read_small_file(file);
    if (!text) return misconfigured("credentials file: " + text.error());
    auto profiles = parse_credentials_ini(*text, file.string());
    if (!profiles) return misconfigured("credentials file " + profiles.error());

    const auto it = profiles->find(profile);
    if (it == profiles->end()) {
        std::string names;
        for (const auto& [name, _] : *profiles) names += (names.empty() ? "" : ", ") + quote(name);
        return misconfigured("profile " + quote(profile) + " not found in " + shown +
                             (names.empty() ? std::string(" (it has no profiles)") : " (profiles: " + names + ")") +
                             (ref.profile_named ? "; fix AWS_PROFILE" : "; set AWS_PROFILE or add a [default] profile"));
    }
    const auto& keys = it->second;
    auto get = [&keys](const char* key) -> std::string {
        const auto k = keys.find(key);
        return k == keys.end() ? std::string() : k->second;
    };
    credentials c;
    c.access_key_id = get("aws_access_key_id");
    c.secret_access_key = get("aws_secret_access_key");
    c.session_token = get("aws_session_token");
    if (c.session_token.empty()) c.session_token = get("aws_security_token");
    if (c.access_key_id.empty() || c.secret_access_key.empty())
        return misconfigured("profile " + quote(profile) + " in " + shown + " lacks " +
                             (c.access_key_id.empty() ? "aws_access_key_id" : "aws_secret_access_key") +
                             " (profiles using role_arn, sso_* or credential_process are not supported)");
    return c;
}

/// Where the environment says credentials come from: the AWS_* variables
/// (their value), or a profile of the shared credentials file (where).
[[nodiscard]] inline result<std::variant<credentials, credentials_file_ref>> locate_credentials(const env_source& env) {
    using located = std::variant<credentials, credentials_file_ref>;
    auto id = env_value(env, "AWS_ACCESS_KEY_ID");
    auto secret = env_value(env, "AWS_SECRET_ACCESS_KEY");
    if (id && secret) {
        credentials c;
        c.access_key_id = std::move(*id);
        c.secret_access_key = std::move(*secret);
        c.session_token = env_value(env, "AWS_SESSION_TOKEN").value_or("");
        return located(std::move(c));
    }
    if (id) return misconfigured("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both or neither");
    if (secret) return misconfigured("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set both or neither");

    credentials_file_ref ref;
    const auto profile_env = env_value(env, "AWS_PROFILE");
    ref.profile = profile_env.value_or("default");
    ref.profile_named = profile_env.has_value();
    const auto home = env_value(env, "HOME");
    const auto file_env = env_value(env, "AWS_SHARED_CREDENTIALS_FILE");
    ref.file_named = file_env.has_value();
    if (file_env) {
        if (file_env->starts_with("~/") && home)
            ref.file = std::filesystem::path(*home) / file_env->substr(2);
        else
            ref.file = *file_env;
    } else if (home) {
        ref.file = std::filesystem::path(*home) / ".aws" / "credentials";
    } else {
        return misconfigured("no credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set, and "
                             "neither AWS_SHARED_CREDENTIALS_FILE nor HOME is set to find a credentials file");
    }
    return located(std::move(ref));
}

} // namespace detail

/// A provider that re-reads a profile of the shared credentials file when
/// the file changes (its mtime, size or inode; checked at most every
/// `o.recheck`) and when the server refused the credentials it gave. A file
/// that is briefly unreadable or malformed (mid-rewrite) keeps the last
/// good credentials.
[[nodiscard]] inline std::shared_ptr<credentials_provider> shared_file_provider(detail::credentials_file_ref ref,
                                                                              credentials_provider::options o = {}) {
    auto file = ref.file;
    return credentials_provider::from_probed_function(
        [ref = std::move(ref)] { return detail::read_credentials_file(ref); },
        [file = std::move(file)] { return detail::file_change_token(file); }, o);
}

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
    auto where = detail::locate_credentials(env);
    if (!where) return std::unexpected(std::move(where.error()));
    if (auto* c = std::get_if<credentials>(&*where)) return std::move(*c);
    return detail::read_credentials_file(std::get<detail::credentials_file_ref>(*where));
}

/// credentials_from_env(process_env).
[[nodiscard]] inline result<credentials> credentials_from_env() { return credentials_from_env(env_source(process_env)); }

/// Fills what `base` leaves empty from the environment; explicit fields of
/// `base` always win (explicit config > environment > credentials file):
///  - endpoint: AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL (else stays empty = AWS);
///  - region (only when base.region is empty!): AWS_REGION, then
///    AWS_DEFAULT_REGION, else "us-east-1";
///  - creds (only when all three of base.creds are empty and base has no
///    credentials_source): credentials_from_env(); when they come from the
///    shared credentials file, credentials_source is also set to a
///    shared_file_provider, so that the store follows later changes of the file.
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
    if (k.access_key_id.empty() && k.secret_access_key.empty() && k.session_token.empty() && !base.credentials_source) {
        auto where = detail::locate_credentials(env);
        if (!where) return std::unexpected(std::move(where.error()));
        if (auto* c = std::get_if<credentials>(&*where)) {
            base.creds = std::move(*c);
        } else {
            auto& ref = std::get<detail::credentials_file_ref>(*where);
            auto read = detail::read_credentials_file(ref);
            if (!read) return std::unexpected(std::move(read.error()));
            base.creds = std::move(*read);
            base.credentials_source = shared_file_provider(std::move(ref));
        }
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
