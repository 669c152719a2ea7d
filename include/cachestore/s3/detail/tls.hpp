// cachestore/s3/detail/tls.hpp - TLS for https endpoints: one session cache
// shared by a store's connections, and failures explained in terms of what
// to set.
#pragma once

#include <array>
#include <mutex>
#include <string>
#include <string_view>

#include <curl/curl.h>

#include "cachestore/detail/fork_safe_mutex.hpp"

namespace cachestore::s3::detail {

/// A libcurl share handle holding the TLS session cache of one store's
/// connections: a connection opened after the first handshake resumes that
/// session (an abbreviated handshake) instead of starting a full one.
class tls_session_share {
public:
    tls_session_share() {
        sh_ = curl_share_init();
        if (sh_ == nullptr) return;
        curl_share_setopt(sh_, CURLSHOPT_LOCKFUNC, &tls_session_share::lock);
        curl_share_setopt(sh_, CURLSHOPT_UNLOCKFUNC, &tls_session_share::unlock);
        curl_share_setopt(sh_, CURLSHOPT_USERDATA, this);
        curl_share_setopt(sh_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    }
    tls_session_share(const tls_session_share&) = delete;
    tls_session_share& operator=(const tls_session_share&) = delete;
    tls_session_share(tls_session_share&&) = delete;
    tls_session_share& operator=(tls_session_share&&) = delete;
    /// Every easy handle using it must be gone first (the store's pool is).
    ~tls_session_share() {
        if (sh_ != nullptr) curl_share_cleanup(sh_);
    }
    [[nodiscard]] CURLSH* get() const noexcept { return sh_; }

private:
    static void lock(CURL*, curl_lock_data data, curl_lock_access, void* self) {
        static_cast<tls_session_share*>(self)->mu_.at(index(data)).lock();
    }
    static void unlock(CURL*, curl_lock_data data, void* self) {
        static_cast<tls_session_share*>(self)->mu_.at(index(data)).unlock();
    }
    static std::size_t index(curl_lock_data d) noexcept {
        const auto i = static_cast<std::size_t>(d);
        return i < CURL_LOCK_DATA_LAST ? i : 0;
    }
    CURLSH* sh_ = nullptr;
    std::array<cachestore::detail::fork_safe_mutex, CURL_LOCK_DATA_LAST> mu_; ///< never inherited locked by a child
};

/// True for libcurl results that come from the TLS layer.
[[nodiscard]] inline bool is_tls_failure(CURLcode rc) noexcept {
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED: return true;
    default: return false;
    }
}

/// The peer does not speak TLS at all (an https:// endpoint on a plain-http
/// port): OpenSSL read an HTTP answer where a TLS record should be.
[[nodiscard]] inline bool not_tls_at_all(std::string_view curl_message) noexcept {
    return curl_message.find("wrong version number") != std::string_view::npos ||
           curl_message.find("packet length too long") != std::string_view::npos ||
           curl_message.find("unknown protocol") != std::string_view::npos ||
           curl_message.find("record layer failure") != std::string_view::npos;
}

/// What to set for a TLS failure, from libcurl's message; "" when `rc` is
/// not one, or when nothing better than libcurl's own words can be said.
[[nodiscard]] inline std::string tls_advice(CURLcode rc, std::string_view m, std::string_view host) {
    auto has = [m](std::string_view s) { return m.find(s) != std::string_view::npos; };
    if (!is_tls_failure(rc)) return {};
    if (has("no alternative certificate subject name") || has("does not match target host") || has("host name mismatch"))
        return "the server's certificate is not issued for \"" + std::string(host) +
               "\": put the name it was issued for in the endpoint (or have the certificate list this name)";
    if (has("certificate has expired") || has("certificate is not yet valid"))
        return "the server's certificate is outside its validity period: renew it (or check this host's clock)";
    if (has("unable to get local issuer certificate") || has("self-signed certificate") || has("self signed certificate") ||
        has("unable to verify the first certificate") || has("unable to get issuer certificate"))
        return "the server's certificate is not signed by a CA this client trusts: set tls.ca_file (or tls.ca_dir) "
               "to the CA that signed it (tls.verify=false disables the check: for tests only)";
    if (rc == CURLE_SSL_CACERT_BADFILE) return "tls.ca_file / tls.ca_dir could not be read as PEM certificates: check the file";
    if (rc == CURLE_SSL_CONNECT_ERROR && not_tls_at_all(m))
        return "the port does not speak TLS: use http:// for it, or the server's TLS port with https://";
    if (rc == CURLE_PEER_FAILED_VERIFICATION)
        return "the server's certificate was refused: set tls.ca_file to the CA that signed it, or fix the certificate";
    return {};
}

} // namespace cachestore::s3::detail
