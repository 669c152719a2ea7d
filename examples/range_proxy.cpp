// range_proxy - an S3-compatible, read-only HTTP/1.1 proxy in front of an S3
// bucket, caching the objects it serves in a cachestore, chunk by chunk,
// through the read-through engine (docs/fill.md): one origin fetch per cold
// chunk however many clients ask, commit after serve, read-ahead, an origin
// cap and an object-metadata cache. curl and the AWS CLI read through it:
//
//   range_proxy --listen 127.0.0.1:8080 --store 'file:///var/cache/chunks?create=1'
//               --origin 's3://models?endpoint=http%3A%2F%2F10.0.0.5%3A7480'
//   curl -r 0-1023 http://127.0.0.1:8080/models/llama/shard-00001.safetensors
//   aws s3 cp --endpoint-url http://127.0.0.1:8080 s3://models/llama/shard-00001.safetensors .
//
// Path-style GET and HEAD of /BUCKET/KEY; Range bytes=a-b, a-, -n. No
// authentication: clients' signatures are ignored (serve it on a trusted
// network). Origin credentials come from the usual AWS variables. The HTTP
// server is cpp-httplib (Debian's libcpp-httplib-dev): only this example
// depends on it.
#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "cachestore/fill/engine.hpp"
#include "cachestore/fill/metrics.hpp"
#include "cachestore/layers/metered.hpp"
#include "cachestore/layers/metrics_text.hpp"
#include "cachestore/s3/origin.hpp"
#include "common.hpp"
#include "s3_http.hpp"
#include "store_url.hpp"

namespace cs = cachestore;
namespace ex = cachestore::examples;

namespace {

struct options {
    std::string host = "127.0.0.1";
    int port = 0;
    int metrics_port = -1; ///< -1: no metrics listener
    std::string origin_url;
    std::string store_url;
    std::string origin_id = "range-proxy";
    std::int64_t chunk_size = 8 << 20;
    cs::fill::engine_options engine;
    int threads = 64;
    std::chrono::seconds timeout{60};
    bool quiet = false;
};

/// What the proxy counts besides the engine and the store.
struct proxy_counters {
    std::atomic<std::int64_t> origin_heads{0}, origin_gets{0}; ///< HTTP requests to the origin, from its observer
    std::atomic<std::int64_t> requests{0};
    std::atomic<std::int64_t> ended_early{0}; ///< bodies cut short after the headers went out
    std::mutex mu;
    std::map<int, std::int64_t> by_status;
    void answered(int status) {
        const std::lock_guard lk(mu);
        ++by_status[status];
    }
};

/// "HOST:PORT" (PORT 0: any free port).
std::pair<std::string, int> parse_listen(const std::string& v, const char* flag) {
    const auto colon = v.rfind(':');
    if (colon == std::string::npos || colon == 0) throw ex::usage_error(std::string(flag) + " needs HOST:PORT, got '" + v + "'");
    const auto port = ex::parse_int(std::string_view(v).substr(colon + 1));
    if (!port || *port < 0 || *port > 65535)
        throw ex::usage_error(std::string(flag) + " needs a port from 0 to 65535, got '" + v + "'");
    return {v.substr(0, colon), static_cast<int>(*port)};
}

std::string request_id() {
    static std::atomic<std::uint64_t> n{0};
    char buf[32];
    std::snprintf(buf, sizeof buf, "rp%016" PRIx64, ++n ^ (static_cast<std::uint64_t>(::getpid()) << 40));
    return buf;
}

template <class Engine>
class proxy {
public:
    proxy(Engine& e, const options& o, const std::string& bucket, proxy_counters& c, std::stop_token stop)
        : e_(e), o_(o), bucket_(bucket), c_(c), stop_(std::move(stop)) {}

    void serve(const httplib::Request& req, httplib::Response& res) {
        ++c_.requests;
        const std::string id = request_id();
        res.set_header("x-amz-request-id", id);
        // httplib 0.11 applies a parsed Range itself to whatever the handler
        // answers, error documents included; this proxy answers ranges S3's
        // way (s3_http.hpp), so it takes them back. `req` is the server's own
        // non-const Request, handed to handlers as const.
        const_cast<httplib::Request&>(req).ranges.clear(); // NOLINT(cppcoreguidelines-pro-type-const-cast)
        const std::string_view path = req.path;
        const auto slash = path.find('/', 1);
        if (path.size() < 2 || slash == std::string_view::npos || slash + 1 == path.size())
            return error(res, req, id, 400, "InvalidRequest", "this proxy serves GET and HEAD of /BUCKET/KEY only");
        const std::string bucket(path.substr(1, slash - 1)), key(path.substr(slash + 1));
        if (bucket != bucket_) return error(res, req, id, 404, "NoSuchBucket", "this proxy serves bucket " + bucket_);
        const cs::fill::object_ref ref{o_.origin_id, bucket, key};
        const auto ctx = cs::context::with_timeout(o_.timeout, stop_);
        const std::optional<std::string> range_header =
            req.has_header("Range") ? std::optional<std::string>(req.get_header_value("Range")) : std::nullopt;
        // A changed object (its ETag no longer the one the metadata cache
        // held) is asked again once: the engine dropped the stale metadata.
        for (int attempt = 1;; ++attempt) {
            auto meta = e_.head(ctx, ref);
            if (!meta) return fail_with(res, req, id, meta.error());
            const auto obj = cs::fill::object_at(ref, *meta, o_.chunk_size);
            const auto reply = ex::answer_range(range_header ? std::optional<std::string_view>(*range_header) : std::nullopt, meta->size);
            res.set_header("ETag", meta->etag);
            res.set_header("Accept-Ranges", "bytes");
            if (!meta->last_modified.empty()) res.set_header("Last-Modified", meta->last_modified);
            if (reply.kind == ex::range_reply::unsatisfiable) {
                res.set_header("Content-Range", reply.content_range(meta->size));
                return error(res, req, id, 416, "InvalidRange", "The requested range is not satisfiable");
            }
            const std::int64_t first = reply.kind == ex::range_reply::partial ? reply.first : 0;
            const std::int64_t length = reply.kind == ex::range_reply::partial ? reply.length : meta->size;
            res.status = reply.kind == ex::range_reply::partial ? 206 : 200;
            if (reply.kind == ex::range_reply::partial) res.set_header("Content-Range", reply.content_range(meta->size));
            if (req.method == "HEAD" || length == 0) {
                res.set_header("Content-Length", std::to_string(length));
                res.set_header("Content-Type", "application/octet-stream");
                c_.answered(res.status);
                return;
            }
            // The first chunk's slice before any header goes out: an error
            // there is a clean status, not a short body (docs/fill.md, R13).
            const std::int64_t in_chunk = first % o_.chunk_size;
            auto head_bytes = std::make_shared<std::vector<std::byte>>(
                static_cast<std::size_t>(std::min(length, o_.chunk_size - in_chunk)));
            auto got = e_.read(ctx, obj, first, std::span<std::byte>(*head_bytes));
            if (!got && got.error().code == cs::errc::changed && attempt == 1) continue;
            if (!got) return fail_with(res, req, id, got.error());
            stream_rest(res, obj, first, length, std::move(head_bytes), req.path);
            c_.answered(res.status);
            return;
        }
    }

private:
    /// The body: the first slice (already read), then the rest streamed by
    /// the engine with read-ahead as the client takes it. A failure now ends
    /// the body early (the client sees fewer bytes than Content-Length).
    void stream_rest(httplib::Response& res, const cs::origin_object& obj, std::int64_t first, std::int64_t length,
                     std::shared_ptr<std::vector<std::byte>> head_bytes, std::string path) {
        res.set_content_provider(
            static_cast<std::size_t>(length), "application/octet-stream",
            [this, obj, first, length, head_bytes = std::move(head_bytes), path = std::move(path)](
                std::size_t offset, std::size_t, httplib::DataSink& sink) {
                auto at = static_cast<std::int64_t>(offset); // from the range's first byte
                const auto have = static_cast<std::int64_t>(head_bytes->size());
                if (at < have) {
                    if (!sink.write(reinterpret_cast<const char*>(head_bytes->data()) + at, static_cast<std::size_t>(have - at)))
                        return false;
                    at = have;
                }
                if (at >= length) return true;
                const cs::context body_ctx(stop_); // the client's pace: no deadline; fills have their own ceiling
                auto r = e_.stream(body_ctx, obj, first + at, length - at, [&sink](std::span<const std::byte> b) {
                    return sink.write(reinterpret_cast<const char*>(b.data()), b.size());
                });
                if (r) return true;
                ++c_.ended_early;
                if (!o_.quiet && r.error().code != cs::errc::cancelled)
                    std::fprintf(stderr, "range_proxy: GET %s: body ended early: %s\n", path.c_str(), r.error().to_string().c_str());
                return false;
            });
    }

    void fail_with(httplib::Response& res, const httplib::Request& req, const std::string& id, const cs::error& e) {
        const auto reply = ex::s3_reply_for(e.code);
        if (!o_.quiet && reply.status != 404)
            std::fprintf(stderr, "range_proxy: %s %s: %d %s: %s\n", req.method.c_str(), req.path.c_str(), reply.status,
                         reply.code.c_str(), e.to_string().c_str());
        error(res, req, id, reply.status, reply.code, e.message.empty() ? std::string(cs::to_string(e.code)) : e.message);
    }

    void error(httplib::Response& res, const httplib::Request& req, const std::string& id, int status, const std::string& code,
               const std::string& message) {
        res.status = status;
        c_.answered(status);
        if (req.method == "HEAD") { // no body; the status says it all
            res.set_header("Content-Length", "0");
            return;
        }
        res.set_content(ex::s3_error_xml(code, message, req.path, id), "application/xml");
    }

    Engine& e_;
    const options& o_;
    const std::string& bucket_;
    proxy_counters& c_;
    std::stop_token stop_;
};

template <class Stack, class Engine>
std::string metrics_text(const Stack& stack, const Engine& e, proxy_counters& c) {
    std::string out;
    cs::write_layer_metrics(out, stack);
    cs::fill::write_prometheus(out, e.snapshot());
    out += "# HELP range_proxy_origin_requests_total HTTP requests sent to the origin, by method.\n"
           "# TYPE range_proxy_origin_requests_total counter\n";
    out += "range_proxy_origin_requests_total{method=\"HEAD\"} " + std::to_string(c.origin_heads.load()) + "\n";
    out += "range_proxy_origin_requests_total{method=\"GET\"} " + std::to_string(c.origin_gets.load()) + "\n";
    out += "# HELP range_proxy_responses_total Responses by status (bodies cut short counted apart).\n"
           "# TYPE range_proxy_responses_total counter\n";
    {
        const std::lock_guard lk(c.mu);
        for (const auto& [status, n] : c.by_status)
            out += "range_proxy_responses_total{status=\"" + std::to_string(status) + "\"} " + std::to_string(n) + "\n";
    }
    out += "# HELP range_proxy_bodies_ended_early_total Bodies cut short after the headers went out.\n"
           "# TYPE range_proxy_bodies_ended_early_total counter\n"
           "range_proxy_bodies_ended_early_total " +
           std::to_string(c.ended_early.load()) + "\n";
    return out;
}

void tune(httplib::Server& svr, int threads) {
    svr.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
    svr.set_keep_alive_max_count(1000);
    // The headers and the body go out in separate writes: with Nagle's
    // algorithm, a small answer waited for the client's delayed ACK (40 ms
    // per 4 KiB GET: 23 requests/s against nginx's 4,109; tests/bench/proxy_bench.py).
    svr.set_tcp_nodelay(true);
    svr.set_keep_alive_timeout(30);
}

/// Binds `svr` to host:port (0: any free port); the bound port, or -1.
int bind_server(httplib::Server& svr, const std::string& host, int port) {
    if (port == 0) return svr.bind_to_any_port(host);
    return svr.bind_to_port(host, port) ? port : -1;
}

} // namespace

int run_main(int argc, char** argv) {
    ex::arg_parser p("range_proxy --listen HOST:PORT --origin s3://BUCKET?endpoint=URL --store URL [OPTIONS]",
                     "An S3-compatible read-only HTTP proxy in front of BUCKET that caches what it serves in\n"
                     "the store, chunk by chunk, through cachestore's read-through engine: one origin GET\n"
                     "per cold chunk however many clients ask, one HEAD per object per TTL. GET and HEAD\n"
                     "of /BUCKET/KEY, Range bytes=a-b, a-, -n. Clients' signatures are not checked.\n"
                     "Prints 'range_proxy: listening on http://HOST:PORT' when it is ready; SIGINT or\n"
                     "SIGTERM stops it.");
    p.section("Where");
    p.flag("--listen", "HOST:PORT", "the address to serve on (PORT 0: any free port; required)");
    p.flag("--origin", "URL", "the origin bucket: s3://BUCKET?endpoint=...&region=... (as a store URL;\ncredentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; required)");
    p.flag("--store", "URL", "the cache: mem:, file:///dir?create=1, s3://bucket/prefix?... or\ntiered:NEAR|FAR, one in front of another, e.g.\n'tiered:file:///var/cache/chunks?max_bytes=100G|s3://cache-bucket/chunks'\n(cachestore --help describes them; required)");
    p.flag("--origin-id", "ID", "origin_id of the chunk keys: names this deployment (default range-proxy)");
    p.flag("--metrics-port", "PORT", "serve GET /metrics (Prometheus text) on HOST:PORT (0: any free port)");
    p.section("The engine (docs/fill.md)");
    p.flag("--chunk-size", "SIZE", "chunk size (default 8M)");
    p.flag("--readahead", "N", "chunks in flight ahead of the one being sent, per request (default 8)");
    p.flag("--origin-cap", "N", "origin requests in flight at most (default 64)");
    p.flag("--metadata-ttl", "SECONDS", "how long an object's size and ETag are kept (default 300)");
    p.section("Serving");
    p.flag("--threads", "N", "connections served at once (default 64)");
    p.flag("--timeout", "SECONDS", "deadline of a request's first byte: metadata and first chunk (default 60)");
    p.flag("--quiet", "", "no error lines on stderr");
    p.epilog(std::string(ex::exit_code_help));

    options o;
    try {
        if (!p.parse_or_help(argc, argv, 1)) return ex::exit_ok;
        if (!p.positional().empty()) throw ex::usage_error("unexpected argument '" + p.positional()[0] + "'");
        std::tie(o.host, o.port) = parse_listen(p.require("--listen"), "--listen");
        o.origin_url = p.require("--origin");
        o.store_url = p.require("--store");
        o.origin_id = p.get_or("--origin-id", o.origin_id);
        if (p.has("--metrics-port")) o.metrics_port = static_cast<int>(p.int_or("--metrics-port", 0, 0, 65535));
        o.chunk_size = p.size_or("--chunk-size", o.chunk_size);
        if (o.chunk_size <= 0) throw ex::usage_error("--chunk-size must be at least 1");
        o.engine.readahead = p.int_or("--readahead", 8, 0, 1024);
        o.engine.origin_cap = static_cast<std::size_t>(p.int_or("--origin-cap", 64, 1, 4096));
        o.engine.metadata_ttl = std::chrono::seconds(p.int_or("--metadata-ttl", 300, 0, 86400));
        o.engine.name = "range_proxy";
        o.threads = static_cast<int>(p.int_or("--threads", 64, 1, 4096));
        o.timeout = std::chrono::seconds(p.int_or("--timeout", 60, 1, 86400));
        o.quiet = p.has("--quiet");
    } catch (const ex::usage_error& e) {
        return ex::report_usage("range_proxy", false, e.what());
    }

    auto origin_spec = ex::parse_store_url(o.origin_url);
    if (!origin_spec) return ex::report_usage("range_proxy", false, "--origin: " + origin_spec.error().message);
    auto* s3_origin = std::get_if<ex::s3_spec>(&*origin_spec);
    if (s3_origin == nullptr) return ex::report_usage("range_proxy", false, "--origin must be an s3:// URL");
    proxy_counters counters;
    s3_origin->cfg.observer = [&counters](const cs::s3::request_event& ev) {
        if (ev.method == "HEAD") ++counters.origin_heads;
        else if (ev.method == "GET") ++counters.origin_gets;
    };
    const std::string bucket = s3_origin->cfg.bucket;
    auto origin = cs::s3::origin::create(s3_origin->cfg);
    if (!origin) {
        std::fprintf(stderr, "range_proxy: the origin: %s\n", origin.error().to_string().c_str());
        return ex::exit_code_for(origin.error().code);
    }

    ex::signal_stop signals;
    ex::store_holder holder;
    if (auto r = holder.open(o.store_url); !r) {
        std::fprintf(stderr, "range_proxy: the store: %s\n", r.error().to_string().c_str());
        return r.error().code == cs::errc::invalid_argument ? ex::exit_usage : ex::exit_code_for(r.error().code);
    }
    return holder.visit([&]<cs::CacheStore S>(S& store) {
        cs::metered<S&> stack(store, cs::metered_options{"range_proxy"});
        cs::fill::engine engine(stack, *origin, o.engine);
        proxy<decltype(engine)> px(engine, o, bucket, counters, signals.token());
        httplib::Server svr;
        tune(svr, o.threads);
        const auto handler = [&px](const httplib::Request& req, httplib::Response& res) { px.serve(req, res); };
        svr.Get(R"(/.*)", handler); // GET and HEAD
        const auto refuse = [](const httplib::Request& req, httplib::Response& res) {
            res.status = 405;
            res.set_content(ex::s3_error_xml("MethodNotAllowed", "this proxy is read-only: GET and HEAD", req.path, ""),
                            "application/xml");
        };
        svr.Put(R"(/.*)", refuse);
        svr.Post(R"(/.*)", refuse);
        svr.Delete(R"(/.*)", refuse);
        svr.Patch(R"(/.*)", refuse);
        const int port = bind_server(svr, o.host, o.port);
        if (port < 0) {
            std::fprintf(stderr, "range_proxy: cannot listen on %s:%d\n", o.host.c_str(), o.port);
            return static_cast<int>(ex::exit_other);
        }
        httplib::Server metrics;
        std::thread metrics_thread;
        if (o.metrics_port >= 0) {
            tune(metrics, 2);
            metrics.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
                res.set_content(metrics_text(stack, engine, counters), "text/plain; version=0.0.4");
            });
            const int mport = bind_server(metrics, o.host, o.metrics_port);
            if (mport < 0) {
                std::fprintf(stderr, "range_proxy: cannot listen on %s:%d for metrics\n", o.host.c_str(), o.metrics_port);
                return static_cast<int>(ex::exit_other);
            }
            std::printf("range_proxy: metrics on http://%s:%d/metrics\n", o.host.c_str(), mport);
            metrics_thread = std::thread([&metrics] { metrics.listen_after_bind(); });
        }
        std::printf("range_proxy: listening on http://%s:%d\n", o.host.c_str(), port);
        std::fflush(stdout);
        const std::stop_callback on_signal(signals.token(), [&] {
            svr.stop();
            metrics.stop();
        });
        svr.listen_after_bind();
        metrics.stop();
        if (metrics_thread.joinable()) metrics_thread.join();
        const auto st = engine.stats();
        std::printf("range_proxy: stopped; %" PRId64 " requests, origin: %" PRId64 " HEAD + %" PRId64
                    " GET, %" PRId64 " fills, %" PRId64 " joined, %" PRId64 " commits\n",
                    counters.requests.load(), counters.origin_heads.load(), counters.origin_gets.load(), st.fills_started,
                    st.fills_joined, st.commits);
        return signals.received() != 0 ? 128 + signals.received() : static_cast<int>(ex::exit_ok);
    });
}

int main(int argc, char** argv) { return ex::guarded_main("range_proxy", run_main, argc, argv); }
