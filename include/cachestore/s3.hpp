// cachestore/s3.hpp - the S3 driver and everything it needs (libcurl, OpenSSL);
// the origin of the read-through engine (s3::origin). The JSON config loader
// is <cachestore/s3/config_json.hpp> (nlohmann/json).
#pragma once

#include "cachestore/cachestore.hpp"
#include "cachestore/s3/config.hpp"
#include "cachestore/s3/credentials.hpp"
#include "cachestore/s3/credentials_provider.hpp"
#include "cachestore/s3/observer.hpp"
#include "cachestore/s3/origin.hpp"
#include "cachestore/s3/sigv4.hpp"
#include "cachestore/s3/store.hpp"
