// cachestore/s3/detail/multi_driver.hpp - a libcurl multi handle driven by
// an event loop through libcurl's socket and timer callbacks (docs/async.md,
// "Own loop and host loop"): the transport under the async engine.
//
// Everything here runs on the loop's thread. libcurl calls on_socket and
// on_timer from inside its own calls; they only change what the loop watches
// and when its timer fires, never call libcurl. Finished transfers are
// reported after curl_multi_socket_action has returned, so the `done`
// callback may remove, re-add or pause easy handles.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

#include <curl/curl.h>

#include "cachestore/detail/epoll_loop.hpp"
#include "cachestore/s3/detail/connection_pool.hpp"
#include "cachestore/s3/detail/socket_registry.hpp"

namespace cachestore::s3::detail {

class multi_driver {
public:
    /// A transfer ended: `result` is its CURLMSG_DONE code. The handle is
    /// still in the multi handle; the callback usually removes it.
    using done_fn = void (*)(void* self, CURL* easy, CURLcode result);

    /// Connections are bounded by `max_connections` (libcurl's own cap,
    /// also the size of its idle cache); HTTP/1.1 without pipelining, so
    /// one transfer per connection. The loop's timer belongs to this driver.
    multi_driver(cachestore::detail::epoll_loop& loop, long max_connections, done_fn done, void* self)
        : loop_(loop), done_(done), self_(self),
          sockets_(4 * static_cast<std::size_t>(std::max(max_connections, 1L)) + 16) { // connecting, open and closing
        sockets_.on_close(&multi_driver::on_close, this);
        curl_global();
        multi_ = curl_multi_init();
        if (multi_ == nullptr) return;
        curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &multi_driver::on_socket);
        curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
        curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &multi_driver::on_timer);
        curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
        curl_multi_setopt(multi_, CURLMOPT_PIPELINING, static_cast<long>(CURLPIPE_NOTHING));
        curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_connections);
        curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, max_connections);
    }
    multi_driver(const multi_driver&) = delete;
    multi_driver& operator=(const multi_driver&) = delete;
    multi_driver(multi_driver&&) = delete;
    multi_driver& operator=(multi_driver&&) = delete;
    /// Every easy handle must have been removed. Closes the cached
    /// connections (libcurl unwatches their sockets through on_socket).
    ~multi_driver() {
        if (multi_ != nullptr) curl_multi_cleanup(multi_);
        while (!watched_.empty()) closing(watched_.back()); // whatever libcurl did not unwatch itself
        while (!parked_.empty()) closing(parked_.back());
        loop_.arm_timer(std::chrono::milliseconds(-1), nullptr, nullptr);
    }

    [[nodiscard]] bool ok() const noexcept { return multi_ != nullptr; }
    [[nodiscard]] CURLM* handle() const noexcept { return multi_; }

    /// Starts a configured and armed easy handle (transport.hpp). Its
    /// sockets are opened and closed through this driver (four setopts per
    /// add, so no handle escapes): the driver must see every close (below,
    /// "closing"), and a forked child closes its copies (registry()). Loop
    /// thread, outside libcurl's callbacks.
    CURLMcode add(CURL* e) {
        sockets_.attach(e);
        return curl_multi_add_handle(multi_, e);
    }

    /// Ends a transfer, finished or not (an unfinished one closes its
    /// connection). Loop thread, outside libcurl's callbacks.
    CURLMcode remove(CURL* e) { return curl_multi_remove_handle(multi_, e); }

    /// Resumes a paused transfer: libcurl may call its write callback
    /// inside, then transfers may finish; they are reported before this
    /// returns. Loop thread, outside libcurl's callbacks.
    CURLcode resume(CURL* e) {
        const CURLcode rc = curl_easy_pause(e, CURLPAUSE_CONT);
        report_done();
        return rc;
    }

    /// Sockets libcurl asked the loop to watch now.
    [[nodiscard]] std::size_t sockets() const noexcept { return watched_.size(); }

    /// The sockets of its connections (a forked child closes its copies).
    [[nodiscard]] socket_registry& registry() noexcept { return sockets_; }
    [[nodiscard]] const socket_registry& registry() const noexcept { return sockets_; }

private:
    static int on_socket(CURL*, curl_socket_t s, int what, void* userp, void*) {
        auto& d = *static_cast<multi_driver*>(userp);
        if (what == CURL_POLL_REMOVE) { // the transfer ended; a kept connection goes idle in the cache
            d.loop_.park(s);                // its registration kept: the next request on it costs no epoll_ctl
            erase(d.watched_, s);
            if (std::find(d.parked_.begin(), d.parked_.end(), s) == d.parked_.end()) d.parked_.push_back(s);
            return 0;
        }
        using loop = cachestore::detail::epoll_loop;
        // CURL_POLL_INOUT is CURL_POLL_IN | CURL_POLL_OUT.
        const unsigned interest = ((what & CURL_POLL_IN) != 0 ? loop::readable : 0U) |
                                  ((what & CURL_POLL_OUT) != 0 ? loop::writable : 0U);
        if (!d.loop_.watch(s, interest, &multi_driver::on_ready, &d)) return -1;
        if (std::find(d.watched_.begin(), d.watched_.end(), s) == d.watched_.end()) d.watched_.push_back(s);
        erase(d.parked_, s);
        return 0;
    }

    /// libcurl is about to close socket `s`: the loop's registration of it
    /// ends first. A connection that goes idle in libcurl's cache is only
    /// parked (on_socket), and libcurl reports no CURL_POLL_REMOVE when it
    /// closes an idle one: without this, a socket opened later under the
    /// same number would look registered while the kernel has forgotten it.
    void closing(curl_socket_t s) {
        loop_.unwatch(s);
        erase(watched_, s);
        erase(parked_, s);
    }
    static void on_close(void* self, curl_socket_t s) { static_cast<multi_driver*>(self)->closing(s); }

    static void erase(std::vector<curl_socket_t>& v, curl_socket_t s) { v.erase(std::remove(v.begin(), v.end(), s), v.end()); }

    static int on_timer(CURLM*, long timeout_ms, void* userp) {
        auto& d = *static_cast<multi_driver*>(userp);
        d.loop_.arm_timer(std::chrono::milliseconds(timeout_ms), &multi_driver::on_timeout, &d);
        return 0;
    }

    static void on_ready(void* self, int fd, unsigned ready) {
        auto& d = *static_cast<multi_driver*>(self);
        using loop = cachestore::detail::epoll_loop;
        const int mask = ((ready & loop::readable) != 0 ? CURL_CSELECT_IN : 0) |
                         ((ready & loop::writable) != 0 ? CURL_CSELECT_OUT : 0) |
                         ((ready & loop::failed) != 0 ? CURL_CSELECT_ERR : 0);
        int running = 0;
        curl_multi_socket_action(d.multi_, fd, mask, &running);
        d.report_done();
    }

    static void on_timeout(void* self) {
        auto& d = *static_cast<multi_driver*>(self);
        int running = 0;
        curl_multi_socket_action(d.multi_, CURL_SOCKET_TIMEOUT, 0, &running);
        d.report_done();
    }

    void report_done() {
        int queued = 0;
        while (CURLMsg* m = curl_multi_info_read(multi_, &queued))
            if (m->msg == CURLMSG_DONE) done_(self_, m->easy_handle, m->data.result);
    }

    cachestore::detail::epoll_loop& loop_;
    done_fn done_;
    void* self_;
    CURLM* multi_ = nullptr;
    std::vector<curl_socket_t> watched_; ///< what the loop watches for libcurl (a few dozen at most)
    std::vector<curl_socket_t> parked_;  ///< idle connections' sockets, still registered with the loop
    socket_registry sockets_;            ///< after the vectors: the multi's clean-up closes sockets through it
};

} // namespace cachestore::s3::detail
