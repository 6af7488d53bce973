// SPDX-License-Identifier: BSL-1.0
// shmq::Process: exit codes, liveness without join, timed joins, signals, exit flush hooks, stdio;
// names, daemons, sentinels, close(), move-only targets and the free functions (issue 10).
//
// Children never call Boost.Test macros: they report through exit codes or pipes. Every wait is
// bounded: join(timeout), pipes read with poll() and a deadline, and children that wait call
// alarm() first so a bug kills them instead of hanging the suite.
#define BOOST_TEST_MODULE process
#include <boost/test/unit_test.hpp>

#include <shmq/detail/exit_flush.hpp>
#include <shmq/shmq.hpp>

#include "test_fixtures.hpp"
#include "test_hook.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>

#include <fcntl.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Lets BOOST_TEST print exit codes when a comparison fails (Boost's documented customisation).
namespace boost::test_tools::tt_detail {
template <> struct print_log_value<std::optional<int>> {
    void operator()(std::ostream& os, const std::optional<int>& v) {
        if (v) os << *v; else os << "nullopt";
    }
};
} // namespace boost::test_tools::tt_detail

using namespace std::chrono_literals;
using shmq::Process;
using clk = std::chrono::steady_clock;

namespace {

double seconds_since(clk::time_point t0) {
    return std::chrono::duration<double>(clk::now() - t0).count();
}

/// A pipe whose ends close on scope exit, even when the test fails.
struct pipe_fds {
    int r = -1, w = -1;
    pipe_fds() {
        int fds[2];
        BOOST_REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        r = fds[0];
        w = fds[1];
    }
    ~pipe_fds() {
        close_r();
        close_w();
    }
    void close_r() { if (r >= 0) ::close(r), r = -1; }
    void close_w() { if (w >= 0) ::close(w), w = -1; }
    pipe_fds(const pipe_fds&) = delete;
    pipe_fds& operator=(const pipe_fds&) = delete;
};

/// Everything readable from fd until EOF (or `want` bytes), or until `limit` has passed.
std::string read_all(int fd, std::chrono::milliseconds limit = 10s,
                     std::size_t want = std::string::npos) {
    std::string out;
    const auto deadline = clk::now() + limit;
    while (out.size() < want) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clk::now());
        if (left.count() <= 0) break;
        pollfd p{fd, POLLIN, 0};
        const int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        char buf[512];
        const ssize_t n = ::read(fd, buf, std::min(sizeof buf, want - out.size()));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

void write_byte(int fd, char c) {
    ssize_t n;
    do n = ::write(fd, &c, 1); while (n < 0 && errno == EINTR);
}

/// Child side: blocks until a byte (or EOF) arrives on fd; alarm() bounds it.
void wait_for_go(int fd) {
    ::alarm(30);
    char c;
    ssize_t n;
    do n = ::read(fd, &c, 1); while (n < 0 && errno == EINTR);
}

void sleep_for_exactly(std::chrono::duration<double> d) {
    const auto end = clk::now() + std::chrono::duration_cast<clk::duration>(d);
    while (clk::now() < end) std::this_thread::sleep_for(end - clk::now());
}

/// Kills and reaps the child if a test leaves it running (say, after a failed check).
struct child_guard {
    Process& p;
    ~child_guard() {
        try {
            if (p.pid() != 0 && p.is_alive()) {
                p.kill();
                p.join(10s);
            }
        } catch (...) {
        }
    }
};

template <class Pred> bool eventually(Pred pred, std::chrono::milliseconds limit = 10s) {
    const auto deadline = clk::now() + limit;
    while (clk::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(1ms);
    }
    return pred();
}

/// True once pid (our child) has ended, without reaping it.
bool ended_unreaped(pid_t pid) {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == pid;
}

double thread_cpu_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

} // namespace

// ---- exit codes -------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(returning_target_gives_zero) {
    Process p([] {});
    p.start();
    child_guard g{p};
    BOOST_TEST(p.join(10s));
    BOOST_TEST(!p.is_alive());
    BOOST_REQUIRE(p.exitcode().has_value());
    BOOST_TEST(*p.exitcode() == 0);
}

BOOST_AUTO_TEST_CASE(empty_target_gives_zero) {
    Process p{std::function<void()>{}};
    p.start();
    child_guard g{p};
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
}

BOOST_AUTO_TEST_CASE(std_exception_gives_one_and_is_printed) {
    pipe_fds err;
    Process p([&] {
        ::dup2(err.w, STDERR_FILENO);
        throw std::runtime_error("boom-std-123");
    });
    p.start();
    child_guard g{p};
    err.close_w();
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(1));
    const std::string text = read_all(err.r);
    BOOST_TEST(text.find("boom-std-123") != std::string::npos, "stderr was: " << text);
    BOOST_TEST(text.find("runtime_error") != std::string::npos, "stderr was: " << text);
}

BOOST_AUTO_TEST_CASE(non_std_exception_gives_one_and_is_printed) {
    pipe_fds err;
    Process p([&] {
        ::dup2(err.w, STDERR_FILENO);
        throw 42;
    });
    p.start();
    child_guard g{p};
    err.close_w();
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(1));
    const std::string text = read_all(err.r);
    BOOST_TEST(text.find("int") != std::string::npos, "stderr was: " << text);
}

BOOST_AUTO_TEST_CASE(underscore_exit_code_is_kept) {
    Process p([] { ::_exit(7); });
    p.start();
    child_guard g{p};
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(7));
}

BOOST_AUTO_TEST_CASE(std_exit_code_is_kept) {
    Process p([] { std::exit(5); });
    p.start();
    child_guard g{p};
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(5));
}

BOOST_AUTO_TEST_CASE(kill_gives_minus_9) {
    Process p([] {
        ::alarm(30);
        for (;;) ::pause();
    });
    p.start();
    child_guard g{p};
    BOOST_TEST(p.is_alive());
    p.kill();
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(-SIGKILL));
    p.kill();        // reaped: a no-op, not an error
    p.terminate();
}

BOOST_AUTO_TEST_CASE(terminate_gives_minus_15) {
    pipe_fds ready;
    Process p([&] {
        ::signal(SIGTERM, SIG_DFL);   // independent of whatever the test runner installed
        ::alarm(30);
        write_byte(ready.w, 'r');
        for (;;) ::pause();
    });
    p.start();
    child_guard g{p};
    ready.close_w();
    BOOST_TEST(read_all(ready.r, 10s, 1) == "r");
    p.terminate();
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(-SIGTERM));
}

BOOST_AUTO_TEST_CASE(terminate_from_another_thread_while_join_blocks) {
    pipe_fds ready;
    Process p([&] {
        ::signal(SIGTERM, SIG_DFL);
        ::alarm(20);
        write_byte(ready.w, 'r');
        for (;;) ::pause();
    });
    p.start();
    child_guard g{p};
    ready.close_w();
    BOOST_REQUIRE(read_all(ready.r, 10s, 1) == "r");
    std::thread t([&] {
        std::this_thread::sleep_for(100ms);
        p.terminate();
    });
    p.join();   // bounded by the child's alarm(20)
    t.join();
    BOOST_TEST(p.exitcode() == std::optional<int>(-SIGTERM));
}

// ---- state before and after start --------------------------------------------------------------

BOOST_AUTO_TEST_CASE(before_start) {
    Process p([] {});
    BOOST_TEST(!p.is_alive());
    BOOST_TEST(!p.exitcode().has_value());
    BOOST_TEST(p.pid() == 0);
    BOOST_CHECK_THROW(p.join(), shmq::value_error);
    BOOST_CHECK_THROW(p.join(1s), shmq::value_error);
    BOOST_CHECK_THROW(p.join(0s), shmq::value_error);
    p.terminate();   // nothing to signal
    p.kill();
    BOOST_TEST(!p.is_alive());
}

BOOST_AUTO_TEST_CASE(start_twice_is_value_error) {
    Process p([] {});
    p.start();
    child_guard g{p};
    BOOST_CHECK_THROW(p.start(), shmq::value_error);
    BOOST_TEST(p.join(10s));
    BOOST_CHECK_THROW(p.start(), shmq::value_error);
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
}

BOOST_AUTO_TEST_CASE(join_twice) {
    Process p([] { ::_exit(3); });
    p.start();
    child_guard g{p};
    p.join();
    p.join();
    BOOST_TEST(p.join(0s));
    BOOST_TEST(p.join(std::nullopt));
    BOOST_TEST(p.exitcode() == std::optional<int>(3));
}

BOOST_AUTO_TEST_CASE(is_alive_and_exitcode_notice_the_end_without_join) {
    pipe_fds go;
    Process p([&] {
        wait_for_go(go.r);
        ::_exit(4);
    });
    p.start();
    child_guard g{p};
    BOOST_TEST(p.is_alive());
    BOOST_TEST(!p.exitcode().has_value());
    write_byte(go.w, 'g');
    BOOST_TEST(eventually([&] { return !p.is_alive(); }));
    BOOST_TEST(p.exitcode() == std::optional<int>(4));

    // exitcode() alone notices it too.
    Process q([] { ::_exit(6); });
    q.start();
    child_guard gq{q};
    BOOST_TEST(eventually([&] { return q.exitcode().has_value(); }));
    BOOST_TEST(q.exitcode() == std::optional<int>(6));
    BOOST_TEST(!q.is_alive());
}

BOOST_AUTO_TEST_CASE(pid_is_the_childs) {
    pipe_fds out;
    Process p([&] {
        const pid_t me = ::getpid();
        (void)!::write(out.w, &me, sizeof me);
    });
    p.start();
    child_guard g{p};
    out.close_w();
    const std::string got = read_all(out.r);
    BOOST_TEST(p.join(10s));
    BOOST_REQUIRE(got.size() == sizeof(pid_t));
    pid_t child_pid;
    std::memcpy(&child_pid, got.data(), sizeof child_pid);
    BOOST_TEST(child_pid == p.pid());
    BOOST_TEST(child_pid != ::getpid());
    BOOST_TEST(p.pid() > 0);
}

BOOST_AUTO_TEST_CASE(parent_drops_the_target_after_start) {
    auto token = std::make_shared<int>(1);
    Process p([token] {});
    BOOST_TEST(token.use_count() == 2);
    p.start();
    child_guard g{p};
    BOOST_TEST(token.use_count() == 1);
    BOOST_TEST(p.join(10s));
}

// ---- timed join ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(timed_join_on_a_sleeping_child) {
    Process p([] {
        ::alarm(30);
        sleep_for_exactly(1s);
    });
    const auto t0 = clk::now();
    p.start();
    child_guard g{p};

    auto t = clk::now();
    BOOST_TEST(!p.join(0s));
    BOOST_TEST(seconds_since(t) < 0.1);
    BOOST_TEST(!p.join(-1s));   // negative = do not wait
    BOOST_TEST(!p.join(std::chrono::duration<double>(std::nan(""))));

    t = clk::now();
    const double cpu0 = thread_cpu_seconds();
    BOOST_TEST(!p.join(300ms));
    const double cpu = thread_cpu_seconds() - cpu0;
    const double waited = seconds_since(t);
    BOOST_TEST(waited >= 0.29);
    BOOST_TEST(waited < 0.8);
    BOOST_TEST(cpu < 0.05, "join(300ms) burned " << cpu << " s of CPU");
    BOOST_TEST(p.is_alive());

    BOOST_TEST(p.join(10s));
    const double total = seconds_since(t0);
    BOOST_TEST(total >= 0.95);
    BOOST_TEST(total < 5.0);
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
}

BOOST_AUTO_TEST_CASE(huge_timeout_waits_like_join) {
    Process p([] { sleep_for_exactly(50ms); });
    p.start();
    child_guard g{p};
    BOOST_TEST(p.join(std::chrono::duration<double>(1e300)));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
}

namespace {
volatile sig_atomic_t usr1_count = 0;
void on_usr1(int) { usr1_count = usr1_count + 1; }
} // namespace

BOOST_AUTO_TEST_CASE(joins_survive_signals) {
    struct sigaction sa{}, old{};
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;   // no SA_RESTART: every wait sees EINTR
    BOOST_REQUIRE(::sigaction(SIGUSR1, &sa, &old) == 0);
    struct restore {
        struct sigaction old;
        ~restore() { ::sigaction(SIGUSR1, &old, nullptr); }
    } restore_old{old};

    usr1_count = 0;
    Process p([] {
        ::alarm(30);
        sleep_for_exactly(500ms);
    });
    const auto t0 = clk::now();
    p.start();
    child_guard g{p};

    std::atomic<bool> stop{false};
    const pthread_t main_thread = ::pthread_self();
    std::thread pester([&] {
        while (!stop.load()) {
            ::pthread_kill(main_thread, SIGUSR1);
            std::this_thread::sleep_for(5ms);
        }
    });
    auto t = clk::now();
    const bool early = p.join(150ms);
    const double timed = seconds_since(t);
    p.join();
    const double total = seconds_since(t0);
    stop = true;
    pester.join();

    BOOST_TEST(!early);
    BOOST_TEST(timed >= 0.14);
    BOOST_TEST(total >= 0.45);
    BOOST_TEST(total < 5.0);
    BOOST_TEST(usr1_count > 5);
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
}

namespace {
// Child-side check that join(timeout) works when the kernel refuses pidfd_open (old kernels,
// seccomp): install a filter that fails it with ENOSYS, then time a few joins. Returns a bit
// mask of failed checks; 77 when seccomp is not available here.
/// Makes pidfd_open fail with ENOSYS in this process and its children from now on (a seccomp
/// filter, as an old kernel or a container would). False when seccomp is not available here.
bool block_pidfd_open() {
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
    return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

int run_without_pidfd() {
    if (!block_pidfd_open()) return 77;
    int bad = 0;
    if (::syscall(SYS_pidfd_open, ::getpid(), 0) != -1 || errno != ENOSYS) bad |= 1;

    Process p([] {
        ::alarm(30);
        sleep_for_exactly(400ms);
    });
    p.start();
    auto t = clk::now();
    const double cpu0 = thread_cpu_seconds();
    if (p.join(150ms)) bad |= 2;
    const double waited = seconds_since(t);
    if (waited < 0.14 || waited > 0.6) bad |= 4;
    if (thread_cpu_seconds() - cpu0 > 0.05) bad |= 8;   // backoff, not a spin
    t = clk::now();
    if (!p.join(10s)) bad |= 16;
    if (seconds_since(t) > 0.3) bad |= 32;   // noticed within a few naps of the end
    if (p.exitcode() != std::optional<int>(0)) bad |= 64;
    return bad;
}
} // namespace

BOOST_AUTO_TEST_CASE(timed_join_without_pidfd) {
    const pid_t child = ::fork();
    BOOST_REQUIRE(child >= 0);
    if (child == 0) {
        ::alarm(30);
        ::_exit(run_without_pidfd());
    }
    int status = 0;
    const auto deadline = clk::now() + 20s;
    pid_t r = 0;
    while ((r = ::waitpid(child, &status, WNOHANG)) == 0 && clk::now() < deadline)
        std::this_thread::sleep_for(5ms);
    if (r == 0) {
        ::kill(child, SIGKILL);
        ::waitpid(child, &status, 0);
    }
    BOOST_REQUIRE(r == child);
    BOOST_REQUIRE(WIFEXITED(status));
    const int code = WEXITSTATUS(status);
    if (code == 77) BOOST_TEST_MESSAGE("seccomp unavailable: fallback path not exercised");
    BOOST_TEST((code == 0 || code == 77), "failed checks mask " << code);
}

// ---- who may wait ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(only_the_parent_may_join) {
    pipe_fds go;
    Process p([&] { wait_for_go(go.r); });
    p.start();
    child_guard g{p};
    const pid_t expected = p.pid();
    const pid_t other = ::fork();
    BOOST_REQUIRE(other >= 0);
    if (other == 0) {
        int bad = 0;
        auto refused = [](auto&& call) {
            try { call(); } catch (const shmq::value_error&) { return true; } catch (...) {}
            return false;
        };
        if (!refused([&] { p.join(); })) bad |= 1;
        if (!refused([&] { p.join(1s); })) bad |= 2;
        if (!refused([&] { (void)p.is_alive(); })) bad |= 4;
        if (p.exitcode().has_value()) bad |= 8;
        if (p.pid() != expected) bad |= 16;
        ::_exit(bad);
    }
    int status = 0;
    const auto deadline = clk::now() + 10s;
    pid_t r = 0;
    while ((r = ::waitpid(other, &status, WNOHANG)) == 0 && clk::now() < deadline)
        std::this_thread::sleep_for(1ms);
    if (r == 0) {
        ::kill(other, SIGKILL);
        ::waitpid(other, &status, 0);
    }
    BOOST_TEST((r == other && WIFEXITED(status) && WEXITSTATUS(status) == 0),
               "status " << status);
    BOOST_TEST(p.is_alive());
    write_byte(go.w, 'g');
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
}

BOOST_AUTO_TEST_CASE(status_taken_by_someone_else) {
    struct sigaction ign{}, old{};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    BOOST_REQUIRE(::sigaction(SIGCHLD, &ign, &old) == 0);
    struct restore {
        struct sigaction old;
        ~restore() { ::sigaction(SIGCHLD, &old, nullptr); }
    } restore_old{old};

    Process p([] { sleep_for_exactly(50ms); });
    p.start();
    child_guard g{p};
    BOOST_TEST(p.join(10s));
    BOOST_TEST(!p.is_alive());
    BOOST_TEST(!p.exitcode().has_value());

    Process q([] { sleep_for_exactly(50ms); });
    q.start();
    child_guard gq{q};
    q.join();   // returns although waitid() gives ECHILD
    BOOST_TEST(!q.is_alive());
    BOOST_TEST(!q.exitcode().has_value());
}

// ---- move and destruction ----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(move_only) {
    static_assert(!std::is_copy_constructible_v<Process>);
    static_assert(!std::is_copy_assignable_v<Process>);
    static_assert(std::is_nothrow_move_constructible_v<Process>);
    static_assert(std::is_nothrow_move_assignable_v<Process>);

    Process a([] { ::_exit(9); });
    a.start();
    const pid_t pid = a.pid();
    Process b(std::move(a));
    child_guard g{b};
    BOOST_TEST(b.pid() == pid);
    BOOST_TEST(b.join(10s));
    BOOST_TEST(b.exitcode() == std::optional<int>(9));

    BOOST_TEST(a.pid() == 0);   // NOLINT(bugprone-use-after-move): documented moved-from state
    BOOST_TEST(!a.is_alive());
    BOOST_TEST(!a.exitcode().has_value());
    BOOST_CHECK_THROW(a.start(), shmq::value_error);
    BOOST_CHECK_THROW(a.join(), shmq::value_error);

    Process c([] { ::_exit(2); });
    c = std::move(b);
    BOOST_TEST(c.exitcode() == std::optional<int>(9));
}

BOOST_AUTO_TEST_CASE(destructor_neither_kills_nor_waits_but_reaps_later) {
    pipe_fds go;
    pid_t pid = 0;
    const auto t0 = clk::now();
    {
        Process p([&] { wait_for_go(go.r); });
        p.start();
        pid = p.pid();
    }
    BOOST_TEST(seconds_since(t0) < 1.0);
    BOOST_REQUIRE(pid > 0);
    BOOST_TEST(::kill(pid, 0) == 0);          // still running
    BOOST_TEST(!ended_unreaped(pid));
    write_byte(go.w, 'g');
    BOOST_REQUIRE(eventually([&] { return ended_unreaped(pid); }));

    // The next start() reaps the abandoned child: no zombie stays behind.
    Process next([] {});
    next.start();
    child_guard g{next};
    BOOST_TEST(next.join(10s));
    errno = 0;
    BOOST_TEST(::waitpid(pid, nullptr, WNOHANG) == -1);
    BOOST_TEST(errno == ECHILD);
}

BOOST_AUTO_TEST_CASE(destructor_reaps_an_ended_child) {
    pid_t pid = 0;
    {
        Process p([] {});
        p.start();
        pid = p.pid();
        BOOST_REQUIRE(eventually([&] { return ended_unreaped(pid); }));
    }
    errno = 0;
    BOOST_TEST(::waitpid(pid, nullptr, WNOHANG) == -1);
    BOOST_TEST(errno == ECHILD);
}

// ---- exit flush hooks --------------------------------------------------------------------------

namespace {
int hook_fd = -1;   // set in the parent before start(); the child inherits the value
std::atomic<int> counting_hook_calls{0};

void hook_a() { if (hook_fd >= 0) write_byte(hook_fd, 'A'); }
void hook_throws() { if (hook_fd >= 0) throw std::runtime_error("hook failure"); }
void hook_b() { if (hook_fd >= 0) write_byte(hook_fd, 'B'); }
void counting_hook() { ++counting_hook_calls; }
} // namespace

BOOST_AUTO_TEST_CASE(exit_flush_hooks_run_once_each) {
    shmq::detail::add_exit_flush_hook(counting_hook);
    shmq::detail::add_exit_flush_hook(counting_hook);   // already there: no second call
    shmq::detail::add_exit_flush_hook(nullptr);         // ignored
    counting_hook_calls = 0;
    shmq::detail::run_exit_flush();
    BOOST_TEST(counting_hook_calls.load() == 1);
}

BOOST_AUTO_TEST_CASE(exit_flush_hooks_run_in_the_child_before_exit) {
    shmq::detail::add_exit_flush_hook(hook_a);
    shmq::detail::add_exit_flush_hook(hook_throws);   // swallowed; later hooks still run
    shmq::detail::add_exit_flush_hook(hook_b);
    shmq::detail::add_exit_flush_hook(hook_a);

    for (const bool target_throws : {false, true}) {
        pipe_fds out;
        hook_fd = out.w;
        Process p([&] {
            ::close(STDERR_FILENO);   // keep the expected exception report out of the log
            write_byte(out.w, 'T');
            if (target_throws) throw std::logic_error("target failure");
        });
        p.start();
        hook_fd = -1;
        child_guard g{p};
        out.close_w();
        BOOST_TEST(p.join(10s));
        BOOST_TEST(p.exitcode() == std::optional<int>(target_throws ? 1 : 0));
        BOOST_TEST(read_all(out.r) == "TAB");
    }
}

// ---- standard streams --------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(child_stdout_is_not_lost) {
    pipe_fds out;
    Process p([&] {
        ::dup2(out.w, STDOUT_FILENO);
        std::printf("c-printf;");      // no newline, no flush
        std::cout << "c-cout;";
    });
    p.start();
    child_guard g{p};
    out.close_w();
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
    BOOST_TEST(read_all(out.r) == "c-printf;c-cout;");
}

BOOST_AUTO_TEST_CASE(unsynchronised_cout_is_flushed_too) {
    pipe_fds out;
    Process p([&] {
        ::dup2(out.w, STDOUT_FILENO);
        std::ios::sync_with_stdio(false);   // std::cout now has its own buffer
        std::cout << "own-buffer;";
    });
    p.start();
    child_guard g{p};
    out.close_w();
    BOOST_TEST(p.join(10s));
    BOOST_TEST(read_all(out.r) == "own-buffer;");
}

BOOST_AUTO_TEST_CASE(parent_buffer_is_not_printed_twice) {
    pipe_fds out;
    std::fflush(stdout);
    std::cout.flush();
    const int saved = ::dup(STDOUT_FILENO);
    BOOST_REQUIRE(saved >= 0);
    ::dup2(out.w, STDOUT_FILENO);
    std::printf("P;");         // pending in the parent's buffer at fork time
    std::cout << "p;";
    Process p([] { std::printf("C;"); });
    p.start();
    const bool joined = p.join(10s);
    std::fflush(stdout);
    std::cout.flush();
    ::dup2(saved, STDOUT_FILENO);
    ::close(saved);
    out.close_w();
    child_guard g{p};
    BOOST_TEST(joined);
    BOOST_TEST(read_all(out.r) == "P;p;C;");
}

// ---- issue 10: names -------------------------------------------------------------------------

namespace {

/// N of a default name "Process-N" (or "<prefix>N"); -1 when the name has another form.
long default_number(const std::string& name, const std::string& prefix = "Process-") {
    if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return -1;
    const std::string digits = name.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
    return std::stol(digits);
}

/// The contents of /proc/<pid>/comm without the newline ("" when unreadable).
std::string comm_of(pid_t pid) {
    const std::string path = "/proc/" + std::to_string(pid) + "/comm";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    char buf[64];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    ::close(fd);
    if (n <= 0) return {};
    std::string s(buf, static_cast<std::size_t>(n));
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

/// Reads `n` pids written by children into fd (bounded); empty on a short read.
std::vector<pid_t> read_pids(int fd, std::size_t n) {
    const std::string got = read_all(fd, 10s, n * sizeof(pid_t));
    if (got.size() != n * sizeof(pid_t)) return {};
    std::vector<pid_t> pids(n);
    std::memcpy(pids.data(), got.data(), got.size());
    return pids;
}

void write_pid(int fd, pid_t pid) {
    ssize_t r;
    do r = ::write(fd, &pid, sizeof pid); while (r < 0 && errno == EINTR);
}

/// A target for children that should stay until signalled: bounded by alarm().
[[noreturn]] void pause_forever() {
    ::alarm(30);
    for (;;) ::pause();
}

} // namespace

BOOST_AUTO_TEST_CASE(default_names_count_up_and_can_be_set) {
    Process a([] {});
    Process b([] {});
    const long na = default_number(a.name());
    BOOST_TEST(na > 0, "name was " << a.name());
    BOOST_TEST(default_number(b.name()) == na + 1, "names " << a.name() << ", " << b.name());

    a.set_name("worker");
    BOOST_TEST(a.name() == "worker");
    a.set_name("");   // any string, as Python allows
    BOOST_TEST(a.name().empty());

    Process c(std::move(b));
    BOOST_TEST(default_number(c.name()) == na + 1);
    BOOST_TEST(b.name().empty());   // NOLINT(bugprone-use-after-move): documented moved-from state
    BOOST_CHECK_THROW(b.set_name("x"), shmq::value_error);
}

BOOST_AUTO_TEST_CASE(name_is_the_childs_comm_and_current_process) {
    const pid_t me = ::getpid();
    for (const std::string& name : {std::string("shmq-worker-7"),
                                   std::string("a-very-long-process-name-1234")}) {
        pipe_fds go;
        Process p([&] {
            wait_for_go(go.r);
            int bad = 0;
            const shmq::process_info self = shmq::current_process();
            if (self.name != name) bad |= 1;   // the whole name, not the 15 bytes of comm
            if (self.pid != ::getpid()) bad |= 2;
            if (self.daemon) bad |= 4;
            const auto parent = shmq::parent_process();
            if (!parent || parent->pid != me || parent->name != "MainProcess" || parent->daemon)
                bad |= 8;
            if (comm_of(::getpid()) != name.substr(0, 15)) bad |= 16;
            ::_exit(bad);
        });
        p.set_name(name);
        p.start();
        child_guard g{p};
        const std::string expected = name.substr(0, 15);   // the kernel's TASK_COMM_LEN - 1
        BOOST_TEST(eventually([&] { return comm_of(p.pid()) == expected; }, 5s),
                   "comm is '" << comm_of(p.pid()) << "'");
        write_byte(go.w, 'g');
        BOOST_TEST(p.join(10s));
        BOOST_TEST(p.exitcode() == std::optional<int>(0));
        BOOST_TEST(p.name() == name);
    }
}

BOOST_AUTO_TEST_CASE(childrens_children_are_named_like_pythons) {
    Process p([] {
        int bad = 0;
        Process q([] {});
        // In Process-K, the next Process is Process-K:1, as Python's identities.
        const std::string mine = shmq::current_process().name;
        if (q.name() != mine + ":1") bad |= 1;
        Process r([] {});
        if (r.name() != mine + ":2") bad |= 2;
        ::_exit(bad);
    });
    BOOST_REQUIRE(default_number(p.name()) > 0);
    p.start();
    child_guard g{p};
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
}

BOOST_AUTO_TEST_CASE(current_and_parent_process_in_the_main_process) {
    const shmq::process_info self = shmq::current_process();
    BOOST_TEST(self.name == "MainProcess");
    BOOST_TEST(self.pid == ::getpid());
    BOOST_TEST(!self.daemon);
    BOOST_TEST(!shmq::parent_process().has_value());

    // A plain fork() is not a shmq child: still MainProcess without a parent, as in Python.
    const int code = shmq::test::wait_child(shmq::test::fork_child([] {
        int bad = 0;
        if (shmq::current_process().name != "MainProcess") bad |= 1;
        if (shmq::current_process().pid != ::getpid()) bad |= 2;
        if (shmq::parent_process().has_value()) bad |= 4;
        return bad;
    }));
    BOOST_TEST(code == 0);
}

// ---- issue 10: cpu_count -------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(cpu_count_is_the_affinity_mask) {
    cpu_set_t set;
    CPU_ZERO(&set);
    BOOST_REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
    BOOST_TEST(shmq::cpu_count() == static_cast<unsigned>(CPU_COUNT(&set)));
    BOOST_TEST(shmq::cpu_count() >= 1u);

    // Restricted to one CPU (as taskset or a container would), it says 1.
    const int code = shmq::test::wait_child(shmq::test::fork_child([] {
        cpu_set_t all, one;
        CPU_ZERO(&all);
        CPU_ZERO(&one);
        if (::sched_getaffinity(0, sizeof all, &all) != 0) return 1;
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &all)) {
                CPU_SET(c, &one);
                break;
            }
        if (::sched_setaffinity(0, sizeof one, &one) != 0) return 2;
        return shmq::cpu_count() == 1u ? 0 : 3;
    }));
    BOOST_TEST(code == 0);
}

// ---- issue 10: move-only targets -----------------------------------------------------------------

namespace {
void exit_eleven() { ::_exit(11); }
} // namespace

BOOST_AUTO_TEST_CASE(move_only_targets) {
    auto owned = [u = std::make_unique<int>(7)] { ::_exit(*u); };
    using move_only = decltype(owned);
    static_assert(!std::is_copy_constructible_v<move_only>);
    static_assert(std::is_constructible_v<Process, move_only>);
    static_assert(!std::is_convertible_v<move_only, Process>);   // explicit, as the pinned one
    static_assert(std::is_constructible_v<Process, std::function<void()>>);
    static_assert(!std::is_constructible_v<Process, int>);
    static_assert(!std::is_constructible_v<Process, void (*)(int)>);

    Process p(std::move(owned));
    p.start();
    child_guard g{p};
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(7));

    Process fp(&exit_eleven);   // a function pointer
    fp.start();
    child_guard gf{fp};
    BOOST_TEST(fp.join(10s));
    BOOST_TEST(fp.exitcode() == std::optional<int>(11));

    void (*null_fn)() = nullptr;   // like an empty std::function: nothing to run, exit code 0
    Process np(null_fn);
    np.start();
    child_guard gn{np};
    BOOST_TEST(np.join(10s));
    BOOST_TEST(np.exitcode() == std::optional<int>(0));

    int calls = 0;   // a mutable lambda returning a value: the value is ignored
    Process mp([calls]() mutable { return ++calls == 1 ? 0 : 1; });
    mp.start();
    child_guard gm{mp};
    BOOST_TEST(mp.join(10s));
    BOOST_TEST(mp.exitcode() == std::optional<int>(0));
}

BOOST_AUTO_TEST_CASE(a_connection_captured_by_move_works_across_the_fork) {
    auto [parent_end, child_end] = shmq::Pipe(true, {});
    Process p([c = std::move(child_end)]() mutable {
        c.send(42);
        const int back = c.recv<int>();
        ::_exit(back == 43 ? 0 : 1);
    });
    BOOST_TEST(child_end.closed());   // NOLINT(bugprone-use-after-move): moved into the target
    p.start();
    child_guard g{p};
    BOOST_REQUIRE(parent_end.poll(10s));
    BOOST_TEST(parent_end.recv<int>() == 42);
    parent_end.send(43);
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
    // The parent dropped its copy of the child's end at start(), so with the child gone the
    // pipe is at EOF (it would wait forever if the parent still held one).
    BOOST_REQUIRE(parent_end.poll(10s));
    BOOST_CHECK_THROW(parent_end.recv<int>(), shmq::eof_error);
}

// ---- issue 10: daemons ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(daemon_flag) {
    Process p([] {
        int bad = 0;
        if (!shmq::current_process().daemon) bad |= 1;
        // A daemon may not have children (Python: "daemonic processes are not allowed to have
        // children"); its new Process objects default to daemonic, as Python copies the flag.
        Process q([] {});
        if (!q.daemon()) bad |= 2;
        try {
            q.start();
            bad |= 4;
            q.join(10s);
        } catch (const shmq::value_error&) {
        }
        ::_exit(bad);
    });
    BOOST_TEST(!p.daemon());
    p.set_daemon(true);
    BOOST_TEST(p.daemon());
    p.set_daemon(false);
    BOOST_TEST(!p.daemon());
    p.set_daemon(true);
    p.start();
    child_guard g{p};
    BOOST_CHECK_THROW(p.set_daemon(false), shmq::value_error);   // "process has already started"
    BOOST_TEST(p.daemon());
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
}

namespace {

/// Child-side: forks `middle` (which starts daemons and reports their pids on report_w, then
/// waits), SIGKILLs it once `n` pids have arrived, and returns the pids with the middle process
/// reaped. This process must be a child subreaper, so the orphans become its children. Empty on
/// failure.
std::vector<pid_t> kill_a_parent_of(std::size_t n, const std::function<void(int)>& middle) {
    pipe_fds report;
    const pid_t mid = ::fork();
    if (mid < 0) return {};
    if (mid == 0) {
        report.close_r();
        middle(report.w);
        pause_forever();
    }
    report.close_w();
    std::vector<pid_t> pids = read_pids(report.r, n);
    ::kill(mid, SIGKILL);
    if (shmq::test::wait_child(mid, 10s) != -SIGKILL) return {};
    return pids;
}

/// Child-side: how `pid` (our child) ended, within `limit` of now, as wait_child reports it;
/// shmq::test::child_timed_out (after killing it) when it was still running.
int ended_within(pid_t pid, std::chrono::milliseconds limit, double* took = nullptr) {
    const auto t0 = clk::now();
    const auto deadline = t0 + limit;
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (took) *took = seconds_since(t0);
            return shmq::test::detail::decode_status(status);
        }
        if (r < 0 && errno != EINTR) return shmq::test::child_wait_failed;
        if (clk::now() >= deadline) break;
        std::this_thread::sleep_for(1ms);
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return shmq::test::child_timed_out;
}

} // namespace

BOOST_AUTO_TEST_CASE(daemon_child_dies_with_a_killed_parent) {
    // The test process -> helper (subreaper) -> middle (SIGKILLed) -> a daemon and a non-daemon.
    const int code = shmq::test::wait_child(shmq::test::fork_child([] {
        if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return 100;
        const auto pids = kill_a_parent_of(2, [](int report) {
            Process d(&pause_forever);
            d.set_daemon(true);
            d.start();
            Process n(&pause_forever);
            n.start();
            write_pid(report, d.pid());
            write_pid(report, n.pid());
        });
        if (pids.size() != 2) return 101;
        double took = 99;
        int bad = 0;
        // The daemon: killed by the kernel (PR_SET_PDEATHSIG) at once.
        if (ended_within(pids[0], 2s, &took) != -SIGKILL) bad |= 1;
        if (took > 1.0) bad |= 2;
        // The non-daemon lives on (Python's behaviour for every child).
        if (ended_within(pids[1], 200ms) != shmq::test::child_timed_out) bad |= 4;
        return bad;
    }), 20s);
    BOOST_TEST(code == 0);
}

#ifndef NDEBUG
namespace {
int stall_report_fd = -1;
pid_t stall_parent = 0;

// The race prctl(PR_SET_PDEATHSIG) cannot close on its own: the parent dies between fork and
// the prctl. The hook holds the daemon child right there until its parent is gone.
void stall_until_orphaned(const char* point) {
    if (std::strcmp(point, "process.daemon.forked") != 0) return;
    write_pid(stall_report_fd, ::getpid());
    const auto give_up = clk::now() + 5s;
    while (::getppid() == stall_parent && clk::now() < give_up)
        std::this_thread::sleep_for(1ms);
}
} // namespace

BOOST_AUTO_TEST_CASE(daemon_child_whose_parent_died_before_prctl) {
    const int code = shmq::test::wait_child(shmq::test::fork_child([] {
        if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return 100;
        pipe_fds ran;   // the target writes here if it ever runs
        const auto pids = kill_a_parent_of(1, [&](int report) {
            stall_report_fd = report;
            stall_parent = ::getpid();
            shmq::detail::test_hook::install(stall_until_orphaned);
            Process d([&] {
                write_byte(ran.w, 'T');
                pause_forever();
            });
            d.set_daemon(true);
            d.start();
        });
        ran.close_w();
        if (pids.size() != 1) return 101;
        int bad = 0;
        double took = 99;
        if (ended_within(pids[0], 3s, &took) != -SIGKILL) bad |= 1;
        if (took > 1.0) bad |= 2;
        if (!read_all(ran.r, 100ms).empty()) bad |= 4;   // the target must not have run
        return bad;
    }), 20s);
    BOOST_TEST(code == 0);
}
#endif

namespace {
int term_report_fd = -1;
void report_term(int) {
    write_byte(term_report_fd, 'T');
    ::_exit(0);
}
} // namespace

BOOST_AUTO_TEST_CASE(daemons_are_terminated_at_normal_exit) {
    // The test process -> helper (subreaper) -> middle, which starts two daemons and exit()s.
    // Had the middle not reaped them, they would become the helper's children.
    pipe_fds out;
    const auto t0 = clk::now();
    const int code = shmq::test::wait_child(shmq::test::fork_child([&] {
        out.close_r();
        if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return 100;
        pipe_fds report;
        const pid_t mid = ::fork();
        if (mid < 0) return 101;
        if (mid == 0) {
            report.close_r();
            term_report_fd = out.w;
            pipe_fds ready;
            Process polite([&] {   // ends on SIGTERM, saying so
                ::signal(SIGTERM, report_term);
                write_byte(ready.w, 'r');
                pause_forever();
            });
            polite.set_daemon(true);
            Process stubborn([&] {   // ignores SIGTERM: SIGKILL after the grace period
                ::signal(SIGTERM, SIG_IGN);
                write_byte(ready.w, 'i');
                pause_forever();
            });
            stubborn.set_daemon(true);
            polite.start();
            stubborn.start();
            ready.close_w();
            if (read_all(ready.r, 10s, 2).size() != 2) ::_exit(102);
            write_pid(report.w, polite.pid());
            write_pid(report.w, stubborn.pid());
            std::exit(0);   // a normal exit: atexit handlers run
        }
        report.close_w();
        const auto pids = read_pids(report.r, 2);
        const int mid_code = shmq::test::wait_child(mid, 10s);
        if (pids.size() != 2) return 103;
        int bad = 0;
        if (mid_code != 0) bad |= 1;
        for (pid_t pid : pids) {
            errno = 0;
            if (!(::waitpid(pid, nullptr, WNOHANG) == -1 && errno == ECHILD)) bad |= 2;
        }
        return bad;
    }), 20s);
    const double took = seconds_since(t0);
    out.close_w();
    BOOST_TEST(code == 0);
    BOOST_TEST(read_all(out.r, 5s) == "T");   // the polite one got SIGTERM
    // The stubborn one cost the grace period, not more.
    BOOST_TEST(took >= 0.9 * static_cast<double>(Process::daemon_exit_grace.count()) / 1000.0);
    BOOST_TEST(took < 10.0);
}

BOOST_AUTO_TEST_CASE(a_process_child_terminates_its_daemons_when_it_ends) {
    pipe_fds out;
    Process p([&] {
        term_report_fd = out.w;
        pipe_fds ready;
        Process d([&] {
            ::signal(SIGTERM, report_term);
            write_byte(ready.w, 'r');
            pause_forever();
        });
        d.set_daemon(true);
        d.start();
        write_pid(out.w, d.pid());
        ready.close_w();
        if (read_all(ready.r, 10s, 1) != "r") ::_exit(1);
        // Returning ends the child: its daemon gets SIGTERM and is reaped first.
    });
    p.start();
    child_guard g{p};
    out.close_w();
    const std::string got = read_all(out.r, 10s);
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
    BOOST_REQUIRE(got.size() == sizeof(pid_t) + 1);
    BOOST_TEST(got.back() == 'T');
    pid_t d = 0;
    std::memcpy(&d, got.data(), sizeof d);
    errno = 0;
    BOOST_TEST((::kill(d, 0) == -1 && errno == ESRCH));   // reaped by its parent, not orphaned
}

BOOST_AUTO_TEST_CASE(pdeathsig_follows_the_thread_that_started_the_daemon) {
    // Documented caveat (Linux semantics): the daemon dies with the thread that forked it.
    pipe_fds ready;
    std::optional<Process> p;
    std::thread t([&] {
        p.emplace([&] {
            write_byte(ready.w, 'r');   // the parent-death signal is set by now
            pause_forever();
        });
        p->set_daemon(true);
        p->start();
        (void)read_all(ready.r, 10s, 1);   // keep the thread until the child is armed
    });
    t.join();
    child_guard g{*p};
    BOOST_TEST(p->join(5s));
    BOOST_TEST(p->exitcode() == std::optional<int>(-SIGKILL));
}

// ---- issue 10: sentinel ------------------------------------------------------------------------

namespace {
/// True when fd turns readable within `limit`: POLLIN (a pidfd) or POLLHUP (the pipe fallback,
/// once its only writer is gone), as select() and Python's wait() see it.
bool readable_within(int fd, std::chrono::milliseconds limit) {
    const auto deadline = clk::now() + limit;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clk::now());
        pollfd p{fd, POLLIN, 0};
        const int r = ::poll(&p, 1, static_cast<int>(std::max<long long>(0, left.count())));
        if (r > 0) return (p.revents & (POLLIN | POLLHUP)) != 0;
        if (r == 0 || errno != EINTR) return false;
    }
}
} // namespace

BOOST_AUTO_TEST_CASE(sentinel_turns_readable_when_the_child_ends) {
    pipe_fds go;
    Process p([&] {
        wait_for_go(go.r);
        ::_exit(3);
    });
    BOOST_CHECK_THROW((void)p.sentinel(), shmq::value_error);   // "process not started"
    p.start();
    child_guard g{p};
    const int fd = p.sentinel();
    BOOST_REQUIRE(fd >= 0);
    BOOST_TEST(p.sentinel() == fd);
    BOOST_TEST((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);

    // Not readable while the child runs...
    BOOST_TEST(!readable_within(fd, 200ms));
    BOOST_TEST(!ended_unreaped(p.pid()));
    // ... and through epoll too.
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    BOOST_REQUIRE(ep >= 0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    BOOST_REQUIRE(::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0);
    epoll_event got{};
    BOOST_TEST(::epoll_wait(ep, &got, 1, 0) == 0);

    // Readable once it ends, without a join, and it has ended by then.
    write_byte(go.w, 'g');
    BOOST_TEST(readable_within(fd, 10s));
    BOOST_TEST(ended_unreaped(p.pid()));
    BOOST_TEST(::epoll_wait(ep, &got, 1, 1000) == 1);
    const int ready_fd = got.data.fd;   // packed struct: copy before comparing
    BOOST_TEST(ready_fd == fd);
    ::close(ep);

    BOOST_TEST(p.join(10s));
    BOOST_TEST(readable_within(fd, 0ms));   // for good
    BOOST_TEST(p.exitcode() == std::optional<int>(3));

    p.close();   // releases it
    errno = 0;
    BOOST_TEST((::fcntl(fd, F_GETFD) == -1 && errno == EBADF));
    BOOST_CHECK_THROW((void)p.sentinel(), shmq::value_error);
}

namespace {
// Child-side: the sentinel where pidfd_open is refused. Returns failed-check bits; 77 when
// seccomp is unavailable.
int sentinel_without_pidfd() {
    if (!block_pidfd_open()) return 77;
    pipe_fds go;
    Process p([&] {
        wait_for_go(go.r);
        ::_exit(0);
    });
    p.start();
    int bad = 0;
    const int fd = p.sentinel();
    struct stat st{};
    if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) bad |= 1;   // the pipe fallback
    if (readable_within(fd, 150ms)) bad |= 2;
    write_byte(go.w, 'g');
    if (!readable_within(fd, 10s)) bad |= 4;
    if (!p.join(10s)) bad |= 8;
    p.close();
    if (::fcntl(fd, F_GETFD) != -1) bad |= 16;
    return bad;
}
} // namespace

BOOST_AUTO_TEST_CASE(sentinel_without_pidfd_is_a_pipe) {
    const int code = shmq::test::wait_child(shmq::test::fork_child([] {
        ::alarm(30);
        return sentinel_without_pidfd();
    }), 20s);
    if (code == 77) BOOST_TEST_MESSAGE("seccomp unavailable: fallback path not exercised");
    BOOST_TEST((code == 0 || code == 77), "failed checks mask " << code);
}

// Not under the sanitizers: their runtimes open and close descriptors of their own (UBSan's
// vptr check probes memory through a pipe), so "no descriptor left" is neither stable nor
// harmless there.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
namespace {
// Child-side: start() and join() with no descriptor left; sentinel() says why. Failed-check bits.
int start_without_descriptors() {
    const int lowest_free = ::dup(0);
    if (lowest_free < 0) return 100;
    ::close(lowest_free);
    const rlimit lim{static_cast<rlim_t>(lowest_free), static_cast<rlim_t>(lowest_free)};
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) return 101;
    if (::dup(0) != -1 || errno != EMFILE) return 102;   // really none left
    int bad = 0;
    Process p([] { ::_exit(4); });
    try {
        p.start();
    } catch (...) {
        return 103;
    }
    try {
        (void)p.sentinel();
        bad |= 1;
    } catch (const shmq::value_error&) {
        bad |= 2;
    } catch (const shmq::error& e) {
        if (std::strstr(e.what(), std::strerror(EMFILE)) == nullptr) bad |= 4;
    }
    if (!p.join(10s)) bad |= 8;   // joins without a pidfd too
    if (p.exitcode() != std::optional<int>(4)) bad |= 16;
    return bad;
}
} // namespace

BOOST_AUTO_TEST_CASE(start_without_a_descriptor_left) {
    const int code = shmq::test::wait_child(shmq::test::fork_child([] {
        ::alarm(30);
        return start_without_descriptors();
    }), 20s);
    BOOST_TEST(code == 0, "failed checks mask " << code);
}
#endif

// ---- issue 10: close ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(close_follows_python) {
    pipe_fds go;
    Process p([&] { wait_for_go(go.r); });
    p.start();
    child_guard g{p};
    const pid_t pid = p.pid();
    BOOST_CHECK_THROW(p.close(), shmq::value_error);   // still running
    BOOST_TEST(p.is_alive());                           // and nothing was released
    BOOST_TEST(p.sentinel() >= 0);

    write_byte(go.w, 'g');
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
    p.close();
    BOOST_CHECK_THROW(p.is_alive(), shmq::value_error);
    BOOST_CHECK_THROW(p.join(), shmq::value_error);
    BOOST_CHECK_THROW(p.join(0s), shmq::value_error);
    BOOST_CHECK_THROW(p.terminate(), shmq::value_error);
    BOOST_CHECK_THROW(p.kill(), shmq::value_error);
    BOOST_CHECK_THROW(p.exitcode(), shmq::value_error);
    BOOST_CHECK_THROW((void)p.sentinel(), shmq::value_error);
    BOOST_CHECK_THROW(p.start(), shmq::value_error);
    BOOST_CHECK_THROW(p.set_daemon(true), shmq::value_error);
    BOOST_TEST(default_number(p.name()) > 0);   // still there, as in Python
    BOOST_TEST(p.pid() == pid);
    p.close();   // idempotent

    // An ended child that nobody joined: close() reaps it.
    Process q([] {});
    q.start();
    child_guard gq{q};
    const pid_t qpid = q.pid();
    BOOST_REQUIRE(eventually([&] { return ended_unreaped(qpid); }));
    q.close();
    errno = 0;
    BOOST_TEST(::waitpid(qpid, nullptr, WNOHANG) == -1);
    BOOST_TEST(errno == ECHILD);

    // A Process never started may be closed; then it cannot start.
    Process r([] {});
    r.close();
    BOOST_CHECK_THROW(r.start(), shmq::value_error);
    BOOST_CHECK_THROW(r.is_alive(), shmq::value_error);
    r.close();
}

// ---- issue 10: active_children ----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(active_children_lists_the_live_ones_and_reaps_the_rest) {
    auto has = [](const std::vector<shmq::process_info>& v, pid_t pid) {
        return std::any_of(v.begin(), v.end(), [&](const auto& i) { return i.pid == pid; });
    };
    pipe_fds go;
    Process a([&] { wait_for_go(go.r); });
    a.set_name("active-a");
    Process b([&] { wait_for_go(go.r); });
    b.set_daemon(true);
    Process c([] { ::_exit(5); });
    a.start();
    b.start();
    c.start();
    child_guard ga{a}, gb{b}, gc{c};
    BOOST_REQUIRE(eventually([&] { return ended_unreaped(c.pid()); }));

    pid_t abandoned = 0;
    {
        Process d([&] { wait_for_go(go.r); });   // destroyed while running: still our child
        d.start();
        abandoned = d.pid();
    }

    const auto live = shmq::active_children();
    BOOST_TEST(has(live, a.pid()));
    BOOST_TEST(has(live, b.pid()));
    BOOST_TEST(has(live, abandoned));
    BOOST_TEST(!has(live, c.pid()));
    for (const auto& i : live) {
        if (i.pid == a.pid()) BOOST_TEST((i.name == "active-a" && !i.daemon));
        if (i.pid == b.pid()) BOOST_TEST((i.name == b.name() && i.daemon));
    }
    // c was reaped on the way, and its Process learned the code.
    errno = 0;
    BOOST_TEST(::waitpid(c.pid(), nullptr, WNOHANG) == -1);
    BOOST_TEST(errno == ECHILD);
    BOOST_TEST(c.exitcode() == std::optional<int>(5));

    for (int i = 0; i < 3; ++i) write_byte(go.w, 'g');   // a, b and d each read one
    BOOST_TEST(a.join(10s));
    BOOST_TEST(b.join(10s));
    BOOST_TEST(eventually([&] {
        const auto now = shmq::active_children();
        return !has(now, a.pid()) && !has(now, b.pid()) && !has(now, abandoned);
    }));
    errno = 0;
    BOOST_TEST(::waitpid(abandoned, nullptr, WNOHANG) == -1);   // reaped, not a zombie
    BOOST_TEST(errno == ECHILD);
}

BOOST_AUTO_TEST_CASE(active_children_is_empty_in_a_new_child) {
    pipe_fds go;
    Process sibling([&] { wait_for_go(go.r); });
    sibling.start();
    child_guard g{sibling};
    Process p([] { ::_exit(shmq::active_children().empty() ? 0 : 1); });   // not its parent's
    p.start();
    child_guard gp{p};
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
    write_byte(go.w, 'g');
    BOOST_TEST(sibling.join(10s));
}

BOOST_AUTO_TEST_CASE(threads_start_join_rename_and_list_at_once) {
    // For the tsan variant: the list of children, names and sentinels under concurrent use.
    std::atomic<bool> stop{false};
    std::atomic<int> failures{0};
    Process shared([] {});
    std::thread lister([&] {
        while (!stop.load()) {
            (void)shmq::active_children();
            shared.set_name("renamed-" + std::to_string(shared.name().size()));
            if (shmq::current_process().name != "MainProcess") ++failures;
            std::this_thread::sleep_for(100us);
        }
    });
    auto starter = [&] {
        for (int i = 0; i < 6; ++i) {
            Process p([] {});
            p.start();
            if (!p.join(10s) || p.exitcode() != std::optional<int>(0)) ++failures;
            if (!readable_within(p.sentinel(), 0ms)) ++failures;
            p.close();
        }
    };
    std::thread a(starter), b(starter);
    shared.start();
    const bool joined = shared.join(10s);
    a.join();
    b.join();
    stop = true;
    lister.join();
    BOOST_TEST(joined);
    BOOST_TEST(failures.load() == 0);
    BOOST_TEST(shared.name().rfind("renamed-", 0) == 0);
}
