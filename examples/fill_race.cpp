// fill_race - many writers race to fill the same chunks; checks the commit
// contract.
//
// N threads (in each of P forked processes with --processes P) are released
// together and put_chunk the same chunks, then read each one back. The
// program checks that
//   - when the store commits atomically (memory, POSIX, S3 once self_test has
//     proven If-None-Match), exactly one writer won each chunk and every other
//     writer got commit_lost;
//   - otherwise (S3 stat-then-put) at least one writer won, and it reports how
//     many uploaded (identical) bytes;
//   - every reader saw the same bytes, the expected ones, and the stored chunk
//     has the expected length;
// and exits non-zero on any violation or error.
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <barrier>
#include <charconv>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <thread>
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

struct options {
    ex::store_spec spec;
    int threads = 8;
    int processes = 1;
    int chunks = 4;
    std::int64_t chunk_size = 256 << 10;
    int rounds = 1;
    std::string origin = "fill-race";
    bool json = false;
    std::optional<std::string> json_file;
    bool keep = false;
    bool self_test = true;
    std::chrono::seconds timeout{60};
    std::string run_id; ///< random, shared by all processes: makes every run's chunks new
};

enum outcome_kind : int { won = 0, lost = 1, failed = 2 };

/// What one writer saw for one chunk.
struct record {
    int round = 0;
    int chunk = 0;
    int outcome = failed;
    bool read_ok = false;         ///< read back exactly the expected bytes
    std::uint64_t digest = 0;     ///< FNV-1a of the bytes read (0 when the read failed)
    std::string error;            ///< the error, for outcome == failed or a failed read
};

std::string round_etag(const options& o, int round) { return "\"race-" + o.run_id + "-r" + std::to_string(round) + "\""; }

/// The object the chunks belong to: the last chunk is shorter, to exercise expected_len.
std::int64_t object_size(const options& o) {
    return static_cast<std::int64_t>(o.chunks) * o.chunk_size - (o.chunk_size >= 3 ? o.chunk_size / 3 : 0);
}

cs::chunk_key key_for(const options& o, int round, int chunk) {
    return cs::chunk_key{o.origin, "race-bucket", "fill-race/object", round_etag(o, round), o.chunk_size, chunk};
}

/// The chunk's bytes, a pure function of the key: every writer builds the
/// same buffer on its own, as every proxy replica fetches the same origin bytes.
std::vector<std::byte> chunk_bytes(const cs::chunk_key& k, std::int64_t len) {
    std::uint64_t seed = 1469598103934665603ULL;
    for (char c : k.etag) seed = (seed ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    seed ^= static_cast<std::uint64_t>(k.index) * 0x9e3779b97f4a7c15ULL;
    std::vector<std::byte> out(static_cast<std::size_t>(len));
    for (std::size_t i = 0; i < out.size(); i += 8) {
        std::uint64_t x = seed + i;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        x ^= x >> 31;
        for (std::size_t b = 0; b < 8 && i + b < out.size(); ++b) out[i + b] = static_cast<std::byte>(x >> (8 * b));
    }
    return out;
}

std::uint64_t fnv1a(std::span<const std::byte> b) {
    std::uint64_t h = 1469598103934665603ULL;
    for (std::byte x : b) h = (h ^ static_cast<std::uint64_t>(x)) * 1099511628211ULL;
    return h;
}

/// One writer's work in one round: put every chunk, read it back.
template <cs::CacheStore S>
void write_round(S& store, const options& o, int round, std::vector<record>& out) {
    for (int c = 0; c < o.chunks; ++c) {
        const cs::chunk_key key = key_for(o, round, c);
        const std::int64_t len = key.expected_len(object_size(o));
        const auto bytes = chunk_bytes(key, len);
        record rec;
        rec.round = round;
        rec.chunk = c;
        const auto ctx = cs::context::with_timeout(o.timeout);
        auto put = store.put_chunk(ctx, key, len, std::span<const std::byte>(bytes));
        if (put) rec.outcome = won;
        else if (put.error().code == cs::errc::commit_lost) rec.outcome = lost;
        else rec.error = put.error().to_string();
        std::vector<std::byte> seen(static_cast<std::size_t>(len));
        auto got = cs::get_chunk(store, cs::context::with_timeout(o.timeout), key, 0, std::span<std::byte>(seen));
        if (got) {
            rec.digest = fnv1a(seen);
            rec.read_ok = seen == bytes;
            if (!rec.read_ok && rec.error.empty()) rec.error = "read back bytes that differ from the chunk's bytes";
        } else if (rec.error.empty()) {
            rec.error = "read back failed: " + got.error().to_string();
        }
        out.push_back(std::move(rec));
    }
}

/// Runs `o.threads` writers over `store` for every round. `at_start(round)`
/// runs once per round while all threads wait at the start line (a forked
/// child uses it to wait for the parent's go).
template <cs::CacheStore S, class StartFn>
std::vector<record> run_writers(S& store, const options& o, StartFn at_start) {
    std::vector<std::vector<record>> per_thread(static_cast<std::size_t>(o.threads));
    int round_now = 0;
    auto completion = [&]() noexcept { at_start(round_now); };
    std::barrier start(o.threads, completion);
    {
        std::vector<std::jthread> ts;
        ts.reserve(static_cast<std::size_t>(o.threads));
        for (int t = 0; t < o.threads; ++t) {
            ts.emplace_back([&, t] {
                for (int r = 1; r <= o.rounds; ++r) {
                    if (t == 0) round_now = r; // written before arriving; read by the completion
                    start.arrive_and_wait();
                    write_round(store, o, r, per_thread[static_cast<std::size_t>(t)]);
                }
            });
        }
    }
    std::vector<record> all;
    for (auto& v : per_thread) all.insert(all.end(), v.begin(), v.end());
    return all;
}

// ---- the records through a pipe (forked children) ---------------------------------

std::string encode(const std::vector<record>& rs) {
    std::string s;
    for (const auto& r : rs) {
        std::string err = r.error;
        for (char& c : err)
            if (c == '\n' || c == '\t') c = ' ';
        s += std::to_string(r.round) + '\t' + std::to_string(r.chunk) + '\t' + std::to_string(r.outcome) + '\t' +
             (r.read_ok ? "1" : "0") + '\t' + std::to_string(r.digest) + '\t' + err + '\n';
    }
    return s;
}

std::vector<record> decode(const std::string& text) {
    std::vector<record> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        std::vector<std::string> f;
        std::size_t i = 0;
        for (int k = 0; k < 5; ++k) {
            const std::size_t tab = line.find('\t', i);
            if (tab == std::string::npos) break;
            f.push_back(line.substr(i, tab - i));
            i = tab + 1;
        }
        if (f.size() != 5) continue;
        record r;
        const auto round = ex::parse_int(f[0]), chunk = ex::parse_int(f[1]), outcome = ex::parse_int(f[2]);
        if (!round || !chunk || !outcome) continue; // the parent counts missing records as a violation
        r.round = static_cast<int>(*round);
        r.chunk = static_cast<int>(*chunk);
        r.outcome = static_cast<int>(*outcome);
        r.read_ok = f[3] == "1";
        std::from_chars(f[4].data(), f[4].data() + f[4].size(), r.digest);
        r.error = line.substr(i);
        out.push_back(std::move(r));
    }
    return out;
}

bool write_all(int fd, std::string_view s) {
    while (!s.empty()) {
        const ssize_t w = ::write(fd, s.data(), s.size());
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        s.remove_prefix(static_cast<std::size_t>(w));
    }
    return true;
}

std::string read_all(int fd) {
    std::string s;
    char buf[65536];
    for (;;) {
        const ssize_t r = ::read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        s.append(buf, static_cast<std::size_t>(r));
    }
    return s;
}

/// Forks `o.processes` children, each running `o.threads` writers on its own
/// store opened from the spec, releases them together every round, and
/// collects their records. Problems (a child that failed) go to `problems`.
std::vector<record> run_processes(const options& o, const ex::store_spec& child_spec, std::vector<std::string>& problems) {
    int ready[2];
    if (::pipe(ready) != 0) {
        problems.emplace_back("pipe() failed");
        return {};
    }
    std::vector<std::array<int, 2>> gates(static_cast<std::size_t>(o.rounds));
    for (auto& g : gates)
        if (::pipe(g.data()) != 0) {
            problems.emplace_back("pipe() failed");
            return {};
        }
    struct child {
        pid_t pid;
        int results;
    };
    std::vector<child> children;
    std::fflush(nullptr);
    for (int p = 0; p < o.processes; ++p) {
        int res[2];
        if (::pipe(res) != 0) {
            problems.emplace_back("pipe() failed");
            break;
        }
        const pid_t pid = ::fork();
        if (pid < 0) {
            problems.emplace_back(std::string("fork() failed: ") + ex::errno_text(errno));
            ::close(res[0]);
            ::close(res[1]);
            break;
        }
        if (pid == 0) { // the child: its own store, its own threads
            ::close(res[0]);
            ::close(ready[0]);
            for (auto& g : gates) ::close(g[1]);
            int code = 0;
            {
                ex::store_holder store;
                if (auto r = store.open(child_spec); !r) {
                    write_all(res[1], "E\t" + r.error().to_string() + "\n");
                    ::_exit(3);
                }
                auto records = store.visit([&]<cs::CacheStore S>(S& s) {
                    return run_writers(s, o, [&](int round) {
                        (void)write_all(ready[1], "r");
                        (void)read_all(gates[static_cast<std::size_t>(round - 1)][0]); // EOF = go
                    });
                });
                if (!write_all(res[1], encode(records))) code = 4;
            }
            ::_exit(code);
        }
        ::close(res[1]);
        children.push_back({pid, res[0]});
    }
    ::close(ready[1]);
    for (auto& g : gates) ::close(g[0]);
    // Each round: wait until every child's threads are at the start line, then open the gate.
    for (int r = 0; r < o.rounds; ++r) {
        int arrived = 0;
        char c;
        while (arrived < static_cast<int>(children.size())) {
            const ssize_t n = ::read(ready[0], &c, 1);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break; // a child died: its results will say so
            ++arrived;
        }
        ::close(gates[static_cast<std::size_t>(r)][1]);
    }
    ::close(ready[0]);
    std::vector<record> all;
    for (std::size_t i = 0; i < children.size(); ++i) {
        const std::string text = read_all(children[i].results);
        ::close(children[i].results);
        if (text.starts_with("E\t")) problems.push_back("process " + std::to_string(i) + ": " + text.substr(2));
        auto rs = decode(text);
        all.insert(all.end(), rs.begin(), rs.end());
        int status = 0;
        while (::waitpid(children[i].pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            problems.push_back("process " + std::to_string(i) + " (pid " + std::to_string(children[i].pid) + ") " +
                               (WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                                  : "was killed by signal " + std::to_string(WTERMSIG(status))));
    }
    return all;
}

/// After the race: every chunk is stored with the expected length and bytes.
template <cs::CacheStore S>
void check_final(S& store, const options& o, std::vector<std::string>& problems) {
    for (int r = 1; r <= o.rounds; ++r)
        for (int c = 0; c < o.chunks; ++c) {
            const auto key = key_for(o, r, c);
            const auto len = key.expected_len(object_size(o));
            const auto ctx = cs::context::with_timeout(o.timeout);
            auto st = store.stat(ctx, key);
            if (!st) {
                problems.push_back("round " + std::to_string(r) + " chunk " + std::to_string(c) +
                                   ": stat after the race failed: " + st.error().to_string());
                continue;
            }
            if (st->size != len)
                problems.push_back("round " + std::to_string(r) + " chunk " + std::to_string(c) + ": stored size " +
                                   std::to_string(st->size) + ", expected_len " + std::to_string(len));
            std::vector<std::byte> seen(static_cast<std::size_t>(len));
            auto got = cs::get_chunk(store, ctx, key, 0, std::span<std::byte>(seen));
            if (!got || seen != chunk_bytes(key, len))
                problems.push_back("round " + std::to_string(r) + " chunk " + std::to_string(c) +
                                   ": the stored bytes are not the chunk's bytes");
        }
}

template <cs::CacheStore S>
void cleanup(S& store, const options& o) {
    for (int r = 1; r <= o.rounds; ++r)
        for (int c = 0; c < o.chunks; ++c) (void)store.remove(cs::context::with_timeout(o.timeout), key_for(o, r, c));
}

std::string random_hex() {
    std::random_device rd;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
    return buf;
}

int fail_with(const options& o, const cs::error& e, const char* what) {
    const int code = ex::exit_code_for(e.code);
    if (o.json) std::cout << json{{"ok", false}, {"error", ex::error_json(e)}, {"exit_code", code}}.dump() << std::endl;
    std::cerr << "fill_race: " << what << ": " << e.to_string() << "\n";
    return code;
}

int run(options& o) {
    // The parent's store: self-test (proves If-None-Match on S3), the
    // in-process race, the final check and the cleanup.
    ex::store_holder store;
    if (auto r = store.open(o.spec); !r) return fail_with(o, r.error(), "cannot open the store");
    if (o.self_test) {
        auto st = store.visit([&]<cs::CacheStore S>(S& s) { return s.self_test(cs::context::with_timeout(std::chrono::seconds(60))); });
        if (!st) return fail_with(o, st.error(), "the store failed its self-test");
    }
    const bool atomic = store.atomic_commit();
    std::string how;
    switch (o.spec.index()) {
    case 0: how = "memory: insert under a lock"; break;
    case 1: how = "posix: link() of a temp file, EEXIST = commit_lost"; break;
    case 3: how = "tiered: the far tier's commit decides (" + std::string(ex::driver_name(std::get<ex::tiered_spec>(o.spec).far)) + ")"; break;
    default:
        how = atomic ? "s3: PUT with If-None-Match: * (enforced by the server, proven by self_test)"
                     : "s3: stat-then-put (If-None-Match not in use: writers that race past the HEAD all upload)";
    }
    const int writers = o.threads * o.processes;

    std::vector<std::string> problems;
    std::vector<record> records;
    const auto t0 = std::chrono::steady_clock::now();
    if (o.processes > 1) {
        ex::store_spec child_spec = o.spec;
        if (auto* s3 = ex::s3_part(child_spec))
            s3->cfg.commit = atomic ? cs::s3::commit_mode::if_none_match : cs::s3::commit_mode::stat_then_put;
        store.close(); // no connections inherited by the children
        records = run_processes(o, child_spec, problems);
        if (auto r = store.open(o.spec); !r) return fail_with(o, r.error(), "cannot reopen the store");
    } else {
        records = store.visit([&]<cs::CacheStore S>(S& s) { return run_writers(s, o, [](int) {}); });
    }
    const double secs = ex::seconds_since(t0);
    store.visit([&]<cs::CacheStore S>(S& s) { check_final(s, o, problems); });

    // Per chunk: winners, losers, errors, readers.
    struct tally {
        int won = 0, lost = 0, errors = 0, readers_ok = 0, records = 0;
        std::set<std::uint64_t> digests;
        std::string first_error;
    };
    std::map<std::pair<int, int>, tally> t;
    for (const auto& r : records) {
        auto& x = t[{r.round, r.chunk}];
        ++x.records;
        if (r.outcome == won) ++x.won;
        else if (r.outcome == lost) ++x.lost;
        else ++x.errors;
        if (r.read_ok) ++x.readers_ok;
        if (r.digest != 0) x.digests.insert(r.digest);
        if (!r.error.empty() && x.first_error.empty()) x.first_error = r.error;
    }
    json chunks = json::array();
    std::string text;
    int multi_upload_chunks = 0;
    for (int r = 1; r <= o.rounds; ++r)
        for (int c = 0; c < o.chunks; ++c) {
            auto& x = t[{r, c}];
            const std::string where = "round " + std::to_string(r) + " chunk " + std::to_string(c);
            if (x.records != writers)
                problems.push_back(where + ": " + std::to_string(x.records) + " of " + std::to_string(writers) + " writers reported");
            if (x.errors > 0) problems.push_back(where + ": " + std::to_string(x.errors) + " writers failed: " + x.first_error);
            if (atomic && x.won != 1)
                problems.push_back(where + ": " + std::to_string(x.won) + " winners, but the store commits atomically: exactly 1 expected");
            if (!atomic && x.won < 1) problems.push_back(where + ": no writer committed it");
            if (x.readers_ok != x.records || x.digests.size() > 1)
                problems.push_back(where + ": " + std::to_string(x.readers_ok) + " of " + std::to_string(x.records) +
                                   " readers saw the expected bytes (" + std::to_string(x.digests.size()) + " distinct)");
            if (x.won > 1) ++multi_upload_chunks;
            chunks.push_back({{"round", r},
                              {"index", c},
                              {"winners", x.won},
                              {"commit_lost", x.lost},
                              {"errors", x.errors},
                              {"readers", x.records},
                              {"readers_identical", x.readers_ok}});
            char line[240];
            if (atomic || x.won <= 1)
                std::snprintf(line, sizeof line, "  round %d chunk %d: %d winner%s, %d commit_lost, %d errors; %d/%d readers saw identical bytes\n",
                              r, c, x.won, x.won == 1 ? "" : "s", x.lost, x.errors, x.readers_ok, x.records);
            else
                std::snprintf(line, sizeof line, "  round %d chunk %d: %d writers uploaded identical bytes (stat-then-put), %d commit_lost, %d errors; %d/%d readers saw identical bytes\n",
                              r, c, x.won, x.lost, x.errors, x.readers_ok, x.records);
            text += line;
        }
    if (!o.keep) store.visit([&]<cs::CacheStore S>(S& s) { cleanup(s, o); });

    const bool ok = problems.empty();
    int code = ok ? ex::exit_ok : ex::exit_other;
    {
        json j = {{"ok", ok},
                  {"store", std::string(ex::driver_name(o.spec))},
                  {"atomic_commit", atomic},
                  {"commit", how},
                  {"processes", o.processes},
                  {"threads", o.threads},
                  {"writers", writers},
                  {"rounds", o.rounds},
                  {"chunks_per_round", o.chunks},
                  {"chunk_size", o.chunk_size},
                  {"object_size", object_size(o)},
                  {"seconds", secs},
                  {"chunks_with_several_uploads", multi_upload_chunks},
                  {"chunks", chunks},
                  {"violations", problems},
                  {"exit_code", code}};
        if (o.json_file && !ex::write_file(*o.json_file, j.dump() + "\n")) {
            std::cerr << "fill_race: cannot write " << *o.json_file << "\n";
            code = ex::exit_other;
        }
        if (o.json) std::cout << j.dump() << std::endl;
    }
    if (!o.json) {
        std::printf("fill_race: %d writers (%d process%s x %d threads) raced on %d chunk%s x %d round%s against the %s store in %.3f s\n",
                    writers, o.processes, o.processes == 1 ? "" : "es", o.threads, o.chunks, o.chunks == 1 ? "" : "s",
                    o.rounds, o.rounds == 1 ? "" : "s", std::string(ex::driver_name(o.spec)).c_str(), secs);
        std::printf("  commit: %s\n%s", how.c_str(), text.c_str());
        if (ok && atomic)
            std::printf("OK: exactly one writer won each of the %d chunks; every reader saw identical bytes\n", o.chunks * o.rounds);
        else if (ok)
            std::printf("OK: every chunk was committed (%d of %d by more than one writer, with identical bytes); every reader saw identical bytes\n",
                        multi_upload_chunks, o.chunks * o.rounds);
    }
    for (const auto& p : problems) std::cerr << "fill_race: VIOLATION: " << p << "\n";
    return code;
}

} // namespace

int run_main(int argc, char** argv) {
    ex::arg_parser p("fill_race --store URL [OPTIONS]",
                     "Race many writers to fill the same chunks and check the commit contract: with an\n"
                     "atomic commit (memory, POSIX, S3 with If-None-Match proven by self_test) exactly one\n"
                     "writer wins each chunk and the rest get commit_lost; without it (S3 stat-then-put)\n"
                     "it reports how many writers uploaded identical bytes. Every writer then reads the\n"
                     "chunk back: all must see the same, expected bytes. Exit 1 on any violation.");
    p.section("Options");
    p.flag("--store", "URL", "mem:, file:///dir, s3://bucket/prefix?... or tiered:NEAR|FAR (one in\nfront of another; cachestore --help describes them; default: $CACHESTORE_URL)");
    p.flag("--threads", "N", "writer threads (per process) (default 8)");
    p.flag("--processes", "P", "fork P processes of N threads each, every one with its own store\n(default 1: threads only; not with mem:)");
    p.flag("--chunks", "C", "chunks per round (default 4; the last one is shorter)");
    p.flag("--chunk-size", "SIZE", "chunk size (default 256K)");
    p.flag("--rounds", "R", "rounds, each on new chunks (default 1)");
    p.flag("--origin", "ID", "origin_id of the chunks (default fill-race)");
    p.flag("--keep", "", "keep the chunks afterwards (default: remove them)");
    p.flag("--no-self-test", "", "skip the self-test (on S3 this leaves If-None-Match off in auto mode)");
    p.flag("--timeout", "SECONDS", "deadline of each operation (default 60)");
    p.flag("--json", "", "print one JSON object with the results on stdout");
    p.flag("--json-file", "FILE", "also write that JSON object to FILE");
    p.epilog(std::string(ex::exit_code_help));

    options o;
    const bool json_early = ex::wants_json(argc, argv, 1);
    std::string url;
    try {
        if (!ex::parse_store_flags(p, argc, argv, 1, url)) return ex::exit_ok; // --help was printed
        o.threads = static_cast<int>(p.int_or("--threads", 8, 1, 512));
        o.processes = static_cast<int>(p.int_or("--processes", 1, 1, 64));
        o.chunks = static_cast<int>(p.int_or("--chunks", 4, 1, 10000));
        o.chunk_size = p.size_or("--chunk-size", 256 << 10);
        if (o.chunk_size < 1 || o.chunk_size > (std::int64_t{1} << 30))
            throw ex::usage_error("--chunk-size must be between 1 byte and 1 GiB");
        o.rounds = static_cast<int>(p.int_or("--rounds", 1, 1, 1000));
        o.origin = p.get_or("--origin", "fill-race");
        o.keep = p.has("--keep");
        o.self_test = !p.has("--no-self-test");
        o.json = p.has("--json");
        o.json_file = p.get("--json-file");
        o.timeout = std::chrono::seconds(p.int_or("--timeout", 60, 1, 86400));
    } catch (const ex::usage_error& e) {
        return ex::report_usage("fill_race", json_early, e.what());
    }
    auto spec = ex::parse_store_url(url);
    if (!spec) {
        if (spec.error().code == cs::errc::invalid_argument)
            return ex::report_usage("fill_race", json_early, spec.error().to_string());
        return fail_with(o, spec.error(), "bad store");
    }
    o.spec = *spec;
    if (o.processes > 1 && std::holds_alternative<ex::memory_spec>(o.spec))
        return ex::report_usage("fill_race", json_early,
                                "--processes needs a store the processes share (file:// or s3://); mem: lives in one "
                                "process");
    o.run_id = random_hex();
    return run(o);
}

int main(int argc, char** argv) { return ex::guarded_main("fill_race", run_main, argc, argv); }
