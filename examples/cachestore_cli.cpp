// cachestore - a command-line client for any cachestore driver.
//
//   cachestore put   --store URL KEYFLAGS [FILE|-]
//   cachestore get   --store URL KEYFLAGS [--offset N] [--length N] [--out FILE]
//   cachestore stat  --store URL KEYFLAGS
//   cachestore rm    --store URL KEYFLAGS
//   cachestore selftest --store URL
//   cachestore du    --store file:///DIR
//   cachestore sweep --store file:///DIR?max_bytes=SIZE&min_free=SIZE
//   cachestore path  KEYFLAGS
//
// The driver is chosen at run time from the URL (examples/store_url.hpp): mem:,
// file:///DIR, s3://BUCKET/PREFIX, or tiered:NEAR|FAR for one of them in front
// of another (cachestore::tiered). Every command is a template over
// cachestore::CacheStore, instantiated per driver and tiered pair. du and
// sweep work on a POSIX store, or on the POSIX near tier of a tiered one.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "cachestore/cachestore.hpp"
#include "cachestore/s3.hpp"
#include "common.hpp"
#include "store_url.hpp"

namespace {

namespace cs = cachestore;
namespace ex = cachestore::examples;
using json = nlohmann::json;

constexpr std::string_view store_help =
    "Store URLs (--store, else the CACHESTORE_URL environment variable):\n"
    "  mem:                       an in-memory store (lives only as long as this process)\n"
    "  file:///var/cache/chunks[?PARAMS]\n"
    "                             a POSIX directory store. PARAMS, all optional, joined by '&':\n"
    "    create=1                 create the root (mode 0700) when it is missing; without it a\n"
    "                             missing root is exit 7, never a new, empty cache\n"
    "    fsync=0                  commit without fsync (faster, not crash-safe; default 1)\n"
    "    max_bytes=SIZE           bound the chunks' total size (64G, 500M): least recently used\n"
    "                             chunks are evicted\n"
    "    min_free=SIZE            keep this much free space on the filesystem\n"
    "    low_water=F              an evicting sweep stops at F x max_bytes (0.5 to 1, default 0.9)\n"
    "    sweep_interval=S         a background sweep every S seconds (default none)\n"
    "    orphan_age=S             temp and probe files older than S seconds are orphans (3600)\n"
    "  s3://BUCKET[/PREFIX][?PARAMS]\n"
    "                             an S3 store. PARAMS, all optional, percent-encoded:\n"
    "    endpoint=URL             e.g. http%3A%2F%2F127.0.0.1%3A7480 (default: AWS_ENDPOINT_URL_S3,\n"
    "                             AWS_ENDPOINT_URL, else AWS)\n"
    "    region=NAME              signing region (default: AWS_REGION, AWS_DEFAULT_REGION, else\n"
    "                             us-east-1)\n"
    "    addressing=path|virtual  path-style (default) or virtual-hosted-style requests\n"
    "    commit=auto|stat_then_put|if_none_match\n"
    "                             how commits are made exclusive (default auto: If-None-Match\n"
    "                             when the self-test proves the server enforces it)\n"
    "    config=FILE              a JSON config file (docs/s3.md), at most 1 MiB; the URL's\n"
    "                             bucket, prefix and parameters override its values\n"
    "  tiered:NEAR|FAR            the store NEAR in front of the store FAR (cachestore::tiered):\n"
    "                             reads try NEAR first and promote FAR's hits into it; puts\n"
    "                             commit to FAR, then NEAR. NEAR is mem: or file://..., FAR is\n"
    "                             file://... or s3://..., each with its own PARAMS; write a '|'\n"
    "                             inside either as %7C, and quote the whole URL in a shell:\n"
    "                             'tiered:file:///var/cache/chunks?max_bytes=10G|s3://bucket/prefix'\n"
    "  A parameter that is unknown, given twice or empty is a usage error (exit 2). S3\n"
    "  credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN,\n"
    "  the shared credentials file, or the config file; never from the URL.\n";

/// What every subcommand shares.
struct common {
    std::string command;
    bool json = false;
    bool progress = true;
    std::chrono::seconds timeout{120};
    std::string store_url;
    ex::store_spec spec;
};

void add_common_flags(ex::arg_parser& p, bool with_store) {
    p.section("Common options");
    if (with_store) {
        p.flag("--store", "URL", "the store (default: $CACHESTORE_URL); see 'Store URLs' below");
        p.flag("--timeout", "SECONDS", "deadline for the whole operation (default 120)");
    }
    p.flag("--json", "", "print one JSON object on stdout instead of text");
    if (with_store) p.flag("--no-progress", "", "never draw the progress bar (drawn only when stderr is a terminal)");
}

std::string epilog(bool with_store) {
    std::string s;
    if (with_store) s += std::string(store_help) + "\n";
    s += std::string(ex::exit_code_help);
    return s;
}

/// Prints the outcome and returns the exit code.
int report_error(const common& c, const cs::error& e, std::string_view hint = {}) {
    const int code = ex::exit_code_for(e.code);
    if (c.json) {
        json j = {{"ok", false}, {"command", c.command}, {"error", ex::error_json(e)}, {"exit_code", code}};
        std::cout << j.dump() << std::endl;
    } else {
        std::cerr << "cachestore " << c.command << ": " << e.to_string() << "\n";
        if (!hint.empty()) std::cerr << "  " << hint << "\n";
    }
    return code;
}

int report_usage(const common& c, const std::string& message) {
    return ex::report_usage(c.command.empty() ? "cachestore" : "cachestore " + c.command, c.json, message,
                            {{"command", c.command}});
}

int report_ok(const common& c, const json& j, const std::string& text) {
    if (c.json) {
        json out = {{"ok", true}, {"command", c.command}};
        out.update(j);
        std::cout << out.dump() << std::endl;
    } else if (!text.empty()) {
        std::cout << text << std::flush;
    }
    return ex::exit_ok;
}

/// Reads the key flags; an invalid key is a usage error.
cs::chunk_key key_from(const ex::arg_parser& p) {
    cs::chunk_key k;
    k.origin_id = p.require("--origin");
    k.bucket = p.get_or("--bucket", "");
    k.object_key = p.require("--key");
    k.etag = p.require("--etag");
    k.chunk_size = p.size_or("--chunk-size", -1);
    if (!p.has("--chunk-size")) throw ex::usage_error("missing required option --chunk-size");
    k.index = p.int_or("--index", 0, 0, std::numeric_limits<std::int64_t>::max());
    if (auto v = cs::validate(k, "key"); !v) throw ex::usage_error(v.error().message);
    return k;
}

/// --store / CACHESTORE_URL, parsed. Errors come back as cachestore errors.
cs::result<ex::store_spec> store_from(const ex::arg_parser& p, common& c) {
    c.store_url = ex::store_url_from(p);
    return ex::parse_store_url(c.store_url);
}

/// Parses a command's flags (argv[2..]) and sets the common options from
/// them. Returns false after printing --help: the command is done.
bool parse_flags(ex::arg_parser& p, int argc, char** argv, common& c) {
    if (!p.parse_or_help(argc, argv, 2)) return false;
    c.json = p.has("--json");
    c.progress = !p.has("--no-progress");
    c.timeout = std::chrono::seconds(p.int_or("--timeout", 120, 1, std::int64_t{86400} * 7));
    return true;
}

cs::context make_ctx(const common& c, const std::stop_token& stop) { return cs::context::with_timeout(c.timeout, stop); }

std::string iso8601(std::chrono::system_clock::time_point t) {
    const std::time_t tt = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// ---- put -----------------------------------------------------------------------

/// A weak ETag (W/"...") promises equivalent content, not identical bytes:
/// read_range refuses such objects (invalid_argument), so a chunk put under
/// one would never be read. A usage error, like read_range's refusal (exit 2).
void refuse_weak_etag(const cs::chunk_key& key) {
    if (key.etag.starts_with("W/"))
        throw ex::usage_error("--etag " + key.etag +
                              " is a weak ETag: it does not promise byte-identical content, and read_range refuses "
                              "such objects (serve them from the origin uncached), so this chunk would never be read");
}

/// The input of `put`: a regular file streamed through a source function, or
/// everything read from a pipe / stdin into memory first (its size is unknown
/// until it ends).
struct put_input {
    int fd = -1;
    bool owned = false;
    bool streamed = false;
    std::int64_t size = 0;
    std::vector<std::byte> bytes;
    std::string name;
    ~put_input() {
        if (owned && fd >= 0) ::close(fd);
    }
};

cs::result<> open_input(const std::string& file, std::int64_t limit, put_input& in) {
    in.name = file == "-" ? "stdin" : file;
    if (file == "-") {
        in.fd = STDIN_FILENO;
    } else {
        in.fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
        if (in.fd < 0) {
            const int err = errno;
            return cs::fail(cs::errc::invalid_argument, "put", {}, "cannot open " + file + ": " + ex::errno_text(err));
        }
        in.owned = true;
    }
    struct ::stat st {};
    if (::fstat(in.fd, &st) == 0 && S_ISREG(st.st_mode)) {
        in.streamed = true;
        in.size = static_cast<std::int64_t>(st.st_size);
        return {};
    }
    // A pipe or a terminal: read up to one byte more than a chunk may hold.
    std::byte buf[64 * 1024];
    for (;;) {
        const ssize_t r = ::read(in.fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            const int err = errno;
            return cs::fail(cs::errc::io_error, "put", {}, "reading " + in.name + ": " + ex::errno_text(err));
        }
        if (r == 0) break;
        in.bytes.insert(in.bytes.end(), buf, buf + r);
        if (static_cast<std::int64_t>(in.bytes.size()) > limit) break;
    }
    in.size = static_cast<std::int64_t>(in.bytes.size());
    return {};
}

template <cs::CacheStore S>
int do_put(S& store, const common& c, const cs::chunk_key& key, put_input& in, const std::stop_token& stop) {
    const auto path = *cs::storage_path(key);
    const auto t0 = std::chrono::steady_clock::now();
    const auto ctx = make_ctx(c, stop);
    ex::progress_bar bar("put", in.size, c.progress);
    cs::result<> r;
    if (in.streamed) {
        std::int64_t left = in.size + 1; // read one past the size to notice a file that grew
        auto source = [&](std::span<std::byte> buf) -> cs::result<std::size_t> {
            for (;;) {
                const auto want = static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(buf.size()), left));
                if (want == 0) return std::size_t{0};
                const ssize_t n = ::read(in.fd, buf.data(), want);
                if (n < 0 && errno == EINTR) continue;
                if (n < 0) {
                    const int err = errno;
                    return cs::fail(cs::errc::io_error, "put_chunk", path, "reading " + in.name + ": " + ex::errno_text(err));
                }
                left -= n;
                bar.add(n);
                return static_cast<std::size_t>(n);
            }
        };
        r = store.put_chunk(ctx, key, in.size, source);
    } else {
        r = store.put_chunk(ctx, key, in.size, std::span<const std::byte>(in.bytes));
        bar.add(in.size);
    }
    bar.finish();
    const double secs = ex::seconds_since(t0);
    if (!r) {
        if (r.error().code == cs::errc::commit_lost)
            return report_error(c, r.error(), "the chunk is already stored; it is byte-identical by construction");
        return report_error(c, r.error());
    }
    char line[160];
    std::snprintf(line, sizeof line, "committed %s (%" PRId64 " bytes) in %.3f s\n", path.c_str(), in.size, secs);
    return report_ok(c, {{"path", path}, {"bytes", in.size}, {"seconds", secs}}, line);
}

int cmd_put(int argc, char** argv, common& c, const std::stop_token& stop) {
    ex::arg_parser p("cachestore put [OPTIONS] [FILE|-]",
                     "Commit one chunk, read from FILE (or stdin when FILE is '-' or absent).\n"
                     "The input's length is the chunk's size: at least 1 byte and at most --chunk-size.\n"
                     "If the chunk is already stored nothing is uploaded and the exit code is 6 (commit_lost).\n"
                     "A weak --etag (W/\"...\") is refused (exit 2), as read_range refuses it.");
    add_common_flags(p, true);
    ex::add_key_flags(p, true);
    p.flag("--object-size", "SIZE", "the origin object's size: check that the input is exactly\nexpected_len(SIZE) bytes for --index");
    p.epilog(epilog(true));
    if (!parse_flags(p, argc, argv, c)) return ex::exit_ok; // --help was printed
    if (p.positional().size() > 1) throw ex::usage_error("put takes at most one FILE");
    const auto key = key_from(p);
    refuse_weak_etag(key);
    const std::string file = p.positional().empty() ? "-" : p.positional()[0];
    auto spec = store_from(p, c);
    if (!spec) return report_error(c, spec.error());
    put_input in;
    if (auto r = open_input(file, key.chunk_size, in); !r) return report_error(c, r.error());
    if (in.size == 0) throw ex::usage_error("the input " + in.name + " is empty: a chunk holds at least 1 byte");
    if (in.size > key.chunk_size)
        throw ex::usage_error("the input " + in.name + " holds " + (in.streamed ? std::to_string(in.size) : "more than " + std::to_string(key.chunk_size)) +
                              " bytes, more than --chunk-size " + std::to_string(key.chunk_size));
    if (p.has("--object-size")) {
        const auto want = key.expected_len(p.size_or("--object-size", 0));
        if (want != in.size)
            throw ex::usage_error("chunk " + std::to_string(key.index) + " of an object of " + p.require("--object-size") +
                                  " bytes holds " + std::to_string(want) + " bytes, but the input holds " +
                                  std::to_string(in.size));
    }
    ex::store_holder store;
    if (auto r = store.open(*spec); !r) return report_error(c, r.error());
    return store.visit([&]<cs::CacheStore S>(S& s) { return do_put(s, c, key, in, stop); });
}

// ---- get -----------------------------------------------------------------------

template <cs::CacheStore S>
int do_get(S& store, const common& c, const cs::chunk_key& key, std::int64_t off, std::optional<std::int64_t> len,
           const std::optional<std::string>& out_file, const std::stop_token& stop) {
    const auto path = *cs::storage_path(key);
    const auto ctx = make_ctx(c, stop);
    const auto t0 = std::chrono::steady_clock::now();
    if (!len) { // the rest of the stored chunk
        auto st = store.stat(ctx, key);
        if (!st) return report_error(c, st.error());
        if (off >= st->size)
            return report_error(c, cs::fail(cs::errc::out_of_range, "get_chunk", path,
                                            "offset " + std::to_string(off) + " is at or past the end of the " +
                                                std::to_string(st->size) + "-byte chunk")
                                       .error());
        len = st->size - off;
    }
    // Into FILE through a temp file renamed on success, or to stdout.
    std::string tmp;
    int fd = STDOUT_FILENO;
    if (out_file) {
        tmp = *out_file + ".part-" + std::to_string(::getpid());
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            const int err = errno;
            return report_error(c, cs::fail(cs::errc::io_error, "get", path, "cannot create " + tmp + ": " + ex::errno_text(err)).error());
        }
    }
    ex::progress_bar bar("get", *len, c.progress);
    int write_errno = 0;
    auto sink = [&](std::span<const std::byte> b) {
        const std::byte* p = b.data();
        std::size_t left = b.size();
        while (left != 0) {
            const ssize_t w = ::write(fd, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                write_errno = errno;
                return false;
            }
            p += w;
            left -= static_cast<std::size_t>(w);
        }
        bar.add(static_cast<std::int64_t>(b.size()));
        return true;
    };
    auto r = store.get_chunk(ctx, key, off, *len, sink);
    bar.finish();
    if (out_file) {
        if (r && ::fsync(fd) != 0) write_errno = errno;
        if (::close(fd) != 0 && r && write_errno == 0) write_errno = errno;
        if (r && write_errno == 0 && ::rename(tmp.c_str(), out_file->c_str()) != 0) write_errno = errno;
        if (!r || write_errno != 0) ::unlink(tmp.c_str());
    }
    if (write_errno != 0)
        return report_error(c, cs::fail(cs::errc::io_error, "get", path,
                                        std::string("writing ") + (out_file ? *out_file : "stdout") + ": " +
                                            ex::errno_text(write_errno))
                                   .error());
    if (!r) return report_error(c, r.error());
    const double secs = ex::seconds_since(t0);
    char line[200];
    std::snprintf(line, sizeof line, "wrote %" PRId64 " bytes [%" PRId64 ", %" PRId64 ") of %s to %s in %.3f s\n", *len,
                  off, off + *len, path.c_str(), out_file ? out_file->c_str() : "stdout", secs);
    if (!out_file && !c.json) return ex::exit_ok; // the bytes are the output
    return report_ok(c, {{"path", path}, {"offset", off}, {"length", *len}, {"out", out_file.value_or("-")}, {"seconds", secs}}, line);
}

int cmd_get(int argc, char** argv, common& c, const std::stop_token& stop) {
    ex::arg_parser p("cachestore get [OPTIONS]",
                     "Read bytes [offset, offset+length) of a stored chunk, to stdout or --out FILE.\n"
                     "Exactly length bytes are written, or nothing (FILE is replaced only on success).");
    add_common_flags(p, true);
    ex::add_key_flags(p, true);
    p.section("Range and output");
    p.flag("--offset", "N", "first byte inside the chunk (default 0)");
    p.flag("--length", "N", "number of bytes (default: to the end of the stored chunk)");
    p.flag("--out", "FILE", "write to FILE instead of stdout (required with --json)");
    p.epilog(epilog(true));
    if (!parse_flags(p, argc, argv, c)) return ex::exit_ok; // --help was printed
    if (!p.positional().empty()) throw ex::usage_error("get takes no positional arguments (use --out FILE)");
    const auto key = key_from(p);
    const std::int64_t off = p.size_or("--offset", 0);
    std::optional<std::int64_t> len;
    if (p.has("--length")) {
        len = p.size_or("--length", 0);
        if (*len <= 0) throw ex::usage_error("--length must be at least 1");
    }
    const auto out = p.get("--out");
    if (c.json && !out) throw ex::usage_error("--json needs --out FILE for get: stdout carries the JSON");
    auto spec = store_from(p, c);
    if (!spec) return report_error(c, spec.error());
    ex::store_holder store;
    if (auto r = store.open(*spec); !r) return report_error(c, r.error());
    return store.visit([&]<cs::CacheStore S>(S& s) { return do_get(s, c, key, off, len, out, stop); });
}

// ---- stat, rm --------------------------------------------------------------------

template <cs::CacheStore S>
int do_stat(S& store, const common& c, const cs::chunk_key& key, const std::stop_token& stop) {
    const auto path = *cs::storage_path(key);
    auto st = store.stat(make_ctx(c, stop), key);
    if (!st) return report_error(c, st.error());
    const auto unix_s = std::chrono::duration_cast<std::chrono::seconds>(st->committed.time_since_epoch()).count();
    const std::string when = iso8601(st->committed);
    std::string text = path + "\n  size       " + std::to_string(st->size) + " bytes\n  committed  " + when + "\n";
    return report_ok(c, {{"path", path}, {"size", st->size}, {"committed", when}, {"committed_unix", unix_s}}, text);
}

template <cs::CacheStore S>
int do_rm(S& store, const common& c, const cs::chunk_key& key, const std::stop_token& stop) {
    const auto path = *cs::storage_path(key);
    auto r = store.remove(make_ctx(c, stop), key);
    if (!r) return report_error(c, r.error());
    return report_ok(c, {{"path", path}}, "removed " + path + " (or it was not stored)\n");
}

int cmd_stat_rm(int argc, char** argv, common& c, const std::stop_token& stop, bool rm) {
    ex::arg_parser p(rm ? "cachestore rm [OPTIONS]" : "cachestore stat [OPTIONS]",
                     rm ? "Remove a stored chunk. Removing a chunk that is not stored succeeds (exit 0)."
                        : "Show a stored chunk's size and commit time (exit 3 when it is not stored).");
    add_common_flags(p, true);
    ex::add_key_flags(p, true);
    p.epilog(epilog(true));
    if (!parse_flags(p, argc, argv, c)) return ex::exit_ok; // --help was printed
    if (!p.positional().empty()) throw ex::usage_error(c.command + " takes no positional arguments");
    const auto key = key_from(p);
    auto spec = store_from(p, c);
    if (!spec) return report_error(c, spec.error());
    ex::store_holder store;
    if (auto r = store.open(*spec); !r) return report_error(c, r.error());
    return store.visit([&]<cs::CacheStore S>(S& s) { return rm ? do_rm(s, c, key, stop) : do_stat(s, c, key, stop); });
}

// ---- selftest ------------------------------------------------------------------------

int cmd_selftest(int argc, char** argv, common& c, const std::stop_token& stop) {
    ex::arg_parser p("cachestore selftest [OPTIONS]",
                     "Run the store's boot self-test: read-after-write visibility and fitness for\n"
                     "stat-then-put. For S3 also: the bucket exists and is not versioned, misses are 404\n"
                     "(s3:ListBucket granted), the clock is in sync, and whether If-None-Match commits\n"
                     "are enforced. Prints what it found; exit 0 when the store is fit.");
    add_common_flags(p, true);
    p.epilog(epilog(true));
    if (!parse_flags(p, argc, argv, c)) return ex::exit_ok; // --help was printed
    if (!p.positional().empty()) throw ex::usage_error("selftest takes no positional arguments");
    auto spec = store_from(p, c);
    if (!spec) return report_error(c, spec.error());
    ex::store_holder store;
    if (auto r = store.open(*spec); !r) return report_error(c, r.error());
    const auto t0 = std::chrono::steady_clock::now();
    auto r = store.visit([&]<cs::CacheStore S>(S& s) { return s.self_test(make_ctx(c, stop)); });
    if (!r) return report_error(c, r.error());
    const double secs = ex::seconds_since(t0);
    json j = {{"store", std::string(ex::driver_name(*spec))}, {"description", ex::describe(*spec)},
              {"atomic_commit", store.atomic_commit()}, {"seconds", secs}};
    const auto* tiers = std::get_if<ex::tiered_spec>(&*spec);
    if (tiers != nullptr) {
        j["near"] = std::string(ex::driver_name(tiers->near));
        j["far"] = std::string(ex::driver_name(tiers->far));
    }
    std::string text = "self-test passed in " + std::to_string(secs).substr(0, 5) + " s: " + ex::describe(*spec) + "\n";
    if (tiers != nullptr) text += "  both tiers passed; the far tier decides every commit\n";
    if (auto* s3 = store.s3()) {
        const auto rep = s3->last_self_test();
        j["conditional_put_enforced"] = rep.conditional_put_enforced;
        j["clock_offset_ms"] = rep.clock_offset.count();
        text += std::string("  If-None-Match commits: ") +
                (rep.conditional_put_enforced ? "enforced (racing writers get exactly one winner)"
                                              : "not enforced (stat-then-put: racing writers may upload identical bytes)") +
                "\n  clock offset to the server: " + std::to_string(rep.clock_offset.count()) + " ms\n";
    } else {
        text += "  commits are atomic (exactly one winner among racing writers)\n";
    }
    return report_ok(c, j, text);
}

// ---- du, sweep (POSIX stores) --------------------------------------------------------

std::string iso8601_or(std::chrono::system_clock::time_point t, std::int64_t chunks) {
    return chunks > 0 ? iso8601(t) : std::string("-");
}

json report_json(const cs::sweep_report& r) {
    auto unix_s = [](std::chrono::system_clock::time_point t) {
        return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
    };
    json j = {{"bytes", r.bytes}, {"chunks", r.chunks}, {"temp_files", r.temp_files}, {"temp_bytes", r.temp_bytes},
              {"foreign", r.foreign}, {"entries_scanned", r.entries_scanned}, {"free_bytes", r.free_bytes},
              {"scan_seconds", std::chrono::duration<double>(r.scan_time).count()},
              {"seconds", std::chrono::duration<double>(r.total_time).count()}};
    if (r.chunks > 0) {
        j["oldest_use"] = iso8601(r.oldest_use);
        j["oldest_use_unix"] = unix_s(r.oldest_use);
        j["newest_use"] = iso8601(r.newest_use);
        j["newest_use_unix"] = unix_s(r.newest_use);
    } else {
        j["oldest_use"] = nullptr;
        j["newest_use"] = nullptr;
    }
    return j;
}

std::string report_text(const std::string& root, const cs::posix_options& o, const cs::sweep_report& r) {
    std::string t = root + "\n  usage       " + ex::format_bytes(static_cast<double>(r.bytes)) + " (" +
                    std::to_string(r.bytes) + " bytes) in " + std::to_string(r.chunks) + " chunks";
    if (o.max_bytes > 0)
        t += ", bound " + ex::format_bytes(static_cast<double>(o.max_bytes)) + " (" +
             std::to_string(r.bytes * 100 / o.max_bytes) + " % used)";
    t += "\n  free        " + (r.free_bytes < 0 ? std::string("unknown") : ex::format_bytes(static_cast<double>(r.free_bytes)));
    if (o.min_free_bytes > 0) t += ", floor " + ex::format_bytes(static_cast<double>(o.min_free_bytes));
    t += "\n  oldest use  " + iso8601_or(r.oldest_use, r.chunks) + "\n  newest use  " + iso8601_or(r.newest_use, r.chunks) +
         "\n  temp files  " + std::to_string(r.temp_files) + " (" + ex::format_bytes(static_cast<double>(r.temp_bytes)) +
         ")\n";
    if (r.foreign > 0) t += "  foreign     " + std::to_string(r.foreign) + " entries the store does not own (left alone)\n";
    return t;
}

/// Opens the file:// store of --store (or the file:// near tier of a tiered
/// store: the bounded local one) for du or sweep, without its start-up sweep.
cs::result<cs::posix_store> open_posix_for(const common& c, const ex::store_spec& spec) {
    const auto* p = std::get_if<ex::posix_spec>(&spec);
    if (const auto* t = std::get_if<ex::tiered_spec>(&spec)) p = std::get_if<ex::posix_spec>(&t->near);
    if (p == nullptr)
        throw ex::usage_error(c.command +
                              " works on POSIX stores only (--store file:///DIR, or a tiered store whose near tier is one)");
    auto opts = p->opts;
    opts.sweep_on_open = false;
    opts.sweep_interval = {};
    auto s = cs::posix_store::open(p->root, opts);
    if (!s) return std::unexpected(ex::in_url_terms(std::move(s.error()), *p));
    return s;
}

int cmd_du_sweep(int argc, char** argv, common& c, const std::stop_token& stop, bool sweep) {
    ex::arg_parser p(sweep ? "cachestore sweep [OPTIONS]" : "cachestore du [OPTIONS]",
                     sweep ? "One sweep of a POSIX store (--store file:///DIR?max_bytes=SIZE&min_free=SIZE): remove\n"
                             "orphans (temp files of dead puts, probe leftovers, empty directories) and, over a\n"
                             "bound, the least recently used chunks down to low_water x max_bytes. Waits for a\n"
                             "sweep another process is running on the same root. For a tiered store: its near\n"
                             "tier, when that is a POSIX store."
                           : "What a POSIX store holds (--store file:///DIR): usage, chunk count, the oldest and\n"
                             "newest use (chunk access times), temp files, free space. Changes nothing. For a\n"
                             "tiered store: its near tier, when that is a POSIX store.");
    add_common_flags(p, true);
    p.epilog(epilog(true));
    if (!parse_flags(p, argc, argv, c)) return ex::exit_ok; // --help was printed
    if (!p.positional().empty()) throw ex::usage_error(c.command + " takes no positional arguments");
    auto spec = store_from(p, c);
    if (!spec) return report_error(c, spec.error());
    auto store = open_posix_for(c, *spec);
    if (!store) return report_error(c, store.error());
    const auto& o = store->options();
    auto r = sweep ? store->sweep(make_ctx(c, stop)) : store->measure(make_ctx(c, stop));
    if (!r) return report_error(c, r.error());
    json j = report_json(*r);
    j["root"] = store->root();
    j["max_bytes"] = o.max_bytes;
    j["min_free_bytes"] = o.min_free_bytes;
    std::string text = report_text(store->root(), o, *r);
    if (sweep) {
        j.update({{"chunks_evicted", r->chunks_evicted}, {"bytes_evicted", r->bytes_evicted}, {"spared", r->spared},
                  {"orphans_removed", r->orphans_removed}, {"orphan_bytes", r->orphan_bytes},
                  {"dirs_removed", r->dirs_removed}, {"passes", r->passes}, {"over_bound", r->over_bound}});
        text += "  evicted     " + std::to_string(r->chunks_evicted) + " chunks (" +
                ex::format_bytes(static_cast<double>(r->bytes_evicted)) + "), " + std::to_string(r->spared) +
                " spared as used meanwhile\n  orphans     " + std::to_string(r->orphans_removed) + " files (" +
                ex::format_bytes(static_cast<double>(r->orphan_bytes)) + ") and " + std::to_string(r->dirs_removed) +
                " empty directories removed\n";
        if (r->over_bound) text += "  still over a bound: nothing left to evict\n";
    }
    char line[96];
    std::snprintf(line, sizeof line, "  took        %.3f s (%lld entries scanned)\n",
                  std::chrono::duration<double>(r->total_time).count(), static_cast<long long>(r->entries_scanned));
    text += line;
    return report_ok(c, j, text);
}

// ---- path ------------------------------------------------------------------------------

int cmd_path(int argc, char** argv, common& c) {
    ex::arg_parser p("cachestore path [OPTIONS]",
                     "Print a key's storage path: origin_id/sha256(...)/index, byte-identical to the\n"
                     "upstream Go driver (SPEC section 2). Needs no store. With --object-size also print\n"
                     "the chunk's expected length.");
    p.section("Common options");
    p.flag("--json", "", "print one JSON object on stdout instead of text");
    ex::add_key_flags(p, true);
    p.flag("--object-size", "SIZE", "the origin object's size, to print expected_len");
    p.epilog(std::string(ex::exit_code_help));
    if (!parse_flags(p, argc, argv, c)) return ex::exit_ok; // --help was printed
    if (!p.positional().empty()) throw ex::usage_error("path takes no positional arguments");
    const auto key = key_from(p);
    const auto path = *cs::storage_path(key);
    json j = {{"path", path}, {"origin_id", key.origin_id}, {"index", key.index}, {"chunk_size", key.chunk_size}};
    std::string text = path + "\n";
    if (p.has("--object-size")) {
        const auto n = key.expected_len(p.size_or("--object-size", 0));
        j["expected_len"] = n;
        text += "expected_len " + std::to_string(n) + "\n";
    }
    return report_ok(c, j, text);
}

// ---- main ---------------------------------------------------------------------------------

constexpr std::string_view top_help =
    "usage: cachestore COMMAND [OPTIONS]\n"
    "\n"
    "A client for cachestore chunk stores (memory, POSIX directory, S3, and tiered: one in\n"
    "front of another).\n"
    "\n"
    "Commands:\n"
    "  put        commit one chunk from a file or stdin\n"
    "  get        read a byte range of a chunk to stdout or a file\n"
    "  stat       show a chunk's size and commit time\n"
    "  rm         remove a chunk (absent is fine)\n"
    "  selftest   run the store's boot self-test\n"
    "  du         usage, chunk count, oldest and newest use of a POSIX store (or near tier)\n"
    "  sweep      one sweep of a POSIX store (or near tier): orphans, LRU eviction over its bound\n"
    "  path       print a key's storage path (no store needed)\n"
    "\n"
    "'cachestore COMMAND --help' describes each command and its flags.\n"
    "A chunk is named by --origin --bucket --key --etag --chunk-size --index.\n"
    "\n";

} // namespace

int run_main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << top_help << store_help << "\n" << ex::exit_code_help;
        return ex::exit_usage;
    }
    const std::string_view cmd = argv[1];
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
        std::cout << top_help << store_help << "\n" << ex::exit_code_help;
        return ex::exit_ok;
    }
    common c;
    c.command = std::string(cmd);
    c.json = ex::wants_json(argc, argv, 2); // early, so that usage errors come out as JSON too
    ex::signal_stop signals;
    try {
        int rc;
        if (cmd == "put") rc = cmd_put(argc, argv, c, signals.token());
        else if (cmd == "get") rc = cmd_get(argc, argv, c, signals.token());
        else if (cmd == "stat") rc = cmd_stat_rm(argc, argv, c, signals.token(), false);
        else if (cmd == "rm") rc = cmd_stat_rm(argc, argv, c, signals.token(), true);
        else if (cmd == "selftest") rc = cmd_selftest(argc, argv, c, signals.token());
        else if (cmd == "du") rc = cmd_du_sweep(argc, argv, c, signals.token(), false);
        else if (cmd == "sweep") rc = cmd_du_sweep(argc, argv, c, signals.token(), true);
        else if (cmd == "path") rc = cmd_path(argc, argv, c);
        else {
            c.command.clear();
            return report_usage(c, "unknown command '" + std::string(cmd) + "'");
        }
        if (signals.received() != 0 && rc != 0) return 128 + signals.received();
        return rc;
    } catch (const ex::usage_error& e) {
        return report_usage(c, e.what());
    } catch (const std::exception& e) {
        std::cerr << "cachestore " << c.command << ": unexpected error: " << e.what() << "\n";
        return ex::exit_other;
    }
}

int main(int argc, char** argv) {
    try {
        return run_main(argc, argv);
    } catch (...) { // e.g. std::bad_alloc before the command's own handler is in place
        std::fputs("cachestore: unexpected error\n", stderr);
        return ex::exit_other;
    }
}
