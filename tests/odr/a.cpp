// ODR check: this TU and its twin include every header; both are linked into
// one program, so any non-inline definition in a header fails to link.
#include "cachestore/cachestore.hpp"
#include "cachestore/fill.hpp"
#ifdef CACHESTORE_TEST_S3
#include "cachestore/s3.hpp"
#include "cachestore/s3/config_json.hpp"
#include "cachestore/s3/sigv4.hpp" // not in s3.hpp under CACHESTORE_SEPARATE_COMPILATION
#endif

#include <string>

std::string odr_a() {
    cachestore::memory_store s;
    const cachestore::chunk_key k{"o", "b", "k", "e", 8, 0};
    const std::string bytes = "12345678";
    if (!s.put_chunk({}, k, 8, cachestore::as_bytes(bytes))) return "put failed";
    std::string out = *cachestore::storage_path(k);
#ifdef CACHESTORE_TEST_S3
    out += cachestore::s3::sigv4::uri_encode("a b", false);
    // The driver's out-of-line functions: inline here, or in the compiled library.
    cachestore::s3::config cfg;
    cfg.endpoint = "http://127.0.0.1:9";
    cfg.bucket = "b";
    cfg.creds = {"AKIDEXAMPLE", "x", {}};
    auto st = cachestore::s3::store::create(cfg);
    if (!st) return "s3 store failed";
    out += *st->object_key(k);
    if (!cachestore::s3::origin::create(cfg)) return "s3 origin failed";
#endif
    return out;
}
