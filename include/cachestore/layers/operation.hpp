// cachestore/layers/operation.hpp - what the decorators of docs/layers.md
// share: the operations they count and gate, the outcome of a call, a set of
// error codes, and the detection of the optional members they forward.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>

#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"

namespace cachestore {

/// The operations of the CacheStore concept, as the layers name them.
/// `get_chunk_into` counts as get_chunk and `put_chunk_prehashed` as put_chunk.
enum class store_op : std::uint8_t { get_chunk, put_chunk, stat, remove, self_test };

inline constexpr std::size_t store_op_count = 5;

/// The stable name of an operation, e.g. "get_chunk" (also its Prometheus label).
[[nodiscard]] constexpr std::string_view to_string(store_op o) noexcept {
    switch (o) {
    case store_op::get_chunk: return "get_chunk";
    case store_op::put_chunk: return "put_chunk";
    case store_op::stat: return "stat";
    case store_op::remove: return "remove";
    case store_op::self_test: return "self_test";
    }
    return "unknown";
}

/// Outcomes of a call: index 0 is success, index k is `static_cast<errc>(k)`.
inline constexpr std::size_t outcome_count = static_cast<std::size_t>(errc::changed) + 1;
static_assert(to_string(static_cast<errc>(outcome_count)) == "unknown",
              "a new errc value: raise outcome_count to cover it (layers/operation.hpp)");

/// The outcome index of a result (0 = ok).
template <class T>
[[nodiscard]] constexpr std::size_t outcome_index(const result<T>& r) noexcept {
    return r ? 0 : static_cast<std::size_t>(r.error().code);
}

/// The name of outcome index `i`: "ok" or the errc's name.
[[nodiscard]] constexpr std::string_view outcome_name(std::size_t i) noexcept {
    return i == 0 ? std::string_view("ok") : to_string(static_cast<errc>(i));
}

/// A set of error codes, e.g. the classes a circuit breaker counts as failures.
class errc_set {
public:
    constexpr errc_set() noexcept = default;
    constexpr errc_set(std::initializer_list<errc> codes) noexcept {
        for (const errc c : codes) bits_ |= bit(c);
    }
    [[nodiscard]] constexpr bool contains(errc c) const noexcept { return (bits_ & bit(c)) != 0; }
    constexpr errc_set& insert(errc c) noexcept {
        bits_ |= bit(c);
        return *this;
    }
    constexpr errc_set& erase(errc c) noexcept {
        bits_ &= ~bit(c);
        return *this;
    }
    friend constexpr bool operator==(errc_set, errc_set) noexcept = default;

private:
    static constexpr std::uint32_t bit(errc c) noexcept { return std::uint32_t{1} << static_cast<unsigned>(c); }
    std::uint32_t bits_ = 0;
};
static_assert(outcome_count <= 32, "errc_set holds the codes in 32 bits");

namespace detail {

/// The inner store has the optional `get_chunk_into` member (docs/concept.md).
template <class S>
concept has_get_chunk_into = requires(S& s, const context& ctx, const chunk_key& key, std::int64_t off,
                                      std::span<std::byte> out) {
    { s.get_chunk_into(ctx, key, off, out) } -> std::same_as<result<>>;
};

/// The inner store has the optional `put_chunk_prehashed` member.
template <class S>
concept has_put_chunk_prehashed = requires(S& s, const context& ctx, const chunk_key& key,
                                           std::span<const std::byte> bytes, std::string_view hex) {
    { s.put_chunk_prehashed(ctx, key, bytes, hex) } -> std::same_as<result<>>;
};

} // namespace detail
} // namespace cachestore
