// cachestore/s3/detail/transport.hpp - one HTTP exchange on libcurl, on a
// pooled connection (connection_pool.hpp).
//
// Driving each connection's private multi handle ourselves lets a stop
// request wake the poll at once (curl_multi_wakeup from a std::stop_callback)
// and lets deadlines end a stalled transfer to the millisecond, which the
// easy interface's once-a-second progress callback cannot.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <curl/curl.h>

#include "cachestore/async.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/s3/detail/connection_pool.hpp"
#include "cachestore/s3/detail/http_parse.hpp"
#include "cachestore/s3/observer.hpp"

namespace cachestore::s3::detail {

/// Why we (not the network) ended a transfer.
enum class abort_reason : std::uint8_t {
    none,
    cancelled,       ///< stop token
    deadline,        ///< context or operation deadline
    sink_stopped,    ///< the caller's sink returned false
    source_failed,   ///< the caller's source returned an error
    source_short,    ///< the source ended before `size` bytes
    source_long,     ///< the source had more than `size` bytes
    bad_response,    ///< a 2xx answer whose framing does not match the request
    body_too_long,   ///< more body bytes than the range asked for
    caller_threw,    ///< the caller's sink or source threw (response::thrown)
};

/// A request body: called to fill `buf`; returns bytes written (0 at end) or
/// sets `reason`/`err` and returns nullopt to abort the upload.
struct body_source {
    void* self = nullptr;
    std::optional<std::size_t> (*read)(void* self, std::span<std::byte> buf, abort_reason& reason, error& err) = nullptr;
    std::int64_t size = -1; ///< Content-Length; -1 means no body
    /// Restarts the body from its first byte; false if it cannot. libcurl
    /// calls it to replay a request on a fresh connection when a kept-alive
    /// one died before answering.
    bool (*rewind)(void* self) = nullptr;
};

/// Where a 2xx response body goes. `accept` sees the status and headers once,
/// before the first byte, and may refuse the body (a bad Content-Range).
struct response;

struct body_sink {
    void* self = nullptr;
    bool (*accept)(void* self, const response& r) = nullptr;
    /// Takes `bytes` whatever it answers: `proceed`, `stop` (the transfer
    /// ends, sink_stopped) or `pause` (nothing more until the driver resumes
    /// the transfer; the blocking driver's sinks never pause).
    sink_verdict (*write)(void* self, std::span<const std::byte> bytes) = nullptr;
    std::int64_t limit = -1; ///< at most this many body bytes (-1: no limit)
    bool exact = false;      ///< a 2xx body must be exactly `limit` bytes: fewer is a truncated (transient) answer
};

/// What we keep of a response.
struct response {
    long status = 0;
    CURLcode curl = CURLE_OK;
    abort_reason reason = abort_reason::none;
    error source_error;                      ///< when reason == source_failed
    std::exception_ptr thrown;               ///< when reason == caller_threw: rethrown once libcurl has returned
    std::int64_t content_length = -1;
    std::optional<content_range> range;
    std::string last_modified;
    std::string date;
    std::string request_id;
    std::string bucket_region;               ///< x-amz-bucket-region (AWS names the bucket's region on redirects)
    std::string amz_id_2;                    ///< x-amz-id-2
    std::string etag;                        ///< ETag, as sent (only when the request asked: http_request::keep_etag)
    std::string error_body;                  ///< non-2xx body, capped
    std::int64_t delivered = 0;              ///< 2xx body bytes handed to the sink
    bool accepted = false;                   ///< the sink's accept() ran
    bool reused = false;                     ///< went out on a kept-alive connection
    bool connected = false;                  ///< a connection, new or reused, was ready for the request
    char curl_message[CURL_ERROR_SIZE] = {};
    [[nodiscard]] bool is_2xx() const noexcept { return status >= 200 && status < 300; }
};

struct http_request {
    const char* method = "GET";
    const char* url = nullptr;     ///< NUL-terminated; owned by the caller
    curl_slist* headers = nullptr; ///< owned by the caller
    body_source body;
    body_sink sink;
    long connect_timeout_ms = 3000;
    long low_speed_limit = 1024;
    long low_speed_time_s = 10;
    long max_age_s = 20;           ///< a kept-alive connection idle longer is not reused
    bool verify_tls = true;
    const char* ca_file = nullptr;
    const char* ca_dir = nullptr;
    CURLSH* share = nullptr;       ///< the store's TLS session cache (https only)
    bool keep_etag = false;        ///< record the ETag header in response::etag (origin reads; chunk reads skip it)
};

inline constexpr std::size_t max_error_body = std::size_t{64} * 1024;

struct exchange {
    const http_request& req;
    response& res;
    const context& ctx;
    std::chrono::steady_clock::time_point deadline;
    /// The sink said `pause`: on_write hands libcurl CURL_WRITEFUNC_PAUSE for
    /// the rest of the receive (libcurl keeps those bytes and delivers them
    /// again once resumed). The driver clears it, then calls
    /// curl_easy_pause(CURLPAUSE_CONT) outside libcurl's callbacks.
    bool pause_pending = false;

    bool expired_or_stopped() {
        if (ctx.stop_requested()) {
            res.reason = abort_reason::cancelled;
            return true;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            res.reason = abort_reason::deadline;
            return true;
        }
        return false;
    }

    static bool header_is(std::string_view line, std::string_view name) {
        if (line.size() <= name.size() || line[name.size()] != ':') return false;
        for (std::size_t i = 0; i < name.size(); ++i) {
            char c = line[i];
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
            if (c != name[i]) return false;
        }
        return true;
    }

    static std::size_t on_header(char* data, std::size_t size, std::size_t n, void* self) {
        auto& x = *static_cast<exchange*>(self);
        const std::string_view line(data, size * n);
        auto value = [&](std::string_view name) { return trim_ows(line.substr(name.size() + 1)); };
        if (line.starts_with("HTTP/")) {
            // A new status line (also after 100 Continue): forget earlier headers.
            x.res.content_length = -1;
            x.res.range.reset();
            x.res.last_modified.clear();
            x.res.date.clear();
            x.res.request_id.clear();
            x.res.bucket_region.clear();
            x.res.amz_id_2.clear();
            x.res.etag.clear();
            const auto sp = line.find(' ');
            x.res.status = sp == std::string_view::npos ? 0 : static_cast<long>(parse_i64(line.substr(sp + 1, 3)).value_or(0));
        } else if (header_is(line, "content-length")) {
            x.res.content_length = parse_i64(value("content-length")).value_or(-1);
        } else if (header_is(line, "content-range")) {
            x.res.range = parse_content_range(value("content-range"));
        } else if (header_is(line, "last-modified")) {
            x.res.last_modified = value("last-modified");
        } else if (header_is(line, "date")) {
            x.res.date = value("date");
        } else if (header_is(line, "x-amz-request-id")) {
            x.res.request_id = std::string(value("x-amz-request-id").substr(0, 128));
        } else if (header_is(line, "x-amz-id-2")) {
            x.res.amz_id_2 = std::string(value("x-amz-id-2").substr(0, 256));
        } else if (x.req.keep_etag && header_is(line, "etag")) {
            x.res.etag = std::string(value("etag").substr(0, 256));
        } else if (header_is(line, "x-amz-bucket-region")) {
            x.res.bucket_region = std::string(value("x-amz-bucket-region").substr(0, 64));
        }
        return size * n;
    }

    static std::size_t on_write(char* data, std::size_t size, std::size_t n, void* self) {
        auto& x = *static_cast<exchange*>(self);
        const std::size_t len = size * n;
        if (!x.res.is_2xx()) {
            const std::size_t room = max_error_body - std::min(max_error_body, x.res.error_body.size());
            x.res.error_body.append(data, std::min(room, len));
            return len;
        }
        if (x.req.sink.write == nullptr) return len; // body not wanted
        if (x.pause_pending) return CURL_WRITEFUNC_PAUSE; // not delivered: libcurl offers these bytes again
        if (!x.res.accepted) {
            x.res.accepted = true;
            if (!x.guarded([&] { return x.req.sink.accept(x.req.sink.self, x.res); })) {
                if (x.res.reason == abort_reason::none) x.res.reason = abort_reason::bad_response;
                return CURL_WRITEFUNC_ERROR;
            }
        }
        if (x.req.sink.limit >= 0 && x.res.delivered + static_cast<std::int64_t>(len) > x.req.sink.limit) {
            x.res.reason = abort_reason::body_too_long;
            return CURL_WRITEFUNC_ERROR;
        }
        const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), len);
        sink_verdict v = sink_verdict::stop;
        if (!x.guarded([&] {
                v = x.req.sink.write(x.req.sink.self, bytes);
                return v != sink_verdict::stop;
            })) {
            if (x.res.reason == abort_reason::none) x.res.reason = abort_reason::sink_stopped;
            return CURL_WRITEFUNC_ERROR;
        }
        x.res.delivered += static_cast<std::int64_t>(len);
        if (v == sink_verdict::pause) x.pause_pending = true; // this span was taken: answered in full below
        if (x.expired_or_stopped()) return CURL_WRITEFUNC_ERROR;
        return len;
    }

    static std::size_t on_read(char* buf, std::size_t size, std::size_t n, void* self) {
        auto& x = *static_cast<exchange*>(self);
        if (x.expired_or_stopped()) return CURL_READFUNC_ABORT;
        std::size_t got = 0;
        if (!x.guarded([&] {
                auto r = x.req.body.read(x.req.body.self, std::span<std::byte>(reinterpret_cast<std::byte*>(buf), size * n),
                                         x.res.reason, x.res.source_error);
                got = r.value_or(0);
                return r.has_value();
            }))
            return CURL_READFUNC_ABORT;
        if (x.expired_or_stopped()) return CURL_READFUNC_ABORT;
        return got;
    }

    static int on_seek(void* self, curl_off_t offset, int origin) {
        auto& x = *static_cast<exchange*>(self);
        if (offset != 0 || origin != SEEK_SET || x.req.body.rewind == nullptr) return CURL_SEEKFUNC_CANTSEEK;
        return x.guarded([&] { return x.req.body.rewind(x.req.body.self); }) ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_CANTSEEK;
    }

    /// Runs caller code (a sink, a source) inside a libcurl callback. An
    /// exception must not unwind through libcurl's C frames (the transfer and
    /// its connection would never be released): it is kept, the transfer
    /// aborted, and attempt_once rethrows it once libcurl has returned.
    template <class F>
    bool guarded(F&& f) noexcept {
        try {
            return f();
        } catch (...) {
            res.thrown = std::current_exception();
            res.reason = abort_reason::caller_threw;
            return false;
        }
    }
};

/// libcurl's receive buffer for a body read (CURLOPT_BUFFERSIZE; libcurl's
/// default is 16 KiB). Each receive is one recv() and one write callback, so
/// a large read costs per 16 KiB: GET 8 MiB against nginx on 2 cores took
/// 4.3 ms of client CPU with 16 KiB and 1.6 ms with 512 KiB (1,753 -> 3,148
/// MiB/s; docs/performance.md). Pages are touched only as far as a response
/// fills them: a 4 KiB GET costs what it did. A sink that pauses (the async
/// engine) gets `pausing_receive_buffer` instead: what libcurl holds for a
/// paused transfer.
inline constexpr long receive_buffer = 512L * 1024;
inline constexpr long pausing_receive_buffer = CURL_MAX_WRITE_SIZE;

/// Sets the options that are the same for every request of one store (a
/// pooled connection or a transfer slot belongs to one store): once per easy
/// handle instead of a curl_easy_reset and ~20 setopts per request.
inline void configure(CURL* e, const http_request& req) {
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, receive_buffer);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &exchange::on_header);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &exchange::on_write);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, &exchange::on_read);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, req.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, req.low_speed_limit);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, req.low_speed_time_s);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, req.max_age_s);
    // The path is sent exactly as it was signed: curl would otherwise remove
    // "." and ".." segments (of a prefix or a key) that the signature covers.
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    // Removing a handle whose name lookup is still running would wait for
    // getaddrinfo (seconds with a dead nameserver), past any deadline or stop
    // request: let the resolver thread finish on its own instead.
    curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, req.verify_tls ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, req.verify_tls ? 2L : 0L);
    if (req.ca_file != nullptr) curl_easy_setopt(e, CURLOPT_CAINFO, req.ca_file);
    if (req.ca_dir != nullptr) curl_easy_setopt(e, CURLOPT_CAPATH, req.ca_dir);
    curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, &exchange::on_seek);
    if (req.share != nullptr) curl_easy_setopt(e, CURLOPT_SHARE, req.share);
}

/// Points a configured easy handle at one request and its exchange `x`.
/// `custom_method` is the handle's own flag: CURLOPT_CUSTOMREQUEST is set and
/// must be cleared before the next request. Undo with unhook() before `x`,
/// the request's headers or its error buffer go away.
inline void arm(CURL* e, bool& custom_method, exchange& x) {
    const http_request& req = x.req;
    curl_easy_setopt(e, CURLOPT_URL, req.url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, req.headers);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x.res.curl_message);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(e, CURLOPT_READDATA, &x);
    curl_easy_setopt(e, CURLOPT_SEEKDATA, &x);
    // The method: HTTPGET clears NOBODY and UPLOAD left by the previous request.
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    if (custom_method) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, nullptr);
        custom_method = false;
    }
    const std::string_view method = req.method;
    if (method == "HEAD") {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (method == "PUT") {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(std::max<std::int64_t>(req.body.size, 0)));
    } else if (method != "GET") {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req.method);
        custom_method = true;
    }
}

/// Leaves nothing in the handle pointing at a finished request.
inline void unhook(CURL* e) noexcept {
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, nullptr);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, nullptr);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, nullptr);
    curl_easy_setopt(e, CURLOPT_READDATA, nullptr);
    curl_easy_setopt(e, CURLOPT_SEEKDATA, nullptr);
}

/// What libcurl knows of a transfer that ended, read while the handle is
/// still in its multi handle (its CURLMSG_DONE result is in res.curl).
inline void harvest(CURL* e, response& res) {
    long connects = 0;
    if (curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK) res.reused = connects == 0;
    // At least 1 us once a connection, new or reused, was ready to send on (TCP and TLS done); 0 before.
    curl_off_t pretransfer_us = 0;
    if (curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us) == CURLE_OK)
        res.connected = pretransfer_us > 0;
    if (res.status == 0) {
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        res.status = status;
    }
}

/// Performs one HTTP exchange on `c`. Never throws; fills `res`. Returns
/// false when the connection must not be reused.
inline bool perform(connection& c, const http_request& req, response& res, const context& ctx,
                    std::chrono::steady_clock::time_point deadline) {
    CURL* e = c.easy;
    if (!c.configured) {
        configure(e, req);
        c.configured = true;
    }
    exchange x{req, res, ctx, deadline};
    arm(e, c.custom_method, x);
    // Nothing in the handle may point at this call's stack or headers once it returns.
    struct unhook_at_exit {
        CURL* e;
        ~unhook_at_exit() { unhook(e); }
    } unhook_guard{e};

    if (x.expired_or_stopped()) return true;
    if (curl_multi_add_handle(c.multi, e) != CURLM_OK) {
        res.curl = CURLE_FAILED_INIT;
        return false;
    }
    bool clean = true;
    {
        CURLM* multi = c.multi;
        std::stop_callback wake(ctx.stop_token(), [multi] { curl_multi_wakeup(multi); });
        for (;;) {
            int running = 0;
            if (curl_multi_perform(c.multi, &running) != CURLM_OK) {
                res.curl = CURLE_FAILED_INIT;
                clean = false;
                break;
            }
            if (running == 0) break;
            if (res.reason != abort_reason::none || x.expired_or_stopped()) {
                clean = false; // abandoning a transfer mid-way: the connection closes
                break;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            const int wait_ms = static_cast<int>(std::clamp<std::int64_t>(left.count() + 1, 1, 1000));
            curl_multi_poll(c.multi, nullptr, 0, wait_ms, nullptr);
        }
    }
    int queued = 0;
    while (CURLMsg* m = curl_multi_info_read(c.multi, &queued))
        if (m->msg == CURLMSG_DONE && m->easy_handle == e) res.curl = m->data.result;
    harvest(e, res);
    curl_multi_remove_handle(c.multi, e);
    return clean && res.curl == CURLE_OK;
}

/// The timings and sizes of the transfer just performed on `e`, for the
/// observer (only called when one is set). `t0`: the attempt's start;
/// `t_conn`: when the attempt got its connection (or transfer slot).
inline request_event observe(CURL* e, std::chrono::steady_clock::time_point t0,
                             std::chrono::steady_clock::time_point t_conn) {
    using us = std::chrono::microseconds;
    request_event ev;
    curl_off_t v = 0;
    auto info = [&](CURLINFO what) {
        v = 0;
        curl_easy_getinfo(e, what, &v);
        return v;
    };
    const curl_off_t connect_end = info(CURLINFO_CONNECT_TIME_T);
    const curl_off_t tls_end = info(CURLINFO_APPCONNECT_TIME_T);
    const curl_off_t name_end = info(CURLINFO_NAMELOOKUP_TIME_T);
    ev.pool_wait = std::chrono::duration_cast<us>(t_conn - t0);
    ev.connect = us(connect_end > name_end ? connect_end - name_end : 0);
    ev.tls = us(tls_end > connect_end ? tls_end - connect_end : 0);
    ev.first_byte = ev.pool_wait + us(info(CURLINFO_STARTTRANSFER_TIME_T));
    ev.bytes_sent = info(CURLINFO_SIZE_UPLOAD_T);
    ev.bytes_received = info(CURLINFO_SIZE_DOWNLOAD_T);
    ev.total = std::chrono::duration_cast<us>(std::chrono::steady_clock::now() - t0);
    return ev;
}

} // namespace cachestore::s3::detail
