// cachestore/s3/store.hpp - the S3 driver: CacheStore over any S3-compatible
// server, signed with AWS Signature V4, on libcurl and OpenSSL. This header
// declares the store; its definitions (impl/store.hpp) are included here, or,
// with CACHESTORE_SEPARATE_COMPILATION, compiled once through
// <cachestore/s3/src.hpp>, and then this header needs neither curl's nor
// OpenSSL's headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/s3/config.hpp"
#include "cachestore/s3/detail/linkage.hpp"
#include "cachestore/s3/self_test_report.hpp"
#include "cachestore/store.hpp"

namespace cachestore::s3 {

namespace detail {

struct store_state;
struct request_spec;

/// A chunk_sink behind a function pointer: the driver's one get path serves
/// every sink type without a template per sink.
struct sink_ref {
    void* self;
    bool (*write)(void* self, std::span<const std::byte> bytes);

    bool operator()(std::span<const std::byte> b) const { return write(self, b); }

    template <class S>
    static sink_ref to(S& s) noexcept {
        return {
            const_cast<void*>(static_cast<const void*>(std::addressof(s))),
            [](void* self, std::span<const std::byte> b) { return static_cast<bool>((*static_cast<S*>(self))(b)); }};
    }
};

/// A source function behind a function pointer; itself a source function.
class source_ref {
public:
    template <class F>
    explicit source_ref(F& f) noexcept
        : self_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
          read_([](void* self, std::span<std::byte> b) -> result<std::size_t> { return (*static_cast<F*>(self))(b); }) {
    }

    result<std::size_t> operator()(std::span<std::byte> b) const { return read_(self_, b); }

private:
    void* self_;
    result<std::size_t> (*read_)(void*, std::span<std::byte>);
};

} // namespace detail

/// The S3 driver. Thread-safe: one store serves every thread of a proxy;
/// connections are pooled and reused. Movable, not copyable.
class store {
public:
    /// Validates `cfg` (every problem is `misconfigured`, reported here and
    /// not at the first request) and prepares the connection pool.
    static result<store> create(config cfg);

    store(store&&) noexcept;
    store& operator=(store&&) noexcept;
    ~store();

    [[nodiscard]] const config& settings() const noexcept;

    /// The object key a chunk is stored under: prefix + storage path.
    [[nodiscard]] result<std::string> object_key(const chunk_key& k) const;

    /// Whether commits use If-None-Match: * (configured, or proven by self_test in auto mode).
    [[nodiscard]] bool conditional_commit() const noexcept;

    [[nodiscard]] self_test_report last_self_test() const;

    /// Connection objects created so far; equals the peak number of
    /// concurrently active calls when connections are reused.
    [[nodiscard]] std::size_t connections_created() const noexcept;

    /// Connections waiting in the pool for reuse.
    [[nodiscard]] std::size_t idle_connections() const;

    /// Closes pooled connections idle longer than timeouts.idle now. Every
    /// call does this too, so only a store that stays unused after a burst
    /// needs it (e.g. from a proxy's housekeeping timer).
    void reap_idle_connections() const;

    // ---- CacheStore ------------------------------------------------------

    template <chunk_sink Sink>
    result<> get_chunk(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, Sink&& sink) {
        return get_erased(ctx, key, off, n, detail::sink_ref::to(sink));
    }

    template <chunk_source Src>
    result<> put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src&& src) {
        if constexpr (source_function<std::remove_cvref_t<Src>>) {
            detail::source_ref r(src);
            return put_streamed(ctx, key, size, r);
        } else {
            return put_bytes(ctx, key, size, std::span<const std::byte>(src));
        }
    }

    /// put_chunk for bytes whose SHA-256 (64 lowercase hex digits) the caller
    /// already has, e.g. hashed while they arrived from the origin: the driver
    /// then does not hash them again (about 4.5 ms per 8 MiB with SHA-NI). The
    /// digest is still signed and the server still checks it against the bytes
    /// (a wrong digest is refused with XAmzContentSHA256Mismatch and, like any
    /// corrupted upload, retried and then reported as `transient`).
    result<> put_chunk_prehashed(const context& ctx, const chunk_key& key, std::span<const std::byte> bytes,
                                 std::string_view sha256_hex);

    result<info> stat(const context& ctx, const chunk_key& key);

    result<> remove(const context& ctx, const chunk_key& key);

    /// Test hook: PUTs `body` to `object_key` (inside the bucket, no prefix)
    /// signed with `payload_hash` instead of the body's real hash, to prove the
    /// server rejects a corrupted upload. Not for production use.
    result<> debug_put_with_payload_hash(const context& ctx, std::string object_key, std::span<const std::byte> body,
                                         std::string payload_hash);

    /// Test hook: PUTs `body` to `object_key` (inside the bucket, no prefix) as
    /// a signed aws-chunked stream whose frame `corrupt_frame` carries a wrong
    /// signature (-1: none), to prove the server checks frame signatures.
    result<> debug_put_streaming(const context& ctx, std::string object_key, std::span<const std::byte> body,
                                 int corrupt_frame);

    /// Proves the bucket fit for stat-then-put before a proxy serves traffic.
    /// Every failure says what to fix. See docs/s3.md, "Self-test".
    result<> self_test(const context& ctx);

private:
    friend class async_store; // its engine sends on this store's state (s3/async.hpp)

    explicit store(std::unique_ptr<detail::store_state> st) noexcept;

    result<> get_erased(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n,
                        detail::sink_ref sink);
    result<> put_bytes(const context& ctx, const chunk_key& key, std::int64_t size, std::span<const std::byte> bytes);
    result<> put_streamed(const context& ctx, const chunk_key& key, std::int64_t size, detail::source_ref& src);
    template <class Src>
    result<> put_impl(const context& ctx, const chunk_key& key, std::int64_t size, Src& src,
                      std::string_view known_digest);
    result<> finish_put(const context& cctx, detail::request_spec& spec);
    /// Precondition: `key` was validated (once per call, by the caller).
    void prepare_key(detail::request_spec& spec, const chunk_key& key) const;

    std::unique_ptr<detail::store_state> st_;
};

static_assert(CacheStore<store>);

} // namespace cachestore::s3

#ifndef CACHESTORE_SEPARATE_COMPILATION
#include "cachestore/s3/impl/store.hpp"
#endif
