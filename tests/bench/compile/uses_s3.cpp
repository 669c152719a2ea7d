// A proxy TU that uses the S3 driver: create, get_chunk, put_chunk.
// tests/bench/compile_time.py compiles it header-only and with
// CACHESTORE_SEPARATE_COMPILATION, against std_only.cpp.
#include <cachestore/s3.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
    cachestore::s3::config cfg;
    cfg.endpoint = argc > 1 ? argv[1] : "http://127.0.0.1:9";
    cfg.bucket = "b";
    auto s3 = cachestore::s3::store::create(cfg);
    if (!s3) return 1;
    const cachestore::chunk_key k{"dc1", "b", "obj", "\"e\"", 4, 0};
    std::string got;
    auto r = s3->get_chunk({}, k, 0, 4, [&](std::span<const std::byte> b) {
        got.append(reinterpret_cast<const char*>(b.data()), b.size());
        return true;
    });
    auto w = s3->put_chunk({}, k, 4, cachestore::as_bytes("abcd"));
    std::printf("%d %d %zu\n", r ? 1 : 0, w ? 1 : 0, got.size());
    return 0;
}
