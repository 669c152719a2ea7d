// The fault server and the scenario scaffolding shared by the fault tests:
// fault_server.py started as a child process, its control endpoints, a
// checking sink that proves every byte, and `scenario` (one store, one stored
// chunk, descriptor and thread counts checked at the end).
#pragma once

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "cachestore/cachestore.hpp"
#include "cachestore/s3.hpp"
#ifdef FAULT_THROUGH_ASYNC
#include "cachestore/async/waiting.hpp"
#include "cachestore/s3/async.hpp"
#endif
#include "../proc_status.hpp"
#include "fault_process.hpp"

#ifndef FAULT_SERVER_PY
#error "FAULT_SERVER_PY must name fault_server.py"
#endif
#ifndef FAULT_PYTHON3
#error "FAULT_PYTHON3 must name the python3 interpreter"
#endif

namespace fault_harness {

using namespace cachestore;
using namespace std::chrono_literals;
using json = nlohmann::json;
using sclock = std::chrono::steady_clock;

// ---- the server process ---------------------------------------------------

/// fault_server.py as a child process, for the Catch2 tests: its port and,
/// if it did not start, why.
struct fault_server {
    faultproc::fault_process proc;
    int port = 0;
    std::string problem;
    std::string ca_file; ///< set when it speaks https (then reached as https://localhost:port)

    /// Starts fault_server.py with `extra` arguments (e.g. --tls-cert F --tls-key K).
    explicit fault_server(const std::vector<std::string>& extra = {})
        : proc(FAULT_PYTHON3, FAULT_SERVER_PY, extra), port(proc.port()), problem(proc.problem()) {}
};

inline fault_server& server() {
    static fault_server s = [] {
        // Runtimes that start a helper thread with the first thread (TSan's
        // background thread) do it now, not inside a leak-counted scenario.
        std::thread([] {}).join();
        return fault_server{};
    }();
    // Fails (never skips) when python3 cannot start the server.
    INFO(s.problem);
    REQUIRE(s.port > 0);
    return s;
}

using http_answer = faultproc::fault_process::answer;

/// A request to the server's control endpoints (plain libcurl, no signing).
/// A control request to `to` (default: the shared plain-http server).
inline http_answer control(const char* method, const std::string& path, const std::string& body = {},
                           const fault_server* to = nullptr) {
    s3::detail::curl_global();
    const fault_server& s = to != nullptr ? *to : server();
    http_answer a = s.proc.control(method, path, body, s.ca_file);
    INFO(path << ": " << a.error << " " << a.body);
    REQUIRE(a.error.empty());
    return a;
}

inline void script(const json& rules) {
    auto a = control("POST", "/_fault/script", rules.dump());
    INFO(a.body);
    REQUIRE(a.status == 200);
}

inline std::string url_escape(const std::string& s) {
    std::string out;
    static constexpr char hex[] = "0123456789ABCDEF";
    for (unsigned char ch : s) {
        if (std::isalnum(ch) != 0 || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            out += static_cast<char>(ch);
        } else {
            out += '%';
            out += hex[ch >> 4];
            out += hex[ch & 15];
        }
    }
    return out;
}

/// The server's own view of an object: its bytes, or nullopt when absent.
inline std::optional<std::string> server_object(const std::string& key) {
    auto a = control("GET", "/_fault/object?key=" + url_escape(key));
    if (a.status == 404) return std::nullopt;
    REQUIRE(a.status == 200);
    return a.body;
}

// ---- leaks -----------------------------------------------------------------

inline std::size_t count_dir(const char* dir) {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
    return n;
}


// ---- data and sinks ----------------------------------------------------------

inline std::vector<std::byte> pattern(std::size_t n, std::uint64_t seed) {
    std::vector<std::byte> v(n);
    std::mt19937_64 rng(seed);
    for (auto& b : v) b = static_cast<std::byte>(rng() & 0xff);
    return v;
}

/// Checks every byte it receives against the stored chunk at that offset.
struct checking_sink {
    checking_sink() = default;
    checking_sink(std::span<const std::byte> c, std::int64_t o) : chunk(c), off(o) {}

    std::span<const std::byte> chunk;
    std::int64_t off = 0;
    std::int64_t received = 0;
    bool wrong = false;
    std::string what;

    bool operator()(std::span<const std::byte> b) {
        const auto at = off + received;
        if (at < 0 || static_cast<std::size_t>(at) + b.size() > chunk.size()) {
            wrong = true;
            what = "bytes past the end of the stored chunk at " + std::to_string(at);
            return false;
        }
        if (!b.empty() && std::memcmp(chunk.data() + at, b.data(), b.size()) != 0) {
            wrong = true;
            what = "wrong bytes at chunk offset " + std::to_string(at);
            return false;
        }
        received += static_cast<std::int64_t>(b.size());
        return true;
    }
};

// ---- one scenario ------------------------------------------------------------

inline constexpr int max_attempts = 4;
inline constexpr std::int64_t KiB = 1024, MiB = 1024 * KiB;

inline s3::config base_config() {
    s3::config c;
    c.endpoint = server().proc.endpoint();
    c.bucket = "faultbucket";
    c.region = "us-east-1";
    c.creds.access_key_id = "AKIDFAULTTEST000000";
    c.creds.secret_access_key = "fault/secret+key0000000000000000000000000";
    c.retry.max_attempts = max_attempts;
    c.retry.base_delay = 5ms;
    c.retry.max_delay = 20ms;
    c.timeouts.connect = 2000ms;
    c.timeouts.operation = 20000ms;
    c.commit = s3::commit_mode::stat_then_put;
    return c;
}

#ifdef FAULT_THROUGH_ASYNC
/// The matrix through the async engine (docs/async.md): get, stat, remove and
/// put initiate on s3::async_store and wait (waiting<>); the rest is its
/// blocking store's.
struct store_under_test : waiting<s3::async_store> {
    using waiting::waiting;
    result<std::string> object_key(const chunk_key& k) { return inner().blocking().object_key(k); }
    bool conditional_commit() { return inner().blocking().conditional_commit(); }
    result<> self_test(const context& ctx) { return inner().self_test(ctx); }
    s3::self_test_report last_self_test() { return inner().blocking().last_self_test(); }
    static auto create(const s3::config& c) { return s3::async_store::create(c); }
};
#else
struct store_under_test : s3::store {
    explicit store_under_test(s3::store s) : s3::store(std::move(s)) {}
    static auto create(const s3::config& c) { return s3::store::create(c); }
};
#endif

/// A fresh server state, one store, one stored chunk of `size` bytes (unless
/// told not to seed it), and the descriptor / thread counts from before the
/// store existed, checked by finish().
struct scenario {
    std::size_t fds0 = 0, tasks0 = 0;
    s3::config cfg = base_config();
    std::optional<store_under_test> st;
    chunk_key key;
    std::string okey; ///< the object key on the server
    std::vector<std::byte> data;

    explicit scenario(std::int64_t size = 256 * KiB, bool seed = true) {
        static std::atomic<int> serial{0};
        control("POST", "/_fault/reset");
        fds0 = count_dir("/proc/self/fd");
        tasks0 = count_dir("/proc/self/task");
        key = chunk_key{"fault", "origin-bucket", "object-" + std::to_string(serial++), "\"etag-1\"", 1 << 20, 0};
        data = pattern(static_cast<std::size_t>(size), static_cast<std::uint64_t>(serial.load()) * 7919);
        open();
        okey = *store().object_key(key);
        if (seed) {
            auto r = store().put_chunk(context::with_timeout(10s), key, size, std::span<const std::byte>(data));
            INFO(r);
            REQUIRE(r.has_value());
            clear_log();
        }
    }

    /// (Re)creates the store from cfg (after a test changed it).
    void open() {
        st.reset();
        auto s = store_under_test::create(cfg);
        INFO((s.has_value() ? std::string() : s.error().to_string()));
        REQUIRE(s.has_value());
        st.emplace(std::move(*s));
    }

    /// The open store, checked once here. Tests call sc.store(), never sc.st->:
    /// an optional access in the large TEST_CASE bodies makes clang-tidy's
    /// bugprone-unchecked-optional-access run for many minutes on this file.
    store_under_test& store() {
        if (!st) throw std::logic_error("scenario: the store is not open");
        return *st;
    }

    void clear_log() { control("POST", "/_fault/clearlog"); }

    /// Requests for this scenario's object, optionally of one method.
    std::vector<json> log(const std::string& method = {}) const {
        auto a = control("GET", "/_fault/log");
        REQUIRE(a.status == 200);
        std::vector<json> out;
        for (auto& e : json::parse(a.body))
            if (e["key"] == okey && (method.empty() || e["method"] == method)) out.push_back(e);
        return out;
    }

    /// A rule for this object: {"method", "key", "count", "action"} + extras.
    json rule(const std::string& method, const std::string& action, json count = "once", json extra = json::object()) const {
        json r = std::move(extra);
        r["method"] = method;
        r["key"] = okey;
        r["action"] = action;
        r["count"] = std::move(count);
        return r;
    }

    result<> get(std::int64_t off, std::int64_t n, checking_sink& sink, const context& ctx = context::with_timeout(20s)) {
        sink = checking_sink{std::span<const std::byte>(data), off};
        return store().get_chunk(ctx, key, off, n, sink);
    }

    result<> put(const context& ctx = context::with_timeout(20s)) {
        return store().put_chunk(ctx, key, static_cast<std::int64_t>(data.size()), std::span<const std::byte>(data));
    }

    bool stored_exactly() const {
        auto o = server_object(okey);
        return o && o->size() == data.size() && std::memcmp(o->data(), data.data(), data.size()) == 0;
    }
    bool absent() const { return !server_object(okey).has_value(); }

    /// Destroys the store (its pooled idle connections go with it) and checks
    /// that every descriptor and thread it used is gone.
    void finish() {
        st.reset();
        // A socket closed by libcurl is gone at once; allow a moment for threads.
        for (int i = 0; i < 50 && (count_dir("/proc/self/fd") != fds0 || count_dir("/proc/self/task") != tasks0); ++i)
            std::this_thread::sleep_for(10ms);
        CHECK(count_dir("/proc/self/fd") == fds0);
        CHECK(count_dir("/proc/self/task") == tasks0);
    }
};

inline double ms_since(sclock::time_point t) {
    return std::chrono::duration<double, std::milli>(sclock::now() - t).count();
}

} // namespace fault_harness
