// The switch of the getaddrinfo interposer in slow_dns.cpp.
#pragma once

#include <atomic>

/// The host name whose lookups are slowed (it resolves to 127.0.0.1).
inline constexpr const char* slow_dns_name = "slow.cachestore.test";
/// How long each lookup of slow_dns_name takes.
extern std::atomic<int> slow_dns_delay_ms;
/// Lookups of slow_dns_name so far.
extern std::atomic<int> slow_dns_lookups;
