// cachestore/s3/detail/socket_registry.hpp - the sockets libcurl opens for
// one store (its blocking connection pool, or its async engine), so that a
// forked child can close its copies of them.
//
// In a multi handle a connection outlives the easy handle that opened it, so
// the store records its sockets itself, through CURLOPT_OPENSOCKETFUNCTION
// and CURLOPT_CLOSESOCKETFUNCTION (libcurl keeps the close callback with the
// connection). Sockets are made with SOCK_CLOEXEC: a program the proxy
// exec()s does not inherit its connections (libcurl 7.88 sets no such flag).
//
// fork(): a child never uses the connections its parent was using at the
// fork (docs/async.md and docs/s3.md, "fork()"), but its copies of their
// sockets would stay open. close_inherited() closes them, and only them: the
// table is read without a lock (threads of the parent, which write it, may
// have been anywhere at the fork), so every entry is atomics written in an
// order that leaves an entry being added or removed unseen (its copy then
// stays open: the old behaviour), an entry the child itself added is never
// touched (it carries the fork generation that added it), and a descriptor
// is closed only when it is still the very socket recorded (its inode), not
// a file the child opened under the same number after closing what it
// inherited.
#pragma once

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <curl/curl.h>

#include "cachestore/detail/fork_generation.hpp"

namespace cachestore::s3::detail {

class socket_registry {
public:
    /// Room for `capacity` sockets open at once; one opened while it is full
    /// is not recorded (a child then keeps its copy open).
    explicit socket_registry(std::size_t capacity) : n_(capacity), e_(std::make_unique<entry[]>(capacity)) {
        (void)cachestore::detail::fork_generation(); // installs the fork handler before any fork
    }
    socket_registry(const socket_registry&) = delete;
    socket_registry& operator=(const socket_registry&) = delete;

    /// Sets the callbacks on an easy handle whose sockets it records alone.
    void attach(CURL* easy) noexcept {
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, &socket_registry::open_socket);
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, static_cast<void*>(this));
        curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, &socket_registry::close_socket);
        curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, static_cast<void*>(this));
    }

    /// Calls `fn(self, s)` just before libcurl closes each socket `s` it
    /// records (the async engine's loop ends its registration then).
    void on_close(void (*fn)(void* self, curl_socket_t s), void* self) noexcept {
        before_close_ = fn;
        before_close_self_ = self;
    }

    /// In a forked child: closes this process's copies of the sockets an
    /// ancestor recorded and has not closed. Returns how many it closed.
    int close_inherited() noexcept {
        const std::uint64_t me = cachestore::detail::fork_generation();
        int closed = 0;
        for (std::size_t i = 0; i < n_; ++i) {
            const int fd = e_[i].fd.load(std::memory_order_acquire);
            if (fd < 0 || e_[i].gen.load(std::memory_order_relaxed) == me) continue;
            struct stat sb {};
            if (::fstat(fd, &sb) != 0 || !S_ISSOCK(sb.st_mode) ||
                static_cast<std::uint64_t>(sb.st_ino) != e_[i].ino.load(std::memory_order_relaxed))
                continue;
            e_[i].fd.store(-1, std::memory_order_relaxed);
            if (::close(fd) == 0) ++closed;
        }
        return closed;
    }

    /// Sockets recorded now (for tests).
    [[nodiscard]] int size() const noexcept {
        int k = 0;
        for (std::size_t i = 0; i < n_; ++i) k += e_[i].fd.load(std::memory_order_relaxed) >= 0 ? 1 : 0;
        return k;
    }

    /// Records a socket just opened (one opened while the table is full is not).
    void add(int fd) noexcept {
        struct stat sb {};
        if (::fstat(fd, &sb) != 0) return;
        for (std::size_t i = 0; i < n_; ++i) {
            int expect = -1;
            // Claimed with a placeholder first: ino and gen are written while
            // fd reads < -1, which close_inherited skips.
            if (e_[i].fd.load(std::memory_order_relaxed) != -1 ||
                !e_[i].fd.compare_exchange_strong(expect, claimed, std::memory_order_acquire))
                continue;
            e_[i].ino.store(static_cast<std::uint64_t>(sb.st_ino), std::memory_order_relaxed);
            e_[i].gen.store(cachestore::detail::fork_generation(), std::memory_order_relaxed);
            e_[i].fd.store(fd, std::memory_order_release);
            return;
        }
    }
    /// Forgets a socket about to be closed (before close(): its number may be
    /// reused at once).
    void remove(int fd) noexcept {
        for (std::size_t i = 0; i < n_; ++i) {
            int expect = fd;
            if (e_[i].fd.load(std::memory_order_relaxed) == fd &&
                e_[i].fd.compare_exchange_strong(expect, -1, std::memory_order_release))
                return;
        }
    }

private:
    static constexpr int claimed = -2;
    struct entry {
        std::atomic<int> fd{-1};           ///< -1 free, `claimed` being written, else the socket
        std::atomic<std::uint64_t> ino{0}; ///< the socket's inode while fd >= 0
        std::atomic<std::uint64_t> gen{0}; ///< the fork generation that recorded it
    };

    static curl_socket_t open_socket(void* self, curlsocktype, curl_sockaddr* a) {
        const curl_socket_t s = ::socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
        if (s != CURL_SOCKET_BAD) static_cast<socket_registry*>(self)->add(s);
        return s;
    }
    static int close_socket(void* self, curl_socket_t s) {
        auto& r = *static_cast<socket_registry*>(self);
        if (r.before_close_ != nullptr) r.before_close_(r.before_close_self_, s);
        r.remove(s);
        return ::close(s);
    }

    std::size_t n_;
    std::unique_ptr<entry[]> e_;
    void (*before_close_)(void*, curl_socket_t) = nullptr;
    void* before_close_self_ = nullptr;
};

} // namespace cachestore::s3::detail
