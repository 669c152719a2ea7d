// Starts tests/fault/fault_server.py as a child process (scripted mode, proxy
// mode in front of another server, or TLS mode) and talks to its control
// endpoints. No test framework: shared by the fault tests (fault_harness.hpp),
// the layer tests and the layer rows of the benchmark. Needs libcurl.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <curl/curl.h>

extern char** environ; // NOLINT(readability-redundant-declaration): POSIX declares it only with _GNU_SOURCE

namespace faultproc {

class fault_process {
public:
    /// Starts `python3 script --watch-stdin extra...`; `problem()` says why not.
    fault_process(const std::string& python3, const std::string& script, const std::vector<std::string>& extra) {
        int out[2], in[2];
        if (pipe2(out, O_CLOEXEC) != 0) {
            problem_ = "pipe2 failed";
            return;
        }
        if (pipe2(in, O_CLOEXEC) != 0) {
            close(out[0]);
            close(out[1]);
            problem_ = "pipe2 failed";
            return;
        }
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
        std::vector<std::string> args{python3, script, "--watch-stdin"};
        args.insert(args.end(), extra.begin(), extra.end());
        std::vector<char*> argv;
        argv.reserve(args.size() + 1);
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        const int rc = posix_spawn(&pid_, python3.c_str(), &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        close(out[1]);
        close(in[0]);
        lifeline_ = in[1];
        if (rc != 0) {
            pid_ = -1;
            close(out[0]);
            problem_ = "could not start " + python3 + " " + script + ": " + std::system_category().message(rc);
            return;
        }
        // First line: "PORT <n>", within 15 s.
        std::string line;
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
        while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < until) {
            pollfd pfd{out[0], POLLIN, 0};
            if (poll(&pfd, 1, 200) <= 0) continue;
            char buf[64];
            const ssize_t n = read(out[0], buf, sizeof buf);
            if (n <= 0) break;
            line.append(buf, static_cast<std::size_t>(n));
        }
        close(out[0]);
        if (line.rfind("PORT ", 0) == 0) port_ = static_cast<int>(std::strtol(line.c_str() + 5, nullptr, 10));
        if (port_ <= 0) problem_ = "fault_server.py did not print its port (got '" + line + "')";
    }
    fault_process(const fault_process&) = delete;
    fault_process& operator=(const fault_process&) = delete;
    ~fault_process() {
        if (lifeline_ >= 0) close(lifeline_);
        if (pid_ > 0) {
            kill(pid_, SIGTERM);
            waitpid(pid_, nullptr, 0);
        }
    }

    [[nodiscard]] int port() const noexcept { return port_; }
    [[nodiscard]] const std::string& problem() const noexcept { return problem_; }
    [[nodiscard]] std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

    struct answer {
        long status = 0;   ///< 0 when the request failed
        std::string body;
        std::string error; ///< why the request failed ("" when it did not)
    };

    /// A request to a control endpoint (`/_fault/...`), plain libcurl; over
    /// https to localhost when the server speaks TLS (`ca_file` signed its certificate).
    [[nodiscard]] answer control(const char* method, const std::string& path, const std::string& body = {},
                                 const std::string& ca_file = {}) const {
        answer a;
        CURL* c = curl_easy_init();
        if (c == nullptr) {
            a.error = "curl_easy_init failed";
            return a;
        }
        const std::string url = (ca_file.empty() ? endpoint() : "https://localhost:" + std::to_string(port_)) + path;
        curl_easy_setopt(c, CURLOPT_URL, url.c_str());
        if (!ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, ca_file.c_str());
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (std::string_view(method) == "POST") {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
        }
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &a.body);
        if (const CURLcode rc = curl_easy_perform(c); rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
        else a.error = curl_easy_strerror(rc);
        curl_easy_cleanup(c);
        return a;
    }

private:
    static std::size_t collect(char* d, std::size_t s, std::size_t n, void* out) {
        static_cast<std::string*>(out)->append(d, s * n);
        return s * n;
    }

    pid_t pid_ = -1;
    int port_ = 0;
    int lifeline_ = -1;
    std::string problem_;
};

/// A TCP port on 127.0.0.1 where nothing listens (bound, then closed): connecting is refused.
inline int refused_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
        port = ntohs(a.sin_port);
    ::close(fd);
    return port;
}

} // namespace faultproc
