// cachestore/s3.hpp - the S3 driver and everything it needs (libcurl, OpenSSL);
// the origin of the read-through engine (s3::origin). The JSON config loader
// is <cachestore/s3/config_json.hpp> (nlohmann/json). With
// CACHESTORE_SEPARATE_COMPILATION this header declares the driver without
// curl's or OpenSSL's headers (one TU includes <cachestore/s3/src.hpp>), and
// the signer on its own is <cachestore/s3/sigv4.hpp>.
#pragma once

#include "cachestore/store.hpp"
#include "cachestore/s3/config.hpp"
#include "cachestore/s3/credentials.hpp"
#include "cachestore/s3/credentials_provider.hpp"
#include "cachestore/s3/observer.hpp"
#include "cachestore/s3/origin.hpp"
#ifndef CACHESTORE_SEPARATE_COMPILATION
#include "cachestore/s3/sigv4.hpp"
#endif
#include "cachestore/s3/store.hpp"
