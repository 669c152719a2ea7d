// A consumer of the separately compiled S3 driver (cachestore-s3-compiled in
// Meson and pkg-config, cachestore::s3-compiled in CMake): its TU must parse
// declarations only, and link and run against the library.
#include <cachestore/s3.hpp>

#ifndef CACHESTORE_SEPARATE_COMPILATION
#error "the compiled dependency did not define CACHESTORE_SEPARATE_COMPILATION"
#endif
#if defined(CURLINC_CURL_H) || defined(OPENSSL_EVP_H) || defined(OPENSSL_CRYPTO_H)
#error "<cachestore/s3.hpp> pulled in curl's or OpenSSL's headers in separate compilation"
#endif

#include <chrono>
#include <cstdio>
#include <span>
#include <string>

int main() {
    cachestore::s3::config cfg;
    cfg.endpoint = "http://127.0.0.1:9"; // discard: nothing listens, so every request fails fast
    cfg.bucket = "b";
    cfg.creds = {"AKIDEXAMPLE", "x", {}};
    auto s3 = cachestore::s3::store::create(cfg);
    if (!s3) {
        std::printf("compiled consumer: create FAILED: %s\n", s3.error().to_string().c_str());
        return 1;
    }
    static_assert(cachestore::CacheStore<cachestore::s3::store>);
    const cachestore::chunk_key k{"dc1", "b", "obj", "\"e\"", 4, 0};
    std::string got;
    auto r = s3->get_chunk(cachestore::context::with_timeout(std::chrono::seconds(5)), k, 0, 4,
                           [&](std::span<const std::byte> b) {
                               got.append(reinterpret_cast<const char*>(b.data()), b.size());
                               return true;
                           });
    if (r) {
        std::puts("compiled consumer: get_chunk from a closed port succeeded");
        return 1;
    }
    std::printf("compiled consumer: ok (%s)\n", std::string(cachestore::to_string(r.error().code)).c_str());
    return 0;
}
