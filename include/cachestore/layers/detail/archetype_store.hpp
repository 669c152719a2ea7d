// cachestore/layers/detail/archetype_store.hpp - the weakest stores a layer
// must accept: the CacheStore concept's members and nothing more (declared,
// never defined), with and without the optional get_chunk_into. Each layer
// checks itself over these, so a layer's header depends on the concept alone
// and a translation unit that uses a layer over S3 does not parse the memory
// and POSIX drivers. The layers over the real drivers are checked in
// tests/layers/models_test.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/store.hpp"

namespace cachestore::detail {

/// The concept's members alone.
struct archetype_store {
    template <chunk_sink Sink>
    result<> get_chunk(const context&, const chunk_key&, std::int64_t, std::int64_t, Sink&&);
    template <chunk_source Src>
    result<> put_chunk(const context&, const chunk_key&, std::int64_t, Src&&);
    result<info> stat(const context&, const chunk_key&);
    result<> remove(const context&, const chunk_key&);
    result<> self_test(const context&);
};

/// The concept's members and `get_chunk_into` (as the POSIX driver has).
struct archetype_store_into : archetype_store {
    result<> get_chunk_into(const context&, const chunk_key&, std::int64_t, std::span<std::byte>);
};

static_assert(CacheStore<archetype_store>);
static_assert(CacheStore<archetype_store_into>);

} // namespace cachestore::detail
