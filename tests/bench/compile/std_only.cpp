// The baseline of tests/bench/compile_time.py: uses_s3.cpp's work with the
// standard headers the driver's declarations include, and no cachestore.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <expected>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <stop_token>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace {
struct config {
    std::string endpoint, bucket;
};
std::expected<std::unique_ptr<config>, std::string> create(config c) { return std::make_unique<config>(std::move(c)); }
template <class Sink>
std::expected<void, std::string> get(const config& c, Sink&& sink) {
    const auto b = std::as_bytes(std::span(c.bucket));
    return sink(b) ? std::expected<void, std::string>{} : std::unexpected(std::string("sink"));
}
} // namespace

int main(int argc, char** argv) {
    auto s = create({argc > 1 ? argv[1] : "http://127.0.0.1:9", "b"});
    if (!s) return 1;
    std::string got;
    auto r = get(**s, [&](std::span<const std::byte> b) {
        got.append(reinterpret_cast<const char*>(b.data()), b.size());
        return true;
    });
    std::printf("%d %zu\n", r ? 1 : 0, got.size());
    return 0;
}
