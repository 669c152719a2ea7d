// ODR check: this TU and its twin include every header; both are linked into
// one program, so any non-inline definition in a header fails to link.
#include "cachestore/cachestore.hpp"
#include "cachestore/fill.hpp"
#ifdef CACHESTORE_TEST_S3
#include "cachestore/s3.hpp"
#endif

#include <string>

std::string odr_b() {
    cachestore::memory_store s;
    const cachestore::chunk_key k{"o", "b", "k", "e", 8, 0};
    const std::string bytes = "12345678";
    if (!s.put_chunk({}, k, 8, cachestore::as_bytes(bytes))) return "put failed";
    std::string out = *cachestore::storage_path(k);
#ifdef CACHESTORE_TEST_S3
    out += cachestore::s3::sigv4::uri_encode("a b", false);
#endif
    return out;
}
