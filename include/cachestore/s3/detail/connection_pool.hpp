// cachestore/s3/detail/connection_pool.hpp - reusable libcurl connections,
// owned by one process and reaped when idle too long.
//
// Each pooled connection is a private multi handle with one easy handle: the
// multi handle owns the connection cache, so a kept-alive connection is reused
// by whichever thread next takes that pool entry, and no libcurl handle is ever
// used by two threads at once.
//
// fork(): a child inherits the parent's idle connections, i.e. the very same
// TCP streams. If both used one, each would read whichever answer came first:
// wrong bytes with a 2xx status. So every connection remembers the process
// that opened it, and a pool used in another process discards what it
// inherited without a byte of I/O: the sockets those handles opened (recorded
// through CURLOPT_OPENSOCKETFUNCTION) are first replaced, with dup2(), by an
// unconnected socket, so that libcurl's clean-up (which for TLS reads and
// writes close_notify) talks to nothing, and the parent's streams stay whole.
// The connections a thread of the parent was using at the fork never come
// back to the child's pool: the pool's socket_registry closes the child's
// copies of their sockets at its first acquire in the child.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include <curl/curl.h>

#include "cachestore/detail/fork_safe_mutex.hpp"
#include "cachestore/detail/fork_generation.hpp"
#include "cachestore/s3/detail/request_buffers.hpp"
#include "cachestore/s3/detail/socket_registry.hpp"

namespace cachestore::s3::detail {

/// libcurl's global state, initialised once before the first handle exists.
inline void curl_global() {
    static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    (void)rc;
}

/// One reusable connection: a multi handle owning one easy handle, plus the
/// buffers a request on it is built in. Used by one call at a time.
struct connection {
    CURLM* multi = nullptr;
    CURL* easy = nullptr;
    pid_t owner = ::getpid();          ///< the process that opened it; no other may use its sockets
    std::vector<curl_socket_t> sockets; ///< sockets libcurl opened for this handle and has not closed
    std::chrono::steady_clock::time_point idle_since{}; ///< when it last went back to the pool
    bool configured = false;           ///< the per-store constant options are set (see perform)
    bool custom_method = false;        ///< CURLOPT_CUSTOMREQUEST is set and must be cleared
    request_buffers bufs;              ///< what a request on it is signed and laid out in

    explicit connection(socket_registry* reg = nullptr) : reg_(reg) {
        curl_global();
        multi = curl_multi_init();
        easy = curl_easy_init();
        if (easy == nullptr) return;
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, &connection::open_socket);
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, this);
        curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, &connection::close_socket);
        curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, this);
    }
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    connection(connection&&) = delete;
    connection& operator=(connection&&) = delete;
    ~connection() {
        if (owner != ::getpid()) disarm();
        if (easy != nullptr) curl_easy_cleanup(easy);
        if (multi != nullptr) curl_multi_cleanup(multi);
    }
    [[nodiscard]] bool ok() const noexcept { return multi != nullptr && easy != nullptr; }

    /// In a process that did not open them: points every socket number this
    /// handle holds at a fresh unconnected socket, so that the clean-up that
    /// follows neither reads from nor writes to the inherited TCP streams.
    void disarm() noexcept {
        for (const curl_socket_t s : sockets) {
            const int dummy = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (dummy >= 0) {
                ::dup2(dummy, s);
                ::close(dummy);
            }
        }
    }

private:
    socket_registry* reg_; ///< the pool's, or nullptr

    static curl_socket_t open_socket(void* self, curlsocktype, curl_sockaddr* a) {
        auto& c = *static_cast<connection*>(self);
        const curl_socket_t s = ::socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
        if (s == CURL_SOCKET_BAD) return s;
        try {
            c.sockets.push_back(s);
        } catch (...) { // out of memory: no connection rather than an unrecorded one
            ::close(s);
            return CURL_SOCKET_BAD;
        }
        if (c.reg_ != nullptr) c.reg_->add(s);
        return s;
    }
    static int close_socket(void* self, curl_socket_t s) {
        auto& c = *static_cast<connection*>(self);
        c.sockets.erase(std::remove(c.sockets.begin(), c.sockets.end(), s), c.sockets.end());
        if (c.reg_ != nullptr) c.reg_->remove(s);
        return ::close(s);
    }
};

/// Idle connections, most recently used last (its socket is the warmest).
/// Connections idle longer than `max_idle_time` are closed at the next
/// acquire or release (servers close theirs after 5-75 s, leaving ours in
/// CLOSE_WAIT), and by reap().
class connection_pool {
public:
    using clock = std::chrono::steady_clock;

    connection_pool(std::size_t max_idle, clock::duration max_idle_time)
        : max_idle_(max_idle), max_idle_time_(max_idle_time) {}

    std::unique_ptr<connection> acquire() {
        const pid_t me = ::getpid();
        std::uint64_t seen = gen_.load(std::memory_order_relaxed);
        const std::uint64_t gen = cachestore::detail::fork_generation();
        const bool first_in_child = seen != gen && gen_.compare_exchange_strong(seen, gen);
        std::vector<std::unique_ptr<connection>> drop; // closed outside the lock
        std::unique_ptr<connection> c;
        {
            std::lock_guard lock(mu_);
            take_stale(drop, clock::now());
            while (!idle_.empty() && !c) {
                c = std::move(idle_.back());
                idle_.pop_back();
                if (c->owner != me) drop.push_back(std::move(c)); // inherited across fork(): never reused
            }
        }
        if (first_in_child) {
            drop.clear(); // the idle ones: disarmed and cleaned up (their sockets were unconnected)
            sockets_.close_inherited(); // what the parent's threads held at the fork
        }
        if (c) return c;
        opened_.fetch_add(1, std::memory_order_relaxed);
        return std::make_unique<connection>(&sockets_);
    }

    void release(std::unique_ptr<connection> c) {
        std::vector<std::unique_ptr<connection>> drop;
        const auto now = clock::now();
        c->idle_since = now;
        {
            std::lock_guard lock(mu_);
            take_stale(drop, now);
            if (idle_.size() < max_idle_) idle_.push_back(std::move(c));
        }
    }

    /// Closes every connection idle longer than the limit now.
    void reap() {
        std::vector<std::unique_ptr<connection>> drop;
        std::lock_guard lock(mu_);
        take_stale(drop, clock::now());
    }

    /// Connection objects created so far (each holds at most one socket).
    [[nodiscard]] std::size_t created() const noexcept { return opened_.load(std::memory_order_relaxed); }

    /// Connections waiting in the pool.
    [[nodiscard]] std::size_t idle() {
        std::lock_guard lock(mu_);
        return idle_.size();
    }

private:
    /// Moves the connections idle too long (the oldest are first) into `out`.
    void take_stale(std::vector<std::unique_ptr<connection>>& out, clock::time_point now) {
        std::size_t n = 0;
        while (n < idle_.size() && now - idle_[n]->idle_since > max_idle_time_) ++n;
        if (n == 0) return;
        out.insert(out.end(), std::make_move_iterator(idle_.begin()),
                   std::make_move_iterator(idle_.begin() + static_cast<std::ptrdiff_t>(n)));
        idle_.erase(idle_.begin(), idle_.begin() + static_cast<std::ptrdiff_t>(n));
    }

    socket_registry sockets_{512};           ///< every connection's; before idle_, which closes through it
    std::atomic<std::uint64_t> gen_{cachestore::detail::fork_generation()}; ///< the process it serves
    cachestore::detail::fork_safe_mutex mu_; ///< a forked child never inherits it locked
    std::vector<std::unique_ptr<connection>> idle_;
    std::size_t max_idle_;
    clock::duration max_idle_time_;
    std::atomic<std::size_t> opened_{0};
};

} // namespace cachestore::s3::detail
