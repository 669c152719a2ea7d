// wait_child: how a forked test child ended, within a time limit (the fork
// tests of tests/fault/process_model_test.cpp and tests/layers/tiered_test.cpp).
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <chrono>
#include <string>
#include <thread>

namespace test_support {

/// Waits up to `limit` for `pid`; "" when it exited with 0, else how it ended
/// (a child still running at the limit is killed).
inline std::string wait_child(pid_t pid, std::chrono::seconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    int status = 0;
    for (;;) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0) return "waitpid failed";
        if (std::chrono::steady_clock::now() > until) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            return "hung (killed after " + std::to_string(limit.count()) + " s)";
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status) == 0 ? std::string() : "exit " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return WTERMSIG(status) == SIGALRM ? "hung (SIGALRM: an inherited lock or a parent's thread)"
                                           : "signal " + std::to_string(WTERMSIG(status));
    return "ended oddly";
}

} // namespace test_support
