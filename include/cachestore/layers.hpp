// cachestore/layers.hpp - the decorators that wrap any CacheStore and are
// CacheStores themselves (docs/layers.md): metered, breaker, hedged, the
// tiered store (docs/tiered.md), and the Prometheus text of a whole stack.
#pragma once

#include "cachestore/layers/breaker.hpp"
#include "cachestore/layers/hedged.hpp"
#include "cachestore/layers/metered.hpp"
#include "cachestore/layers/metrics_text.hpp"
#include "cachestore/layers/tiered.hpp"
