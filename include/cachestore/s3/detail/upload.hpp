// cachestore/s3/detail/upload.hpp - a streaming source sent while it is read,
// never spooled: as a plain body (UNSIGNED-PAYLOAD, over https) or as signed
// aws-chunked frames (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, over http), each
// frame's signature chained to the request's. Memory: one frame (64 KiB).
//
// Such a body cannot be replayed once the source has given a byte: the
// request spec is marked not replayable, so a failure after that point is
// returned, not retried (the caller may retry with a new source), and the
// server commits nothing of an incomplete upload.
#pragma once

#include <array>
#include <cstdio>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cachestore/bytes.hpp"
#include "cachestore/error.hpp"
#include "cachestore/s3/credentials.hpp"
#include "cachestore/s3/detail/crypto.hpp"
#include "cachestore/s3/detail/request.hpp"
#include "cachestore/s3/detail/transport.hpp"
#include "cachestore/s3/sigv4.hpp"

namespace cachestore::s3::detail {

/// Body bytes per aws-chunked frame (AWS requires >= 8 KiB but for the last).
inline constexpr std::size_t aws_chunk_bytes = std::size_t{64} * 1024;

/// Hex digits of n (n >= 0).
[[nodiscard]] constexpr std::int64_t hex_digits(std::int64_t n) noexcept {
    std::int64_t d = 1;
    while (n >= 16) {
        n /= 16;
        ++d;
    }
    return d;
}

/// The encoded length of `size` body bytes sent as aws-chunked frames of
/// `chunk` bytes: each `hex(len);chunk-signature=<64 hex>\r\n<data>\r\n`, then
/// `0;chunk-signature=<64 hex>\r\n\r\n`.
[[nodiscard]] constexpr std::int64_t aws_chunked_length(std::int64_t size, std::int64_t chunk) noexcept {
    constexpr std::int64_t sig = 17 + 64 + 2; // ";chunk-signature=" + signature + CRLF
    const std::int64_t full = size / chunk, rest = size % chunk;
    std::int64_t n = full * (hex_digits(chunk) + sig + chunk + 2);
    if (rest != 0) n += hex_digits(rest) + sig + rest + 2;
    return n + 1 + sig + 2;
}

/// Sends `size` bytes of a source function as the body of `spec` (attach()),
/// plain or aws-chunked. Must outlive the request.
template <class Src>
class streaming_body {
public:
    streaming_body(Src& src, std::int64_t size, bool chunked, const sigv4::signer& signer,
                   std::size_t chunk = aws_chunk_bytes)
        : reader_(src), size_(size), chunked_(chunked), signer_(&signer), chunk_(chunk) {}

    /// Test hook: the signature of frame `n` (0-based) is sent corrupted.
    void corrupt_frame(int n) noexcept { corrupt_ = n; }

    void attach(request_spec& spec) {
        replayable_ = &spec.body_replayable;
        spec.body.self = this;
        spec.body.size = chunked_ ? aws_chunked_length(size_, static_cast<std::int64_t>(chunk_)) : size_;
        spec.body.read = &streaming_body::read;
        spec.body.rewind = &streaming_body::rewind;
        spec.signed_state = this;
        spec.on_signed = &streaming_body::on_signed;
        if (chunked_) {
            spec.payload_hash = sigv4::streaming_payload;
            spec.headers.emplace_back("content-encoding", "aws-chunked");
            spec.headers.emplace_back("x-amz-decoded-content-length", std::to_string(size_));
        } else {
            spec.payload_hash = sigv4::unsigned_payload;
        }
    }

private:
    static constexpr std::size_t head_room = 16 + 17 + 64 + 2; // the longest frame header

    /// The request was signed (each attempt): the seed of the frame signatures.
    static void on_signed(void* self, std::string_view amz_date, std::string_view signature, const credentials& c) {
        auto& b = *static_cast<streaming_body*>(self);
        b.date_.assign(amz_date);
        b.previous_ = signature;
        b.creds_ = &c;
    }

    /// libcurl wants to send the body again from its start: only possible
    /// while the source has not given a byte.
    static bool rewind(void* self) {
        auto& b = *static_cast<streaming_body*>(self);
        if (b.consumed_ != 0) return false;
        b.frame_at_ = b.frame_end_ = 0;
        b.done_ = false;
        b.frames_ = 0;
        return true;
    }

    static std::optional<std::size_t> read(void* self, std::span<std::byte> buf, abort_reason& reason, error& err) {
        auto& b = *static_cast<streaming_body*>(self);
        return b.chunked_ ? b.read_chunked(buf, reason, err) : b.read_plain(buf, reason, err);
    }

    /// Exactly dst.size() source bytes into dst (dst.size() <= what is left).
    bool pull(std::span<std::byte> dst, abort_reason& reason, error& err) {
        std::size_t got = 0;
        while (got < dst.size()) {
            auto r = reader_.read(dst.subspan(got));
            if (!r) {
                err = std::move(r.error());
                reason = abort_reason::source_failed;
                return false;
            }
            if (*r == 0) {
                reason = abort_reason::source_short;
                return false;
            }
            if (replayable_ != nullptr) *replayable_ = false; // these bytes cannot be read again
            got += *r;
            consumed_ += static_cast<std::int64_t>(*r);
        }
        return true;
    }

    /// After the last byte: the source must be exhausted.
    bool at_end(abort_reason& reason, error& err) {
        std::byte extra[1];
        auto r = reader_.read(extra);
        if (!r) {
            err = std::move(r.error());
            reason = abort_reason::source_failed;
            return false;
        }
        if (*r != 0) {
            reason = abort_reason::source_long;
            return false;
        }
        return true;
    }

    std::optional<std::size_t> read_plain(std::span<std::byte> buf, abort_reason& reason, error& err) {
        const auto left = static_cast<std::size_t>(size_ - consumed_);
        if (left == 0) return std::size_t{0};
        const std::size_t n = std::min(buf.size(), left);
        if (!pull(buf.first(n), reason, err)) return std::nullopt;
        // libcurl stops reading at Content-Length: a source with more bytes
        // must be caught before the last ones go out, or a wrong chunk commits.
        if (n == left && !at_end(reason, err)) return std::nullopt;
        return n;
    }

    std::optional<std::size_t> read_chunked(std::span<std::byte> buf, abort_reason& reason, error& err) {
        if (frame_at_ == frame_end_) {
            if (done_) return std::size_t{0};
            if (!next_frame(reason, err)) return std::nullopt;
        }
        const std::size_t n = std::min(buf.size(), frame_end_ - frame_at_);
        std::memcpy(buf.data(), buffer_.data() + frame_at_, n);
        frame_at_ += n;
        return n;
    }

    /// Builds the next frame in buffer_ [frame_at_, frame_end_): the data is
    /// read at head_room, its header written just before it once the
    /// signature is known, CRLF after it (the final frame has no data, so its
    /// header's CRLF and this one make the closing blank line).
    bool next_frame(abort_reason& reason, error& err) {
        if (creds_ == nullptr) { // not signed yet: cannot happen once attached and sent
            reason = abort_reason::source_failed;
            err.code = errc::io_error;
            err.message = "aws-chunked body read before the request was signed";
            return false;
        }
        const auto len = static_cast<std::size_t>(std::min<std::int64_t>(size_ - consumed_, static_cast<std::int64_t>(chunk_)));
        buffer_.resize(head_room + len + 2);
        if (len != 0 && !pull(std::span<std::byte>(buffer_.data() + head_room, len), reason, err)) return false;
        // A source with more bytes must be caught before the last data frame
        // goes out: a server may store the object once the decoded length has
        // arrived, final frame or not (RGW does).
        if (len != 0 && consumed_ == size_ && !at_end(reason, err)) return false;
        digest32 h;
        sha256_into(buffer_.data() + head_room, len, h.data());
        char hash_hex[64];
        hex_lower(h.data(), h.size(), hash_hex);
        std::string sig = signer_->chunk_signature(*creds_, date_, previous_,
                                                   len == 0 ? sigv4::empty_payload_sha256 : std::string_view(hash_hex, 64));
        previous_ = sig;
        if (frames_ == corrupt_) sig[0] = sig[0] == '0' ? '1' : '0';
        ++frames_;
        char size_hex[17];
        const int hn = std::snprintf(size_hex, sizeof size_hex, "%zx", len);
        std::string head(size_hex, static_cast<std::size_t>(hn));
        head += ";chunk-signature=";
        head += sig;
        head += "\r\n";
        frame_at_ = head_room - head.size();
        std::memcpy(buffer_.data() + frame_at_, head.data(), head.size());
        std::memcpy(buffer_.data() + head_room + len, "\r\n", 2);
        frame_end_ = head_room + len + 2;
        if (len == 0) done_ = true;
        return true;
    }

    cachestore::detail::source_reader<Src> reader_;
    std::int64_t size_;
    bool chunked_;
    const sigv4::signer* signer_;
    std::size_t chunk_;
    const credentials* creds_ = nullptr;
    std::string date_;
    std::string previous_;
    std::vector<std::byte> buffer_;
    std::size_t frame_at_ = 0;  ///< next byte of the current frame in buffer_
    std::size_t frame_end_ = 0; ///< end of the current frame in buffer_
    std::int64_t consumed_ = 0;
    int frames_ = 0;
    int corrupt_ = -1;
    bool done_ = false;
    bool* replayable_ = nullptr;
};

} // namespace cachestore::s3::detail
