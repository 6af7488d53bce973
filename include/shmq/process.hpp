// SPDX-License-Identifier: BSL-1.0
// shmq — Process: Python's multiprocessing.Process with the fork start method.
//
//   shmq::Queue<int> q;
//   shmq::Process p([&] { q.put(42); });
//   p.start();               // fork(); the child runs the target, then _exit()s
//   int v = q.get();
//   p.join();                // reaps the child; p.exitcode() == 0
//
// Lifetime, step by step:
//  1. Process(target) stores the target and names the Process; nothing else happens.
//  2. start() flushes stdout, stderr and the standard iostreams (so the child does not print a
//     second copy of what they hold), then fork()s and opens the sentinel. The child names
//     itself and, for a daemon, asks to die with its parent. The parent drops its copy of the target at
//     once, so whatever the target captured by value (a Connection end, say) is released in
//     the parent, as Python drops Process._target after start().
//  3. The child calls the target. When it returns the exit code is 0; when it throws anything
//     (std::exception or not), the exception is printed to stderr and the exit code is 1. Then
//     the child terminates its own daemon children (as a parent's exit does, see below), runs
//     shmq::detail::run_exit_flush() (queues flush their per-process backlog),
//     flushes stdout, stderr and the standard iostreams, and calls _exit(code): it never
//     returns into the caller's stack and never runs the parent program's atexit handlers or
//     static destructors. A target that calls std::exit(n) or _exit(n) ends the child with n.
//     Other FILE*s are flushed on neither side, as in Python: fflush(nullptr) hangs in the
//     parent while another thread blocks reading stdin, and in the child it would write a
//     second copy of what the parent had pending. A target that writes to another FILE*
//     should fflush or fclose it before returning.
//  4. join(), join(timeout), is_alive() and exitcode() collect the child's status (waitpid) as
//     soon as it has ended, so none of them needs the others first.
//  5. The destructor neither kills nor waits for the child (Python does neither). It reaps the
//     child if it has already ended and closes the sentinel. Every started child stays in a
//     process-wide list until it is reaped; each start(), destructor and active_children() polls
//     that list and reaps the ended ones, so an abandoned child does not stay a zombie for long
//     (Python's multiprocessing._cleanup does the same).
//
// Exit codes follow Python: the child's exit status, or -N when signal N killed it.
//
// Name. Every Process has a name, Python's Process.name: "Process-N" by default, N counting the
// Process objects this process has constructed (in a child, "Process-1:N" and so on, as
// Python's identities). The child sets it as its thread name (prctl(PR_SET_NAME)), so ps,
// top and /proc/<pid>/comm show it; the kernel keeps only the first 15 bytes there, while
// name() and current_process().name keep all of it.
//
// Daemon children. A child started with set_daemon(true) is tied to its parent's life, as
// Python's daemon processes are, and more:
//  * at the parent's normal exit (exit(), returning from main, or a shmq::Process child ending)
//    every daemon child still running gets SIGTERM and is reaped; one still running after
//    daemon_exit_grace (1 s) gets SIGKILL. Python waits without limit; shmq never lets exit hang.
//  * when the parent dies any other way (SIGKILL, a crash, _exit), the kernel kills the daemon
//    child with SIGKILL (prctl(PR_SET_PDEATHSIG)); a parent that died before the child could ask
//    for that is noticed (getppid()) and the child kills itself at once.
//  * a daemon child may not start children of its own (value_error), as in Python: they would be
//    orphaned when it is terminated.
// Caveat (Linux semantics, not a choice): the "parent" of PR_SET_PDEATHSIG is a *thread*: the
// one that called start(), or, once that thread has exited, the thread of the parent process the
// kernel hands the child to. A daemon started from a thread that then exits is therefore killed
// with that thread (or with a later one), although the parent process lives on. Start daemons
// from a thread that outlives them (the main thread, say).
// Non-daemon children are neither killed nor waited for at exit: they run on, reparented (Python
// joins them at exit; a C++ exit() should not block on a child that may never end).
//
// Sentinel. sentinel() is a file descriptor that becomes readable when the child ends, for
// poll/epoll/select beside other descriptors: a pidfd (Linux 5.3), where poll() reports POLLIN.
// Where pidfd_open is refused (older kernel, seccomp), it is the read end of a pipe whose only
// write end the child holds, as Python's sentinel: poll() then reports POLLHUP (select() and
// epoll count both as readable: wait for POLLIN | POLLHUP); it also waits for the child's own
// children that inherited that end, and turns readable early at an exec() in the child (the end
// is close-on-exec).
// Either way it is close-on-exec, owned by the Process and valid until close() or destruction.
//
// close() releases the sentinel and makes the object unusable (Python's Process.close()): only
// an ended child's Process may be closed; afterwards every member but name(), daemon(), pid()
// and close() throws value_error.
//
// Threads: every member may be called from several threads at once (say, join() in one and
// terminate() in another), and so may the free functions. The child status is collected under a
// lock, and the blocking waits themselves do not consume it, so exactly one caller reaps and
// every caller sees the result.
//
// Copies in other processes. A forked process holds a copy of every Process object; only the
// parent may join or test it (value_error elsewhere, as Python asserts). The child's own copy
// of its Process counts as such a copy: there pid() is the child's own pid.
//
// Not supported: a program that sets SIGCHLD to SIG_IGN, or reaps with waitpid(-1) elsewhere,
// takes the child's status away from shmq. The Process then reports the child as ended
// (is_alive() false, join() returns) but exitcode() stays empty because the code is unknown.
#pragma once

#include <shmq/export.hpp>

#include <shmq/errors.hpp>
#include <shmq/options.hpp>

#include <shmq/detail/unique_task.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>
#include <type_traits>
#include <utility>
#include <vector>

namespace shmq {

namespace detail { struct process_state; }

class SHMQ_API Process {
public:
    /// Stores the target and gives the Process its default name ("Process-N"). An empty
    /// std::function is allowed and does nothing in the child (exit code 0), like Python's
    /// Process(target=None). Throws std::bad_alloc only.
    explicit Process(std::function<void()> target);

    /// The same for any other callable with no arguments, including move-only ones: a lambda
    /// that captures a Connection by move. The callable is moved (or copied) into the Process;
    /// its result, if any, is ignored. A null function pointer does nothing in the child.
    /// Throws std::bad_alloc, or what moving/copying the callable throws.
    template <class F>
        requires(!std::is_same_v<std::remove_cvref_t<F>, Process> &&
                 !std::is_same_v<std::remove_cvref_t<F>, std::function<void()>> &&
                 detail::task_callable<F>)
    explicit Process(F&& target) : Process(detail::unique_task(std::forward<F>(target)), task_tag{}) {}

    /// Move-only. A moved-from Process behaves like one never started whose start() throws
    /// value_error. Moving never throws.
    Process(Process&& other) noexcept;
    /// Hands this object's child (if any) over as the destructor would, then takes other's.
    Process& operator=(Process&& other) noexcept;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    /// Does not kill or wait for the child (see the header comment). Never throws.
    ~Process();

    /// Forks the child, which runs the target. Throws value_error if called a second time, on a
    /// closed or moved-from Process, or in a daemon process (daemons may not have children);
    /// shmq::error (with errno) if fork() fails; in that case the Process is left unstarted and
    /// start() may be tried again. A sentinel that cannot be opened (EMFILE) does not stop it.
    void start();

    /// Waits until the child has ended and reaps it. May be called any number of times.
    /// Retries on EINTR. Throws value_error before start(), after close() or when called in a
    /// process other than the one that started the child (Python asserts in those cases); shmq::error if
    /// waitid(2) fails for another reason than EINTR/ECHILD (not expected to happen).
    void join();

    /// Waits at most `timeout` (nullopt = forever, <= 0 = just check) for the child to end.
    /// Returns true if it has ended (and is reaped), false on timeout. Sleeps in the kernel
    /// (pidfd + poll, or short backoff sleeps where pidfd is unavailable); signals do not
    /// shorten or lengthen the wait. Throws as join().
    bool join(timeout_t timeout);

    /// True from start() until the child ends; notices the end without join(). False before
    /// start(). Throws value_error after close() or when called in a process other than the one
    /// that started the child (Python asserts).
    bool is_alive();

    /// Empty before start() and while the child runs; then its exit status, or -N when signal N
    /// killed it (1 when the target threw). Notices the end without join(). In a process other
    /// than the parent it returns what was known when that process was forked. Throws
    /// value_error after close() (as Python); never otherwise.
    std::optional<int> exitcode();

    /// The child's pid; 0 before start(). After close() still the pid the child had (Python
    /// raises there; this stays noexcept, as pinned). Never throws.
    pid_t pid() const noexcept;

    /// Sends SIGTERM to the child. Does nothing before start() or once the child is reaped (the
    /// pid may belong to someone else by then). Throws value_error after close(), shmq::error
    /// if kill(2) fails otherwise.
    void terminate();
    /// Sends SIGKILL; otherwise as terminate().
    void kill();

    /// The name (Python's Process.name): "Process-N" unless set; empty on a moved-from Process.
    /// Throws std::bad_alloc only.
    std::string name() const;
    /// Sets the name. The child started afterwards carries it (current_process().name, and its
    /// first 15 bytes as the thread name in /proc/<pid>/comm). Allowed at any time, as in
    /// Python, but after start() it changes only this object, not the running child. Throws
    /// value_error on a moved-from Process.
    void set_name(std::string name);

    /// Whether the child is (or will be) a daemon; see the header comment. By default the
    /// calling process's own daemon flag, as in Python (so false outside daemons). Never throws.
    bool daemon() const noexcept;
    /// Sets the daemon flag. Throws value_error once start() has been called (Python: "process
    /// has already started") or on a moved-from Process.
    void set_daemon(bool daemonic);

    /// A descriptor that becomes readable when the child ends (see the header comment), for
    /// poll/epoll/select; readable for good after that. Owned by the Process: do not close it;
    /// valid until close() or the destructor. Throws value_error before start() or after close()
    /// (Python: "process not started" / "process object is closed"), shmq::error when no
    /// descriptor could be opened at start() (e.g. EMFILE; the message names the call and errno).
    int sentinel() const;

    /// Releases what the Process holds (the sentinel) once the child has ended (reaping it if
    /// needed), as Python's close(). A never-started Process may be closed too. Idempotent.
    /// Throws value_error while the child is still running ("You should first call join() or
    /// terminate()"). In a forked copy of the object (a process other than the parent) it only
    /// releases that process's copy of the sentinel.
    void close();

    /// Daemon children still running at exit get this long after SIGTERM before SIGKILL.
    static constexpr std::chrono::milliseconds daemon_exit_grace{1000};

private:
    struct task_tag {};
    Process(detail::unique_task target, task_tag);
    void send_signal(int sig, const char* what);
    std::shared_ptr<detail::process_state> state_;
};

/// A description of a process, as current_process(), parent_process() and active_children()
/// report it (Python returns Process objects; a C++ Process is owned by whoever made it).
struct process_info {
    std::string name;   ///< Python's Process.name; "MainProcess" for a process shmq did not start
    pid_t pid = 0;
    bool daemon = false;
};

/// The children this process started with shmq::Process that are still running, oldest first,
/// whether or not their Process object still exists (Python's multiprocessing.active_children()).
/// Reaps the ones that have ended on the way, so their Process objects know their exit code, as
/// Python does. A pid is only reliable while that child is not reaped by someone else (a join()
/// in another thread). Throws std::bad_alloc only.
SHMQ_API std::vector<process_info> active_children();

/// This process: in a child started by shmq::Process, its Process's name and daemon flag (as
/// they were at start()); otherwise "MainProcess", not a daemon (also in a child made by a plain
/// fork(), as in Python). pid is getpid(). Throws std::bad_alloc only.
SHMQ_API process_info current_process();

/// In a child started by shmq::Process: the process that started it (its current_process()
/// name and daemon flag at start(), and its pid), whether or not it still runs. nullopt
/// elsewhere (Python's multiprocessing.parent_process() is None in the main process). Throws
/// std::bad_alloc only.
SHMQ_API std::optional<process_info> parent_process();

/// How many CPUs this process may run on: the size of its sched_getaffinity(2) mask, as Python's
/// os.process_cpu_count(). This is what a pool should size itself by: in a container or under
/// taskset it is smaller than the machine's count, which std::thread::hardware_concurrency()
/// and Python's multiprocessing.cpu_count() report (CPU quotas of cgroups count in neither).
/// Falls back to the online CPUs when the mask cannot be read. At least 1. Never throws.
SHMQ_API unsigned cpu_count() noexcept;

} // namespace shmq
