// cachestore/layers.hpp - the decorators that wrap any CacheStore and are
// CacheStores themselves (docs/layers.md): metered, breaker, hedged, and the
// Prometheus text of a whole stack of them.
#pragma once

#include "cachestore/layers/breaker.hpp"
#include "cachestore/layers/hedged.hpp"
#include "cachestore/layers/metered.hpp"
#include "cachestore/layers/metrics_text.hpp"
