// detail::epoll_loop (the S3 engine's built-in event loop, docs/async.md):
// posted work from many threads, one-shot timers, descriptor readiness,
// unwatching inside a batch, parking, and the epoll descriptor as an
// embedding handle.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "cachestore/detail/epoll_loop.hpp"

using cachestore::detail::epoll_loop;
using namespace std::chrono_literals;
using sclock = std::chrono::steady_clock;

namespace {

struct pipe_pair {
    int r = -1, w = -1;
    pipe_pair() {
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
        r = p[0];
        w = p[1];
    }
    pipe_pair(const pipe_pair&) = delete;
    pipe_pair& operator=(const pipe_pair&) = delete;
    ~pipe_pair() {
        ::close(r);
        ::close(w);
    }
    void poke() const { REQUIRE(::write(w, "x", 1) == 1); }
};

/// Runs the loop until `done()` or 5 s.
template <class F>
bool run_until(epoll_loop& l, F done) {
    const auto until = sclock::now() + 5s;
    while (!done()) {
        if (sclock::now() > until) return false;
        l.run_for(50ms);
    }
    return true;
}

/// An io_fn: counts its calls in the int at `self` and reads `fd` empty.
void count_and_drain(void* self, int fd, unsigned) {
    ++*static_cast<int*>(self);
    char c = 0;
    while (::read(fd, &c, 1) == 1) {
    }
}

bool readable_now(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

} // namespace

TEST_CASE("epoll_loop: work posted from 8 threads runs once each, on the loop thread, in each thread's order") {
    epoll_loop l;
    REQUIRE(l.ok());
    constexpr int threads = 8, each = 1000;
    std::vector<std::vector<int>> seen(threads); // touched on the loop thread only
    std::atomic<int> wrong_thread{0};
    const auto loop_id = std::this_thread::get_id();
    std::vector<std::thread> ts;
    ts.reserve(threads);
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] {
            for (int i = 0; i < each; ++i)
                l.post([&, t, i, guard = std::make_unique<int>(i)] { // move-only work is fine
                    if (std::this_thread::get_id() != loop_id) ++wrong_thread;
                    seen[static_cast<std::size_t>(t)].push_back(*guard == i ? i : -1);
                });
        });
    REQUIRE(run_until(l, [&] {
        std::size_t n = 0;
        for (const auto& v : seen) n += v.size();
        return n == static_cast<std::size_t>(threads * each);
    }));
    for (auto& t : ts) t.join();
    l.run_for(0ms);
    CHECK(wrong_thread == 0);
    for (const auto& v : seen) {
        REQUIRE(v.size() == static_cast<std::size_t>(each));
        for (int i = 0; i < each; ++i) CHECK(v[static_cast<std::size_t>(i)] == i);
    }
}

TEST_CASE("epoll_loop: a timer fires once, not early; re-armed from its callback; disarmed, never") {
    epoll_loop l;
    struct state {
        epoll_loop* l;
        int fired = 0;
        sclock::time_point at{};
    } st{&l};
    const auto t0 = sclock::now();
    l.arm_timer(60ms, +[](void* self) {
        auto& s = *static_cast<state*>(self);
        ++s.fired;
        s.at = sclock::now();
    }, &st);
    CHECK(l.timer_at() != epoll_loop::clock::time_point::max());
    REQUIRE(run_until(l, [&] { return st.fired == 1; }));
    CHECK(st.at - t0 >= 60ms);
    l.run_for(100ms);
    CHECK(st.fired == 1); // one-shot
    CHECK(l.timer_at() == epoll_loop::clock::time_point::max());

    // Re-armed from inside its own callback.
    st.fired = 0;
    l.arm_timer(10ms, +[](void* self) {
        auto& s = *static_cast<state*>(self);
        if (++s.fired == 1) s.l->arm_timer(10ms, +[](void* p) { static_cast<state*>(p)->fired += 10; }, self);
    }, &st);
    REQUIRE(run_until(l, [&] { return st.fired == 11; }));

    // Disarmed: nothing.
    st.fired = 0;
    l.arm_timer(10ms, +[](void* self) { ++static_cast<state*>(self)->fired; }, &st);
    l.arm_timer(-1ms, nullptr, nullptr);
    l.run_for(60ms);
    CHECK(st.fired == 0);
}

TEST_CASE("epoll_loop: a watched descriptor calls back when ready, with what it is ready for") {
    epoll_loop l;
    pipe_pair p;
    struct state {
        int calls = 0;
        unsigned ready = 0;
        int fd = -1;
    } st;
    REQUIRE(l.watch(p.r, epoll_loop::readable, +[](void* self, int fd, unsigned ready) {
        auto& s = *static_cast<state*>(self);
        ++s.calls;
        s.ready = ready;
        s.fd = fd;
        char c = 0;
        while (::read(fd, &c, 1) == 1) {
        }
    }, &st));
    CHECK(l.watched() == 1);
    l.run_for(30ms);
    CHECK(st.calls == 0); // nothing written
    p.poke();
    REQUIRE(run_until(l, [&] { return st.calls == 1; }));
    CHECK(st.fd == p.r);
    CHECK((st.ready & epoll_loop::readable) != 0);

    // The write end, watched for writable: ready at once.
    int w_calls = 0;
    REQUIRE(l.watch(p.w, epoll_loop::writable, +[](void* self, int, unsigned ready) {
        if ((ready & epoll_loop::writable) != 0) ++*static_cast<int*>(self);
    }, &w_calls));
    REQUIRE(run_until(l, [&] { return w_calls >= 1; }));
    l.unwatch(p.w);
    const int after = w_calls;
    l.run_for(30ms);
    CHECK(w_calls == after);
    l.unwatch(p.r);
    CHECK(l.watched() == 0);
    p.poke();
    l.run_for(30ms);
    CHECK(st.calls == 1);
}

TEST_CASE("epoll_loop: a callback that unwatches another ready descriptor: its pending event is dropped") {
    epoll_loop l;
    pipe_pair a, b;
    struct state {
        epoll_loop* l;
        int a_fd, b_fd;
        int calls = 0;
    } st{&l, a.r, b.r};
    auto cb = +[](void* self, int fd, unsigned) {
        auto& s = *static_cast<state*>(self);
        ++s.calls;
        s.l->unwatch(s.a_fd); // whichever runs first unwatches both
        s.l->unwatch(s.b_fd);
        (void)fd;
    };
    REQUIRE(l.watch(a.r, epoll_loop::readable, cb, &st));
    REQUIRE(l.watch(b.r, epoll_loop::readable, cb, &st));
    a.poke();
    b.poke();
    std::this_thread::sleep_for(10ms); // both ready before the one epoll_wait
    l.run_for(100ms);
    CHECK(st.calls == 1);
    CHECK(l.watched() == 0);
}

TEST_CASE("epoll_loop: a parked descriptor calls nothing back; watched again, it does, for the old or a new interest") {
    epoll_loop l;
    pipe_pair p;
    int calls = 0;
    REQUIRE(l.watch(p.r, epoll_loop::readable, count_and_drain, &calls));
    l.park(p.r);
    CHECK(l.watched() == 0);
    l.run_for(20ms);
    CHECK(calls == 0);
    REQUIRE(l.watch(p.r, epoll_loop::readable, count_and_drain, &calls)); // the same interest: the registration kept
    CHECK(l.watched() == 1);
    p.poke();
    REQUIRE(run_until(l, [&] { return calls == 1; }));

    // The write end: parked, then watched for another interest.
    unsigned seen = 0;
    auto record = +[](void* self, int, unsigned ready) { *static_cast<unsigned*>(self) |= ready; };
    REQUIRE(l.watch(p.w, epoll_loop::readable, record, &seen)); // a pipe's write end is never readable
    l.park(p.w);
    REQUIRE(l.watch(p.w, epoll_loop::readable | epoll_loop::writable, record, &seen));
    REQUIRE(run_until(l, [&] { return (seen & epoll_loop::writable) != 0; }));
    l.unwatch(p.w);
    l.unwatch(p.r);
    CHECK(l.watched() == 0);
}

TEST_CASE("epoll_loop: a parked descriptor that becomes ready ends its registration; the loop does not spin") {
    epoll_loop l;
    pipe_pair p;
    int calls = 0;
    auto count = +[](void* self, int, unsigned) { ++*static_cast<int*>(self); }; // never drains
    REQUIRE(l.watch(p.r, epoll_loop::readable, count, &calls));
    l.park(p.r);
    p.poke(); // stays readable: level-triggered, it would be reported at every wait
    CHECK(readable_now(l.fd()));
    CHECK(l.run_for(0ms) == 0); // reported once, and dropped: no callback
    CHECK_FALSE(readable_now(l.fd()));
    int waits = 0;
    const auto t0 = sclock::now();
    while (sclock::now() - t0 < 100ms) {
        l.run_for(20ms);
        ++waits;
    }
    CHECK(waits <= 6); // each wait sleeps its 20 ms
    CHECK(calls == 0);
    REQUIRE(l.watch(p.r, epoll_loop::readable, count, &calls)); // registered anew
    REQUIRE(run_until(l, [&] { return calls >= 1; }));
    l.unwatch(p.r);
}

TEST_CASE("epoll_loop: a parked descriptor unwatched, closed and its number reused: the new one is watched") {
    epoll_loop l;
    int calls = 0;
    auto first = std::make_unique<pipe_pair>();
    const int number = first->r;
    REQUIRE(l.watch(first->r, epoll_loop::readable, count_and_drain, &calls));
    l.park(first->r);
    l.unwatch(first->r); // what the S3 engine does just before libcurl closes a socket
    first.reset();
    pipe_pair second;
    REQUIRE((second.r == number || second.w == number)); // the lowest free number, reused
    const int fd = second.r == number ? second.r : second.w;
    if (fd == second.r) {
        REQUIRE(l.watch(second.r, epoll_loop::readable, count_and_drain, &calls));
        second.poke();
        REQUIRE(run_until(l, [&] { return calls == 1; }));
    } else {
        unsigned seen = 0;
        REQUIRE(l.watch(second.w, epoll_loop::writable, +[](void* self, int, unsigned r) { *static_cast<unsigned*>(self) |= r; },
                        &seen));
        REQUIRE(run_until(l, [&] { return seen != 0; }));
    }
    l.unwatch(fd);
}

TEST_CASE("epoll_loop: fd() is readable when there is work, for a host loop embedding this one") {
    epoll_loop l;
    CHECK_FALSE(readable_now(l.fd()));
    int ran = 0;
    std::thread([&] { l.post([&] { ++ran; }); }).join();
    CHECK(readable_now(l.fd()));
    CHECK(l.run_for(0ms) >= 1);
    CHECK(ran == 1);
    l.run_for(0ms);
    CHECK_FALSE(readable_now(l.fd()));

    // Idle: run_for waits its timeout, then returns with nothing done.
    const auto t0 = sclock::now();
    CHECK(l.run_for(50ms) == 0);
    CHECK(sclock::now() - t0 >= 45ms);
}

TEST_CASE("epoll_loop: abandon() closes its descriptors; the loop is dead") {
    epoll_loop l;
    const int ep = l.fd();
    REQUIRE(ep >= 0);
    l.abandon();
    CHECK_FALSE(l.ok());
    CHECK(::fcntl(ep, F_GETFD) == -1); // closed (no other thread opens descriptors here)
}
