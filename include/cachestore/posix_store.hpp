// cachestore/posix_store.hpp - the POSIX filesystem driver, the embedded
// default: chunks as files under a root directory, atomic link() commits,
// optionally bounded with least-recently-used eviction. The driver lives in
// cachestore/posix/ (store, commit protocol, bounds, sweeper); this is the
// include users write.
#pragma once

#include "cachestore/posix/options.hpp"
#include "cachestore/posix/store.hpp"
