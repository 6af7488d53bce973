// SPDX-License-Identifier: BSL-1.0
// shmq::Process: fork, run the target, report by exit code; see include/shmq/process.hpp.
#include <shmq/process.hpp>

#include <shmq/detail/exit_flush.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__GLIBCXX__) || defined(_LIBCPP_VERSION)
#include <cxxabi.h>
#define SHMQ_HAVE_CXXABI 1
#endif

namespace shmq::detail {

// `result` holds the exit code once known, or one of these (real codes lie in [-64, 255]).
inline constexpr int result_running = INT_MIN;      // not reaped yet
inline constexpr int result_lost = INT_MIN + 1;     // gone, but someone else took the status

struct process_state {
    explicit process_state(std::function<void()> t) : target(std::move(t)) {}

    // Read by start() only; the parent drops it right after fork.
    std::function<void()> target;
    // Serialises reaping and signalling in the parent, so the status is taken exactly once and a
    // signal never goes to a pid that this object has already reaped (and the kernel may have
    // recycled). Never held across a blocking wait, and never locked in another process (a
    // forked copy may hold it locked by a thread that does not exist there).
    std::mutex mu;
    // Set by the first start(); a second one sees it and throws.
    std::atomic<bool> starting{false};
    // Written once by start() in the parent: `parent` first, then `pid` with release, so whoever
    // sees pid != 0 with acquire also sees `parent`.
    std::atomic<pid_t> parent{0};
    std::atomic<pid_t> pid{0};
    // Written under mu by whoever reaps; read without the lock (e.g. by exitcode() in a forked
    // copy, which must not lock mu).
    std::atomic<int> result{result_running};
};

namespace {

using clock = std::chrono::steady_clock;

std::string errno_text(const char* what, int err) {
    return std::string("shmq::Process: ") + what + ": " + std::strerror(err);
}

int decode_status(int status) noexcept {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return 1;   // not reachable without WUNTRACED/WCONTINUED, which we never ask for
}

/// Collects the child's status if it has ended. Caller holds s.mu and is in the parent.
/// Returns true once the child is known to be gone.
bool reap_locked(process_state& s) noexcept {
    if (s.result.load(std::memory_order_relaxed) != result_running) return true;
    const pid_t pid = s.pid.load(std::memory_order_relaxed);
    int status = 0;
    pid_t r;
    do r = ::waitpid(pid, &status, WNOHANG); while (r == -1 && errno == EINTR);
    if (r == 0) return false;
    // r == -1 (ECHILD): SIGCHLD is ignored or someone ran waitpid(-1); the child is gone and its
    // code with it. Report it gone rather than alive forever (Python's poll() would).
    s.result.store(r == pid ? decode_status(status) : result_lost, std::memory_order_release);
    return true;
}

// ---- children abandoned by a destructor --------------------------------------------------
//
// A Process destroyed while its child runs leaves a zombie once the child ends. Like Python's
// multiprocessing._cleanup, every later start() and destructor polls these pids and reaps the
// ended ones. The list belongs to the process that forked them: a forked child starts with an
// empty list (atfork), since those pids are not its children and one of them might be reused
// by a child of its own.

struct abandoned_list {
    std::mutex mu;
    std::vector<pid_t> pids;
};

abandoned_list& abandoned() noexcept {
    // Leaked on purpose: destructors of static Process objects may still use it at exit.
    static abandoned_list* list = [] {
        auto* l = new abandoned_list;
        // Nobody may hold the lock across fork, or the child could never take it again.
        ::pthread_atfork([] { abandoned().mu.lock(); },
                         [] { abandoned().mu.unlock(); },
                         [] {
                             abandoned().pids.clear();
                             abandoned().mu.unlock();
                         });
        return l;
    }();
    return *list;
}

void reap_abandoned() noexcept {
    auto& list = abandoned();
    std::lock_guard lock(list.mu);
    std::erase_if(list.pids, [](pid_t pid) {
        int status = 0;
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        return r == pid || (r == -1 && errno != EINTR);   // reaped, or not ours any more
    });
}

void abandon(pid_t pid) noexcept {
    auto& list = abandoned();
    std::lock_guard lock(list.mu);
    try {
        list.pids.push_back(pid);
    } catch (...) {
        // Out of memory: the child stays a zombie until this process exits. Nothing better to do
        // in a destructor.
    }
}

// ---- the child side ------------------------------------------------------------------------

/// Flushes what this process holds in the standard streams. Only stdout and stderr, as Python
/// does (util._flush_std_streams), not fflush(nullptr): in the parent, fflush(nullptr) locks
/// every FILE and hangs while another thread blocks reading stdin; in the child, it would
/// also write out what the parent had pending in its other FILEs, a second copy of it.
void flush_std_streams() noexcept {
    // The iostreams first: unsynchronised ones have their own buffers; synchronised ones write
    // through into the stdio buffers flushed below.
    for (std::ostream* os : {&std::cout, &std::clog, &std::cerr}) {
        try { os->flush(); } catch (...) {}
    }
    for (std::wostream* os : {&std::wcout, &std::wclog, &std::wcerr}) {
        try { os->flush(); } catch (...) {}
    }
    std::fflush(stdout);
    std::fflush(stderr);
}

/// "std::runtime_error" rather than "St13runtime_error", where the runtime can tell.
std::string type_name(const std::type_info* ti) {
    if (ti == nullptr) return "unknown type";
#ifdef SHMQ_HAVE_CXXABI
    int rc = 0;
    char* s = abi::__cxa_demangle(ti->name(), nullptr, nullptr, &rc);
    if (rc == 0 && s != nullptr) {
        std::string out(s);
        std::free(s);
        return out;
    }
    std::free(s);
#endif
    return ti->name();
}

void report_uncaught(const std::type_info* ti, const char* what) noexcept {
    try {
        std::string name = type_name(ti);
        if (what != nullptr)
            std::fprintf(stderr, "shmq::Process (pid %d): uncaught exception %s: %s\n",
                         static_cast<int>(::getpid()), name.c_str(), what);
        else
            std::fprintf(stderr, "shmq::Process (pid %d): uncaught exception of type %s\n",
                         static_cast<int>(::getpid()), name.c_str());
    } catch (...) {
        std::fputs("shmq::Process: uncaught exception\n", stderr);
    }
}

[[noreturn]] void finish_child(int code) noexcept {
    run_exit_flush();        // queues drain their backlog (unless cancel_join_thread)
    flush_std_streams();     // after the hooks, which may print
    ::_exit(code);           // not exit(): the parent's atexit handlers and statics are not ours
}

[[noreturn]] void run_child(const std::function<void()>& target) noexcept {
    int code = 0;
    try {
        if (target) target();
    } catch (const std::exception& e) {
        report_uncaught(&typeid(e), e.what());
        code = 1;
    }
#ifdef __GLIBCXX__
    catch (abi::__forced_unwind&) {
        // pthread_exit() in the target: the last thread leaving ends the process with 0. It must
        // not be swallowed (that aborts), so end the process here, inside the handler.
        finish_child(0);
    }
#endif
    catch (...) {
        const std::type_info* ti = nullptr;
#ifdef SHMQ_HAVE_CXXABI
        ti = abi::__cxa_current_exception_type();
#endif
        report_uncaught(ti, nullptr);
        code = 1;
    }
    finish_child(code);
}

// ---- waiting -------------------------------------------------------------------------------

/// A pidfd for pid (Linux 5.3+), or -1 where the kernel or a seccomp filter refuses it.
int open_pidfd(pid_t pid) noexcept {
#ifdef SYS_pidfd_open
    static std::atomic<bool> unsupported{false};
    if (unsupported.load(std::memory_order_relaxed)) return -1;
    long fd = ::syscall(SYS_pidfd_open, pid, 0);   // close-on-exec by default
    if (fd >= 0) return static_cast<int>(fd);
    if (errno == ENOSYS) unsupported.store(true, std::memory_order_relaxed);
#else
    (void)pid;
#endif
    return -1;
}

/// Milliseconds for poll(): rounded up (rounding down would wake early and spin), capped so the
/// int cannot overflow (the caller loops).
int poll_ms(clock::duration left) noexcept {
    if (left <= clock::duration::zero()) return 0;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::min<decltype(ms)>(ms, 3'600'000));
}

} // namespace
} // namespace shmq::detail

namespace shmq {

using detail::process_state;

namespace {

/// Timeouts longer than this (about 31 years) wait forever; beyond it converting to
/// steady_clock ticks could overflow.
constexpr double forever_seconds = 1e9;

/// The state of a started Process whose child belongs to this process; otherwise value_error,
/// worded as Python's assertions.
process_state& owned(const std::unique_ptr<process_state>& s, const char* what) {
    if (!s || s->pid.load(std::memory_order_acquire) == 0)
        throw value_error(std::string("shmq::Process::") + what + ": can only " + what +
                          " a started process");
    if (s->parent.load(std::memory_order_relaxed) != ::getpid())
        throw value_error(std::string("shmq::Process::") + what + ": can only " + what +
                          " a child process (this process did not start it)");
    return *s;
}

} // namespace

Process::Process(std::function<void()> target)
    : state_(std::make_unique<process_state>(std::move(target))) {}

Process::Process(Process&& other) noexcept = default;

Process& Process::operator=(Process&& other) noexcept {
    if (this != &other) {
        Process old(std::move(*this));   // its destructor hands over the child, if any
        state_ = std::move(other.state_);
    }
    return *this;
}

Process::~Process() {
    if (!state_) return;
    detail::reap_abandoned();
    const pid_t pid = state_->pid.load(std::memory_order_acquire);
    if (pid == 0 || state_->parent.load(std::memory_order_relaxed) != ::getpid()) return;
    std::lock_guard lock(state_->mu);
    if (!detail::reap_locked(*state_)) detail::abandon(pid);
}

void Process::start() {
    if (!state_) throw value_error("shmq::Process::start: moved-from Process");
    if (state_->starting.exchange(true, std::memory_order_acq_rel))
        throw value_error("shmq::Process::start: cannot start a process twice");
    detail::reap_abandoned();
    // Anything still buffered would otherwise be printed by the child too.
    detail::flush_std_streams();
    const pid_t child = ::fork();
    if (child == -1) {
        const int err = errno;
        state_->starting.store(false, std::memory_order_release);
        throw error(detail::errno_text("fork", err));
    }
    if (child == 0) detail::run_child(state_->target);   // never returns
    state_->parent.store(::getpid(), std::memory_order_relaxed);
    state_->pid.store(child, std::memory_order_release);
    // Release what the target captured (a Connection end, say) in the parent now, as Python
    // drops Process._target; the child has its own copy.
    std::function<void()>().swap(state_->target);
}

void Process::join() {
    process_state& s = owned(state_, "join");
    const pid_t pid = s.pid.load(std::memory_order_relaxed);
    for (;;) {
        {
            std::lock_guard lock(s.mu);
            if (detail::reap_locked(s)) return;
        }
        // Wait without taking the status (WNOWAIT), so that a concurrent is_alive()/join() can't
        // find it gone; the reap happens under the lock above.
        siginfo_t info{};
        int r;
        do r = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT);
        while (r == -1 && errno == EINTR);
        if (r == -1 && errno != ECHILD) throw error(detail::errno_text("waitid", errno));
        // ECHILD: another thread reaped it, or someone outside shmq did; reap_locked tells.
    }
}

bool Process::join(timeout_t timeout) {
    process_state& s = owned(state_, "join");
    if (!timeout || timeout->count() > forever_seconds) {
        join();
        return true;
    }
    const bool just_check = !(timeout->count() > 0);   // also NaN
    const auto deadline =
        detail::clock::now() +
        (just_check ? detail::clock::duration::zero()
                    : std::chrono::duration_cast<detail::clock::duration>(*timeout));
    int pidfd = -1;
    {
        std::lock_guard lock(s.mu);
        if (detail::reap_locked(s)) return true;
        if (just_check) return false;
        // Opened under the lock: the child is unreaped, so its pid can't have been recycled.
        pidfd = detail::open_pidfd(s.pid.load(std::memory_order_relaxed));
    }
    if (pidfd >= 0) {
        // The pidfd turns readable when the child ends; sleep in poll() until then.
        for (;;) {
            pollfd p{pidfd, POLLIN, 0};
            const int r = ::poll(&p, 1, detail::poll_ms(deadline - detail::clock::now()));
            if (r > 0) break;
            if (r == -1 && errno != EINTR) break;   // fall back to sleeping below
            if (detail::clock::now() >= deadline) break;
        }
        ::close(pidfd);
    }
    // Without a pidfd: poll the status with sleeps that back off from 100 µs to 5 ms, so a short
    // child is noticed quickly and a long one costs ~200 wake-ups a second.
    auto nap = std::chrono::microseconds(100);
    for (;;) {
        {
            std::lock_guard lock(s.mu);
            if (detail::reap_locked(s)) return true;
        }
        const auto left = deadline - detail::clock::now();
        if (left <= detail::clock::duration::zero()) return false;
        const auto step = std::min<detail::clock::duration>(nap, left);
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(step).count();
        timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
        ::nanosleep(&ts, nullptr);   // EINTR: the loop re-checks and sleeps the rest
        nap = std::min(nap * 2, std::chrono::microseconds(5000));
    }
}

bool Process::is_alive() {
    if (!state_ || state_->pid.load(std::memory_order_acquire) == 0) return false;
    process_state& s = owned(state_, "test");
    std::lock_guard lock(s.mu);
    return !detail::reap_locked(s);
}

std::optional<int> Process::exitcode() {
    if (!state_ || state_->pid.load(std::memory_order_acquire) == 0) return std::nullopt;
    process_state& s = *state_;
    if (s.parent.load(std::memory_order_relaxed) == ::getpid()) {
        std::lock_guard lock(s.mu);
        detail::reap_locked(s);
    }
    const int r = s.result.load(std::memory_order_acquire);
    if (r == detail::result_running || r == detail::result_lost) return std::nullopt;
    return r;
}

pid_t Process::pid() const noexcept {
    return state_ ? state_->pid.load(std::memory_order_acquire) : 0;
}

void Process::terminate() { send_signal(SIGTERM, "terminate"); }
void Process::kill() { send_signal(SIGKILL, "kill"); }

void Process::send_signal(int sig, const char* what) {
    if (!state_) return;
    process_state& s = *state_;
    const pid_t pid = s.pid.load(std::memory_order_acquire);
    if (pid == 0) return;
    std::unique_lock<std::mutex> lock;
    if (s.parent.load(std::memory_order_relaxed) == ::getpid()) {
        lock = std::unique_lock(s.mu);   // no reap between the check and the signal
        detail::reap_locked(s);
    }
    // In a forked copy, as in Python, we signal unless the copy knew the child had ended.
    if (s.result.load(std::memory_order_acquire) != detail::result_running) return;
    if (::kill(pid, sig) == -1 && errno != ESRCH)
        throw error(detail::errno_text(what, errno));
}

} // namespace shmq
