// A CMake consumer: cachestore::cachestore (read_range over a memory store)
// and, with CONSUMER_S3, cachestore::s3 (a store created from a JSON config;
// no server is contacted unless an endpoint is given on the command line).
#include <cachestore/cachestore.hpp>
#ifdef CONSUMER_S3
#include <cachestore/s3.hpp>
#include <cachestore/s3/config_json.hpp>
#endif

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string_view>

int main(int argc, char** argv) {
    constexpr std::string_view origin = "bytes of an origin object, served through a cache";
    cachestore::memory_store store;
    const cachestore::origin_object obj{"dc1", "b", "k", "\"e\"", static_cast<std::int64_t>(origin.size()), 8};
    auto fetch = [&](std::int64_t at, std::span<std::byte> out) -> cachestore::result<std::size_t> {
        std::memcpy(out.data(), origin.data() + at, out.size());
        return out.size();
    };
    std::array<std::byte, 64> out{};
    auto r = cachestore::read_range(store, {}, obj, 9, out, fetch);
    if (!r || r->served != static_cast<std::int64_t>(origin.size()) - 9 ||
        std::memcmp(out.data(), origin.data() + 9, static_cast<std::size_t>(r->served)) != 0) {
        std::puts("cmake consumer: read_range FAILED");
        return 1;
    }
#ifdef CONSUMER_S3
    const char* endpoint = argc > 1 ? argv[1] : "http://127.0.0.1:9";
    auto cfg = cachestore::s3::config_from_json(std::string(R"({"endpoint": ")") + endpoint +
                                                R"(", "bucket": "b", "region": "us-east-1",
                                                    "access_key_id": "AKIDEXAMPLE", "secret_access_key": "x"})");
    if (!cfg) {
        std::printf("cmake consumer: config FAILED: %s\n", cfg.error().to_string().c_str());
        return 1;
    }
    auto s3 = cachestore::s3::store::create(std::move(*cfg));
    if (!s3) {
        std::printf("cmake consumer: s3 store FAILED: %s\n", s3.error().to_string().c_str());
        return 1;
    }
    if (argc > 1) { // links every S3 operation (libcurl, libcrypto); runs only when asked
        auto again = cachestore::read_range(*s3, cachestore::context::with_timeout(std::chrono::seconds(5)), obj, 0, out, fetch);
        std::printf("cmake consumer: read_range through S3: %s\n", again ? "ok" : again.error().to_string().c_str());
    }
    std::puts("cmake consumer: ok (cachestore::s3)");
#else
    (void)argc;
    (void)argv;
    std::puts("cmake consumer: ok (cachestore::cachestore)");
#endif
    return 0;
}
