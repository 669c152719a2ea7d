// examples/common.hpp - small helpers shared by the example programs: a
// command-line parser that also writes the --help text, exit codes, sizes,
// errors as JSON, usage errors and the store URL from the command line, a
// progress bar for terminals, and Ctrl-C as a stop request.
//
// Not part of the library: the examples are programs a user can read and
// copy from, and this is the plumbing they share.
#pragma once

#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cachestore/error.hpp"

namespace cachestore::examples {

// ---- exit codes ---------------------------------------------------------------

/// The exit codes every example uses (documented in --help and docs/errors.md).
enum exit_code : int {
    exit_ok = 0,
    exit_other = 1,         ///< anything not listed below (io_error, protocol, out_of_range, cancelled, ...)
    exit_usage = 2,         ///< bad flags, a bad store URL, an invalid key (invalid_argument)
    exit_not_found = 3,     ///< not_found
    exit_auth = 4,          ///< auth
    exit_transient = 5,     ///< transient (the driver already retried)
    exit_commit_lost = 6,   ///< commit_lost
    exit_misconfigured = 7, ///< misconfigured
    exit_changed = 8,       ///< changed: the origin object changed while it was read
};

[[nodiscard]] constexpr int exit_code_for(errc e) noexcept {
    switch (e) {
    case errc::not_found: return exit_not_found;
    case errc::auth: return exit_auth;
    case errc::transient: return exit_transient;
    case errc::commit_lost: return exit_commit_lost;
    case errc::misconfigured: return exit_misconfigured;
    case errc::changed: return exit_changed;
    case errc::invalid_argument: return exit_usage;
    default: return exit_other;
    }
}

/// The exit-code table as it appears in every --help.
inline constexpr std::string_view exit_code_help =
    "Exit codes:\n"
    "  0  success\n"
    "  1  other failure (io_error, protocol, out_of_range, cancelled, deadline_exceeded;\n"
    "     for read_through and fill_race also a verification failure)\n"
    "  2  usage: unknown or missing flags, a bad store URL, an invalid key (invalid_argument)\n"
    "  3  not_found: the chunk is not stored\n"
    "  4  auth: credentials, permissions or clock refused\n"
    "  5  transient: the store failed in a way worth retrying later (already retried)\n"
    "  6  commit_lost: another writer had already committed the chunk (it is stored)\n"
    "  7  misconfigured: the store is unusable as configured (bucket, endpoint, region, root)\n"
    "  8  changed: the origin object changed (its ETag) while it was read\n";

// ---- the environment and errno ----------------------------------------------------

/// An environment variable, or nullopt when unset or empty. The examples read
/// the environment in main() before starting threads and never modify it.
[[nodiscard]] inline std::optional<std::string> env_value(const char* name) {
    const char* v = std::getenv(name); // NOLINT(concurrency-mt-unsafe): read before threads start; never set
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
}

namespace detail {
// strerror_r comes in two flavours (XSI returns int, GNU returns char*).
inline const char* pick_strerror(int rc, const char* buf) noexcept { return rc == 0 ? buf : "unknown error"; }
inline const char* pick_strerror(const char* msg, const char*) noexcept { return msg; }
} // namespace detail

/// strerror text, thread-safe.
[[nodiscard]] inline std::string errno_text(int err) {
    char buf[256] = {};
    return detail::pick_strerror(::strerror_r(err, buf, sizeof buf), buf);
}

// ---- errors as text and JSON ---------------------------------------------------

/// An error as a JSON object; contains no secret because `error` never does.
[[nodiscard]] inline nlohmann::json error_json(const error& e) {
    nlohmann::json j = {{"code", std::string(to_string(e.code))},
                        {"retryable", is_retryable(e.code)},
                        {"message", e.message}};
    if (!e.op.empty()) j["op"] = e.op;
    if (!e.path.empty()) j["path"] = e.path;
    if (e.http_status != 0) j["http_status"] = e.http_status;
    if (!e.s3_code.empty()) j["s3_code"] = e.s3_code;
    if (!e.request_id.empty()) j["request_id"] = e.request_id;
    if (e.sys_errno != 0) j["errno"] = e.sys_errno;
    if (e.attempts != 0) j["attempts"] = e.attempts;
    return j;
}

/// A usage problem found by an example itself (exit 2).
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[nodiscard]] inline error usage_as_error(const std::string& op, const std::string& message) {
    error e;
    e.code = errc::invalid_argument;
    e.op = op;
    e.message = message;
    return e;
}

// ---- numbers and sizes ------------------------------------------------------------

/// "8388608", "8M", "8MiB", "64k", "1G" (binary units; "B" alone is bytes).
[[nodiscard]] inline std::optional<std::int64_t> parse_size(std::string_view s) {
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || v < 0) return std::nullopt;
    std::string unit(end, s.data() + s.size());
    for (char& c : unit) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    int shift = 0;
    if (unit.empty() || unit == "B") shift = 0;
    else if (unit == "K" || unit == "KI" || unit == "KIB") shift = 10;
    else if (unit == "M" || unit == "MI" || unit == "MIB") shift = 20;
    else if (unit == "G" || unit == "GI" || unit == "GIB") shift = 30;
    else if (unit == "T" || unit == "TI" || unit == "TIB") shift = 40;
    else return std::nullopt;
    if (v > (std::numeric_limits<std::int64_t>::max() >> shift)) return std::nullopt;
    return v << shift;
}

[[nodiscard]] inline std::optional<std::int64_t> parse_int(std::string_view s) {
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

/// "48.0 MiB", "512 B".
[[nodiscard]] inline std::string format_bytes(double b) {
    static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024.0 && u < 4) {
        b /= 1024.0;
        ++u;
    }
    char buf[64];
    if (u == 0) std::snprintf(buf, sizeof buf, "%.0f %s", b, units[u]);
    else std::snprintf(buf, sizeof buf, "%.1f %s", b, units[u]);
    return buf;
}

[[nodiscard]] inline double mib_per_s(double bytes, double seconds) {
    return seconds > 0 ? bytes / (1024.0 * 1024.0) / seconds : 0.0;
}

[[nodiscard]] inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---- command-line parsing -----------------------------------------------------

/// One flag of a (sub)command. `metavar` empty = a boolean flag.
struct flag_spec {
    std::string name;    ///< "--store"
    std::string metavar; ///< "URL"; empty for a boolean flag
    std::string help;
};

/// Parses `--flag VALUE`, `--flag=VALUE`, boolean `--flag`, positional
/// arguments and `--`. Throws usage_error naming the problem. Every flag a
/// program accepts is declared, so the help text is generated from the same
/// table the parser uses and cannot drift from it.
class arg_parser {
public:
    arg_parser(std::string usage, std::string summary) : usage_(std::move(usage)), summary_(std::move(summary)) {}

    arg_parser& flag(std::string name, std::string metavar, std::string help) {
        flags_.push_back({std::move(name), std::move(metavar), std::move(help)});
        return *this;
    }
    arg_parser& section(std::string title) {
        flags_.push_back({"", "", std::move(title)});
        return *this;
    }
    arg_parser& epilog(std::string_view text) {
        epilog_ += text;
        return *this;
    }

    /// Parses argv[first..argc). --help / -h sets help().
    void parse(int argc, char** argv, int first) {
        bool only_positional = false;
        for (int i = first; i < argc; ++i) {
            std::string_view a = argv[i];
            if (only_positional || a == "-" || !a.starts_with("-")) {
                positional_.emplace_back(a);
                continue;
            }
            if (a == "--") {
                only_positional = true;
                continue;
            }
            if (a == "-h" || a == "--help") {
                help_ = true;
                continue;
            }
            std::string name(a);
            std::optional<std::string> inline_value;
            if (auto eq = name.find('='); eq != std::string::npos) {
                inline_value = name.substr(eq + 1);
                name.resize(eq);
            }
            const flag_spec* f = find(name);
            if (f == nullptr) throw usage_error("unknown option " + name);
            if (f->metavar.empty()) {
                if (inline_value) throw usage_error("option " + name + " takes no value");
                values_[name] = "1";
                continue;
            }
            if (inline_value) {
                values_[name] = *inline_value;
            } else {
                if (i + 1 >= argc) throw usage_error("option " + name + " needs a value (" + f->metavar + ")");
                values_[name] = argv[++i];
            }
        }
    }

    /// parse(), and with --help print the help on stdout and return false:
    /// the program (or command) is done.
    [[nodiscard]] bool parse_or_help(int argc, char** argv, int first) {
        parse(argc, argv, first);
        if (help_) std::fputs(help_text().c_str(), stdout);
        return !help_;
    }

    [[nodiscard]] bool help() const noexcept { return help_; }
    [[nodiscard]] bool has(const std::string& name) const { return values_.contains(name); }
    [[nodiscard]] std::optional<std::string> get(const std::string& name) const {
        auto it = values_.find(name);
        if (it == values_.end()) return std::nullopt;
        return it->second;
    }
    [[nodiscard]] std::string get_or(const std::string& name, std::string dflt) const {
        return get(name).value_or(std::move(dflt));
    }
    [[nodiscard]] std::string require(const std::string& name) const {
        auto v = get(name);
        if (!v) throw usage_error("missing required option " + name);
        return *v;
    }
    [[nodiscard]] std::int64_t size_or(const std::string& name, std::int64_t dflt) const {
        auto v = get(name);
        if (!v) return dflt;
        auto n = parse_size(*v);
        if (!n) throw usage_error("option " + name + " needs a size such as 4096, 64K, 8M or 1G, got '" + *v + "'");
        return *n;
    }
    [[nodiscard]] std::int64_t int_or(const std::string& name, std::int64_t dflt, std::int64_t lo,
                                      std::int64_t hi) const {
        auto v = get(name);
        if (!v) return dflt;
        auto n = parse_int(*v);
        if (!n || *n < lo || *n > hi)
            throw usage_error("option " + name + " needs an integer from " + std::to_string(lo) + " to " +
                              std::to_string(hi) + ", got '" + *v + "'");
        return *n;
    }
    [[nodiscard]] const std::vector<std::string>& positional() const noexcept { return positional_; }

    [[nodiscard]] std::string help_text() const {
        std::string s = "usage: " + usage_ + "\n\n" + summary_ + "\n";
        for (const auto& f : flags_) {
            if (f.name.empty()) {
                s += "\n" + f.help + ":\n";
                continue;
            }
            std::string left = "  " + f.name + (f.metavar.empty() ? "" : " " + f.metavar);
            if (left.size() < 26) left.resize(26, ' ');
            else left += "\n" + std::string(26, ' ');
            // Indent continuation lines of the help.
            std::string h;
            for (char c : f.help) {
                h += c;
                if (c == '\n') h += std::string(26, ' ');
            }
            s += left + h + "\n";
        }
        s += "\n  -h, --help              show this help and exit\n";
        if (!epilog_.empty()) s += "\n" + epilog_;
        return s;
    }

private:
    const flag_spec* find(const std::string& name) const {
        for (const auto& f : flags_)
            if (!f.name.empty() && f.name == name) return &f;
        return nullptr;
    }

    std::string usage_, summary_, epilog_;
    std::vector<flag_spec> flags_;
    std::map<std::string, std::string> values_;
    std::vector<std::string> positional_;
    bool help_ = false;
};

/// Writes `text` to the file at `path` (created or truncated); false when it
/// could not be written completely (the close is checked too).
[[nodiscard]] inline bool write_file(const std::string& path, std::string_view text) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) return false;
    const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    return std::fclose(f) == 0 && written;
}

// ---- the start of a program: --json, usage errors, the store URL ----------------------

/// Whether argv[first..) asks for --json (before any "--"). Scanned before the
/// flags are parsed, so that a usage error in them is reported as JSON too.
[[nodiscard]] inline bool wants_json(int argc, char** argv, int first) {
    for (int i = first; i < argc && std::string_view(argv[i]) != "--"; ++i)
        if (std::string_view(argv[i]) == "--json") return true;
    return false;
}

/// Reports a usage error and returns exit_usage: "PROGRAM: MESSAGE" and a
/// pointer to PROGRAM --help on stderr and, with `json`, one object on stdout
/// (`fields`, e.g. the subcommand, plus ok, error and exit_code).
inline int report_usage(std::string_view program, bool json, const std::string& message,
                        nlohmann::json fields = nlohmann::json::object()) {
    if (json) {
        fields["ok"] = false;
        fields["error"] = error_json(usage_as_error("usage", message));
        fields["exit_code"] = static_cast<int>(exit_usage);
        std::fprintf(stdout, "%s\n", fields.dump().c_str());
        std::fflush(stdout);
    }
    const std::string prog(program);
    std::fprintf(stderr, "%s: %s\nTry '%s --help'.\n", prog.c_str(), message.c_str(), prog.c_str());
    return exit_usage;
}

/// The store URL: --store, else the CACHESTORE_URL environment variable.
/// Throws usage_error when neither is given. An empty --store is given: it
/// is the URL parser's to refuse.
[[nodiscard]] inline std::string store_url_from(const arg_parser& p) {
    if (auto url = p.get("--store")) return *url;
    if (auto url = env_value("CACHESTORE_URL")) return *url;
    throw usage_error("no store given: pass --store URL or set CACHESTORE_URL");
}

/// Parses argv[first..) into `p` for a program that takes flags only, one of
/// them --store, and sets `url` (store_url_from). With --help it prints the
/// help on stdout and returns false: the program is done. Throws usage_error
/// for an unknown or malformed flag, a positional argument, or no store.
[[nodiscard]] inline bool parse_store_flags(arg_parser& p, int argc, char** argv, int first, std::string& url) {
    if (!p.parse_or_help(argc, argv, first)) return false;
    if (!p.positional().empty()) throw usage_error("unexpected argument '" + p.positional()[0] + "'");
    url = store_url_from(p);
    return true;
}

/// An example's main(): `run(argc, argv)`, with anything that escapes it
/// (std::bad_alloc, a bug) said as "PROGRAM: unexpected error" and
/// exit_other instead of std::terminate.
template <class Run>
[[nodiscard]] int guarded_main(const char* program, Run run, int argc, char** argv) noexcept {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: unexpected error: %s\n", program, e.what());
    } catch (...) {
        std::fprintf(stderr, "%s: unexpected error\n", program);
    }
    return exit_other;
}

// ---- progress bar ------------------------------------------------------------------

/// A one-line progress bar on stderr, drawn only when stderr is a terminal
/// (isatty) and the transfer is large; redrawn at most 10 times a second.
/// Thread-safe `add()`.
class progress_bar {
public:
    static constexpr std::int64_t threshold = 4 << 20; ///< smaller transfers show nothing

    progress_bar(std::string label, std::int64_t total, bool allowed = true)
        : label_(std::move(label)), total_(total),
          enabled_(allowed && total >= threshold && ::isatty(STDERR_FILENO) == 1),
          t0_(std::chrono::steady_clock::now()) {}
    progress_bar(const progress_bar&) = delete;
    progress_bar& operator=(const progress_bar&) = delete;
    ~progress_bar() { finish(); }

    [[nodiscard]] bool enabled() const noexcept { return enabled_; }

    void add(std::int64_t n) {
        if (!enabled_) return;
        const std::int64_t now_done = done_.fetch_add(n, std::memory_order_relaxed) + n;
        const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
        auto last = last_draw_.load(std::memory_order_relaxed);
        constexpr auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      std::chrono::milliseconds(100))
                                      .count();
        if (now_done < total_ && now - last < interval) return;
        if (!last_draw_.compare_exchange_strong(last, now)) return;
        draw(now_done);
    }

    void finish() {
        if (!enabled_ || finished_.exchange(true)) return;
        draw(done_.load());
        std::fputc('\n', stderr);
        std::fflush(stderr);
    }

private:
    void draw(std::int64_t done) const {
        constexpr int width = 30;
        const double frac = total_ > 0 ? std::min(1.0, static_cast<double>(done) / static_cast<double>(total_)) : 1.0;
        const int fill = static_cast<int>(frac * width);
        std::string bar(static_cast<std::size_t>(fill), '#');
        bar.resize(width, ' ');
        const double secs = seconds_since(t0_);
        std::fprintf(stderr, "\r%s [%s] %3.0f%% %s / %s  %.1f MiB/s ", label_.c_str(), bar.c_str(), frac * 100.0,
                     format_bytes(static_cast<double>(done)).c_str(), format_bytes(static_cast<double>(total_)).c_str(),
                     mib_per_s(static_cast<double>(done), secs));
        std::fflush(stderr);
    }

    std::string label_;
    std::int64_t total_;
    bool enabled_;
    std::chrono::steady_clock::time_point t0_;
    std::atomic<std::int64_t> done_{0};
    std::atomic<std::chrono::steady_clock::rep> last_draw_{0};
    std::atomic<bool> finished_{false};
};

// ---- Ctrl-C and SIGTERM as a stop request -------------------------------------------

/// Turns SIGINT and SIGTERM into `request_stop()` on a stop_source, so every
/// cachestore call in flight ends promptly with `cancelled`. Construct it in
/// main() before starting any thread (the signals are blocked in every
/// thread and taken by a watcher thread with sigtimedwait).
class signal_stop {
public:
    signal_stop() {
        sigemptyset(&set_);
        sigaddset(&set_, SIGINT);
        sigaddset(&set_, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set_, &old_);
        watcher_ = std::jthread([this](const std::stop_token& self) {
            const timespec tick{0, 100'000'000};
            while (!self.stop_requested()) {
                const int sig = sigtimedwait(&set_, nullptr, &tick);
                if (sig == SIGINT || sig == SIGTERM) {
                    signal_.store(sig);
                    source_.request_stop();
                    return;
                }
            }
        });
    }
    signal_stop(const signal_stop&) = delete;
    signal_stop& operator=(const signal_stop&) = delete;
    ~signal_stop() {
        watcher_.request_stop();
        watcher_.join();
        pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }

    [[nodiscard]] std::stop_source& source() noexcept { return source_; }
    [[nodiscard]] std::stop_token token() const noexcept { return source_.get_token(); }
    /// The signal received, or 0.
    [[nodiscard]] int received() const noexcept { return signal_.load(); }

private:
    sigset_t set_{};
    sigset_t old_{};
    std::stop_source source_;
    std::atomic<int> signal_{0};
    std::jthread watcher_;
};

/// The key flags shared by the programs, as help lines.
inline void add_key_flags(arg_parser& p, bool with_index) {
    p.section("Chunk key (see docs/concept.md)");
    p.flag("--origin", "ID", "origin_id: names the deployment; the readable path prefix (required)");
    p.flag("--bucket", "NAME", "the origin bucket (default: empty)");
    p.flag("--key", "KEY", "the origin object key (required)");
    p.flag("--etag", "ETAG", "the origin object's ETag, hashed exactly as given, quotes included (required)");
    p.flag("--chunk-size", "SIZE", "chunk size in bytes; K/M/G suffixes are binary, e.g. 8M (required)");
    if (with_index) p.flag("--index", "N", "chunk index = byte offset / chunk size (default 0)");
}

} // namespace cachestore::examples
