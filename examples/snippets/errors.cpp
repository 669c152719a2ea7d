// Reacting to each error code (docs/errors.md shows the region between the
// [react] markers verbatim; tests/examples/check_snippets.py keeps them equal).
// main() provokes several codes with a memory store and checks the reactions.
#include <cstdio>
#include <string>

// [react]
#include <cachestore/cachestore.hpp>

enum class reaction { fill_from_origin, done, serve_from_origin, alert_operator, report_bug };

// What a proxy does when a cachestore call fails. Only `transient` is worth
// retrying as is (cachestore::is_retryable), and the S3 driver already has.
reaction react(const cachestore::error& e) {
    switch (e.code) {
    case cachestore::errc::changed:                                          // the origin object changed: HEAD it again
    case cachestore::errc::not_found: return reaction::fill_from_origin;     // a miss
    case cachestore::errc::commit_lost:                                      // another writer stored the same bytes
    case cachestore::errc::cancelled: return reaction::done;                 // our own stop token or sink
    case cachestore::errc::transient:                                        // the store is struggling: bypass it
    case cachestore::errc::unavailable:                                      // a circuit breaker is open (no I/O done)
    case cachestore::errc::deadline_exceeded: return reaction::serve_from_origin;
    case cachestore::errc::auth:                                             // will not fix itself
    case cachestore::errc::misconfigured:
    case cachestore::errc::io_error: return reaction::alert_operator;
    case cachestore::errc::invalid_argument:                                 // the caller's bug, or a broken server
    case cachestore::errc::out_of_range:
    case cachestore::errc::protocol: return reaction::report_bug;
    }
    return reaction::report_bug;
}
// [/react]

int main() {
    cachestore::memory_store store;
    const cachestore::context ctx;
    const cachestore::chunk_key key{"dc1", "b", "obj", "\"e\"", 16, 0};
    std::byte out[4];
    int failures = 0;
    auto expect = [&](const char* what, const cachestore::result<>& r, cachestore::errc code, reaction want) {
        const bool ok = !r && r.error().code == code && react(r.error()) == want;
        std::printf("%-28s %s%s\n", what, r ? "ok" : r.error().to_string().c_str(), ok ? "" : "   <-- UNEXPECTED");
        failures += ok ? 0 : 1;
    };
    expect("get of an absent chunk", cachestore::get_chunk(store, ctx, key, 0, out), cachestore::errc::not_found,
           reaction::fill_from_origin);
    if (!store.put_chunk(ctx, key, 10, cachestore::as_bytes("0123456789"))) return 1;
    expect("second put", store.put_chunk(ctx, key, 10, cachestore::as_bytes("0123456789")), cachestore::errc::commit_lost,
           reaction::done);
    expect("read past the stored end", cachestore::get_chunk(store, ctx, key, 8, out), cachestore::errc::out_of_range,
           reaction::report_bug);
    cachestore::chunk_key bad = key;
    bad.origin_id = "a/b";
    expect("a '/' in origin_id", store.remove(ctx, bad), cachestore::errc::invalid_argument,
           reaction::report_bug);
    std::stop_source stop;
    stop.request_stop();
    expect("a stopped context", store.remove(cachestore::context(stop.get_token()), key),
           cachestore::errc::cancelled, reaction::done);
    return failures == 0 ? 0 : 1;
}
