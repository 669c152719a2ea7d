// cachestore/s3/detail/request_buffers.hpp - the buffers one request is
// signed and laid out in, reused from request to request.
//
// A pooled connection holds one (connection_pool.hpp); so will each transfer
// slot of an event-driven engine. In a steady state signing allocates nothing.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <curl/curl.h>

namespace cachestore::s3::detail {

struct request_buffers {
    std::string url;                      ///< the request URL
    std::string header_text;              ///< header lines, NUL-separated
    std::vector<curl_slist> header_nodes; ///< a curl_slist over header_text (owned here, not by curl)
    std::vector<std::pair<std::string_view, std::string_view>> signed_headers; ///< scratch for signing
    std::string authorization;            ///< scratch for signing
    std::string signature;                ///< the signature of the request last signed here
    std::array<char, 16> amz_date{};      ///< the x-amz-date of the request last signed here

    [[nodiscard]] std::string_view date() const noexcept { return {amz_date.data(), amz_date.size()}; }
};

} // namespace cachestore::s3::detail
