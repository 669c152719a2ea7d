// The layers over the real drivers: each layer's header checks itself over
// the concept's archetypes only (cachestore/layers/detail/archetype_store.hpp),
// so that it does not parse the memory and POSIX drivers; the checks over
// those drivers, owned and referred to, with and without get_chunk_into, are
// here. (Over the S3 driver: tests/s3/conformance_layers_test.cpp.)
#include "cachestore/layers.hpp"
#include "cachestore/memory_store.hpp"
#include "cachestore/posix_store.hpp"

namespace cachestore {

static_assert(CacheStore<metered<memory_store>>);
static_assert(CacheStore<metered<posix_store>>);
static_assert(CacheStore<metered<memory_store&>>);
static_assert(detail::has_get_chunk_into<metered<posix_store>>);
static_assert(!detail::has_get_chunk_into<metered<memory_store>>);
static_assert(CacheStore<breaker<memory_store>>);
static_assert(CacheStore<breaker<posix_store>>);
static_assert(CacheStore<breaker<memory_store&>>);
static_assert(detail::has_get_chunk_into<breaker<posix_store>>);
static_assert(CacheStore<hedged<memory_store>>);
static_assert(CacheStore<hedged<posix_store>>);
static_assert(CacheStore<hedged<memory_store&>>);
static_assert(!detail::has_get_chunk_into<hedged<posix_store>>);
static_assert(CacheStore<tiered<memory_store, memory_store>>);
static_assert(CacheStore<tiered<posix_store, memory_store&>>);
static_assert(CacheStore<tiered<memory_store&, posix_store>>);
static_assert(CacheStore<tiered<memory_store, posix_store>>); // issue 20 names this one
static_assert(detail::has_get_chunk_into<tiered<posix_store, memory_store>>);
static_assert(!detail::has_get_chunk_into<tiered<memory_store, posix_store>>);

} // namespace cachestore
