// SPDX-License-Identifier: BSL-1.0
// A nats-server of the test's own (test_nats.cpp): `nats-server -js -a 127.0.0.1 -p <free port>
// -sd <temporary store>`, started as a child process and waited for until it accepts
// connections. The destructor kills it and removes its store, also when the test fails.
// Never a fixed port, never an address other than 127.0.0.1. nats-server missing is a failure
// (std::runtime_error), not a skip: bootstrap.sh installs it.
//
// nats_cluster: three such servers routed to each other (each its own store, JetStream on,
// cluster name "shmqtest"), for replicated streams.
#pragma once

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <csignal>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmq::test {

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick).
inline int free_loopback_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("socket failed");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        ::close(fd);
        throw std::runtime_error("bind to 127.0.0.1:0 failed");
    }
    ::close(fd);
    return ntohs(a.sin_port);
}

inline bool loopback_accepts(int port) noexcept {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

inline std::string find_nats_server() {
    for (const char* dir : {"/usr/bin", "/usr/local/bin", "/usr/sbin"}) {
        const std::string p = std::string(dir) + "/nats-server";
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    throw std::runtime_error("nats-server is not installed (run ./bootstrap.sh): the NATS tests need it");
}

class nats_server {
public:
    /// cluster_port/routes: for a cluster member (0/empty: standalone).
    explicit nats_server(int cluster_port = 0, std::vector<int> routes = {}, std::string node = "n")
        : port_(free_loopback_port()), cluster_port_(cluster_port), routes_(std::move(routes)),
          node_(std::move(node)) {
        char tmpl[] = "/tmp/shmq-nats-XXXXXX";
        if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
        store_ = tmpl;
        start();
    }
    ~nats_server() {
        kill9();
        std::error_code ec;
        std::filesystem::remove_all(store_, ec);
    }
    nats_server(const nats_server&) = delete;
    nats_server& operator=(const nats_server&) = delete;

    int port() const noexcept { return port_; }
    std::string hostport() const { return "127.0.0.1:" + std::to_string(port_); }
    std::string url(const std::string& name, const std::string& query = "") const {
        return "nats://" + hostport() + "/" + name + (query.empty() ? "" : "?" + query);
    }
    bool running() const noexcept { return pid_ > 0; }

    /// Starts (again) on the same port and store. When wait: until it accepts (10 s at most).
    void start(bool wait = true) {
        const std::string exe = find_nats_server();
        std::vector<std::string> args{exe, "-js", "-a", "127.0.0.1", "-p", std::to_string(port_),
                                      "-sd", store_ + "/js", "-n", node_};
        if (cluster_port_) {
            args.insert(args.end(), {"-cluster", "nats://127.0.0.1:" + std::to_string(cluster_port_),
                                     "--cluster_name", "shmqtest"});
            std::string r;
            for (int p : routes_) r += (r.empty() ? "" : ",") + std::string("nats://127.0.0.1:") + std::to_string(p);
            if (!r.empty()) args.insert(args.end(), {"-routes", r});
        }
        const std::string log = store_ + "/log";
        std::fflush(nullptr);
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
            if (fd >= 0) {
                ::dup2(fd, 1);
                ::dup2(fd, 2);
            }
            ::setpgid(0, 0);   // not in the test's process group: the test's timeout kills us by pid
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(exe.c_str(), argv.data());
            ::_exit(127);
        }
        if (!wait) return;
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!loopback_accepts(port_)) {
            int st = 0;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("nats-server exited at start: " + log_tail());
            }
            if (std::chrono::steady_clock::now() > give_up) {
                kill9();
                throw std::runtime_error("nats-server did not accept within 10 s: " + log_tail());
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }

    /// SIGKILL and reap (no clean shutdown: what a crash does). Never throws.
    void kill9() noexcept {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        int st = 0;
        while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {}
        pid_ = -1;
    }

    std::string log_tail() const {
        std::ifstream in(store_ + "/log");
        std::stringstream ss;
        ss << in.rdbuf();
        const std::string s = ss.str();
        return s.size() > 2000 ? s.substr(s.size() - 2000) : s;
    }

private:
    int port_;
    int cluster_port_;
    std::vector<int> routes_;
    std::string node_;
    std::string store_;
    pid_t pid_ = -1;
};

/// Three routed nats-servers with JetStream (replicas up to 3).
class nats_cluster {
public:
    nats_cluster() {
        const std::array<int, 3> cp{free_loopback_port(), free_loopback_port(), free_loopback_port()};
        for (int i = 0; i < 3; ++i) {
            std::vector<int> routes;
            for (int j = 0; j < 3; ++j)
                if (j != i) routes.push_back(cp[j]);
            nodes_.push_back(std::make_unique<nats_server>(cp[i], routes, "node" + std::to_string(i)));
        }
    }
    nats_server& node(int i) { return *nodes_.at(i); }
    /// "nats://a,b,c/name?query"
    std::string url(const std::string& name, const std::string& query = "") const {
        std::string u = "nats://";
        for (std::size_t i = 0; i < nodes_.size(); ++i) u += (i ? "," : "") + nodes_[i]->hostport();
        return u + "/" + name + (query.empty() ? "" : "?" + query);
    }

private:
    std::vector<std::unique_ptr<nats_server>> nodes_;
};

} // namespace shmq::test
