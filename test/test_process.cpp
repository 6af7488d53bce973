// SPDX-License-Identifier: BSL-1.0
// shmq::Process: exit codes, liveness without join, timed joins, signals, exit flush hooks, stdio.
//
// Children never call Boost.Test macros: they report through exit codes or pipes. Every wait is
// bounded: join(timeout), pipes read with poll() and a deadline, and children that wait call
// alarm() first so a bug kills them instead of hanging the suite.
#define BOOST_TEST_MODULE process
#include <boost/test/unit_test.hpp>

#include <shmq/detail/exit_flush.hpp>
#include <shmq/process.hpp>

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
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
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
int run_without_pidfd() {
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 77;
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) return 77;
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
