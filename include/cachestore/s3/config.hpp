// cachestore/s3/config.hpp - the S3 driver's configuration, all of it: the
// struct (config_types.hpp), the endpoint parser (endpoint.hpp), validation
// (validate.hpp) and the loader from the AWS environment / shared credentials
// file (config_env.hpp). The JSON loader is a header of its own
// (config_json.hpp), included only where it is used: nlohmann/json costs every
// translation unit that includes it about 1 s of g++ and 6.5 s of clang-tidy.
//
// Every problem is reported as `errc::misconfigured` with op "config" and a
// message that says what to fix. No message and no describe() output ever
// contains the secret access key or the session token; user info in an
// endpoint URL (`user:password@`) is shown as `<redacted>@`.
//
// Precedence when several sources set the same field:
//
//     explicit config (struct fields, JSON keys) > environment > shared credentials file
//
// An empty string counts as "not set" everywhere (an empty environment
// variable too). Credentials are taken as a unit from the first source that
// has any of them: the config's own creds, else AWS_ACCESS_KEY_ID +
// AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), else the profile in the shared
// credentials file. They are never mixed across sources.
#pragma once
#pragma once

#include "cachestore/s3/config_env.hpp"
#include "cachestore/s3/config_types.hpp"
#include "cachestore/s3/credentials.hpp"
#include "cachestore/s3/credentials_provider.hpp"
#include "cachestore/s3/endpoint.hpp"
#include "cachestore/s3/validate.hpp"
