// The layers (docs/layers.md shows the regions between the [name] markers
// verbatim; tests/examples/check_snippets.py keeps them equal). main() guards
// a POSIX store with the recommended stack, reads and writes through it, and
// checks what the metrics say; then a memory store, by reference and in place.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

// [stack]
#include <cachestore/cachestore.hpp>

// The recommended stack: metrics outermost, then the circuit breaker, hedging innermost.
template <cachestore::CacheStore S>
using guarded_store = cachestore::metered<cachestore::breaker<cachestore::hedged<S>>>;

template <cachestore::CacheStore S>
guarded_store<S> guard(S store, const std::string& name) {
    cachestore::hedge_options hedge; // delay: p95 of recent first bytes; at most ~10 % extra requests
    hedge.name = name;
    cachestore::breaker_options brk; // 10 transient/auth failures in 30 s: open 30 s, then 3 probes
    brk.name = name;
    brk.on_state_change = [name](cachestore::breaker_state from, cachestore::breaker_state to) {
        std::fprintf(stderr, "cachestore %s: circuit breaker %s -> %s\n", name.c_str(),
                     std::string(cachestore::to_string(from)).c_str(), std::string(cachestore::to_string(to)).c_str());
    };
    return guarded_store<S>(
        cachestore::breaker<cachestore::hedged<S>>(cachestore::hedged<S>(std::forward<S>(store), hedge), std::move(brk)),
        cachestore::metered_options{name});
}
// [/stack]

// [in-place]
// The same stack owning a store that cannot move (memory_store): each level takes
// std::in_place, its own options, then the arguments of the level below it; what
// is left at the bottom (here nothing) constructs the store.
using memory_stack = guarded_store<cachestore::memory_store>;

memory_stack make_memory_stack(const std::string& name) {
    cachestore::hedge_options hedge;
    hedge.name = name;
    cachestore::breaker_options brk;
    brk.name = name;
    return memory_stack(std::in_place, cachestore::metered_options{name}, // metered<...>
                        std::in_place, std::move(brk),                    // breaker<...>
                        std::in_place, std::move(hedge));                 // hedged<memory_store>, memory_store()
}
// [/in-place]

// [metrics]
// The Prometheus text of every layer, e.g. written at exit or served on /metrics.
template <class Store>
bool write_metrics_file(const Store& store, const char* path) {
    std::string text;
    cachestore::write_layer_metrics(text, store);
    std::FILE* f = std::fopen(path, "w");
    if (f == nullptr) return false;
    const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    return std::fclose(f) == 0 && written;
}
// [/metrics]

// [snapshot]
// The same numbers in code: one snapshot per layer.
template <class S>
void log_summary(const guarded_store<S>& store) {
    const cachestore::metrics_snapshot m = store.snapshot();
    const cachestore::op_metrics& get = m[cachestore::store_op::get_chunk];
    const cachestore::breaker_snapshot b = store.inner().snapshot();
    const cachestore::hedge_snapshot h = store.inner().inner().snapshot();
    std::fprintf(stderr, "get_chunk: %llu ok, %llu misses, %llu refused (breaker %s); p99 <= %lld us; %llu hedged\n",
                 static_cast<unsigned long long>(get.succeeded()),
                 static_cast<unsigned long long>(get.failed(cachestore::errc::not_found)),
                 static_cast<unsigned long long>(get.failed(cachestore::errc::unavailable)),
                 std::string(cachestore::to_string(b.state)).c_str(),
                 static_cast<long long>(get.duration.quantile_bound(0.99).count() / 1000),
                 static_cast<unsigned long long>(h.get_chunk.hedges));
}
// [/snapshot]

int main() {
    char dir[] = "/tmp/cachestore-snippet-layers-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return 1;
    int failures = 0;
    auto expect = [&failures](bool ok, const char* what) {
        if (!ok) {
            std::fprintf(stderr, "layers snippet: %s\n", what);
            ++failures;
        }
    };
    {
        auto opened = cachestore::posix_store::open(dir);
        if (!opened) return 1;
        auto store = guard(std::move(*opened), "posix");
        static_assert(cachestore::CacheStore<decltype(store)>);
        const cachestore::chunk_key key{"dc1", "bucket", "object", "\"etag\"", 16, 0};
        std::vector<std::byte> out(10);
        expect(cachestore::get_chunk(store, {}, key, 0, out).error().code == cachestore::errc::not_found, "a miss first");
        expect(store.put_chunk({}, key, 10, cachestore::as_bytes("0123456789")).has_value(), "the commit");
        expect(cachestore::get_chunk(store, {}, key, 0, out).has_value(), "the hit");
        log_summary(store);
        const auto m = store.snapshot();
        expect(m[cachestore::store_op::get_chunk].succeeded() == 1, "one hit counted");
        expect(m[cachestore::store_op::get_chunk].failed(cachestore::errc::not_found) == 1, "one miss counted");
        expect(m.bytes_written == 10, "ten bytes committed");
        const std::string file = std::string(dir) + "/metrics.prom";
        expect(write_metrics_file(store, file.c_str()), "the metrics file");
        std::string text;
        cachestore::write_layer_metrics(text, store);
        for (const char* name : {"cachestore_operations_total{store=\"posix\",op=\"get_chunk\",outcome=\"ok\"} 1",
                                 "# TYPE cachestore_breaker_state gauge", "cachestore_hedge_calls_total"})
            expect(text.find(name) != std::string::npos, name);
        // A store that cannot move (memory_store) is guarded by reference...
        cachestore::memory_store mem;
        auto by_ref = guard<cachestore::memory_store&>(mem, "memory");
        expect(by_ref.put_chunk({}, key, 10, cachestore::as_bytes("0123456789")).has_value() && mem.size() == 1,
               "through a reference");
        // ... or built in place at the bottom of a stack that owns it.
        auto owned = make_memory_stack("memory-owned");
        static_assert(cachestore::CacheStore<decltype(owned)>);
        expect(owned.put_chunk({}, key, 10, cachestore::as_bytes("0123456789")).has_value() &&
                   owned.inner().inner().inner().size() == 1 &&
                   cachestore::get_chunk(owned, {}, key, 0, out).has_value(),
               "built in place");
        expect(owned.snapshot().bytes_written == 10, "the owned stack's metrics");
    }
    std::filesystem::remove_all(dir);
    return failures == 0 ? 0 : 1;
}
