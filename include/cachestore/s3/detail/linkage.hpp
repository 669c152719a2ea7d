// cachestore/s3/detail/linkage.hpp - how the S3 driver's out-of-line
// functions are defined: inline in every TU (header-only, the default), or
// once, in the one TU that includes <cachestore/s3/src.hpp>, when the user
// defines CACHESTORE_SEPARATE_COMPILATION (docs/getting-started.md, "Separate
// compilation").
#pragma once

#ifdef CACHESTORE_SEPARATE_COMPILATION
#define CACHESTORE_S3_DECL
#else
#define CACHESTORE_S3_DECL inline
#endif
