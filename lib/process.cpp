// SPDX-License-Identifier: BSL-1.0
// shmq::Process: fork, run the target, report by exit code; see include/shmq/process.hpp.
#include <shmq/process.hpp>

#include <shmq/detail/exit_flush.hpp>

#include "test_hook.hpp"
#include "type_name.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <list>
#include <mutex>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__GLIBCXX__)
#include <cxxabi.h>   // abi::__forced_unwind
#endif

namespace shmq::detail {

// `result` holds the exit code once known, or one of these (real codes lie in [-64, 255]).
inline constexpr int result_running = INT_MIN;      // not reaped yet
inline constexpr int result_lost = INT_MIN + 1;     // gone, but someone else took the status

struct process_state {
    process_state(unique_task t, std::string id, bool daemonic)
        : target(std::move(t)), identity(std::move(id)), name("Process-" + identity),
          daemon(daemonic) {}
    ~process_state() {
        const int fd = sentinel.exchange(-1, std::memory_order_relaxed);
        if (fd >= 0) ::close(fd);
    }

    // Read by start() only; the parent drops it right after fork.
    unique_task target;
    // Serialises reaping and signalling in the parent, so the status is taken exactly once and a
    // signal never goes to a pid that this object has already reaped (and the kernel may have
    // recycled); also guards `name` in the process that owns the object (lock_if_ours). Never
    // held across a blocking wait, and never locked in another process (a forked copy may hold
    // it locked by a thread that does not exist there).
    std::mutex mu;
    // Set by the first start() (and by close() of a never-started Process); a second one sees it
    // and throws.
    std::atomic<bool> starting{false};
    // Written once by start() in the parent: `parent` first, then `pid` with release, so whoever
    // sees pid != 0 with acquire also sees `parent` and the sentinel. The child's own copy gets
    // them too (its parent's pid and its own), so it counts as a forked copy.
    std::atomic<pid_t> parent{0};
    std::atomic<pid_t> pid{0};
    // Written under mu by whoever reaps; read without the lock (e.g. by exitcode() in a forked
    // copy, which must not lock mu).
    std::atomic<int> result{result_running};
    // Python's Process._identity, "3" or "1:3": fixed at construction.
    const std::string identity;
    // Python's Process.name. Guarded by mu where the object is ours; a forked copy reads and
    // writes it without the lock (lock_if_ours).
    std::string name;
    // Written by set_daemon() under mu while `starting` is false; start() sets `starting` and then
    // reads it under mu, so a set_daemon() that comes too late throws instead of being ignored.
    std::atomic<bool> daemon;
    // Set by close(); every member Python's _check_closed guards looks at it first.
    std::atomic<bool> closed{false};
    // The sentinel descriptor, -1 when there is none (not started, closed, or it could not be
    // opened: then sentinel_errno says why). Written by start() before `pid` is published;
    // taken (exchange) by close() and the destructors, so it is closed exactly once.
    std::atomic<int> sentinel{-1};
    int sentinel_errno = 0;
    const char* sentinel_call = "";
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

// ---- this process --------------------------------------------------------------------------
//
// What current_process() and parent_process() report, and the counter behind default names.
// Written only in a child started by Process::start(), right after fork and before the target
// runs (the only thread there); read anywhere afterwards.

struct self_description {
    std::string name = "MainProcess";
    std::string identity;            // "" in the main process; "1", "1:2"... in children
    bool daemon = false;
    std::optional<process_info> parent;
};

self_description& self_desc() noexcept {
    // Leaked on purpose: static Process objects may be constructed or destroyed around it.
    static self_description* d = new self_description;
    return *d;
}

// The N of the next default name "Process-N" (Python's _process_counter); 1 again in a child.
std::atomic<unsigned> process_counter{1};

// ---- the children ---------------------------------------------------------------------------
//
// Every started child stays listed until it is reaped, whether or not its Process object still
// exists (Python's multiprocessing.process._children). start(), the destructor and
// active_children() reap the ended ones (Python's _cleanup), and the exit handler terminates the
// daemons among them. The list belongs to the process that forked them: a forked child marks
// its copy `inherited` (atfork) and drops it at the next use, since those pids are not its
// children and one of them might be reused by a child of its own.
//
// Lock order: children().mu, then a process_state's mu; never the other way.

struct child_list {
    std::mutex mu;
    std::list<std::shared_ptr<process_state>> entries;   // oldest first
    bool inherited = false;
};

child_list& children() noexcept {
    // Leaked on purpose: the exit handler and destructors of static Process objects use it at exit.
    static child_list* list = [] {
        auto* l = new child_list;
        // Nobody may hold the lock across fork, or the child could never take it again.
        ::pthread_atfork([] { children().mu.lock(); },
                         [] { children().mu.unlock(); },
                         [] {
                             children().inherited = true;   // no destructor runs in here
                             children().mu.unlock();
                         });
        return l;
    }();
    return *list;
}

/// Caller holds l.mu. Forgets a forked parent's children, and reaps the ended ones of ours.
void reap_children_locked(child_list& l) noexcept {
    if (l.inherited) {
        l.entries.clear();
        l.inherited = false;
    }
    const pid_t self = ::getpid();
    l.entries.remove_if([self](const std::shared_ptr<process_state>& s) {
        // Another parent's (a child made without fork handlers, e.g. by a raw clone()).
        if (s->parent.load(std::memory_order_relaxed) != self) return true;
        std::lock_guard lock(s->mu);
        return reap_locked(*s);
    });
}

void reap_children() noexcept {
    auto& l = children();
    std::lock_guard lock(l.mu);
    reap_children_locked(l);
}

/// Sleeps a little, backing off from 100 µs to 5 ms.
void nap(std::chrono::microseconds& step) noexcept {
    const timespec ts{0, static_cast<long>(step.count()) * 1000};
    ::nanosleep(&ts, nullptr);
    step = std::min(step * 2, std::chrono::microseconds(5000));
}

/// Reaps what has ended among `ps` until all have, or until `deadline`. True if all have.
bool reap_all_by(const std::vector<std::shared_ptr<process_state>>& ps,
                 clock::time_point deadline) noexcept {
    auto step = std::chrono::microseconds(100);
    for (;;) {
        bool all = true;
        for (const auto& s : ps) {
            std::lock_guard lock(s->mu);
            if (!reap_locked(*s)) all = false;
        }
        if (all) return true;
        if (clock::now() >= deadline) return false;
        nap(step);
    }
}

/// Python's util._exit_function, daemon half: SIGTERM to every daemon child still running, reap
/// them, SIGKILL for those still there after daemon_exit_grace. Runs at exit (atexit) and when a
/// Process child ends. Never throws.
void stop_daemon_children() noexcept {
    try {
        std::vector<std::shared_ptr<process_state>> daemons;
        {
            auto& l = children();
            std::lock_guard lock(l.mu);
            reap_children_locked(l);
            for (const auto& s : l.entries)
                if (s->daemon.load(std::memory_order_relaxed)) daemons.push_back(s);
        }
        if (daemons.empty()) return;
        auto signal_all = [&](int sig) {
            for (const auto& s : daemons) {
                std::lock_guard lock(s->mu);   // no reap between the check and the signal
                if (!reap_locked(*s)) ::kill(s->pid.load(std::memory_order_relaxed), sig);
            }
        };
        signal_all(SIGTERM);
        if (reap_all_by(daemons, clock::now() + Process::daemon_exit_grace)) return;
        signal_all(SIGKILL);
        // SIGKILL cannot be caught; this only bounds a child stuck in the kernel (D state).
        reap_all_by(daemons, clock::now() + std::chrono::seconds(5));
    } catch (...) {
        // Out of memory while exiting: the daemons are left to PR_SET_PDEATHSIG.
    }
}

/// Registers stop_daemon_children() with atexit, once per program (forked children inherit the
/// registration, and the list it reads is theirs).
void arm_daemon_exit() noexcept {
    static std::atomic<bool> armed{false};
    if (!armed.exchange(true, std::memory_order_acq_rel)) std::atexit([] { stop_daemon_children(); });
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

void report_uncaught(const std::type_info* ti, const char* what) noexcept {
    try {
        std::string name = type_name(ti);
        const char* process = self_desc().name.c_str();
        if (what != nullptr)
            std::fprintf(stderr, "shmq::Process %s (pid %d): uncaught exception %s: %s\n",
                         process, static_cast<int>(::getpid()), name.c_str(), what);
        else
            std::fprintf(stderr, "shmq::Process %s (pid %d): uncaught exception of type %s\n",
                         process, static_cast<int>(::getpid()), name.c_str());
    } catch (...) {
        std::fputs("shmq::Process: uncaught exception\n", stderr);
    }
}

[[noreturn]] void finish_child(int code) noexcept {
    stop_daemon_children();  // before the flush, in Python's order (util._exit_function)
    run_exit_flush();        // queues drain their backlog (unless cancel_join_thread)
    flush_std_streams();     // after the hooks, which may print
    ::_exit(code);           // not exit(): the parent's atexit handlers and statics are not ours
}

/// The child side of start(), right after fork: the only thread of this process.
[[noreturn]] void run_child(process_state& s, const std::string& name, bool daemonic,
                            pid_t parent, int pipe_r) noexcept {
    if (pipe_r >= 0) ::close(pipe_r);   // the parent's end of a fallback sentinel
    if (daemonic) {
        SHMQ_TEST_HOOK("process.daemon.forked");
        // Die with the parent. If it died before this call, nothing will ever send the signal;
        // then the parent's pid is no longer our parent's.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) {
            ::kill(::getpid(), SIGKILL);
            ::_exit(1);   // not reached
        }
    }
    ::prctl(PR_SET_NAME, name.c_str());   // the kernel keeps 15 bytes
    // This copy of the Process describes the running child itself: a copy, not its parent.
    s.parent.store(parent, std::memory_order_relaxed);
    s.pid.store(::getpid(), std::memory_order_release);
    try {
        auto& me = self_desc();
        me.parent = process_info{me.name, parent, me.daemon};
        me.name = name;
        me.daemon = daemonic;
        me.identity = s.identity;
    } catch (...) {
        // Out of memory: current_process() keeps describing the parent; the target still runs.
    }
    process_counter.store(1, std::memory_order_relaxed);

    int code = 0;
    try {
        s.target.run();
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
        report_uncaught(current_exception_type(), nullptr);
        code = 1;
    }
    finish_child(code);
}

// ---- waiting -------------------------------------------------------------------------------

/// A pidfd for pid (Linux 5.3+), or -1 with errno set where the kernel or a seccomp filter
/// refuses it (or on EMFILE...).
int open_pidfd(pid_t pid) noexcept {
#ifdef SYS_pidfd_open
    static std::atomic<bool> unsupported{false};
    if (unsupported.load(std::memory_order_relaxed)) {
        errno = ENOSYS;
        return -1;
    }
    long fd = ::syscall(SYS_pidfd_open, pid, 0);   // close-on-exec by default
    if (fd >= 0) return static_cast<int>(fd);
    if (errno == ENOSYS) unsupported.store(true, std::memory_order_relaxed);
#else
    (void)pid;
    errno = ENOSYS;
#endif
    return -1;
}

/// Whether pidfd_open works here now (asked each time: a seccomp filter may come later).
bool pidfd_usable() noexcept {
    const int fd = open_pidfd(::getpid());
    if (fd < 0) return false;
    ::close(fd);
    return true;
}

void close_sentinel(process_state& s) noexcept {
    const int fd = s.sentinel.exchange(-1, std::memory_order_acq_rel);
    if (fd >= 0) ::close(fd);
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

std::string what_of(const char* member, const char* text) {
    return std::string("shmq::Process::") + member + ": " + text;
}

void check_open(const process_state& s, const char* member) {
    if (s.closed.load(std::memory_order_acquire))
        throw value_error(what_of(member, "process object is closed"));
}

/// The state of a started, not closed Process whose child belongs to this process; otherwise
/// value_error, worded as Python's assertions.
process_state& owned(const std::shared_ptr<process_state>& s, const char* what) {
    if (s) check_open(*s, what);
    if (!s || s->pid.load(std::memory_order_acquire) == 0)
        throw value_error(std::string("shmq::Process::") + what + ": can only " + what +
                          " a started process");
    if (s->parent.load(std::memory_order_relaxed) != ::getpid())
        throw value_error(std::string("shmq::Process::") + what + ": can only " + what +
                          " a child process (this process did not start it)");
    return *s;
}

/// Locks s.mu unless this is a forked copy of the object (see process_state::mu).
std::unique_lock<std::mutex> lock_if_ours(process_state& s) {
    const pid_t parent = s.parent.load(std::memory_order_acquire);
    if (parent != 0 && parent != ::getpid()) return {};
    return std::unique_lock(s.mu);
}

std::shared_ptr<process_state> new_state(detail::unique_task target) {
    const auto& me = detail::self_desc();
    const unsigned n = detail::process_counter.fetch_add(1, std::memory_order_relaxed);
    std::string identity = me.identity.empty() ? std::to_string(n)
                                               : me.identity + ":" + std::to_string(n);
    return std::make_shared<process_state>(std::move(target), std::move(identity), me.daemon);
}

} // namespace

Process::Process(std::function<void()> target)
    : Process(detail::unique_task(std::move(target)), task_tag{}) {}

Process::Process(detail::unique_task target, task_tag) : state_(new_state(std::move(target))) {}

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
    process_state& s = *state_;
    const pid_t pid = s.pid.load(std::memory_order_acquire);
    if (pid != 0 && s.parent.load(std::memory_order_relaxed) == ::getpid()) {
        std::lock_guard lock(s.mu);
        detail::reap_locked(s);   // if not, the list of children keeps it until it is reaped
    }
    detail::close_sentinel(s);    // ours, or this process's copy of it
    state_.reset();
    detail::reap_children();
}

void Process::start() {
    if (!state_) throw value_error("shmq::Process::start: moved-from Process");
    process_state& s = *state_;
    check_open(s, "start");
    if (detail::self_desc().daemon)
        throw value_error("shmq::Process::start: a daemon process may not have children "
                          "(they would be orphaned when it is terminated)");
    if (s.starting.exchange(true, std::memory_order_acq_rel))
        throw value_error("shmq::Process::start: cannot start a process twice");
    // Everything that may fail comes before fork, and leaves the Process unstarted.
    std::string name;
    bool daemonic = false;
    std::list<std::shared_ptr<process_state>> entry;   // spliced into the list after fork
    int pipe_fds[2] = {-1, -1};
    try {
        {
            auto lock = lock_if_ours(s);
            name = s.name;
            daemonic = s.daemon.load(std::memory_order_relaxed);
        }
        entry.push_back(state_);
        if (daemonic) detail::arm_daemon_exit();
    } catch (...) {
        s.starting.store(false, std::memory_order_release);
        throw;
    }
    // The sentinel: a pidfd opened after fork, or (no pidfds) a pipe made now whose write end
    // only the child keeps. Running out of descriptors does not stop the start: sentinel()
    // reports it.
    if (!detail::pidfd_usable() && ::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        s.sentinel_errno = errno;
        s.sentinel_call = "pipe2";
    }
    detail::reap_children();
    // Anything still buffered would otherwise be printed by the child too.
    detail::flush_std_streams();
    const pid_t self = ::getpid();
    const pid_t child = ::fork();
    if (child == -1) {
        const int err = errno;
        if (pipe_fds[0] >= 0) ::close(pipe_fds[0]), ::close(pipe_fds[1]);
        s.sentinel_errno = 0;
        s.starting.store(false, std::memory_order_release);
        throw error(detail::errno_text("fork", err));
    }
    if (child == 0) detail::run_child(s, name, daemonic, self, pipe_fds[0]);   // never returns
    int sentinel = -1;
    if (pipe_fds[1] >= 0) {
        ::close(pipe_fds[1]);
        sentinel = pipe_fds[0];
    } else if (s.sentinel_errno == 0) {
        // The child is not reaped yet, so the pid is still its own.
        sentinel = detail::open_pidfd(child);
        if (sentinel < 0) {
            s.sentinel_errno = errno;
            s.sentinel_call = "pidfd_open";
        }
    }
    s.sentinel.store(sentinel, std::memory_order_relaxed);
    s.parent.store(self, std::memory_order_relaxed);
    s.pid.store(child, std::memory_order_release);
    {
        auto& l = detail::children();
        std::lock_guard lock(l.mu);
        if (l.inherited) {   // a fork in another thread: the old entries are not ours
            l.entries.clear();
            l.inherited = false;
        }
        l.entries.splice(l.entries.end(), entry);
    }
    // Release what the target captured (a Connection end, say) in the parent now, as Python
    // drops Process._target; the child has its own copy.
    s.target = detail::unique_task();
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
    if (state_) check_open(*state_, "is_alive");
    if (!state_ || state_->pid.load(std::memory_order_acquire) == 0) return false;
    process_state& s = owned(state_, "test");
    std::lock_guard lock(s.mu);
    return !detail::reap_locked(s);
}

std::optional<int> Process::exitcode() {
    if (state_) check_open(*state_, "exitcode");
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
    check_open(s, what);
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

std::string Process::name() const {
    if (!state_) return {};
    auto lock = lock_if_ours(*state_);
    return state_->name;
}

void Process::set_name(std::string name) {
    if (!state_) throw value_error("shmq::Process::set_name: moved-from Process");
    auto lock = lock_if_ours(*state_);
    state_->name = std::move(name);
}

bool Process::daemon() const noexcept {
    return state_ && state_->daemon.load(std::memory_order_relaxed);
}

void Process::set_daemon(bool daemonic) {
    if (!state_) throw value_error("shmq::Process::set_daemon: moved-from Process");
    process_state& s = *state_;
    check_open(s, "set_daemon");
    auto lock = lock_if_ours(s);
    if (s.starting.load(std::memory_order_acquire))
        throw value_error("shmq::Process::set_daemon: process has already started");
    s.daemon.store(daemonic, std::memory_order_relaxed);
}

int Process::sentinel() const {
    if (!state_) throw value_error("shmq::Process::sentinel: moved-from Process");
    const process_state& s = *state_;
    check_open(s, "sentinel");
    if (s.pid.load(std::memory_order_acquire) == 0)
        throw value_error("shmq::Process::sentinel: process not started");
    const int fd = s.sentinel.load(std::memory_order_acquire);
    if (fd < 0)
        throw error(std::string("shmq::Process::sentinel: no descriptor could be opened at "
                                "start(): ") +
                    s.sentinel_call + ": " + std::strerror(s.sentinel_errno));
    return fd;
}

void Process::close() {
    if (!state_) return;
    process_state& s = *state_;
    const pid_t pid = s.pid.load(std::memory_order_acquire);
    if (pid == 0) {
        // Never started: claim `starting`, so a start() in another thread cannot begin now.
        if (s.starting.exchange(true, std::memory_order_acq_rel) &&
            !s.closed.load(std::memory_order_acquire))
            throw value_error("shmq::Process::close: the process is being started");
        s.closed.store(true, std::memory_order_release);
        return;
    }
    if (s.parent.load(std::memory_order_relaxed) == ::getpid()) {
        std::lock_guard lock(s.mu);
        if (!detail::reap_locked(s))
            throw value_error("shmq::Process::close: cannot close a process while it is still "
                              "running; call join() or terminate() first");
    }
    detail::close_sentinel(s);
    s.closed.store(true, std::memory_order_release);
}

std::vector<process_info> active_children() {
    std::vector<std::shared_ptr<process_state>> live;
    {
        auto& l = detail::children();
        std::lock_guard lock(l.mu);
        detail::reap_children_locked(l);
        live.assign(l.entries.begin(), l.entries.end());
    }
    std::vector<process_info> out;
    out.reserve(live.size());
    for (const auto& s : live) {
        std::lock_guard lock(s->mu);
        out.push_back(process_info{s->name, s->pid.load(std::memory_order_relaxed),
                                   s->daemon.load(std::memory_order_relaxed)});
    }
    return out;
}

process_info current_process() {
    const auto& me = detail::self_desc();
    return process_info{me.name, ::getpid(), me.daemon};
}

std::optional<process_info> parent_process() {
    return detail::self_desc().parent;
}

unsigned cpu_count() noexcept {
    // The mask may be larger than cpu_set_t on machines with more than 1024 CPUs: EINVAL then
    // asks for a bigger one.
    for (int n = CPU_SETSIZE; n <= (1 << 22); n *= 2) {
        cpu_set_t* set = CPU_ALLOC(n);
        if (set == nullptr) break;
        const std::size_t size = CPU_ALLOC_SIZE(n);
        CPU_ZERO_S(size, set);
        if (::sched_getaffinity(0, size, set) == 0) {
            const int count = CPU_COUNT_S(size, set);
            CPU_FREE(set);
            if (count > 0) return static_cast<unsigned>(count);
            break;
        }
        const int err = errno;
        CPU_FREE(set);
        if (err != EINVAL) break;
    }
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? static_cast<unsigned>(online) : 1u;
}

} // namespace shmq
