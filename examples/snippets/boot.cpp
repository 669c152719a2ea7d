// Opening a store at boot (docs/getting-started.md shows [open], and
// docs/operations.md shows [selftest], verbatim; tests/examples/check_snippets.py
// keeps them equal). main() runs the self-test loop on a POSIX store and, when
// the tests run against a local Ceph RGW (CACHESTORE_RGW_* set), open_cache too.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>

// [open]
#include <cachestore/s3.hpp>
#include <cachestore/s3/config_json.hpp> // config_from_json (nlohmann/json)

// The S3 store from a JSON config file's text; what it leaves out (endpoint,
// region, credentials) comes from the AWS_* environment. Validated here.
cachestore::result<cachestore::s3::store> open_cache(const std::string& config_json) {
    auto cfg = cachestore::s3::config_from_json(config_json);
    if (!cfg) return std::unexpected(cfg.error()); // misconfigured: names every problem, never a secret
    std::fprintf(stderr, "cachestore: %s\n", cachestore::s3::describe(*cfg).c_str()); // safe to log
    return cachestore::s3::store::create(std::move(*cfg));
}
// [/open]

#include <algorithm>
#include <chrono>
#include <thread>

#include <cachestore/cachestore.hpp> // the POSIX store main() tests with

// [selftest]
// At boot, before taking traffic: the store must pass its self-test. A
// transient failure (the store is still starting) is retried for a while;
// anything else needs an operator and stops the boot.
template <cachestore::CacheStore Store>
bool self_test_at_boot(Store& store, std::chrono::seconds budget) {
    using namespace std::chrono;
    const auto give_up = steady_clock::now() + budget;
    for (milliseconds delay{200};; delay = std::min(delay * 2, milliseconds{5000})) {
        auto ok = store.self_test(cachestore::context::with_timeout(seconds{30}));
        if (ok) return true;
        std::fprintf(stderr, "cachestore self-test failed: %s\n", ok.error().to_string().c_str());
        if (!cachestore::is_retryable(ok.error().code) || steady_clock::now() + delay > give_up) return false;
        std::this_thread::sleep_for(delay);
    }
}
// [/selftest]

int run() {
    char dir[] = "/tmp/cachestore-snippet-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return 1;
    auto posix = cachestore::posix_store::open(dir);
    if (!posix || !self_test_at_boot(*posix, std::chrono::seconds(5))) return 1;
    std::filesystem::remove_all(dir);
    std::puts("boot snippet: self_test_at_boot passed on a POSIX store");

    // NOLINTNEXTLINE(concurrency-mt-unsafe): single-threaded main
    if (const char* e = std::getenv("CACHESTORE_RGW_ENDPOINT"); e == nullptr || *e == '\0') {
        std::puts("boot snippet: CACHESTORE_RGW_ENDPOINT not set, open_cache not run");
        return 0;
    }
    auto env = [](const char* name) {
        const char* v = std::getenv(name); // NOLINT(concurrency-mt-unsafe): single-threaded main
        return std::string(v == nullptr ? "" : v);
    };
    // The tests export the server's key as CACHESTORE_RGW_*; a proxy would have AWS_* set.
    ::setenv("AWS_ACCESS_KEY_ID", env("CACHESTORE_RGW_ACCESS_KEY").c_str(), 1);     // NOLINT(concurrency-mt-unsafe)
    ::setenv("AWS_SECRET_ACCESS_KEY", env("CACHESTORE_RGW_SECRET_KEY").c_str(), 1); // NOLINT(concurrency-mt-unsafe)
    const std::string config = R"({"endpoint": ")" + env("CACHESTORE_RGW_ENDPOINT") + R"(", "bucket": ")" +
                               env("CACHESTORE_RGW_BUCKET") + R"(", "prefix": "snippet-boot/"})";
    auto s3 = open_cache(config);
    if (!s3) {
        std::fprintf(stderr, "%s\n", s3.error().to_string().c_str());
        return 1;
    }
    if (!self_test_at_boot(*s3, std::chrono::seconds(30))) return 1;
    std::puts("boot snippet: open_cache + self_test_at_boot passed on Ceph RGW");
    return 0;
}

int main() {
    try {
        return run();
    } catch (const std::exception& e) { // bad_alloc, a filesystem error: nothing the snippet expects
        std::fprintf(stderr, "boot snippet: %s\n", e.what());
        return 1;
    }
}
