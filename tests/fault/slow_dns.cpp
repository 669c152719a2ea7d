// A getaddrinfo interposer for the name-resolution fault tests: the test
// binary defines getaddrinfo itself (exported dynamically), so libcurl's
// resolver thread calls this first. The name "slow.cachestore.test" resolves
// to 127.0.0.1 after slow_dns_delay_ms; every other name goes to the real
// getaddrinfo at once. A test helper compiled into the test, like an
// LD_PRELOAD shim but without one (which AddressSanitizer refuses to follow).
#include <dlfcn.h>
#include <netdb.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "slow_dns.hpp"

std::atomic<int> slow_dns_delay_ms{0};
std::atomic<int> slow_dns_lookups{0};

// glibc names the parameters __name, __service, ... (reserved identifiers): ours differ on purpose.
// NOLINTNEXTLINE(readability-inconsistent-declaration-parameter-name)
extern "C" int getaddrinfo(const char* name, const char* service, const struct addrinfo* req, struct addrinfo** pai) {
    using fn = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
    static const fn real = reinterpret_cast<fn>(dlsym(RTLD_NEXT, "getaddrinfo"));
    if (real == nullptr) return EAI_SYSTEM;
    if (name != nullptr && std::strcmp(name, slow_dns_name) == 0) {
        slow_dns_lookups.fetch_add(1);
        std::this_thread::sleep_for(std::chrono::milliseconds(slow_dns_delay_ms.load()));
        return real("127.0.0.1", service, req, pai);
    }
    return real(name, service, req, pai);
}
