// Test support: this process's memory figures from /proc/self/status (Linux),
// shared by the fault tests, the soak and the benchmark.
#pragma once

#include <charconv>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

namespace test_support {

/// A KiB field of /proc/self/status ("VmRSS", "VmHWM", ...), or -1 when it is
/// missing or unreadable.
inline long status_kib(std::string_view field) {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line)) {
        std::string_view v(line);
        if (!v.starts_with(field) || v.size() <= field.size() || v[field.size()] != ':') continue;
        v.remove_prefix(field.size() + 1);
        while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
        long kib = -1;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), kib);
        (void)end;
        return ec == std::errc{} ? kib : -1;
    }
    return -1;
}

/// Resets the peak (VmHWM) to the current RSS; false when the kernel refuses.
inline bool reset_peak_rss() {
    std::ofstream f("/proc/self/clear_refs");
    f << "5";
    f.flush();
    return static_cast<bool>(f);
}

} // namespace test_support
