// cachestore/bytes.hpp - the byte concepts the operations take: sinks that
// receive a chunk's bytes and sources that produce them.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachestore/context.hpp"
#include "cachestore/error.hpp"

namespace cachestore {

/// A sink receives the requested bytes in order, in one or more spans, as
/// they arrive. Returning false stops the transfer: the call then fails with
/// `cancelled`. A span is valid only during the call.
template <class S>
concept chunk_sink = std::invocable<S&, std::span<const std::byte>> &&
                     std::convertible_to<std::invoke_result_t<S&, std::span<const std::byte>>, bool>;

/// A source function fills a prefix of the buffer it is given and returns how
/// many bytes it wrote; 0 means end of data; an error aborts the commit.
template <class S>
concept source_function = std::invocable<S&, std::span<std::byte>> &&
                          std::convertible_to<std::invoke_result_t<S&, std::span<std::byte>>, result<std::size_t>>;

/// What put_chunk accepts: bytes already in memory (anything convertible to
/// std::span<const std::byte>) or a source function.
template <class S>
concept chunk_source = source_function<std::remove_cvref_t<S>> ||
                       std::convertible_to<S, std::span<const std::byte>>;

/// Views a string's characters as bytes.
[[nodiscard]] inline std::span<const std::byte> as_bytes(std::string_view s) noexcept {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

/// A sink that copies into a caller-provided span, which must be large enough
/// for the requested `n` bytes (the drivers guarantee never to deliver more).
class span_sink {
public:
    explicit span_sink(std::span<std::byte> out) noexcept : out_(out) {}
    bool operator()(std::span<const std::byte> b) noexcept {
        if (b.size() > out_.size() - filled_) return false;
        if (!b.empty()) std::memcpy(out_.data() + filled_, b.data(), b.size());
        filled_ += b.size();
        return true;
    }
    [[nodiscard]] std::size_t filled() const noexcept { return filled_; }

private:
    std::span<std::byte> out_;
    std::size_t filled_ = 0;
};

namespace detail {

/// Reads any chunk_source through one interface. For in-memory sources
/// `contiguous()` exposes the bytes so drivers can hash or send them in place.
template <class Src>
class source_reader {
public:
    static constexpr bool in_memory = !source_function<std::remove_cvref_t<Src>>;

    explicit source_reader(Src& src) noexcept : src_(src) {
        if constexpr (in_memory) bytes_ = std::span<const std::byte>(src_);
    }

    [[nodiscard]] std::span<const std::byte> contiguous() const noexcept
        requires in_memory
    {
        return bytes_;
    }

    /// Fills up to buf.size() bytes; 0 at end of data.
    result<std::size_t> read(std::span<std::byte> buf) {
        if constexpr (in_memory) {
            const std::size_t n = std::min(buf.size(), bytes_.size() - pos_);
            if (n != 0) std::memcpy(buf.data(), bytes_.data() + pos_, n);
            pos_ += n;
            return n;
        } else {
            result<std::size_t> r = src_(buf);
            if (r && *r > buf.size())
                return fail(errc::invalid_argument, "put_chunk", {},
                            "source reported more bytes than the buffer it was given");
            return r;
        }
    }

private:
    Src& src_;
    std::span<const std::byte> bytes_{};
    std::size_t pos_ = 0;
};

/// Pulls exactly `size` bytes from `src` in blocks through `scratch`, passing
/// each block to `consume(std::span<const std::byte>) -> result<>`, checking
/// `ctx` between blocks, then proves the source is exhausted. Any shortfall,
/// excess or source failure is an error; the caller then commits nothing.
template <class Src, class Consume>
result<> pump_exact(const context& ctx, std::string_view op, const std::string& path, Src& src,
                    std::int64_t size, std::span<std::byte> scratch, Consume&& consume) {
    source_reader<Src> reader(src);
    std::int64_t done = 0;
    while (done < size) {
        if (auto c = ctx.check(op, path); !c) return c;
        const auto want = static_cast<std::size_t>(
            std::min<std::int64_t>(size - done, static_cast<std::int64_t>(scratch.size())));
        auto got = reader.read(scratch.first(want));
        if (!got) {
            error e = std::move(got.error());
            e.op = std::string(op);
            e.path = path;
            return std::unexpected(std::move(e));
        }
        if (*got == 0)
            return fail(errc::invalid_argument, std::string(op), path,
                        "source ended after " + std::to_string(done) + " of " + std::to_string(size) +
                            " bytes");
        if (auto r = consume(std::span<const std::byte>(scratch.data(), *got)); !r) return r;
        done += static_cast<std::int64_t>(*got);
    }
    std::byte extra[1];
    auto tail = reader.read(extra);
    if (!tail) {
        error e = std::move(tail.error());
        e.op = std::string(op);
        e.path = path;
        return std::unexpected(std::move(e));
    }
    if (*tail != 0)
        return fail(errc::invalid_argument, std::string(op), path,
                    "source yields more than the declared size of " + std::to_string(size) + " bytes");
    return {};
}

/// The longest buffer a call allocates to hold a chunk (a partial read_range
/// miss, a memory store's chunk, a spooled S3 upload): 1 TiB. No allocator
/// can give more, and ASan's aborts instead of throwing.
inline constexpr std::int64_t max_buffer_bytes = std::int64_t{1} << 40;

/// Makes `buf` `len` bytes long, or says why not: io_error naming the length
/// and `what` needs it, never std::bad_alloc. A result-returning call checks
/// the sizes it can instead of throwing for them.
[[nodiscard]] inline result<> resize_buffer(std::vector<std::byte>& buf, std::int64_t len, std::string_view op,
                                            const std::string& path, std::string_view what) {
    if (len >= 0 && len <= max_buffer_bytes) {
        try {
            buf.resize(static_cast<std::size_t>(len));
            return {};
        } catch (const std::bad_alloc&) { // the same answer as a length over the limit
        }
    }
    return fail(errc::io_error, std::string(op), path,
                "cannot allocate " + std::to_string(len) + " bytes for " + std::string(what) +
                    " (at most 2^40, and only what memory allows); nothing was read or committed");
}

} // namespace detail
} // namespace cachestore
