// A fork_safe_mutex held by another thread at fork() is never inherited
// locked: 50 forks while a thread holds it nearly all the time, each child
// must lock it at once. (With a plain std::mutex most children would block
// forever on a lock whose owner does not exist in them.)
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <mutex>
#include <thread>

#include "cachestore/detail/fork_safe_mutex.hpp"

TEST_CASE("fork_safe_mutex: a child forked while another thread holds it can lock it", "[fork]") {
#if defined(__SANITIZE_THREAD__)
    WARN("skipped under ThreadSanitizer (it does not support fork of a multi-threaded process)");
    return;
#endif
    cachestore::detail::fork_safe_mutex m;
    std::atomic<bool> stop{false};
    std::atomic<long> held{0};
    std::thread holder([&] {
        while (!stop) {
            const std::lock_guard lk(m);
            ++held;
            std::this_thread::sleep_for(std::chrono::microseconds(200)); // holds it ~all the time
        }
    });
    while (held.load() == 0) std::this_thread::yield();
    int stuck = 0;
    for (int i = 0; i < 50; ++i) {
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            m.lock();
            m.unlock();
            ::_exit(0);
        }
        int status = 0;
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        pid_t got = 0;
        while ((got = ::waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (got == 0) {
            ++stuck;
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
        } else {
            CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
        }
    }
    stop = true;
    holder.join();
    CHECK(stuck == 0);
}
