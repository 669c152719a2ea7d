// cachestore/s3/src.hpp - the S3 driver's definitions, compiled once: with
// CACHESTORE_SEPARATE_COMPILATION defined in every TU of a program, exactly
// one source file includes this header (docs/getting-started.md, "Separate
// compilation"); every other TU then parses declarations only.
#pragma once

#ifndef CACHESTORE_SEPARATE_COMPILATION
#error "<cachestore/s3/src.hpp> is for CACHESTORE_SEPARATE_COMPILATION builds: define it in every TU (header-only builds need no source file)"
#endif

#include "cachestore/s3/impl/endpoint.hpp"
#include "cachestore/s3/impl/origin.hpp"
#include "cachestore/s3/impl/store.hpp"
