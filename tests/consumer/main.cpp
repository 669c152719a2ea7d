// A proxy-shaped consumer: a template over the concept, instantiated with a driver.
#include <cachestore/cachestore.hpp>

#include <cstdio>

template <cachestore::CacheStore S>
bool fill_and_read(S& store) {
    const cachestore::chunk_key k{"dc1", "b", "obj", "\"e\"", 4, 0};
    if (!store.put_chunk({}, k, 4, cachestore::as_bytes("abcd"))) return false;
    char out[2];
    auto r = cachestore::get_chunk(store, {}, k, 1, std::as_writable_bytes(std::span(out)));
    return r && out[0] == 'b' && out[1] == 'c';
}

int main() {
    cachestore::memory_store store;
    const bool ok = fill_and_read(store);
    std::puts(ok ? "consumer: ok" : "consumer: FAILED");
    return ok ? 0 : 1;
}
