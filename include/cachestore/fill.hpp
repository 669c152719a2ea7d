// cachestore/fill.hpp - the read-through engine (docs/fill.md): one origin
// fetch per cold chunk however many callers ask, commit after serve,
// read-ahead, the origin cap, the metadata cache, and its metrics. Not in
// <cachestore/cachestore.hpp>: a proxy that only stores chunks does not pay
// for the engine's threads and headers. The S3 origin is
// <cachestore/s3/origin.hpp> (in <cachestore/s3.hpp>).
#pragma once

#include "cachestore/fill/engine.hpp"
#include "cachestore/fill/engine_options.hpp"
#include "cachestore/fill/metadata_cache.hpp"
#include "cachestore/fill/metrics.hpp"
#include "cachestore/fill/origin.hpp"
