// tests/bench/bench.cpp - the cachestore S3 benchmark (issue 5).
//
// Every ratio row runs our driver and a baseline side by side in one process,
// alternating which goes first, for several runs, and reports ours/baseline
// as a rate ratio (median, min, max over the runs): above 1 means we are
// faster. Baselines: a raw libcurl easy-handle loop doing the same requests
// without signing, libs3 (Debian libs3-dev), and libcurl's own SigV4 signer.
// The measurement section counts TCP connections, bytes copied, peak RSS,
// CPU instructions (callgrind) and signing cost.
//
// Usage (servers from tests/servers/with-servers.sh; see tests/bench/run.sh):
//   cachestore_bench [--target nginx|rgw] [--runs N] [--seconds S]
//                    [--only SUBSTRING]... [--no-callgrind] [--no-measurements]
//                    [--setup-only] [--smoke]
//   cachestore_bench [--target nginx] --check-callgrind GET_RATIO,HEAD_RATIO
// --smoke runs every row for a few iterations and exits non-zero only when an
// operation fails (timings are never asserted). --only keeps the rows whose
// "row vs baseline" name contains SUBSTRING, and the measurements named
// signing, connections, copies, rss, callgrind, hedged, breaker (the last two
// are the layers' rows, layers_rows.hpp); --only tiered keeps the tiered
// store's rows (tiered_rows.hpp, --target rgw only). --setup-only uploads the
// objects and exits (for running `--cg-child NAME --cg-iters N` by hand under
// valgrind or perf). --check-callgrind runs only the callgrind GET and stat
// children and exits 1 when ours/raw libcurl exceeds either budget (the
// callgrind-budget check in CI). The report is Markdown on stdout; progress on stderr.
#include <cachestore/cachestore.hpp>
#include <cachestore/s3.hpp>

#include <curl/curl.h>
#include <openssl/evp.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if CACHESTORE_BENCH_LIBS3
#include <libs3.h>
#endif

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define BENCH_HAVE_CALLGRIND 1
#else
#define CALLGRIND_TOGGLE_COLLECT
#define BENCH_HAVE_CALLGRIND 0
#endif

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../proc_status.hpp"

// ---------------------------------------------------------------------------
// connect() is interposed to count the TCP connections this process opens
// (libcurl, both flavours, calls it once per new connection). The kernel's
// socket table gives the independent, server-side count (see count_server_side).
// ---------------------------------------------------------------------------
namespace bench {
std::atomic<long> g_connects{0};
}

extern "C" int connect(int fd, const struct sockaddr* addr, socklen_t len) {
    if (addr != nullptr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6))
        bench::g_connects.fetch_add(1, std::memory_order_relaxed);
    return static_cast<int>(syscall(SYS_connect, fd, addr, len));
}

namespace bench {

using clk = std::chrono::steady_clock;
namespace s3 = cachestore::s3;

constexpr std::int64_t KiB = 1024;
constexpr std::int64_t MiB = 1024 * KiB;
constexpr std::string_view empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// ---------------------------------------------------------------------------
// Options, failures, output
// ---------------------------------------------------------------------------

struct options {
    bool smoke = false;
    std::string target = "nginx";
    int runs = 7;
    double seconds = 0.3; ///< per side per run (large rows use at least min_ops)
    std::vector<std::string> only;
    bool callgrind = true;
    bool measurements = true;
    std::string self;        ///< /proc/self/exe, for the callgrind children
    bool setup_only = false; ///< upload the objects and exit (for manual callgrind/perf runs)
    // callgrind child mode
    std::string cg_child;
    long cg_iters = 0;
    // --check-callgrind: the instruction budget per request (ours / raw libcurl)
    double cg_budget_get = 0, cg_budget_head = 0;
};

options g_opt;
std::atomic<int> g_failures{0};
std::mutex g_err_mu;

void report_failure(std::string_view what, std::string_view detail) {
    const int n = g_failures.fetch_add(1) + 1;
    if (n > 25) return;
    std::lock_guard lock(g_err_mu);
    std::fprintf(stderr, "bench: FAILED %.*s: %.*s\n", static_cast<int>(what.size()), what.data(),
                 static_cast<int>(detail.size()), detail.data());
}

/// Ends the process with `status`, from any thread: flushes stdio, then
/// _Exit, which (unlike std::exit) runs no atexit handlers or static
/// destructors under the feet of the worker pool's threads.
[[noreturn]] void exit_now(int status) {
    std::fflush(nullptr);
    std::_Exit(status);
}

[[noreturn]] void die(std::string_view msg) {
    std::fprintf(stderr, "bench: %.*s\n", static_cast<int>(msg.size()), msg.data());
    exit_now(2);
}

/// The number `s` starts with, or nothing when there is none or it is out of
/// range. With `whole`, nothing may follow the number.
template <class T>
std::optional<T> parse_number(std::string_view s, bool whole) {
    T v{};
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || (whole && end != s.data() + s.size())) return std::nullopt;
    return v;
}

std::string_view skip_blanks(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    return s;
}

bool selected(std::string_view row) {
    if (g_opt.only.empty()) return true;
    return std::any_of(g_opt.only.begin(), g_opt.only.end(),
                       [row](const std::string& o) { return row.find(o) != std::string_view::npos; });
}

std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

std::string rate_str(double ops_per_s, double bytes_per_op) {
    if (bytes_per_op >= static_cast<double>(MiB)) return fmt("%.0f MiB/s", ops_per_s * bytes_per_op / MiB);
    if (ops_per_s >= 100) return fmt("%.0f req/s", ops_per_s);
    return fmt("%.1f req/s", ops_per_s);
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

struct server {
    std::string name;     ///< nginx | rgw
    std::string endpoint; ///< http://127.0.0.1:PORT
    std::string hostport; ///< 127.0.0.1:PORT (libs3's hostName)
    int port = 0;
    std::string bucket, region = "us-east-1", access, secret;
    bool auth = false; ///< the server checks signatures
    std::string ca_file; ///< https: the private CA that signed the server's certificate
    [[nodiscard]] bool tls() const { return endpoint.starts_with("https://"); }
};

/// Only server_from_env reads the environment, in run() before the worker
/// threads start (and nothing in this process sets variables).
std::string env(const char* name) {
    const char* v = std::getenv(name); // NOLINT(concurrency-mt-unsafe): read before any thread starts, see above
    return v == nullptr ? std::string() : std::string(v);
}

server server_from_env(const std::string& target) {
    server s;
    s.name = target;
    if (target == "nginx") {
        s.endpoint = env("CACHESTORE_NGINX_ENDPOINT");
        s.bucket = env("CACHESTORE_NGINX_BUCKET");
        s.access = "AKIDBENCHMARK0000000";
        s.secret = "bench/secret/key/ignored/by/nginx/000000";
        if (s.endpoint.empty() || s.bucket.empty())
            die("CACHESTORE_NGINX_ENDPOINT/BUCKET are not set: run through tests/servers/with-servers.sh --nginx");
    } else if (target == "rgw") {
        s.endpoint = env("CACHESTORE_RGW_ENDPOINT");
        s.bucket = env("CACHESTORE_RGW_BUCKET");
        s.access = env("CACHESTORE_RGW_ACCESS_KEY");
        s.secret = env("CACHESTORE_RGW_SECRET_KEY");
        if (!env("CACHESTORE_RGW_REGION").empty()) s.region = env("CACHESTORE_RGW_REGION");
        s.auth = true;
        if (s.endpoint.empty() || s.bucket.empty() || s.access.empty())
            die("CACHESTORE_RGW_* are not set: run through tests/servers/with-servers.sh --rgw");
    } else if (target == "rgw-tls") {
        s.endpoint = env("CACHESTORE_RGW_TLS_ENDPOINT");
        s.ca_file = env("CACHESTORE_RGW_CA_FILE");
        s.bucket = env("CACHESTORE_RGW_BUCKET");
        s.access = env("CACHESTORE_RGW_ACCESS_KEY");
        s.secret = env("CACHESTORE_RGW_SECRET_KEY");
        if (!env("CACHESTORE_RGW_REGION").empty()) s.region = env("CACHESTORE_RGW_REGION");
        s.auth = true;
        if (s.endpoint.empty() || s.ca_file.empty() || s.bucket.empty() || s.access.empty())
            die("CACHESTORE_RGW_TLS_ENDPOINT/CA_FILE are not set: run through tests/servers/with-servers.sh --rgw");
    } else {
        die("unknown --target '" + target + "' (nginx, rgw or rgw-tls)");
    }
    while (!s.endpoint.empty() && s.endpoint.back() == '/') s.endpoint.pop_back();
    const auto scheme = s.endpoint.find("://");
    if (scheme == std::string::npos ||
        (s.endpoint.compare(0, scheme, "http") != 0 && s.endpoint.compare(0, scheme, "https") != 0))
        die("the benchmark expects an http:// or https:// endpoint, got " + s.endpoint);
    s.hostport = s.endpoint.substr(scheme + 3);
    const auto colon = s.hostport.rfind(':');
    if (colon == std::string::npos) die("the endpoint has no port: " + s.endpoint);
    const auto port = parse_number<int>(std::string_view(s.hostport).substr(colon + 1), true);
    if (!port || *port <= 0 || *port > 65535) die("the endpoint has no valid port: " + s.endpoint);
    s.port = *port;
    return s;
}

s3::config bench_config(const server& sv) {
    s3::config cfg;
    cfg.endpoint = sv.endpoint;
    cfg.bucket = sv.bucket;
    cfg.region = sv.region;
    cfg.creds.access_key_id = sv.access;
    cfg.creds.secret_access_key = sv.secret;
    cfg.commit = s3::commit_mode::stat_then_put; // nginx ignores If-None-Match; HEAD + PUT everywhere
    cfg.tls.ca_file = sv.ca_file;
    return cfg;
}

s3::store make_store(const server& sv) {
    auto st = s3::store::create(bench_config(sv));
    if (!st) die("store::create: " + st.error().to_string());
    return std::move(*st);
}

/// One benchmark object: its chunk key, its object key inside the bucket and its URL.
struct object {
    cachestore::chunk_key key;
    std::string object_key;
    std::string url;
    std::int64_t size = 0;
};

object make_object(const server& sv, s3::store& st, const std::string& name, std::int64_t size) {
    object o;
    o.key = cachestore::chunk_key{"bench", "origin-bucket", "objects/" + name, "\"etag-1\"", size, 0};
    auto k = st.object_key(o.key);
    if (!k) die("object_key: " + k.error().to_string());
    o.object_key = *k;
    o.url = sv.endpoint + "/" + sv.bucket + "/" + o.object_key;
    o.size = size;
    return o;
}

std::vector<std::byte> pattern(std::int64_t n, unsigned seed) {
    std::vector<std::byte> v(static_cast<std::size_t>(n));
    std::uint32_t x = 2463534242u ^ seed;
    for (std::size_t i = 0; i < v.size(); i += 4) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        for (std::size_t j = 0; j < 4 && i + j < v.size(); ++j) v[i + j] = static_cast<std::byte>(x >> (8 * j));
    }
    return v;
}

std::string sha256_hex(std::span<const std::byte> b) {
    unsigned char md[32];
    unsigned int len = 0;
    if (EVP_Digest(b.data(), b.size(), md, &len, EVP_sha256(), nullptr) != 1) die("EVP_Digest failed");
    static constexpr char d[] = "0123456789abcdef";
    std::string s(64, '0');
    for (std::size_t i = 0; i < 32; ++i) {
        s[2 * i] = d[md[i] >> 4];
        s[2 * i + 1] = d[md[i] & 15];
    }
    return s;
}

// ---------------------------------------------------------------------------
// Baseline 1: raw libcurl, one easy handle per thread, options set once,
// per request only what changes (URL, range, method). With `sign`, libcurl's
// own SigV4 (CURLOPT_AWS_SIGV4) signs every request.
// ---------------------------------------------------------------------------

/// Where a baseline's response body goes: copied into `out`, at most `cap`
/// bytes (more fails the transfer), or discarded when `out` is null.
struct body_buffer {
    std::byte* out = nullptr;
    std::int64_t cap = 0, got = 0;

    static std::size_t on_write(char* p, std::size_t sz, std::size_t n, void* self) {
        auto& b = *static_cast<body_buffer*>(self);
        const auto len = static_cast<std::int64_t>(sz * n);
        if (b.out == nullptr) return sz * n; // HEAD/DELETE/PUT answers
        if (b.got + len > b.cap) return 0;
        std::memcpy(b.out + b.got, p, static_cast<std::size_t>(len));
        b.got += len;
        return sz * n;
    }
};

class raw_http {
public:
    raw_http(const server& sv, bool sign) : h_(curl_easy_init()), sign_(sign) {
        if (h_ == nullptr) die("curl_easy_init failed");
        curl_easy_setopt(h_, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h_, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(h_, CURLOPT_WRITEFUNCTION, &body_buffer::on_write);
        curl_easy_setopt(h_, CURLOPT_WRITEDATA, &body_);
        curl_easy_setopt(h_, CURLOPT_READFUNCTION, &raw_http::on_read);
        curl_easy_setopt(h_, CURLOPT_READDATA, this);
        curl_easy_setopt(h_, CURLOPT_ERRORBUFFER, errbuf_);
        if (!sv.ca_file.empty()) curl_easy_setopt(h_, CURLOPT_CAINFO, sv.ca_file.c_str());
        // No "Expect: 100-continue" round trip, like our driver. Not when
        // libcurl signs: 7.88 signs the "Expect:" removal line as a header it
        // then does not send (RGW: SignatureDoesNotMatch), so signed PUTs of
        // more than 1 MiB pay the 100-continue round trip.
        if (!sign_) hdrs_ = curl_slist_append(hdrs_, "Expect:");
        if (sign_) {
            sigv4_ = "aws:amz:" + sv.region + ":s3";
            curl_easy_setopt(h_, CURLOPT_AWS_SIGV4, sigv4_.c_str());
            curl_easy_setopt(h_, CURLOPT_USERNAME, sv.access.c_str());
            curl_easy_setopt(h_, CURLOPT_PASSWORD, sv.secret.c_str());
            // curl 7.88 does not add x-amz-content-sha256 itself; it signs the one given.
            hdrs_ = curl_slist_append(hdrs_, ("x-amz-content-sha256: " + std::string(empty_sha256)).c_str());
        }
        curl_easy_setopt(h_, CURLOPT_HTTPHEADER, hdrs_);
    }
    raw_http(const raw_http&) = delete;
    raw_http& operator=(const raw_http&) = delete;
    ~raw_http() {
        curl_easy_cleanup(h_);
        curl_slist_free_all(hdrs_);
    }

    /// Ranged GET of [off, off+n) into out; true on 206 (or 200 for the whole object) with exactly n bytes.
    bool get(const std::string& url, std::int64_t off, std::int64_t n, std::byte* out) {
        char range[64];
        std::snprintf(range, sizeof range, "%lld-%lld", static_cast<long long>(off),
                      static_cast<long long>(off + n - 1));
        body_ = {out, n, 0};
        curl_easy_setopt(h_, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(h_, CURLOPT_URL, url.c_str());
        curl_easy_setopt(h_, CURLOPT_RANGE, range);
        const long st = perform("GET");
        curl_easy_setopt(h_, CURLOPT_RANGE, nullptr);
        if ((st != 206 && st != 200) || body_.got != n) return bad("GET", st);
        return true;
    }

    /// HEAD; returns the status (0 on a transport error), the length in *len.
    long head(const std::string& url, std::int64_t* len = nullptr) {
        body_.out = nullptr;
        curl_easy_setopt(h_, CURLOPT_URL, url.c_str());
        curl_easy_setopt(h_, CURLOPT_NOBODY, 1L);
        const long st = perform("HEAD");
        curl_easy_setopt(h_, CURLOPT_NOBODY, 0L);
        if (len != nullptr) {
            curl_off_t cl = -1;
            curl_easy_getinfo(h_, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
            *len = cl;
        }
        return st;
    }

    /// PUT of body; `payload_hash` is sent (and signed) as x-amz-content-sha256 when signing.
    long put(const std::string& url, std::span<const std::byte> body, const std::string& payload_hash = {}) {
        body_.out = nullptr;
        in_ = body;
        in_pos_ = 0;
        curl_slist* h = nullptr;
        if (sign_) {
            h = curl_slist_append(h, ("x-amz-content-sha256: " + payload_hash).c_str());
            curl_easy_setopt(h_, CURLOPT_HTTPHEADER, h);
        }
        curl_easy_setopt(h_, CURLOPT_URL, url.c_str());
        curl_easy_setopt(h_, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h_, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body.size()));
        const long st = perform("PUT");
        curl_easy_setopt(h_, CURLOPT_UPLOAD, 0L);
        if (sign_) {
            curl_easy_setopt(h_, CURLOPT_HTTPHEADER, hdrs_);
            curl_slist_free_all(h);
        }
        return st;
    }

    long del(const std::string& url) {
        body_.out = nullptr;
        curl_easy_setopt(h_, CURLOPT_URL, url.c_str());
        curl_easy_setopt(h_, CURLOPT_CUSTOMREQUEST, "DELETE");
        curl_easy_setopt(h_, CURLOPT_NOBODY, 1L);
        const long st = perform("DELETE");
        curl_easy_setopt(h_, CURLOPT_CUSTOMREQUEST, nullptr);
        curl_easy_setopt(h_, CURLOPT_NOBODY, 0L);
        return st;
    }

    /// One more request header line on every request from now on.
    void add_header(const std::string& line) {
        hdrs_ = curl_slist_append(hdrs_, line.c_str());
        curl_easy_setopt(h_, CURLOPT_HTTPHEADER, hdrs_);
    }

    long connects() const {
        long n = 0;
        curl_easy_getinfo(h_, CURLINFO_NUM_CONNECTS, &n);
        return n;
    }

private:
    long perform(const char* what) {
        errbuf_[0] = '\0';
        const CURLcode rc = curl_easy_perform(h_);
        if (rc != CURLE_OK) {
            report_failure(std::string("raw libcurl ") + what, std::string(curl_easy_strerror(rc)) + ": " + errbuf_);
            return 0;
        }
        long st = 0;
        curl_easy_getinfo(h_, CURLINFO_RESPONSE_CODE, &st);
        return st;
    }
    bool bad(const char* what, long st) const {
        report_failure(std::string("raw libcurl ") + what, "HTTP " + std::to_string(st) + ", " + std::to_string(body_.got) +
                                                               " of " + std::to_string(body_.cap) + " bytes");
        return false;
    }
    static std::size_t on_read(char* p, std::size_t sz, std::size_t n, void* self) {
        auto& x = *static_cast<raw_http*>(self);
        const std::size_t k = std::min(sz * n, x.in_.size() - x.in_pos_);
        std::memcpy(p, x.in_.data() + x.in_pos_, k);
        x.in_pos_ += k;
        return k;
    }

    CURL* h_;
    bool sign_;
    std::string sigv4_;
    curl_slist* hdrs_ = nullptr;
    char errbuf_[CURL_ERROR_SIZE] = {};
    body_buffer body_;
    std::span<const std::byte> in_;
    std::size_t in_pos_ = 0;
};

// ---------------------------------------------------------------------------
// Baseline 2: libs3 (Debian libs3 2.0: signs with AWS Signature Version 2,
// "Authorization: AWS id:base64(HMAC-SHA1)"; blocking requests on pooled
// libcurl handles).
// ---------------------------------------------------------------------------

#if CACHESTORE_BENCH_LIBS3
class libs3_client {
public:
    explicit libs3_client(const server& sv)
        : host_(sv.hostport), bucket_(sv.bucket), access_(sv.access), secret_(sv.secret) {
        restart();
        ctx_.hostName = host_.c_str();
        ctx_.bucketName = bucket_.c_str();
        ctx_.protocol = S3ProtocolHTTP;
        ctx_.uriStyle = S3UriStylePath;
        ctx_.accessKeyId = access_.c_str();
        ctx_.secretAccessKey = secret_.c_str();
    }

    bool get(const std::string& key, std::int64_t off, std::int64_t n, std::byte* out) const {
        call c;
        c.out = out;
        c.cap = n;
        S3GetObjectHandler h{{&call::on_props, &call::on_done}, &call::on_data};
        S3_get_object(&ctx_, key.c_str(), nullptr, static_cast<std::uint64_t>(off), static_cast<std::uint64_t>(n),
                      nullptr, &h, &c);
        if (c.status != S3StatusOK || c.got != n) {
            report_failure("libs3 GET", std::string(S3_get_status_name(c.status)) + ", " + std::to_string(c.got) +
                                            " of " + std::to_string(n) + " bytes");
            return false;
        }
        return true;
    }

    /// S3StatusOK, or the failure status (404 is S3StatusHttpErrorNotFound/ErrorNoSuchKey).
    S3Status head(const std::string& key, std::int64_t* len = nullptr) const {
        call c;
        S3ResponseHandler h{&call::on_props, &call::on_done};
        S3_head_object(&ctx_, key.c_str(), nullptr, &h, &c);
        if (len != nullptr) *len = c.length;
        return c.status;
    }

    S3Status put(const std::string& key, std::span<const std::byte> body) const {
        call c;
        c.in = body;
        S3PutObjectHandler h{{&call::on_props, &call::on_done}, &call::on_put};
        S3_put_object(&ctx_, key.c_str(), body.size(), nullptr, nullptr, &h, &c);
        return c.status;
    }

    S3Status del(const std::string& key) const {
        call c;
        S3ResponseHandler h{&call::on_props, &call::on_done};
        S3_delete_object(&ctx_, key.c_str(), nullptr, &h, &c);
        return c.status;
    }

    /// (Re)initialises libs3, which drops its pool of libcurl handles and their connections.
    void restart() {
        static bool up = false;
        if (up) S3_deinitialize();
        const S3Status init = S3_initialize("cachestore-bench", S3_INIT_ALL, host_.c_str());
        if (init != S3StatusOK) die(std::string("S3_initialize: ") + S3_get_status_name(init));
        up = true;
    }

    static bool not_found(S3Status s) { return s == S3StatusHttpErrorNotFound || s == S3StatusErrorNoSuchKey; }

private:
    struct call {
        S3Status status = S3StatusInternalError;
        std::byte* out = nullptr;
        std::int64_t cap = 0, got = 0, length = -1;
        std::span<const std::byte> in;
        std::size_t in_pos = 0;
        static S3Status on_props(const S3ResponseProperties* p, void* self) {
            static_cast<call*>(self)->length = static_cast<std::int64_t>(p->contentLength);
            return S3StatusOK;
        }
        static void on_done(S3Status st, const S3ErrorDetails*, void* self) { static_cast<call*>(self)->status = st; }
        static S3Status on_data(int size, const char* buf, void* self) {
            auto& c = *static_cast<call*>(self);
            if (c.got + size > c.cap) return S3StatusAbortedByCallback;
            std::memcpy(c.out + c.got, buf, static_cast<std::size_t>(size));
            c.got += size;
            return S3StatusOK;
        }
        static int on_put(int size, char* buf, void* self) {
            auto& c = *static_cast<call*>(self);
            const std::size_t k = std::min(static_cast<std::size_t>(size), c.in.size() - c.in_pos);
            std::memcpy(buf, c.in.data() + c.in_pos, k);
            c.in_pos += k;
            return static_cast<int>(k);
        }
    };

    std::string host_, bucket_, access_, secret_;
    S3BucketContext ctx_{};
};
#endif

// ---------------------------------------------------------------------------
// Baseline 2 (issue 22): raw libcurl's multi interface on one thread,
// `width` transfers at a time, each finished one put back at once. What one
// event-loop thread can do at best; the async engine adds signing, response
// checks and its queue on top.
// ---------------------------------------------------------------------------

class multi_pump {
public:
    /// With `header_lines`, those are sent instead of CURLOPT_RANGE's line
    /// (the range is then one of them).
    multi_pump(const std::string& url, std::int64_t off, std::int64_t n, int width,
               const std::vector<std::string>& header_lines = {})
        : m_(curl_multi_init()), n_(n), x_(static_cast<std::size_t>(width)) {
        if (m_ == nullptr) die("curl_multi_init failed");
        for (const auto& l : header_lines) headers_ = curl_slist_append(headers_, l.c_str());
        curl_multi_setopt(m_, CURLMOPT_MAXCONNECTS, static_cast<long>(width));
        curl_multi_setopt(m_, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(width));
        std::snprintf(range_, sizeof range_, "%lld-%lld", static_cast<long long>(off), static_cast<long long>(off + n - 1));
        for (auto& x : x_) {
            x.e = curl_easy_init();
            if (x.e == nullptr) die("curl_easy_init failed");
            x.buf.resize(static_cast<std::size_t>(n));
            x.body = {x.buf.data(), n, 0};
            curl_easy_setopt(x.e, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(x.e, CURLOPT_TCP_KEEPALIVE, 1L);
            curl_easy_setopt(x.e, CURLOPT_URL, url.c_str());
            if (headers_ != nullptr) curl_easy_setopt(x.e, CURLOPT_HTTPHEADER, headers_);
            else curl_easy_setopt(x.e, CURLOPT_RANGE, range_);
            curl_easy_setopt(x.e, CURLOPT_WRITEFUNCTION, &body_buffer::on_write);
            curl_easy_setopt(x.e, CURLOPT_WRITEDATA, &x.body);
            curl_easy_setopt(x.e, CURLOPT_PRIVATE, &x);
            if (curl_multi_add_handle(m_, x.e) != CURLM_OK) die("curl_multi_add_handle failed");
        }
    }
    multi_pump(const multi_pump&) = delete;
    multi_pump& operator=(const multi_pump&) = delete;
    ~multi_pump() {
        for (auto& x : x_) {
            curl_multi_remove_handle(m_, x.e);
            curl_easy_cleanup(x.e);
        }
        curl_multi_cleanup(m_);
        curl_slist_free_all(headers_);
    }

    /// Returns once one more GET completed whole (false on a failed one).
    bool next() {
        while (ready_ == 0) {
            int running = 0;
            if (curl_multi_perform(m_, &running) != CURLM_OK) return (report_failure("raw multi", "perform failed"), false);
            int queued = 0;
            while (CURLMsg* msg = curl_multi_info_read(m_, &queued)) {
                if (msg->msg != CURLMSG_DONE) continue;
                void* priv = nullptr;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
                auto& x = *static_cast<xfer*>(priv);
                long st = 0;
                curl_easy_getinfo(x.e, CURLINFO_RESPONSE_CODE, &st);
                if (msg->data.result != CURLE_OK || st != 206 || x.body.got != n_)
                    return (report_failure("raw multi GET", std::string(curl_easy_strerror(msg->data.result)) + ", HTTP " +
                                                                std::to_string(st)),
                            false);
                ++ready_;
                x.body.got = 0;
                curl_multi_remove_handle(m_, x.e); // and again at once: a new transfer, its connection kept
                curl_multi_add_handle(m_, x.e);
            }
            if (ready_ == 0) curl_multi_poll(m_, nullptr, 0, 1000, nullptr);
        }
        --ready_;
        return true;
    }

private:
    struct xfer {
        CURL* e = nullptr;
        std::vector<std::byte> buf;
        body_buffer body; ///< into buf
    };

    CURLM* m_;
    std::int64_t n_;
    std::vector<xfer> x_;
    char range_[64] = {};
    int ready_ = 0;
    curl_slist* headers_ = nullptr;
};

/// The header lines s3::store sends for a GET of `o`'s [off, off + n), signed
/// once (the same names, values and lengths; nginx checks no signature): what
/// the multi_pump row with them costs is what those bytes cost libcurl and
/// the server.
std::vector<std::string> store_get_header_lines(const server& sv, const std::string& object_key, std::int64_t off,
                                                std::int64_t n) {
    const std::string amz_date = s3::sigv4::format_amz_date(std::chrono::system_clock::now());
    const std::string range = "bytes=" + std::to_string(off) + "-" + std::to_string(off + n - 1);
    std::vector<std::pair<std::string, std::string>> h{{"host", sv.hostport},
                                                       {"x-amz-date", amz_date},
                                                       {"x-amz-content-sha256", std::string(s3::sigv4::unsigned_payload)},
                                                       {"range", range}};
    s3::sigv4::request req;
    req.method = "GET";
    const std::string uri = "/" + sv.bucket + "/" + s3::sigv4::uri_encode(object_key, false);
    req.canonical_uri = uri;
    req.headers = h;
    req.payload_hash = s3::sigv4::unsigned_payload;
    const auto sig = s3::sigv4::signer(sv.region).sign(s3::credentials{sv.access, sv.secret, {}}, req, amz_date);
    std::vector<std::string> lines;
    lines.reserve(h.size() + 2);
    for (const auto& [k, v] : h) lines.push_back(std::string(k).append(": ").append(v));
    lines.push_back("authorization: " + sig.authorization);
    lines.emplace_back("User-Agent: cachestore/0.1");
    return lines;
}

// ---------------------------------------------------------------------------
// Timing: a persistent pool of worker threads, and a loop that runs one
// operation until a time budget (and a minimum count) is reached.
// ---------------------------------------------------------------------------

/// An operation: returns false on failure; may add time it does not want
/// measured (e.g. the DELETE between two commits) to `untimed`.
using op_fn = std::function<bool(int tid, clk::duration& untimed)>;

struct budget {
    double seconds = 0.4;
    long min_ops = 1;
    long max_ops = 1L << 40;
};

class worker_pool {
public:
    explicit worker_pool(int n) {
        for (int i = 0; i < n; ++i) threads_.emplace_back([this, i] { loop(i); });
    }
    worker_pool(const worker_pool&) = delete;
    worker_pool& operator=(const worker_pool&) = delete;
    ~worker_pool() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        for (auto& t : threads_) t.join();
    }
    [[nodiscard]] int size() const { return static_cast<int>(threads_.size()); }

    /// Runs job(tid) once on each of the first `n` workers; returns when all are done.
    void run(int n, const std::function<void(int)>& job) {
        std::unique_lock lock(mu_);
        job_ = &job;
        active_ = n;
        pending_ = n;
        ++gen_;
        cv_.notify_all();
        done_.wait(lock, [this] { return pending_ == 0; });
        job_ = nullptr;
    }

private:
    void loop(int id) {
        std::uint64_t seen = 0;
        for (;;) {
            const std::function<void(int)>* job = nullptr;
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stop_ || gen_ != seen; });
                if (stop_) return;
                seen = gen_;
                if (id >= active_) continue;
                job = job_;
            }
            (*job)(id);
            std::lock_guard lock(mu_);
            if (--pending_ == 0) done_.notify_all();
        }
    }

    std::vector<std::thread> threads_;
    std::mutex mu_;
    std::condition_variable cv_, done_;
    const std::function<void(int)>* job_ = nullptr;
    std::uint64_t gen_ = 0;
    int active_ = 0, pending_ = 0;
    bool stop_ = false;
};

worker_pool* g_pool = nullptr;

struct sample {
    double ops = 0;
    double secs = 0;
    double cpu = 0; ///< CPU seconds (user + system) of the threads that ran the operation
    bool ok = true;
};

double cpu_clock_seconds(clockid_t c) {
    timespec ts{};
    clock_gettime(c, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}
double thread_cpu_seconds() { return cpu_clock_seconds(CLOCK_THREAD_CPUTIME_ID); }
double process_cpu_seconds() { return cpu_clock_seconds(CLOCK_PROCESS_CPUTIME_ID); }

/// Runs `op` on `threads` threads until `b` is used up; ops and seconds (minus
/// untimed parts). CPU: those threads', or with `process_cpu` the whole
/// process's (an operation that works on threads of its own: the async engine).
sample measure(int threads, const op_fn& op, const budget& b, bool process_cpu = false) {
    const double process0 = process_cpu ? process_cpu_seconds() : 0.0;
    std::atomic<long> total_ops{0};
    std::atomic<bool> failed{false};
    std::atomic<long long> untimed_ns{0};
    std::atomic<long long> cpu_ns{0};
    auto body = [&](int tid) {
        long n = 0;
        clk::duration untimed{};
        const double cpu0 = thread_cpu_seconds();
        const auto t0 = clk::now();
        const auto limit = std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(b.seconds));
        for (;;) {
            if (failed.load(std::memory_order_relaxed)) break;
            if (!op(tid, untimed)) {
                failed = true;
                break;
            }
            ++n;
            if (n >= b.max_ops) break;
            if (n >= b.min_ops && clk::now() - t0 - untimed >= limit) break;
        }
        total_ops += n;
        untimed_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(untimed).count();
        cpu_ns += static_cast<long long>((thread_cpu_seconds() - cpu0) * 1e9);
    };
    const auto t0 = clk::now();
    if (threads == 1) {
        body(0);
    } else {
        g_pool->run(threads, body);
    }
    sample s;
    s.secs = std::chrono::duration<double>(clk::now() - t0).count() -
             static_cast<double>(untimed_ns.load()) * 1e-9 / threads;
    s.ops = static_cast<double>(total_ops.load());
    s.cpu = process_cpu ? process_cpu_seconds() - process0 : static_cast<double>(cpu_ns.load()) * 1e-9;
    s.ok = !failed;
    return s;
}

// ---------------------------------------------------------------------------
// Ratio rows
// ---------------------------------------------------------------------------

struct side {
    int threads = 1;
    op_fn op;
    bool process_cpu = false; ///< see measure()
};

struct ratio_row {
    std::string name;
    std::string baseline;
    double bytes_per_op = 0; ///< for MiB/s display
    double target = 0;       ///< ours/baseline must be >= this (0: informational)
    budget b;
    side ours, base;
};

struct ratio_result {
    std::string name, baseline;
    double ours_cpu_us = 0, base_cpu_us = 0; ///< client CPU per operation (median over runs)
    double ours_rate = 0, base_rate = 0, med = 0, lo = 0, hi = 0, target = 0, bytes_per_op = 0;
    int runs = 0;
    bool ok = false;
    std::string note;
};

std::vector<ratio_result> g_rows;
std::function<void()> g_prepare; ///< run before the first selected row (uploads the objects)

void run_row(const ratio_row& row) {
    if (!selected(row.name + " vs " + row.baseline)) return;
    if (g_prepare) g_prepare();
    ratio_result r;
    r.name = row.name;
    r.baseline = row.baseline;
    r.target = row.target;
    r.bytes_per_op = row.bytes_per_op;
    budget b = row.b;
    int runs = g_opt.runs;
    if (g_opt.smoke) {
        b = budget{0.0, 2, 2};
        runs = 1;
    }
    std::fprintf(stderr, "bench: %s vs %s ...\n", row.name.c_str(), row.baseline.c_str());
    // Warm-up: connections, page cache, thread-local state.
    budget warm{0.0, std::min<long>(b.min_ops, 3), std::min<long>(b.min_ops, 3)};
    if (!measure(row.ours.threads, row.ours.op, warm, row.ours.process_cpu).ok ||
        !measure(row.base.threads, row.base.op, warm, row.base.process_cpu).ok) {
        r.note = "failed (see stderr)";
        g_rows.push_back(r);
        return;
    }
    // Each run interleaves `slices` slices of each side (the order flips every
    // slice), so a burst of load from elsewhere on the machine hits both.
    const int slices = g_opt.smoke ? 1 : 4;
    budget sb = b;
    sb.seconds = b.seconds / slices;
    sb.min_ops = std::max<long>(1, (b.min_ops + slices - 1) / slices);
    std::vector<double> ours, base, ratio, ours_cpu, base_cpu;
    for (int i = 0; i < runs; ++i) {
        sample o, s;
        for (int k = 0; k < slices; ++k) {
            for (int pass = 0; pass < 2; ++pass) {
                const bool ours_now = (pass == 0) == ((i + k) % 2 == 0);
                const sample x = ours_now ? measure(row.ours.threads, row.ours.op, sb, row.ours.process_cpu)
                                          : measure(row.base.threads, row.base.op, sb, row.base.process_cpu);
                sample& acc = ours_now ? o : s;
                acc.ops += x.ops;
                acc.secs += x.secs;
                acc.cpu += x.cpu;
                acc.ok = acc.ok && x.ok;
            }
        }
        if (!o.ok || !s.ok || o.ops <= 0 || s.ops <= 0) {
            r.note = "failed (see stderr)";
            g_rows.push_back(r);
            return;
        }
        ours.push_back(o.ops / o.secs);
        base.push_back(s.ops / s.secs);
        ratio.push_back(ours.back() / base.back());
        ours_cpu.push_back(o.cpu / o.ops * 1e6);
        base_cpu.push_back(s.cpu / s.ops * 1e6);
    }
    r.ours_cpu_us = median(ours_cpu);
    r.base_cpu_us = median(base_cpu);
    r.ours_rate = median(ours);
    r.base_rate = median(base);
    r.med = median(ratio);
    r.lo = *std::min_element(ratio.begin(), ratio.end());
    r.hi = *std::max_element(ratio.begin(), ratio.end());
    r.runs = runs;
    r.ok = true;
    g_rows.push_back(r);
}

// ---------------------------------------------------------------------------
// Measurements (not ratios)
// ---------------------------------------------------------------------------

struct measurement {
    std::string what, ours, baseline, note;
};
std::vector<measurement> g_meas;

/// The client-side ports of every TCP connection whose other end is
/// 127.0.0.1:port, from the kernel's socket table. Both ends live in this
/// network namespace, so a connection shows up while either end exists
/// (ESTABLISHED, or TIME_WAIT for 60 s after a close).
std::set<unsigned> peer_ports(int port) {
    std::set<unsigned> out;
    std::ifstream f("/proc/net/tcp");
    std::string line;
    std::getline(f, line); // header
    while (std::getline(f, line)) {
        std::istringstream is(line);
        std::string sl, local, remote, state;
        is >> sl >> local >> remote >> state;
        if (state == "0A") continue; // LISTEN
        const auto lp = std::stoul(local.substr(local.find(':') + 1), nullptr, 16);
        const auto rp = std::stoul(remote.substr(remote.find(':') + 1), nullptr, 16);
        if (lp == static_cast<unsigned long>(port))
            out.insert(static_cast<unsigned>(rp));
        else if (rp == static_cast<unsigned long>(port))
            out.insert(static_cast<unsigned>(lp));
    }
    return out;
}

std::size_t new_ports(const std::set<unsigned>& before, const std::set<unsigned>& after) {
    std::size_t n = 0;
    for (unsigned p : after)
        if (!before.contains(p)) ++n;
    return n;
}

using test_support::reset_peak_rss;
using test_support::status_kib;

// ---------------------------------------------------------------------------
// callgrind: children run one operation N times with collection toggled on
// around the loop; the parent reads the totals and the memcpy share.
// ---------------------------------------------------------------------------

/// Bytes added to a raw 4 KiB GET by the get-small-raw-hpad / -qpad children:
/// about what SigV4 adds to a request (x-amz-date, x-amz-content-sha256, Authorization).
constexpr std::size_t cg_pad_bytes = 300;

struct cg_totals {
    bool ok = false;
    double ir = 0;        ///< instructions executed while collecting
    double memcpy_ir = 0; ///< of which in memcpy/memmove
};

cg_totals parse_callgrind(const std::string& file) {
    cg_totals t;
    std::ifstream f(file);
    if (!f) return t;
    std::string line;
    std::map<std::string, std::string> fn_names; // "(id)" -> name
    bool in_memcpy = false, skip_next = false;
    while (std::getline(f, line)) {
        if (line.starts_with("totals:") || line.starts_with("summary:")) {
            const auto ir = parse_number<double>(skip_blanks(std::string_view(line).substr(line.find(':') + 1)), false);
            t.ir = ir.value_or(0);
            t.ok = ir.has_value();
            continue;
        }
        // Function names are compressed: the first "fn=(id) name" or
        // "cfn=(id) name" defines the id, later ones give "(id)" alone.
        const bool is_fn = line.starts_with("fn="), is_cfn = line.starts_with("cfn=");
        if (is_fn || is_cfn) {
            const std::string v = line.substr(is_fn ? 3 : 4);
            std::string name = v;
            if (v.starts_with("(")) {
                const auto close = v.find(')');
                const std::string id = v.substr(0, close + 1);
                if (close + 2 < v.size()) fn_names[id] = v.substr(close + 2);
                name = fn_names[id];
            }
            if (is_fn)
                in_memcpy = name.find("memcpy") != std::string::npos || name.find("memmove") != std::string::npos;
            continue;
        }
        if (line.starts_with("calls=")) {
            skip_next = true; // the next cost line is the callee's inclusive cost
            continue;
        }
        if (line.empty() ||
            !(std::isdigit(static_cast<unsigned char>(line[0])) || line[0] == '+' || line[0] == '-' || line[0] == '*'))
            continue;
        if (skip_next) {
            skip_next = false;
            continue;
        }
        if (in_memcpy) {
            const auto sp = line.find(' ');
            if (sp != std::string::npos)
                t.memcpy_ir +=
                    parse_number<double>(skip_blanks(std::string_view(line).substr(sp + 1)), false).value_or(0);
        }
    }
    return t;
}

/// Whether `valgrind --version` runs and exits 0 (its output discarded).
bool have_valgrind() {
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0) return false;
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    const char* argv[] = {"valgrind", "--version", nullptr};
    pid_t pid = 0;
    const int rc = posix_spawnp(&pid, "valgrind", &fa, nullptr, const_cast<char* const*>(argv), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return false;
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

cg_totals run_callgrind_child(const std::string& what, long iters) {
    char tmpl[] = "/tmp/cachestore-bench-cg-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd < 0) return {};
    close(fd);
    const std::string out = tmpl;
    const pid_t pid = fork();
    if (pid == 0) {
        const std::string outarg = "--callgrind-out-file=" + out;
        const std::string it = std::to_string(iters);
        const char* argv[] = {
            "valgrind", "--tool=callgrind",   "--collect-atstart=no", "--quiet",    outarg.c_str(), g_opt.self.c_str(),
            "--target", g_opt.target.c_str(), "--cg-child",           what.c_str(), "--cg-iters",   it.c_str(),
            nullptr};
        execvp("valgrind", const_cast<char* const*>(argv));
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    cg_totals t;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        t = parse_callgrind(out);
    else
        report_failure("callgrind " + what, "child exited with status " + std::to_string(status));
    std::remove(out.c_str());
    return t;
}

// ---------------------------------------------------------------------------
// The benchmark proper
// ---------------------------------------------------------------------------

struct fixture {
    server sv;
    s3::store st;
    cachestore::context ctx;
    object small, large8, large64, commit, stream64;
    std::vector<std::byte> small_body, body8, body64;
    std::vector<std::byte> buf8, buf64;
    std::vector<std::vector<std::byte>> small_bufs; ///< one per thread
    std::vector<std::unique_ptr<raw_http>> raw;     ///< one per thread, unsigned
    std::vector<std::unique_ptr<raw_http>> raw_sig; ///< one per thread, CURLOPT_AWS_SIGV4
#if CACHESTORE_BENCH_LIBS3
    std::unique_ptr<libs3_client> libs3;
#endif
    std::int64_t small_off = 64 * KiB, small_len = 4 * KiB;

    /// `light`: no bodies (the callgrind children only read what the parent uploaded).
    explicit fixture(server s, bool light = false) : sv(std::move(s)), st(make_store(sv)) {
        small = make_object(sv, st, "small-1MiB.bin", 1 * MiB);
        large8 = make_object(sv, st, "large-8MiB.bin", 8 * MiB);
        large64 = make_object(sv, st, "large-64MiB.bin", 64 * MiB);
        commit = make_object(sv, st, "commit-8MiB.bin", 8 * MiB);
        stream64 = make_object(sv, st, "commit-64MiB.bin", 64 * MiB);
        buf8.resize(static_cast<std::size_t>(8 * MiB));
        std::memset(buf8.data(), 1, buf8.size());
        if (!light) {
            small_body = pattern(small.size, 1);
            body8 = pattern(8 * MiB, 2);
            body64 = pattern(64 * MiB, 3);
            buf64.resize(static_cast<std::size_t>(64 * MiB));
            std::memset(buf64.data(), 1, buf64.size());
        }
        for (int i = 0; i < 8; ++i) {
            small_bufs.emplace_back(static_cast<std::size_t>(small_len));
            raw.push_back(std::make_unique<raw_http>(sv, !!sv.auth));
            raw_sig.push_back(std::make_unique<raw_http>(sv, true));
        }
#if CACHESTORE_BENCH_LIBS3
        libs3 = std::make_unique<libs3_client>(sv);
#endif
    }

    bool uploaded = false;
    /// Uploads the GET objects (replacing old ones), once.
    void upload() {
        if (uploaded) return;
        uploaded = true;
        for (auto* o : {&small, &large8, &large64}) {
            const auto& body = o == &small ? small_body : o == &large8 ? body8 : body64;
            if (auto r = st.remove(ctx, o->key); !r) die("remove " + o->object_key + ": " + r.error().to_string());
            if (auto r = st.put_chunk(ctx, o->key, o->size, std::span<const std::byte>(body)); !r)
                die("put_chunk " + o->object_key + ": " + r.error().to_string());
        }
        (void)st.remove(ctx, commit.key);
        (void)st.remove(ctx, stream64.key);
    }
    /// Removes what upload() put, if it ran.
    void remove_uploaded() {
        if (uploaded)
            for (auto* o : {&small, &large8, &large64}) (void)st.remove(ctx, o->key);
    }

    /// The raw client to use for plain-HTTP baselines (signs only when the server demands it).
    raw_http& plain(int tid) { return *raw[static_cast<std::size_t>(tid)]; }
};

bool ours_get_small(fixture& f, int tid) {
    auto& buf = f.small_bufs[static_cast<std::size_t>(tid)];
    auto r = cachestore::get_chunk(f.st, f.ctx, f.small.key, f.small_off, std::span<std::byte>(buf));
    if (!r) report_failure("ours get_chunk 4 KiB", r.error().to_string());
    return r.has_value();
}

bool ours_get_large(fixture& f, const object& o, std::vector<std::byte>& buf) {
    auto r = cachestore::get_chunk(f.st, f.ctx, o.key, 0,
                                   std::span<std::byte>(buf.data(), static_cast<std::size_t>(o.size)));
    if (!r) report_failure("ours get_chunk " + o.object_key, r.error().to_string());
    return r.has_value();
}

bool ours_commit(fixture& f, clk::duration& untimed) {
    auto r = f.st.put_chunk(f.ctx, f.commit.key, f.commit.size, std::span<const std::byte>(f.body8));
    if (!r) {
        report_failure("ours put_chunk 8 MiB", r.error().to_string());
        return false;
    }
    const auto t = clk::now();
    auto d = f.st.remove(f.ctx, f.commit.key);
    untimed += clk::now() - t;
    if (!d) report_failure("ours remove", d.error().to_string());
    return d.has_value();
}

bool ours_stat(fixture& f) {
    auto r = f.st.stat(f.ctx, f.small.key);
    if (!r)
        report_failure("ours stat", r.error().to_string());
    else if (r->size != f.small.size)
        report_failure("ours stat", "wrong size " + std::to_string(r->size));
    return r.has_value() && r->size == f.small.size;
}

bool raw_commit(fixture& f, raw_http& c, bool hash, clk::duration& untimed) {
    const long h = c.head(f.commit.url);
    if (h != 404) return (report_failure("raw HEAD before PUT", "HTTP " + std::to_string(h)), false);
    // Not hashed: what a signing client sends over TLS (nginx ignores it).
    std::string digest = hash ? sha256_hex(f.body8) : std::string("UNSIGNED-PAYLOAD");
    const long p = c.put(f.commit.url, f.body8, digest);
    if (p != 200 && p != 201 && p != 204) return (report_failure("raw PUT", "HTTP " + std::to_string(p)), false);
    const auto t = clk::now();
    const long d = c.del(f.commit.url);
    untimed += clk::now() - t;
    if (d != 204 && d != 200) return (report_failure("raw DELETE", "HTTP " + std::to_string(d)), false);
    return true;
}

bool raw_stat(fixture& f, raw_http& c) {
    std::int64_t len = -1;
    const long s = c.head(f.small.url, &len);
    if (s != 200 || len != f.small.size)
        return (report_failure("raw HEAD", "HTTP " + std::to_string(s) + " length " + std::to_string(len)), false);
    return true;
}

/// Commit with a caller-supplied SHA-256, only with a driver that offers it
/// (put_chunk_prehashed is a proposed API; see docs/performance.md).
template <class Store>
void prehashed_row(fixture& f, Store& st, const std::string& rawname, const budget& b, bool nginx) {
    if constexpr (requires(Store & s, const cachestore::context& c, const cachestore::chunk_key& k,
                           std::span<const std::byte> bytes) {
                      s.put_chunk_prehashed(c, k, bytes, std::string_view());
                  }) {
        static const std::string digest = sha256_hex(f.body8);
        run_row({"commit 8 MiB, caller-supplied SHA-256 (put_chunk_prehashed)", rawname + " HEAD + PUT", 8.0 * MiB,
                 0.90, b,
                 side{1,
                      [&f, &st](int, clk::duration& u) {
                          auto r = st.put_chunk_prehashed(f.ctx, f.commit.key, f.body8, digest);
                          if (!r) return (report_failure("ours put_chunk_prehashed", r.error().to_string()), false);
                          const auto t = clk::now();
                          auto d = st.remove(f.ctx, f.commit.key);
                          u += clk::now() - t;
                          return d.has_value();
                      }},
                 side{1, [&f, nginx](int, clk::duration& u) { return raw_commit(f, f.plain(0), !nginx, u); }}});
    } else {
        (void)f, (void)st, (void)rawname, (void)b, (void)nginx;
    }
}

void ratio_rows(fixture& f) {
    g_prepare = [&f] { f.upload(); };
    const budget small_b{g_opt.seconds, 50};
    const budget large_b{g_opt.seconds, 4};
    const budget huge_b{g_opt.seconds, 3};
    const budget commit_b{g_opt.seconds, 5};
    const bool nginx = f.sv.name == "nginx";
    const bool tls = f.sv.tls(); // bodies go UNSIGNED-PAYLOAD over https (payload_signing auto), for both sides
    const std::string rawname = nginx ? "raw libcurl" : "libcurl + CURLOPT_AWS_SIGV4";
    auto ours_small = side{1, [&f](int tid, clk::duration&) { return ours_get_small(f, tid); }};
    auto ours_small8 = side{8, ours_small.op};
    auto raw_small = side{1, [&f](int tid, clk::duration&) {
                              return f.plain(tid).get(f.small.url, f.small_off, f.small_len,
                                                      f.small_bufs[static_cast<std::size_t>(tid)].data());
                          }};
    auto raw_small8 = side{8, raw_small.op};
    auto ours_large = [&f](object& o, std::vector<std::byte>& buf) {
        return side{1, [&f, &o, &buf](int, clk::duration&) { return ours_get_large(f, o, buf); }};
    };
    auto raw_large = [&f](object& o, std::vector<std::byte>& buf) {
        return side{1, [&f, &o, &buf](int, clk::duration&) { return f.plain(0).get(o.url, 0, o.size, buf.data()); }};
    };
    auto ours_commit_s = side{1, [&f](int, clk::duration& u) { return ours_commit(f, u); }};
    auto ours_stat_s = side{1, [&f](int, clk::duration&) { return ours_stat(f); }};

    // vs raw libcurl (against RGW: libcurl signing with its own SigV4)
    run_row({"GET 4 KiB, 1 thread", rawname, 0, 0.90, small_b, ours_small, raw_small});
    run_row({"GET 4 KiB, 8 threads", rawname, 0, 0.90, small_b, ours_small8, raw_small8});
    if (nginx) {
        // The async engine's ceiling (issue 22): can one thread driving a
        // multi handle match the blocking API's 8 threads? Informational.
        std::unique_ptr<multi_pump> pump;
        run_row({"GET 4 KiB, raw libcurl multi: 1 thread, 32 transfers", "ours, blocking, 8 threads", 0, 0, small_b,
                 side{1,
                      [&f, &pump](int, clk::duration&) {
                          if (!pump) pump = std::make_unique<multi_pump>(f.small.url, f.small_off, f.small_len, 32);
                          return pump->next();
                      }},
                 ours_small8});
        pump.reset();
        // The same with the header lines our store sends (signed once): the
        // share of the ceiling that S3's request headers take.
        run_row({"GET 4 KiB, raw libcurl multi with our header lines: 1 thread, 32 transfers",
                 "ours, blocking, 8 threads", 0, 0, small_b,
                 side{1,
                      [&f, &pump](int, clk::duration&) {
                          if (!pump)
                              pump = std::make_unique<multi_pump>(
                                  f.small.url, f.small_off, f.small_len, 32,
                                  store_get_header_lines(f.sv, f.small.object_key, f.small_off, f.small_len));
                          return pump->next();
                      }},
                 ours_small8});
    }
    run_row({"GET 8 MiB into a span", rawname, 8.0 * MiB, 0.95, large_b, ours_large(f.large8, f.buf8),
             raw_large(f.large8, f.buf8)});
    if (nginx)
        run_row({"GET 64 MiB into a span", rawname, 64.0 * MiB, 0.95, huge_b, ours_large(f.large64, f.buf64),
                 raw_large(f.large64, f.buf64)});
    run_row({tls ? "commit 8 MiB (HEAD + PUT, unsigned payload over https)" : "commit 8 MiB (HEAD + PUT)",
             rawname + (nginx || tls ? " HEAD + PUT" : " HEAD + SHA-256 + PUT"), 8.0 * MiB, tls ? 0.95 : 0.90,
             commit_b, ours_commit_s,
             side{1, [&f, nginx, tls](int, clk::duration& u) { return raw_commit(f, f.plain(0), !nginx && !tls, u); }}});
    if (nginx)
        run_row({"commit 8 MiB (HEAD + PUT)", "raw libcurl HEAD + SHA-256 + PUT", 8.0 * MiB, 0, commit_b, ours_commit_s,
                 side{1, [&f](int, clk::duration& u) { return raw_commit(f, f.plain(0), true, u); }}});
    if (!tls) prehashed_row(f, f.st, rawname, commit_b, nginx);
    run_row({"stat (HEAD)", rawname + " HEAD", 0, 0.90, small_b, ours_stat_s,
             side{1, [&f](int, clk::duration&) { return raw_stat(f, f.plain(0)); }}});
    if (nginx)
        run_row({"GET 4 KiB, 1 thread", "libcurl + CURLOPT_AWS_SIGV4", 0, 0, small_b, ours_small,
                 side{1, [&f](int tid, clk::duration&) {
                          return f.raw_sig[static_cast<std::size_t>(tid)]->get(
                              f.small.url, f.small_off, f.small_len,
                              f.small_bufs[static_cast<std::size_t>(tid)].data());
                      }}});

#if CACHESTORE_BENCH_LIBS3
    if (tls) return; // libs3 speaks SigV2 over http here; it is compared over http only
    auto& l = *f.libs3;
    auto libs3_small = side{1, [&f, &l](int tid, clk::duration&) {
                                return l.get(f.small.object_key, f.small_off, f.small_len,
                                             f.small_bufs[static_cast<std::size_t>(tid)].data());
                            }};
    auto libs3_small8 = side{8, libs3_small.op};
    auto libs3_large = [&l](object& o, std::vector<std::byte>& buf) {
        return side{1, [&l, &o, &buf](int, clk::duration&) { return l.get(o.object_key, 0, o.size, buf.data()); }};
    };
    run_row({"GET 4 KiB, 1 thread", "libs3 (SigV2)", 0, 1.0, small_b, ours_small, libs3_small});
    run_row({"GET 4 KiB, 8 threads", "libs3 (SigV2)", 0, 1.0, small_b, ours_small8, libs3_small8});
    run_row({"GET 8 MiB into a span", "libs3 (SigV2)", 8.0 * MiB, 0, large_b, ours_large(f.large8, f.buf8),
             libs3_large(f.large8, f.buf8)});
    if (nginx)
        run_row({"GET 64 MiB into a span", "libs3 (SigV2)", 64.0 * MiB, 0, huge_b, ours_large(f.large64, f.buf64),
                 libs3_large(f.large64, f.buf64)});
    run_row({"commit 8 MiB (HEAD + PUT)", "libs3 (SigV2) HEAD + PUT", 8.0 * MiB, 0, commit_b, ours_commit_s,
             side{1, [&f, &l](int, clk::duration& u) {
                      const S3Status h = l.head(f.commit.object_key);
                      if (!libs3_client::not_found(h))
                          return (report_failure("libs3 HEAD before PUT", S3_get_status_name(h)), false);
                      const S3Status p = l.put(f.commit.object_key, f.body8);
                      if (p != S3StatusOK) return (report_failure("libs3 PUT", S3_get_status_name(p)), false);
                      const auto t = clk::now();
                      const S3Status d = l.del(f.commit.object_key);
                      u += clk::now() - t;
                      if (d != S3StatusOK) return (report_failure("libs3 DELETE", S3_get_status_name(d)), false);
                      return true;
                  }}});
    run_row({"stat (HEAD)", "libs3 (SigV2) HEAD", 0, 0, small_b, ours_stat_s,
             side{1, [&f, &l](int, clk::duration&) {
                      std::int64_t len = -1;
                      const S3Status s = l.head(f.small.object_key, &len);
                      if (s != S3StatusOK || len != f.small.size)
                          return (report_failure("libs3 HEAD", S3_get_status_name(s)), false);
                      return true;
                  }}});
#else
    for (const char* n : {"GET 4 KiB, 1 thread", "GET 4 KiB, 8 threads", "GET 8 MiB into a span",
                          "commit 8 MiB (HEAD + PUT)", "stat (HEAD)"}) {
        ratio_result r;
        r.name = n;
        r.baseline = "libs3";
        r.note = "n/a: built without libs3-dev";
        g_rows.push_back(r);
    }
#endif
}

// ---- signing --------------------------------------------------------------

void signing_rows(fixture& f) {
    if (!selected("signing")) return;
    std::fprintf(stderr, "bench: signing ...\n");
    s3::credentials creds{f.sv.access, f.sv.secret, {}};
    const std::string amz_date = "20250101T000000Z";
    const std::string uri = "/" + f.sv.bucket + "/" + s3::sigv4::uri_encode(f.small.object_key, false);
    std::vector<std::pair<std::string, std::string>> headers{
        {"host", f.sv.hostport},
        {"x-amz-date", amz_date},
        {"x-amz-content-sha256", std::string(empty_sha256)},
        {"range", "bytes=65536-69631"},
    };
    s3::sigv4::request req;
    req.method = "GET";
    req.canonical_uri = uri;
    req.headers = headers;
    req.payload_hash = empty_sha256;
    const s3::sigv4::signer cached("us-east-1");
    const s3::sigv4::signer derive("us-east-1", "s3", s3::sigv4::key_cache_mode::derive_each_time);
    s3::sigv4::signer::signed_result out;
    const long iters = g_opt.smoke ? 10 : 20000;
    // Thread CPU time, not wall time: on a shared machine the wall clock also
    // counts the time this thread waited for a core.
    auto ns_per = [&](const s3::sigv4::signer& s) {
        const double t0 = thread_cpu_seconds();
        for (long i = 0; i < iters; ++i) s.sign_into(out, creds, req, amz_date);
        return (thread_cpu_seconds() - t0) * 1e9 / static_cast<double>(iters);
    };
    (void)ns_per(cached);
    (void)ns_per(derive);
    std::vector<double> c, d;
    const int runs = g_opt.smoke ? 1 : std::max(5, g_opt.runs);
    for (int i = 0; i < runs; ++i) {
        if (i % 2 == 0) {
            c.push_back(ns_per(cached));
            d.push_back(ns_per(derive));
        } else {
            d.push_back(ns_per(derive));
            c.push_back(ns_per(cached));
        }
    }
    // Cross-check that both produce the same signature.
    s3::sigv4::signer::signed_result a, b;
    cached.sign_into(a, creds, req, amz_date);
    derive.sign_into(b, creds, req, amz_date);
    if (a.authorization != b.authorization) report_failure("signing", "cached and derived keys disagree");
    const double cm = median(c), dm = median(d);
    const double cmin = *std::min_element(c.begin(), c.end()), dmin = *std::min_element(d.begin(), d.end());
    g_meas.push_back({"sigv4 `sign_into`, GET with 4 signed headers: CPU ns/request, median (min) of " +
                          std::to_string(runs) + " × " + std::to_string(iters),
                      fmt("%.0f ns", cm) + fmt(" (%.0f) with the cached key", cmin),
                      fmt("%.0f ns", dm) + fmt(" (%.0f) with derive_each_time", dmin),
                      fmt("cached is %.2fx faster; target <= 1000 ns: ", dm / cm) +
                          (cm <= 1000     ? "met"
                           : cmin <= 1000 ? "met on the best run only (machine busy)"
                                          : "MISSED")});
}

// ---- connections ----------------------------------------------------------

void connection_rows(fixture& f) {
    if (!selected("connections")) return;
    f.upload();
    std::fprintf(stderr, "bench: connections ...\n");
    const long total = g_opt.smoke ? 80 : 10000;
    const int threads = 8;
    auto count = [&](const std::function<bool(int)>& op, long* created) {
        const auto before = peer_ports(f.sv.port);
        const long c0 = g_connects.load();
        std::atomic<bool> failed{false};
        g_pool->run(threads, [&](int tid) {
            for (long i = 0; i < total / threads && !failed; ++i)
                if (!op(tid)) failed = true;
        });
        const long c1 = g_connects.load();
        const auto after = peer_ports(f.sv.port);
        if (created != nullptr) *created = c1 - c0;
        return std::make_pair(new_ports(before, after), failed.load());
    };
    // Ours: a fresh store, so every connection it uses is opened here.
    {
        auto st = make_store(f.sv);
        long conn = 0;
        auto [n, failed] = count(
            [&](int tid) {
                auto r = cachestore::get_chunk(st, f.ctx, f.small.key, f.small_off,
                                               std::span<std::byte>(f.small_bufs[static_cast<std::size_t>(tid)]));
                if (!r) report_failure("ours GET (connections)", r.error().to_string());
                return r.has_value();
            },
            &conn);
        g_meas.push_back(
            {"TCP connections opened for " + std::to_string(total) + " GETs of 4 KiB over 8 threads",
             std::to_string(n) + " (kernel socket table); " + std::to_string(conn) +
                 " connect() calls; "
                 "connections_created() = " +
                 std::to_string(st.connections_created()),
             "",
             std::string("target: one per concurrently active thread (8): ") + (n <= 8 && !failed ? "met" : "MISSED")});
    }
    {
        std::vector<std::unique_ptr<raw_http>> hs;
        hs.reserve(static_cast<std::size_t>(threads));
        for (int i = 0; i < threads; ++i) hs.push_back(std::make_unique<raw_http>(f.sv, f.sv.auth));
        long conn = 0;
        auto [n, failed] = count(
            [&](int tid) {
                return hs[static_cast<std::size_t>(tid)]->get(f.small.url, f.small_off, f.small_len,
                                                              f.small_bufs[static_cast<std::size_t>(tid)].data());
            },
            &conn);
        (void)failed;
        g_meas.back().baseline =
            "raw libcurl (8 easy handles): " + std::to_string(n) + " (kernel); " + std::to_string(conn) + " connect()";
    }
#if CACHESTORE_BENCH_LIBS3
    if (!f.sv.tls()) { // libs3 is compared over http only
        f.libs3->restart(); // a fresh handle pool, like the fresh store and handles above
        long conn = 0;
        auto [n, failed] = count(
            [&](int tid) {
                return f.libs3->get(f.small.object_key, f.small_off, f.small_len,
                                    f.small_bufs[static_cast<std::size_t>(tid)].data());
            },
            &conn);
        (void)failed;
        g_meas.back().baseline += "; libs3: " + std::to_string(n) + " (kernel); " + std::to_string(conn) + " connect()";
    }
#endif
}

// ---- bytes copied ---------------------------------------------------------

void copy_rows(fixture& f) {
    if (!selected("copies")) return;
    f.upload();
    std::fprintf(stderr, "bench: copies ...\n");
    // A counting sink around span_sink: how many bytes reach the caller's span, in how many pieces.
    struct counting_sink {
        cachestore::span_sink inner;
        std::size_t calls = 0, bytes = 0;
        bool operator()(std::span<const std::byte> b) {
            ++calls;
            bytes += b.size();
            return inner(b);
        }
    } sink{cachestore::span_sink(std::span<std::byte>(f.buf64)), 0, 0};
    auto r = f.st.get_chunk(f.ctx, f.large64.key, 0, f.large64.size, sink);
    if (!r) {
        report_failure("ours get_chunk 64 MiB (counting sink)", r.error().to_string());
        return;
    }
    const bool same = std::memcmp(f.buf64.data(), f.body64.data(), f.body64.size()) == 0;
    if (!same) report_failure("ours get_chunk 64 MiB", "bytes differ from what was uploaded");
    g_meas.push_back(
        {"bytes written into the caller's span per 64 MiB get_chunk (counting sink)",
         fmt("%.3f copies", static_cast<double>(sink.bytes) / static_cast<double>(f.large64.size)) + " (" +
             std::to_string(sink.calls) + " sink calls, " +
             fmt("%.1f KiB each", static_cast<double>(sink.bytes) / static_cast<double>(sink.calls) / 1024.0) + ")",
         "", same ? "content verified byte-exact" : "CONTENT MISMATCH"});
}

// ---- peak RSS of put_chunk ------------------------------------------------

void rss_rows(fixture& f) {
    if (!selected("rss")) return;
    f.upload();
    std::fprintf(stderr, "bench: rss ...\n");
    const std::int64_t n = f.stream64.size;
    auto measure_put = [&](const char* what, const std::function<bool()>& put) -> std::string {
        (void)f.st.remove(f.ctx, f.stream64.key);
        const long rss0 = status_kib("VmRSS");
        if (!reset_peak_rss()) return "n/a (cannot reset VmHWM)";
        if (!put()) return std::string("failed: ") + what;
        const long peak = status_kib("VmHWM");
        (void)f.st.remove(f.ctx, f.stream64.key);
        return fmt("+%.1f MiB", static_cast<double>(peak - rss0) / 1024.0) +
               fmt(" (peak %.0f MiB)", static_cast<double>(peak) / 1024.0);
    };
    auto stream_put = [&](s3::store& st) {
        std::int64_t at = 0;
        auto src = [&](std::span<std::byte> b) -> cachestore::result<std::size_t> {
            const auto k =
                static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(b.size()), n - at));
            std::memcpy(b.data(), f.body64.data() + at, k); // generated on the fly; body64 is already resident
            at += static_cast<std::int64_t>(k);
            return k;
        };
        auto r = st.put_chunk(f.ctx, f.stream64.key, n, src);
        if (!r) report_failure("ours put_chunk 64 MiB stream", r.error().to_string());
        return r.has_value();
    };
    const std::string span_res = measure_put("span", [&] {
        auto r = f.st.put_chunk(f.ctx, f.stream64.key, n, std::span<const std::byte>(f.body64));
        if (!r) report_failure("ours put_chunk 64 MiB span", r.error().to_string());
        return r.has_value();
    });
    if (f.sv.name == "nginx") {
        // nginx does not decode aws-chunked bodies, so a signed stream is spooled here.
        const std::string stream_res = measure_put("stream", [&] { return stream_put(f.st); });
        const std::string raw_res = measure_put("raw", [&] {
            const long p = f.plain(0).put(f.stream64.url, f.body64, std::string(empty_sha256));
            return p == 200 || p == 201 || p == 204;
        });
        g_meas.push_back(
            {"peak RSS added by one 64 MiB put_chunk (over RSS before the call; the caller's 64 MiB is resident already)",
             "from a span: " + span_res + "; from a streaming source, spooled (nginx): " + stream_res,
             "raw libcurl PUT from the span: " + raw_res,
             "over http a streaming source is spooled unless self_test proved aws-chunked (nginx cannot)"});
        return;
    }
    // RGW: the streaming source streamed (https: a plain unsigned body; http:
    // signed aws-chunked frames, proven by self_test) against spooled.
    s3::config cfg = f.st.settings();
    cfg.streaming = s3::streaming_upload::spool;
    auto spool = s3::store::create(cfg);
    if (!spool) die("store::create: " + spool.error().to_string());
    cfg.streaming = s3::streaming_upload::stream;
    auto stream = s3::store::create(cfg);
    if (!stream) die("store::create: " + stream.error().to_string());
    if (auto t = stream->self_test(f.ctx); !t) die("self_test: " + t.error().to_string());
    const std::string spooled = measure_put("spooled", [&] { return stream_put(*spool); });
    const std::string streamed = measure_put("streamed", [&] { return stream_put(*stream); });
    g_meas.push_back({std::string("peak RSS added by one 64 MiB put_chunk from a streaming source (") +
                          (f.sv.tls() ? "https: plain unsigned body" : "http: signed aws-chunked frames") + ")",
                      "streamed: " + streamed, "spooled (streaming = spool): " + spooled,
                      "from a span: " + span_res + "; target: streamed <= +1 MiB"});
}

// ---- callgrind ------------------------------------------------------------

void callgrind_rows() {
    if (!selected("callgrind")) return;
    if (!g_opt.callgrind || !BENCH_HAVE_CALLGRIND || !have_valgrind()) {
        g_meas.push_back(
            {"CPU instructions per GET (callgrind)", "n/a", "n/a", "valgrind not installed or --no-callgrind"});
        return;
    }
    std::fprintf(stderr, "bench: callgrind (slow) ...\n");
    const long small_iters = g_opt.smoke ? 5 : 1000, large_iters = g_opt.smoke ? 1 : 4;
    const auto o = run_callgrind_child("get-small-ours", small_iters);
    const auto r = run_callgrind_child("get-small-raw", small_iters);
    if (o.ok && r.ok)
        g_meas.push_back({"user-space instructions per 4 KiB GET (callgrind, " + std::to_string(small_iters) + " GETs)",
                          fmt("%.0f Ir", o.ir / static_cast<double>(small_iters)),
                          fmt("raw libcurl: %.0f Ir", r.ir / static_cast<double>(small_iters)),
                          fmt("ours/raw = %.2f", o.ir / r.ir)});
    // The floor libcurl sets under a signed request: what its request bytes cost it.
    const auto rh = run_callgrind_child("get-small-raw-hpad", small_iters);
    const auto rq = run_callgrind_child("get-small-raw-qpad", small_iters);
    if (r.ok && rh.ok && rq.ok) {
        const auto per_byte = [&](const cg_totals& t) {
            return (t.ir - r.ir) / static_cast<double>(small_iters) / static_cast<double>(cg_pad_bytes);
        };
        g_meas.push_back({"libcurl's instructions per request byte: raw 4 KiB GET with " + std::to_string(cg_pad_bytes) +
                              " more bytes (callgrind)",
                          fmt("in one request header: %.0f Ir/B", per_byte(rh)) +
                              fmt(" (%.0f Ir per GET)", rh.ir / static_cast<double>(small_iters)),
                          fmt("in the query string: %.0f Ir/B", per_byte(rq)) +
                              fmt(" (%.0f Ir per GET)", rq.ir / static_cast<double>(small_iters)),
                          "SigV4 adds ~330 header bytes; presigned URLs would move them into the query"});
    }
    const auto os = run_callgrind_child("stat-ours", small_iters);
    const auto rs = run_callgrind_child("stat-raw", small_iters);
    if (os.ok && rs.ok)
        g_meas.push_back(
            {"user-space instructions per stat / HEAD (callgrind, " + std::to_string(small_iters) + " calls)",
             fmt("%.0f Ir", os.ir / static_cast<double>(small_iters)),
             fmt("raw libcurl HEAD: %.0f Ir", rs.ir / static_cast<double>(small_iters)),
             fmt("ours/raw = %.2f", os.ir / rs.ir)});
    const auto ol = run_callgrind_child("get-large-ours", large_iters);
    const auto rl = run_callgrind_child("get-large-raw", large_iters);
    if (ol.ok && rl.ok) {
        const double bytes = 8.0 * MiB * static_cast<double>(large_iters);
        g_meas.push_back({"memcpy/memmove instructions per body byte, 8 MiB GET into a span (callgrind)",
                          fmt("%.3f Ir/B", ol.memcpy_ir / bytes) + fmt(" (all code: %.3f Ir/B)", ol.ir / bytes),
                          fmt("raw libcurl (one memcpy into the buffer): %.3f Ir/B", rl.memcpy_ir / bytes) +
                              fmt(" (all: %.3f)", rl.ir / bytes),
                          fmt("ours/raw memcpy = %.2f: ", ol.memcpy_ir / rl.memcpy_ir) +
                              (ol.memcpy_ir <= rl.memcpy_ir * 1.05 ? "one copy, from curl's buffer into the span"
                                                                   : "EXTRA COPIES")});
    }
}

int callgrind_child(const std::string& what, long iters) {
    fixture f(server_from_env(g_opt.target), true);
    const bool large = what.starts_with("get-large");
    const bool ours = what.ends_with("-ours");
    const bool stat = what.starts_with("stat");
    std::string small_url = f.small.url;
    if (what == "get-small-raw-hpad") // "x-pad: " + filler + CRLF = cg_pad_bytes on the wire
        f.plain(0).add_header("x-pad: " + std::string(cg_pad_bytes - 9, 'a'));
    else if (what == "get-small-raw-qpad") // "?x-pad=" + filler = cg_pad_bytes more in the URL
        small_url += "?x-pad=" + std::string(cg_pad_bytes - 7, 'a');
    auto once = [&]() -> bool {
        if (stat) return ours ? ours_stat(f) : raw_stat(f, f.plain(0));
        if (large)
            return ours ? ours_get_large(f, f.large8, f.buf8)
                        : f.plain(0).get(f.large8.url, 0, f.large8.size, f.buf8.data());
        return ours ? ours_get_small(f, 0)
                    : f.plain(0).get(small_url, f.small_off, f.small_len, f.small_bufs[0].data());
    };
    for (int i = 0; i < 20; ++i)
        if (!once()) return 1;
    CALLGRIND_TOGGLE_COLLECT;
    for (long i = 0; i < iters; ++i)
        if (!once()) return 1;
    CALLGRIND_TOGGLE_COLLECT;
    return 0;
}

/// --check-callgrind GET,HEAD: instructions per 4 KiB GET and per stat
/// against raw libcurl's, each ratio within its budget, or exit status 1. A
/// regression check, not a benchmark: instruction counts do not depend on the
/// machine's load (tests/bench/meson.build, callgrind-budget).
int callgrind_check(fixture& f) {
    if (!BENCH_HAVE_CALLGRIND || !have_valgrind()) {
        std::fprintf(stderr, "bench: --check-callgrind needs valgrind (apt-get install valgrind) and valgrind/callgrind.h\n");
        return 1;
    }
    f.upload();
    constexpr long iters = 300;
    bool ok = true;
    const auto check = [&](const char* what, const char* ours, const char* raw, double budget) {
        const auto o = run_callgrind_child(ours, iters);
        const auto r = run_callgrind_child(raw, iters);
        if (!o.ok || !r.ok || r.ir <= 0) {
            std::printf("callgrind budget: %s: a callgrind run failed\n", what);
            ok = false;
            return;
        }
        const double ratio = o.ir / r.ir;
        const bool within = ratio <= budget;
        std::printf("callgrind budget: %s: ours/raw = %.3f (%.0f / %.0f Ir per call), budget %.2f: %s\n", what, ratio,
                    o.ir / iters, r.ir / iters, budget, within ? "ok" : "OVER");
        ok = ok && within;
    };
    check("4 KiB GET", "get-small-ours", "get-small-raw", g_opt.cg_budget_get);
    check("stat / HEAD", "stat-ours", "stat-raw", g_opt.cg_budget_head);
    f.remove_uploaded();
    return ok && g_failures.load() == 0 ? 0 : 1;
}

} // namespace bench

// The layers' rows (issue 10): metered overhead, hedged tail latency, breaker fail-fast.
#include "layers_rows.hpp"
// The tiered store's rows against RGW (issue 20): far hits with promotion, a Zipf workload.
#include "tiered_rows.hpp"
// The async engine's rows (issue 22): 1,000 in flight on one thread, 64 large reads, memory per operation.
#include "async_rows.hpp"

namespace bench {

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

void print_tables(const server& sv) {
    std::printf("### %s (%s)%s\n\n", sv.name.c_str(), sv.endpoint.c_str(),
                g_opt.smoke ? " -- SMOKE PASS, numbers meaningless" : "");
    std::printf("Ratio = ours / baseline rate (higher is better for us), median (min-max) over %d alternating runs of "
                "%.1f s per side.\n\n",
                g_opt.smoke ? 1 : g_opt.runs, g_opt.smoke ? 0.0 : g_opt.seconds);
    std::printf("| row | baseline | ours | baseline rate | ratio median | min | max | target | | client CPU/op ours : "
                "baseline |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n");
    for (const auto& r : g_rows) {
        if (!r.ok) {
            std::printf("| %s | %s | | | | | | | %s | |\n", r.name.c_str(), r.baseline.c_str(), r.note.c_str());
            continue;
        }
        std::string verdict = r.target > 0 ? (r.med >= r.target ? "met" : "**missed**") : "info";
        const std::string cpu = r.ours_cpu_us >= 100
                                    ? fmt("%.0f", r.ours_cpu_us) + " : " + fmt("%.0f µs", r.base_cpu_us)
                                    : fmt("%.1f", r.ours_cpu_us) + " : " + fmt("%.1f µs", r.base_cpu_us);
        std::printf("| %s | %s | %s | %s | %.2f | %.2f | %.2f | %s | %s | %s |\n", r.name.c_str(), r.baseline.c_str(),
                    rate_str(r.ours_rate, r.bytes_per_op).c_str(), rate_str(r.base_rate, r.bytes_per_op).c_str(), r.med,
                    r.lo, r.hi, r.target > 0 ? fmt("≥ %.2f", r.target).c_str() : "", verdict.c_str(), cpu.c_str());
    }
    if (!g_meas.empty()) {
        std::printf("\n| measurement | ours | baseline | note |\n|---|---|---|---|\n");
        for (const auto& m : g_meas)
            std::printf("| %s | %s | %s | %s |\n", m.what.c_str(), m.ours.c_str(), m.baseline.c_str(), m.note.c_str());
    }
    std::printf("\n");
    std::fflush(stdout);
}

[[noreturn]] void usage() {
    std::fprintf(stderr, "usage: cachestore_bench [--target nginx|rgw] [--runs N] [--seconds S] [--only SUBSTRING]...\n"
                         "                        [--no-callgrind] [--no-measurements] [--smoke]\n"
                         "       cachestore_bench [--target nginx] --check-callgrind GET_RATIO,HEAD_RATIO\n"
                         "Servers come from tests/servers/with-servers.sh (CACHESTORE_NGINX_* / CACHESTORE_RGW_*).\n");
    exit_now(2);
}

/// The value of option `opt`, parsed whole as a T, or a usage error.
template <class T>
T option_value(std::string_view opt, const std::string& v) {
    const auto n = parse_number<T>(v, true);
    if (!n) {
        std::fprintf(stderr, "bench: %.*s needs %s, got '%s'\n", static_cast<int>(opt.size()), opt.data(),
                     std::is_integral_v<T> ? "an integer" : "a number", v.c_str());
        usage();
    }
    return *n;
}

int run(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) usage();
            return argv[++i];
        };
        if (a == "--smoke")
            g_opt.smoke = true;
        else if (a == "--target")
            g_opt.target = next();
        else if (a == "--runs")
            g_opt.runs = std::max(1, option_value<int>(a, next()));
        else if (a == "--seconds")
            g_opt.seconds = option_value<double>(a, next());
        else if (a == "--only")
            g_opt.only.push_back(next());
        else if (a == "--no-callgrind")
            g_opt.callgrind = false;
        else if (a == "--no-measurements")
            g_opt.measurements = false;
        else if (a == "--setup-only")
            g_opt.setup_only = true;
        else if (a == "--cg-child")
            g_opt.cg_child = next();
        else if (a == "--cg-iters")
            g_opt.cg_iters = option_value<long>(a, next());
        else if (a == "--check-callgrind") {
            const std::string v = next();
            const auto comma = v.find(',');
            if (comma == std::string::npos) usage();
            g_opt.cg_budget_get = option_value<double>(a, v.substr(0, comma));
            g_opt.cg_budget_head = option_value<double>(a, v.substr(comma + 1));
        }
        else
            usage();
    }
    if (!std::isfinite(g_opt.seconds) || g_opt.seconds < 0) {
        std::fprintf(stderr, "bench: --seconds needs a number >= 0, got %g\n", g_opt.seconds);
        usage();
    }
    {
        char buf[4096];
        const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
        g_opt.self = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string(argv[0]);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!g_opt.cg_child.empty()) return callgrind_child(g_opt.cg_child, g_opt.cg_iters);

    server sv = server_from_env(g_opt.target); // reads the environment: before the threads start
    worker_pool pool(8);
    g_pool = &pool;
    {
        fixture f(std::move(sv));
        if (g_opt.cg_budget_get > 0) return callgrind_check(f);
        if (g_opt.setup_only) {
            f.upload();
            return 0;
        }
        ratio_rows(f);
        layer_ratio_rows(f);
        async_rows(f);
        tiered_rows(f);
        if (g_opt.measurements) {
            const bool nginx = f.sv.name == "nginx"; // the rest are client-side and done once, on nginx
            if (nginx) signing_rows(f);
            connection_rows(f);
            if (nginx) copy_rows(f);
            rss_rows(f);
            layer_tail_rows(f);
            layer_breaker_rows(f);
        }
        if (g_opt.measurements && f.sv.name == "nginx" && selected("callgrind")) {
            f.upload();
            callgrind_rows();
        }
        f.remove_uploaded();
        print_tables(f.sv);
    }
    const int failures = g_failures.load();
    if (failures != 0) std::fprintf(stderr, "bench: %d operation(s) failed\n", failures);
    return failures == 0 ? 0 : 1;
}

} // namespace bench

int main(int argc, char** argv) {
    try {
        return bench::run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench: unexpected exception: %s\n", e.what());
    } catch (...) {
        std::fprintf(stderr, "bench: unexpected exception\n");
    }
    return 1;
}
