// cachestore/s3/origin.hpp - s3::origin: the objects of an S3-compatible
// bucket as the read-through engine's upstream (fill::MetadataOrigin), on
// the S3 driver's signing, TLS, connection pool, retries, deadlines and
// error classes (docs/fill.md, "The origin concept"). Definitions in
// impl/origin.hpp, as for s3::store (CACHESTORE_SEPARATE_COMPILATION).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/fill/origin.hpp"
#include "cachestore/read_range.hpp"
#include "cachestore/s3/config.hpp"
#include "cachestore/s3/detail/linkage.hpp"

namespace cachestore::s3 {

namespace detail {
struct store_state;
struct request_spec;
} // namespace detail

/// Reads objects of one bucket (`config::bucket`; `config::prefix` is put in
/// front of every key): HEAD for metadata, ranged GET with `If-Match` for
/// bytes. A 412 is `errc::changed`, and so is a 2xx whose ETag is not the
/// one asked for (a server that ignores If-Match). Thread-safe, movable.
class origin {
public:
    static result<origin> create(config cfg);

    origin(origin&&) noexcept;
    origin& operator=(origin&&) noexcept;
    ~origin();

    [[nodiscard]] const config& settings() const noexcept;

    /// The object's size, ETag and Last-Modified (as sent; the engine refuses
    /// a weak or missing ETag). `not_found` for a missing object.
    result<fill::object_meta> head(const context& ctx, const fill::object_ref& ref);

    /// Reads bytes `[offset, offset + out.size())` of the version `obj.etag`
    /// into `out`; returns out.size(). A transfer cut short is resumed from
    /// the byte it stopped at (the driver's retries).
    result<std::size_t> get(const context& ctx, const origin_object& obj, std::int64_t offset,
                            std::span<std::byte> out);

private:
    explicit origin(std::unique_ptr<detail::store_state> st) noexcept;

    result<> prepare(detail::request_spec& spec, const char* op, const std::string& bucket,
                     const std::string& key) const;

    std::unique_ptr<detail::store_state> st_;
};

static_assert(fill::MetadataOrigin<origin>);

} // namespace cachestore::s3

#ifndef CACHESTORE_SEPARATE_COMPILATION
#include "cachestore/s3/impl/origin.hpp"
#endif
