// SPDX-License-Identifier: BSL-1.0
// Shared helpers for shmq's tests: forked children, bounded waits, unique names for named
// segments, cleanup of /dev/shm, watchdogs, timing and byte patterns.
//
// Rules these helpers implement (the conventions of this test suite):
//  * A forked child never calls Boost.Test: it reports through its exit code (and stderr for a
//    human). fork_child() runs a lambda in a child and _exits with the lambda's return value; an
//    escaping exception becomes a distinct exit code.
//  * Every wait is bounded: wait_child() kills and reaps a child that overstays its deadline, and
//    scoped_child kills and reaps a child the test forgot (or could not reach, after a failed
//    BOOST_REQUIRE), so a failing test leaves no process behind.
//  * Named objects get names unique per process and call (unique_name), and shm_remover unlinks
//    their /dev/shm entries even when the test fails.
//
// Nothing here depends on shmq's own headers, so any test may include it. Header-only; every
// function is inline. Namespace shmq::test.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <new>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmq::test {

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;
using seconds_d = std::chrono::duration<double>;

// ---------------------------------------------------------------------------------------------
// Exit codes. A child's own codes should stay in 0..199 so they never collide with these.

/// A std::exception escaped the child's lambda (its what() goes to stderr).
inline constexpr int child_exit_exception = 250;
/// Something that is not a std::exception escaped the child's lambda.
inline constexpr int child_exit_unknown_exception = 251;
/// wait_child(): the child did not end before the deadline; it was killed with SIGKILL and reaped.
inline constexpr int child_timed_out = -1000;
/// wait_child(): waitpid failed (not our child, or already reaped).
inline constexpr int child_wait_failed = -1001;

/// Child-side check: on failure, prints the condition and location to stderr and returns `code`
/// from the enclosing lambda (use only directly inside a fork_child lambda).
#define SHMQ_CHILD_CHECK(cond, code)                                                            \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            std::fprintf(stderr, "child %d: %s:%d: check failed: %s (exit %d)\n",               \
                         static_cast<int>(::getpid()), __FILE__, __LINE__, #cond, (code));      \
            return (code);                                                                      \
        }                                                                                       \
    } while (0)

namespace detail {

/// Boost.Test installs handlers for SIGALRM and the fatal signals that siglongjmp back into its
/// execution monitor. A forked child inherits them and would resume running test cases of its
/// own; restore the defaults so a crash or a watchdog ends the child and shows in its status.
inline void reset_signals_in_child() noexcept {
    for (int sig : {SIGALRM, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS, SIGPIPE,
                    SIGCHLD, SIGUSR1, SIGUSR2}) {
        struct sigaction sa {};
        sa.sa_handler = SIG_DFL;
        sigemptyset(&sa.sa_mask);
        ::sigaction(sig, &sa, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

/// Exit code for a waitpid status: the exit status, or -N when killed by signal N.
inline int decode_status(int status) noexcept {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return child_wait_failed;
}

} // namespace detail

// ---------------------------------------------------------------------------------------------
// Children.

/// Forks; the child runs `body` and _exits with its return value (low 8 bits). An escaping
/// std::exception gives child_exit_exception, anything else child_exit_unknown_exception.
/// The child never returns into the caller (so never into Boost.Test). stdio is flushed before
/// the fork so buffered output is not written twice. Returns the child's pid in the parent.
/// Throws std::system_error when fork fails.
inline pid_t fork_child(std::function<int()> body) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid > 0) return pid;
    detail::reset_signals_in_child();
    int code = 0;
    try {
        code = body();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "child %d: exception escaped: %s\n", static_cast<int>(::getpid()),
                     e.what());
        code = child_exit_exception;
    } catch (...) {
        std::fprintf(stderr, "child %d: unknown exception escaped\n", static_cast<int>(::getpid()));
        code = child_exit_unknown_exception;
    }
    ::_exit(code & 0xff);
}

/// Waits at most `timeout` for the child to end and reaps it. Returns its exit status (0..255),
/// -N if a signal N killed it, child_timed_out if it was still running at the deadline (it is
/// then killed with SIGKILL and reaped), child_wait_failed if waitpid fails. Never throws.
inline int wait_child(pid_t pid, seconds_d timeout = 10s) noexcept {
    const auto give_up = clk::now() + std::chrono::duration_cast<clk::duration>(timeout);
    auto nap = 100us;
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) return detail::decode_status(status);
        if (r < 0 && errno != EINTR) return child_wait_failed;
        if (clk::now() >= give_up) break;
        std::this_thread::sleep_for(nap);
        nap = std::min<std::chrono::microseconds>(nap * 2, 5ms);
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return child_timed_out;
}

/// True once the child has ended (it may still be an unreaped zombie). Does not reap. Never throws.
inline bool has_exited(pid_t pid) noexcept {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
        return false;
    return info.si_pid == pid;
}

/// Waits at most `timeout` for the child to end, without reaping it (so it stays a zombie, which
/// shmq must treat as dead). Returns whether it ended. Never throws.
inline bool wait_exited_no_reap(pid_t pid, seconds_d timeout = 10s) noexcept {
    const auto give_up = clk::now() + std::chrono::duration_cast<clk::duration>(timeout);
    while (!has_exited(pid)) {
        if (clk::now() >= give_up) return false;
        std::this_thread::sleep_for(200us);
    }
    return true;
}

/// A forked child that cannot outlive the test: the destructor SIGKILLs and reaps it unless
/// wait() already did. Move-only.
///
///     scoped_child c([&] { ...; return 0; });
///     BOOST_TEST(c.wait(5s) == 0);
class scoped_child {
public:
    /// Forks and runs body in the child (see fork_child). Throws std::system_error.
    explicit scoped_child(std::function<int()> body) : pid_(fork_child(std::move(body))) {}
    scoped_child(scoped_child&& o) noexcept : pid_(std::exchange(o.pid_, -1)) {}
    scoped_child& operator=(scoped_child&& o) noexcept {
        if (this != &o) {
            reset();
            pid_ = std::exchange(o.pid_, -1);
        }
        return *this;
    }
    scoped_child(const scoped_child&) = delete;
    scoped_child& operator=(const scoped_child&) = delete;
    ~scoped_child() { reset(); }

    pid_t pid() const noexcept { return pid_; }
    /// wait_child() on this child; afterwards the object holds no child. Calling it again returns
    /// child_wait_failed. Never throws.
    int wait(seconds_d timeout = 10s) noexcept {
        if (pid_ <= 0) return child_wait_failed;
        return wait_child(std::exchange(pid_, -1), timeout);
    }
    /// Sends a signal (SIGKILL by default) without reaping. Never throws.
    void kill(int sig = SIGKILL) const noexcept {
        if (pid_ > 0) ::kill(pid_, sig);
    }
    bool exited() const noexcept { return pid_ > 0 && has_exited(pid_); }

private:
    void reset() noexcept {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            wait_child(std::exchange(pid_, -1), 10s);
        }
    }
    pid_t pid_ = -1;
};

// ---------------------------------------------------------------------------------------------
// Watchdog.

/// alarm(2) for the scope: if the scope is still running after `seconds`, SIGALRM arrives. In a
/// forked child (signals reset by fork_child) that kills the child, which its parent sees as
/// exit code -SIGALRM (-14). In the test process itself prefer Boost.Test's
/// `* boost::unit_test::timeout(N)` decorator, which fails only that test case and uses the same
/// alarm: do not combine the two in one process. Never throws.
class watchdog {
public:
    explicit watchdog(unsigned seconds) noexcept { ::alarm(seconds); }
    ~watchdog() { ::alarm(0); }
    watchdog(const watchdog&) = delete;
    watchdog& operator=(const watchdog&) = delete;
};

// ---------------------------------------------------------------------------------------------
// Names and /dev/shm.

/// A name no other process or call uses: "<prefix>-<pid>-<counter>-<random hex>". Valid as a
/// shmq object name (no '/', well under 200 characters). Never returns the same name twice.
inline std::string unique_name(std::string_view prefix = "shmqtest") {
    static std::atomic<unsigned> counter{0};
    static const unsigned salt = std::random_device{}();
    char buf[96];
    std::snprintf(buf, sizeof buf, "-%d-%u-%08x", static_cast<int>(::getpid()),
                  counter.fetch_add(1, std::memory_order_relaxed), salt);
    return std::string(prefix) + buf;
}

/// The /dev/shm path of shmq's main entry for a user name (README: "/dev/shm/shmq.<name>").
inline std::string shm_path(std::string_view name) {
    return "/dev/shm/shmq." + std::string(name);
}

/// Every /dev/shm entry that belongs to the user name: "shmq.<name>" itself and any
/// "shmq.<name>.<suffix>" an object may add. Never throws except std::bad_alloc.
inline std::vector<std::string> shm_entries(std::string_view name) {
    std::vector<std::string> found;
    const std::string exact = "shmq." + std::string(name);
    const std::string prefix = exact + ".";
    if (DIR* d = ::opendir("/dev/shm")) {
        while (dirent* e = ::readdir(d)) {
            std::string_view n = e->d_name;
            if (n == exact || n.substr(0, prefix.size()) == prefix) found.emplace_back(n);
        }
        ::closedir(d);
    }
    return found;
}

/// Unlinks every entry shm_entries(name) lists; returns how many. Never throws.
inline std::size_t remove_shm_entries(std::string_view name) noexcept {
    try {
        std::size_t n = 0;
        for (const auto& e : shm_entries(name))
            if (::shm_unlink(("/" + e).c_str()) == 0) ++n;
        return n;
    } catch (...) {
        return 0;
    }
}

/// Unlinks the /dev/shm entries of the names it holds when it goes out of scope, so a failing
/// test leaves nothing behind.
///
///     const auto name = unique_name();
///     shm_remover cleanup(name);
class shm_remover {
public:
    shm_remover() = default;
    explicit shm_remover(std::string name) { names_.push_back(std::move(name)); }
    ~shm_remover() {
        for (const auto& n : names_) remove_shm_entries(n);
    }
    shm_remover(const shm_remover&) = delete;
    shm_remover& operator=(const shm_remover&) = delete;
    /// Adds a name; returns it for convenience.
    const std::string& add(std::string name) { return names_.emplace_back(std::move(name)); }

private:
    std::vector<std::string> names_;
};

/// The point where kill_at_point() kills: set it, then install kill_at_point as the test hook
/// (lib/test_hook.hpp, debug builds) in a forked child, which then dies at that point.
inline const char* kill_point = nullptr;
/// A test hook that SIGKILLs the calling process when it reaches kill_point.
inline void kill_at_point(const char* point) {
    if (kill_point && std::strcmp(point, kill_point) == 0) ::raise(SIGKILL);
}

/// Forks a child that runs make(), keeps what it returns (a handle: never closed) and SIGKILLs
/// itself once make() has returned: a creator that died holding its object. Returns the child's
/// status from wait_child (-SIGKILL when all went as planned; make() failing gives its exit code).
template <class Make> int die_holding(Make make) {
    int fds[2];
    if (::pipe(fds) != 0) return child_wait_failed;
    scoped_child child([&] {
        ::close(fds[0]);
        auto keep = make();
        char c = 1;
        if (::write(fds[1], &c, 1) != 1) return 3;
        ::raise(SIGKILL);
        return 4;
    });
    ::close(fds[1]);
    char c = 0;
    const bool made = ::read(fds[0], &c, 1) == 1;   // EOF when the child ended without it
    ::close(fds[0]);
    const int status = child.wait(10s);
    return made || status != -SIGKILL ? status : child_wait_failed;
}

// ---------------------------------------------------------------------------------------------
// Descriptor exhaustion.

/// Lowers RLIMIT_NOFILE to just above the highest descriptor in use and fills the holes below it
/// with /dev/null: the next open() fails with EMFILE. Returns the previous limit.
inline rlimit exhaust_fds() {
    rlimit old{};
    ::getrlimit(RLIMIT_NOFILE, &old);
    int highest = 2;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        const int own = ::dirfd(d);
        while (dirent* e = ::readdir(d))
            if (e->d_name[0] != '.' && std::atoi(e->d_name) != own) highest = std::max(highest, std::atoi(e->d_name));
        ::closedir(d);
    }
    rlimit lim = old;
    lim.rlim_cur = static_cast<rlim_t>(highest) + 1;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    while (::open("/dev/null", O_RDONLY | O_CLOEXEC) >= 0) {
    }
    return old;
}

inline bool at_fd_limit() {
    int fd = ::open("/dev/null", O_RDONLY);
    if (fd >= 0) {
        ::close(fd);
        return false;
    }
    return errno == EMFILE;
}


// ---------------------------------------------------------------------------------------------
// Shared scratch memory for children to report through (counters, flags, results).

/// n value-initialized T in MAP_SHARED anonymous memory, shared with children forked later.
/// T must be trivially copyable (std::atomic<integral> is fine: lock-free atomics work across
/// processes). Throws std::system_error when mmap fails.
template <class T> class shared_array {
    static_assert(std::is_trivially_destructible_v<T>, "shared_array: T must be trivially destructible");

public:
    explicit shared_array(std::size_t n) : n_(n) {
        void* p = ::mmap(nullptr, bytes(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
        p_ = static_cast<T*>(p);
        for (std::size_t i = 0; i < n_; ++i) new (p_ + i) T();
    }
    ~shared_array() { ::munmap(p_, bytes()); }
    shared_array(const shared_array&) = delete;
    shared_array& operator=(const shared_array&) = delete;
    T& operator[](std::size_t i) noexcept { return p_[i]; }
    const T& operator[](std::size_t i) const noexcept { return p_[i]; }
    std::size_t size() const noexcept { return n_; }

private:
    std::size_t bytes() const noexcept { return std::max<std::size_t>(1, n_ * sizeof(T)); }
    T* p_ = nullptr;
    std::size_t n_;
};

// ---------------------------------------------------------------------------------------------
// Time.

/// Seconds since t0 on steady_clock.
inline double seconds_since(clk::time_point t0) noexcept {
    return std::chrono::duration<double>(clk::now() - t0).count();
}

/// A steady_clock stopwatch started at construction.
class stopwatch {
public:
    stopwatch() noexcept : t0_(clk::now()) {}
    void restart() noexcept { t0_ = clk::now(); }
    double seconds() const noexcept { return seconds_since(t0_); }
    double millis() const noexcept { return seconds() * 1e3; }

private:
    clk::time_point t0_;
};

/// Runs f and returns how many seconds it took.
template <class F> double timed(F&& f) {
    stopwatch sw;
    f();
    return sw.seconds();
}

// ---------------------------------------------------------------------------------------------
// Bytes.

/// How many threads this process has now (/proc/self/task).
inline std::size_t threads_of_this_process() {
    std::size_t n = 0;
    if (DIR* d = ::opendir("/proc/self/task")) {
        while (const dirent* e = ::readdir(d))
            if (e->d_name[0] != '.') ++n;
        ::closedir(d);
    }
    return n;
}

inline std::vector<std::byte> to_bytes(std::string_view s) {
    std::vector<std::byte> v(s.size());
    if (!s.empty()) std::memcpy(v.data(), s.data(), s.size());
    return v;
}

inline std::string to_string(std::span<const std::byte> b) {
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

/// Byte i of the pattern for `seed`. Depends on the position modulo a prime (so a shift by any
/// power of two, e.g. a ring offset, shows) and on the seed (so a swapped or repeated message
/// shows).
inline std::byte pattern_byte(std::uint64_t seed, std::uint64_t i) noexcept {
    const std::uint64_t s = seed * 0x9E3779B97F4A7C15ull;
    return static_cast<std::byte>((i % 251) ^ ((i / 251) * 7) ^ (s >> 56) ^ (s >> 17));
}

inline void fill_pattern(std::span<std::byte> out, std::uint64_t seed) noexcept {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = pattern_byte(seed, i);
}

inline std::vector<std::byte> make_pattern(std::size_t n, std::uint64_t seed) {
    std::vector<std::byte> v(n);
    fill_pattern(v, seed);
    return v;
}

/// Index of the first byte that differs from the pattern, or SIZE_MAX when all match.
inline std::size_t pattern_mismatch(std::span<const std::byte> in, std::uint64_t seed) noexcept {
    for (std::size_t i = 0; i < in.size(); ++i)
        if (in[i] != pattern_byte(seed, i)) return i;
    return SIZE_MAX;
}

inline bool matches_pattern(std::span<const std::byte> in, std::uint64_t seed) noexcept {
    return pattern_mismatch(in, seed) == SIZE_MAX;
}

// ---------------------------------------------------------------------------------------------
// Randomness.

/// The seed for a randomized test: $SHMQ_TEST_SEED if set, else fresh. Log it
/// (BOOST_TEST_MESSAGE) so a failure can be replayed with the same seed.
inline std::uint64_t test_seed() {
    if (const char* s = std::getenv("SHMQ_TEST_SEED")) return std::strtoull(s, nullptr, 0);
    return (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
}

} // namespace shmq::test
