// cachestore/fill/origin.hpp - the Origin concept: the proxy's upstream, as
// the read-through engine reads it (docs/fill.md).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>

#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/read_range.hpp"

namespace cachestore::fill {

/// `o.get(ctx, obj, offset, out)` reads origin bytes `[offset, offset +
/// out.size())` of the object version `obj` names (its ETag sent as
/// `If-Match`) into `out` and returns how many bytes the origin produced:
/// exactly `out.size()`, or another count (more than asked is returned as
/// such), which the engine refuses as `protocol`. Called from the engine's
/// fill threads, several at once, never for the same bytes twice at once;
/// `ctx` is the fill's (the engine's ceiling and shutdown), not a caller's.
template <class O>
concept Origin = requires(O& o, const context& ctx, const origin_object& obj, std::int64_t offset,
                          std::span<std::byte> out) {
    { o.get(ctx, obj, offset, out) } -> std::convertible_to<result<std::size_t>>;
};

/// An Origin over a callable the proxy already has:
/// `f(ctx, obj, offset, out) -> result<std::size_t>`.
template <class F>
class origin_function {
public:
    explicit origin_function(F f) : f_(std::move(f)) {}
    result<std::size_t> get(const context& ctx, const origin_object& obj, std::int64_t offset,
                            std::span<std::byte> out) {
        return f_(ctx, obj, offset, out);
    }

private:
    F f_;
};

template <class F>
origin_function(F) -> origin_function<F>;

} // namespace cachestore::fill
