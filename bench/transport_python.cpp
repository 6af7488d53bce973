// SPDX-License-Identifier: BSL-1.0
// shmq-bench — Python's multiprocessing.Queue, SimpleQueue and Pipe, run by python_baseline.py.
//
// The script runs one repetition of one scenario with the same protocol as the C++ transports
// (see its docstring) and prints one JSON line. It runs in a process group of its own so that a
// timeout or Ctrl-C kills it together with the children multiprocessing forked.
#include "harness.hpp"
#include "transport.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmq_bench {

std::size_t queue_maxsize(std::size_t message_size) {
    return std::clamp<std::size_t>((std::size_t{1} << 20) / std::max<std::size_t>(message_size, 1), 2, 16384);
}

namespace {

/// The number after "key": in a flat JSON object, or NaN.
double json_number(const std::string& text, const std::string& key) {
    auto at = text.find("\"" + key + "\":");
    if (at == std::string::npos) return std::nan("");
    return std::strtod(text.c_str() + at + key.size() + 3, nullptr);
}

/// The string after "key": in a flat JSON object (no escapes expected), or "".
std::string json_string(const std::string& text, const std::string& key) {
    auto at = text.find("\"" + key + "\":");
    if (at == std::string::npos) return {};
    auto q = text.find('"', at + key.size() + 3);
    if (q == std::string::npos) return {};
    auto e = text.find('"', q + 1);
    return e == std::string::npos ? std::string() : text.substr(q + 1, e - q - 1);
}

class python_transport final : public transport {
public:
    python_transport(std::string name, std::string script_name, bool shared)
        : name_(std::move(name)), script_name_(std::move(script_name)), shared_(shared) {}

    std::string name() const override { return name_; }
    role what() const override { return role::baseline; }
    bool shared() const override { return shared_; }
    bool external() const override { return true; }
    std::string unsupported(payload kind, std::size_t, mode) const override {
        return kind == payload::pod ? "no such payload in Python" : std::string();
    }
    std::string remark(payload, std::size_t size, mode m) const override {
        if (script_name_ == "queue" && m == mode::throughput)
            return "Queue(maxsize=" + std::to_string(queue_maxsize(size)) + ")";
        return {};
    }

    run_result run_external(const scenario& sc, const run_settings& s) override {
        run_result r;
        if (s.python.empty() || s.python_script.empty()) {
            r.state = status::skipped;
            r.note = s.python.empty() ? "python3 not found" : "python_baseline.py not found";
            return r;
        }
        char num[64];
        std::vector<std::string> args = {s.python, s.python_script, "--transport", script_name_,
                                         "--kind", sc.kind == payload::record ? "record" : "bytes",
                                         "--size", std::to_string(sc.size),
                                         "--pairs", std::to_string(sc.pairs),
                                         "--mode", sc.what == mode::latency ? "latency" : "throughput"};
        std::snprintf(num, sizeof num, "%.3f", s.duration_s);
        args.insert(args.end(), {"--duration", num});
        std::snprintf(num, sizeof num, "%.0f", s.timeout_s);
        args.insert(args.end(), {"--timeout", num});
        if (!s.cpus.empty()) {
            std::string list;
            for (int c : s.cpus) list += (list.empty() ? "" : ",") + std::to_string(c);
            args.insert(args.end(), {"--cpus", list});
        }
        if (sc.what == mode::throughput && script_name_ == "queue")
            args.insert(args.end(), {"--maxsize", std::to_string(queue_maxsize(sc.size))});

        std::string out;
        const double limit = s.duration_s + s.timeout_s + 30;   // + interpreter start and ready
        other_load load;
        double cpu_s = 0;
        int code = spawn_and_read(args, limit, out, cpu_s);
        r.others = load.finish(cpu_s);
        if (code == -1) {
            r.state = status::timeout;
            r.note = "python3 did not finish; killed";
            return r;
        }
        const std::string st = json_string(out, "status");
        if (st != "ok") {
            r.state = st == "timeout" ? status::timeout : status::error;
            r.note = json_string(out, "note");
            if (r.note.empty()) r.note = "python3 exited with " + std::to_string(code) + (out.empty() ? ", no output" : "");
            return r;
        }
        if (sc.what == mode::latency) {
            r.samples = static_cast<std::uint64_t>(json_number(out, "samples"));
            r.p50 = json_number(out, "p50_ns");
            r.p99 = json_number(out, "p99_ns");
            r.p999 = json_number(out, "p999_ns");
        } else {
            r.messages = static_cast<std::uint64_t>(json_number(out, "messages"));
            r.seconds = json_number(out, "seconds");
            r.msgs_per_s = static_cast<double>(r.messages) / r.seconds;
            r.bytes_per_s = r.msgs_per_s * static_cast<double>(sc.size);
        }
        return r;
    }

private:
    /// Runs argv, collects its stdout; returns its exit status, or -1 after killing it at the
    /// deadline.
    /// cpu_s: CPU seconds of the script and the children it waited for.
    static int spawn_and_read(const std::vector<std::string>& args, double limit_s, std::string& out,
                              double& cpu_s) {
        int fd[2];
        if (::pipe2(fd, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
        std::fflush(nullptr);
        const pid_t parent = ::getpid();
        pid_t pid = ::fork();
        if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
        if (pid == 0) {
            ::setpgid(0, 0);
            ::signal(SIGINT, SIG_DFL);
            ::signal(SIGTERM, SIG_DFL);
            ::signal(SIGHUP, SIG_DFL);
            ::signal(SIGPIPE, SIG_DFL);
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            ::dup2(fd[1], STDOUT_FILENO);
            std::vector<char*> argv;
            for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::setpgid(pid, pid);   // also here, so the group exists before we may need to kill it
        set_foreign_group(pid);
        ::close(fd[1]);
        const auto deadline = clock::now() + std::chrono::milliseconds(static_cast<long>(limit_s * 1000));
        char buf[4096];
        bool timed_out = false;
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
            if (left <= 0) { timed_out = true; break; }
            pollfd p{fd[0], POLLIN, 0};
            int pr = ::poll(&p, 1, static_cast<int>(std::min<long>(left, 1000)));
            if (pr < 0 && errno == EINTR) continue;
            if (pr <= 0) continue;
            ssize_t n = ::read(fd[0], buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;   // EOF: the script is done
            out.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fd[0]);
        if (timed_out) ::kill(-pid, SIGKILL);
        // After EOF the script exits at once; bound this wait too. WNOWAIT keeps the leader a
        // zombie, so its group id cannot be reused before the stray children (if any) are killed.
        siginfo_t info{};
        for (int i = 0; i < 5000; ++i) {
            info.si_pid = 0;
            if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                info.si_pid == pid)
                break;
            if (i == 3000) ::kill(-pid, SIGKILL);
            ::usleep(1000);
        }
        ::kill(-pid, SIGKILL);
        int st = 0;
        rusage ru{};
        while (::wait4(pid, &st, 0, &ru) < 0 && errno == EINTR) {}
        cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
        set_foreign_group(0);
        if (timed_out) return -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }

    std::string name_, script_name_;
    bool shared_;
};

} // namespace

std::vector<std::unique_ptr<transport>> make_python_transports() {
    std::vector<std::unique_ptr<transport>> v;
    v.push_back(std::make_unique<python_transport>("py Queue", "queue", true));
    v.push_back(std::make_unique<python_transport>("py SimpleQueue", "simplequeue", true));
    v.push_back(std::make_unique<python_transport>("py Pipe", "pipe", false));
    return v;
}

} // namespace shmq_bench
