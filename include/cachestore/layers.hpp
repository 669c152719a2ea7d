// cachestore/layers.hpp - the decorators that wrap any CacheStore and are
// CacheStores themselves (docs/layers.md).
#pragma once

#include "cachestore/layers/breaker.hpp"
#include "cachestore/layers/hedged.hpp"
#include "cachestore/layers/metered.hpp"
