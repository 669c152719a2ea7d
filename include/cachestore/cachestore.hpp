// cachestore/cachestore.hpp - everything except the S3 driver (which needs
// libcurl and OpenSSL: include "cachestore/s3.hpp" for it), layers included.
#pragma once

#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/chunk_range.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/layers.hpp"
#include "cachestore/memory_store.hpp"
#include "cachestore/posix_store.hpp"
#include "cachestore/read_range.hpp"
#include "cachestore/store.hpp"
