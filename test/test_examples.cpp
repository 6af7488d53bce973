// SPDX-License-Identifier: BSL-1.0
// The example programs (example/*.cpp) run as they ship: each is started as its own program, its
// stdout and stderr are captured, and its exit code and output are checked.
//
// b2 builds the examples with this build's variant and passes their paths as arguments (see
// test/Jamfile); by hand: test_examples -- <path to queue_quit> <path to pipe_quit> ...
//
// Every wait is bounded: output is read with poll() and a deadline, and an example that has not
// ended by then is killed with its whole process group (its forked children included).
#define BOOST_TEST_MODULE examples
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {

/// Generous: the slowest example takes well under a second, but sanitizer builds on a busy
/// two-core machine are many times slower.
constexpr auto run_limit = 120s;

/// The path of the example program called `name`, taken from the command line.
std::string example_path(std::string_view name) {
    const auto& suite = boost::unit_test::framework::master_test_suite();
    for (int i = 1; i < suite.argc; ++i) {
        const std::string_view arg = suite.argv[i];
        const auto slash = arg.rfind('/');
        if (arg.substr(slash == std::string_view::npos ? 0 : slash + 1) == name)
            return std::string(arg);
    }
    BOOST_FAIL("example program '" << name << "' not among the arguments (b2 passes them)");
    return {};
}

struct fd_pair {
    int r = -1, w = -1;
    fd_pair() {
        int fds[2];
        BOOST_REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        r = fds[0];
        w = fds[1];
    }
    ~fd_pair() {
        close_r();
        close_w();
    }
    void close_r() { if (r >= 0) ::close(r), r = -1; }
    void close_w() { if (w >= 0) ::close(w), w = -1; }
    fd_pair(const fd_pair&) = delete;
    fd_pair& operator=(const fd_pair&) = delete;
};

struct run_result {
    std::optional<int> exit_code;   // empty when killed by a signal or never ended
    int signal = 0;                 // the signal that ended it, if one did
    bool timed_out = false;         // it had not exited after run_limit
    bool left_running = false;      // it exited, but left a process holding its stdout/stderr
    std::string out, err;
};

/// Kills the example's whole process group and reaps the example if the test leaves early.
struct group_guard {
    pid_t pid;
    bool reaped = false;
    ~group_guard() {
        if (reaped) return;
        ::kill(-pid, SIGKILL);
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {}
    }
};

/// Runs `path` with no arguments and stdin from /dev/null, in a process group of its own, for at
/// most `limit`; then kills whatever is left of that group.
run_result run_program(const std::string& path, std::chrono::duration<double> limit = run_limit) {
    fd_pair out, err;
    const pid_t pid = ::fork();
    BOOST_REQUIRE_MESSAGE(pid >= 0, "fork: " << std::strerror(errno));
    if (pid == 0) {
        // Child: only async-signal-safe calls until exec, and never a Boost.Test macro.
        ::setpgid(0, 0);
        const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (in < 0 || ::dup2(in, 0) < 0 || ::dup2(out.w, 1) < 0 || ::dup2(err.w, 2) < 0)
            ::_exit(126);
        ::execl(path.c_str(), path.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::setpgid(pid, pid);   // also from here, so that the group exists before either side goes on
    group_guard guard{pid};
    out.close_w();
    err.close_w();

    run_result res;
    const auto deadline = clk::now() + std::chrono::duration_cast<clk::duration>(limit);
    // Once the example has exited, its pipes reach EOF as soon as its last child has exited
    // too; a process still holding them after this grace was left running by the example.
    constexpr auto grace = 2s;
    std::optional<clk::time_point> exited_at;

    // Read both pipes and watch for the example's exit. The exit is observed without reaping
    // (WNOWAIT): while the example is a zombie its pid, which names its process group, cannot be
    // reused, so killing that group below cannot hit a stranger.
    for (;;) {
        if (!exited_at) {
            siginfo_t info{};
            const int r = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
            BOOST_REQUIRE_MESSAGE(r == 0 || errno == EINTR, "waitid: " << std::strerror(errno));
            if (r == 0 && info.si_pid == pid) exited_at = clk::now();
        }
        const bool pipes_open = out.r >= 0 || err.r >= 0;
        if (exited_at && !pipes_open) break;
        const auto now = clk::now();
        if (!exited_at && now >= deadline) {
            res.timed_out = true;
            break;
        }
        if (exited_at && now >= *exited_at + grace) {
            res.left_running = true;
            break;
        }
        // Short polls: the example's exit is noticed by the waitid above, not by poll.
        pollfd fds[2] = {{out.r, POLLIN, 0}, {err.r, POLLIN, 0}};   // fd -1 is ignored
        const int n = ::poll(fds, 2, pipes_open ? 50 : 10);
        if (n < 0 && errno == EINTR) continue;
        BOOST_REQUIRE_MESSAGE(n >= 0, "poll: " << std::strerror(errno));
        for (int i = 0; i < 2; ++i) {
            if (fds[i].revents == 0) continue;
            char buf[4096];
            const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
            if (got < 0 && errno == EINTR) continue;
            if (got > 0) {
                (i == 0 ? res.out : res.err).append(buf, static_cast<std::size_t>(got));
            } else {
                i == 0 ? out.close_r() : err.close_r();
            }
        }
    }

    // Anything of the example still running (a child it failed to join) goes now.
    ::kill(-pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    guard.reaped = true;
    if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) res.signal = WTERMSIG(status);
    return res;
}

/// Runs the example `name` and checks that it ends by itself, with exit code 0, printing
/// exactly `expected_out` and nothing on stderr.
void check_example(std::string_view name, const std::string& expected_out) {
    const run_result res = run_program(example_path(name));
    BOOST_TEST_CONTEXT(name << " wrote on stderr:\n" << res.err) {
        BOOST_TEST(!res.timed_out);
        BOOST_TEST(!res.left_running);
        BOOST_TEST(res.signal == 0);
        BOOST_TEST(res.exit_code.value_or(-1) == 0);
        BOOST_TEST(res.out == expected_out);
        BOOST_TEST(res.err.empty());
    }
}

} // namespace

BOOST_AUTO_TEST_CASE(queue_quit_prints_every_message_then_exits_0) {
    check_example("queue_quit",
                  "child got: hello\n"
                  "child got: from\n"
                  "child got: the parent\n"
                  "parent: child exited with code 0\n");
}

BOOST_AUTO_TEST_CASE(pipe_quit_prints_every_message_and_the_count_then_exits_0) {
    check_example("pipe_quit",
                  "child got: hello\n"
                  "child got: from\n"
                  "child got: the parent\n"
                  "parent: child counted 3 messages\n"
                  "parent: child exited with code 0\n");
}

BOOST_AUTO_TEST_CASE(worker_pool_gets_every_result_exactly_once_and_exits_0) {
    check_example("worker_pool",
                  "worker_pool: 40 jobs, 4 workers: every result arrived exactly once\n");
}

BOOST_AUTO_TEST_CASE(pool_map_reports_the_lost_item_and_delivers_the_rest_then_exits_0) {
    check_example("pool_map",
                  "pool_map: 1229 primes below 10000\n"
                  "pool_map: item 3 lost its worker\n"
                  "pool_map: 7 other results arrived\n");
}

BOOST_AUTO_TEST_CASE(asio_loop_serves_a_queue_pipes_and_sentinels_in_one_io_context_then_exits_0) {
    check_example("asio_loop",
                  "asio_loop: 15 results (sum 1015), 3 goodbyes, 3 end-of-streams, 3 exits\n");
}

namespace {

double seconds_since(clk::time_point t0) {
    return std::chrono::duration<double>(clk::now() - t0).count();
}

/// A shell script in a temporary file, removed on scope exit.
struct temp_script {
    std::string path;
    explicit temp_script(const std::string& body) {
        char name[] = "/tmp/shmq-test-examples-XXXXXX";
        const int fd = ::mkstemp(name);
        BOOST_REQUIRE(fd >= 0);
        path = name;
        const std::string text = "#!/bin/sh\n" + body + "\n";
        const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                        ::fchmod(fd, 0700) == 0;
        ::close(fd);
        BOOST_REQUIRE(ok);
    }
    ~temp_script() { ::unlink(path.c_str()); }
    temp_script(const temp_script&) = delete;
    temp_script& operator=(const temp_script&) = delete;
};

} // namespace

// The harness itself must catch each kind of failure, or the checks above prove nothing.
BOOST_AUTO_TEST_CASE(harness_sees_exit_code_and_output) {
    temp_script s("echo out; echo err >&2; exit 3");
    const run_result res = run_program(s.path);
    BOOST_TEST(res.exit_code.value_or(-1) == 3);
    BOOST_TEST(res.out == "out\n");
    BOOST_TEST(res.err == "err\n");
    BOOST_TEST(!res.timed_out);
    BOOST_TEST(!res.left_running);
}

BOOST_AUTO_TEST_CASE(harness_sees_a_process_left_running) {
    temp_script s("sleep 60 &\necho done");
    const auto t0 = clk::now();
    const run_result res = run_program(s.path);
    BOOST_TEST(res.exit_code.value_or(-1) == 0);
    BOOST_TEST(res.left_running);
    BOOST_TEST(seconds_since(t0) < 30.0);   // killed after the grace, not waited for
}

BOOST_AUTO_TEST_CASE(harness_kills_a_program_that_does_not_end) {
    temp_script s("sleep 60");
    const auto t0 = clk::now();
    const run_result res = run_program(s.path, 0.5s);
    BOOST_TEST(res.timed_out);
    BOOST_TEST(res.signal == SIGKILL);
    BOOST_TEST(seconds_since(t0) < 30.0);
}
