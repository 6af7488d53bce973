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
//  1. Process(target) stores the target; nothing else happens.
//  2. start() flushes stdout, stderr and the standard iostreams (so the child does not print a
//     second copy of what they hold), then fork()s. The parent drops its copy of the target at
//     once, so whatever the target captured by value (a Connection end, say) is released in
//     the parent, as Python drops Process._target after start().
//  3. The child calls the target. When it returns the exit code is 0; when it throws anything
//     (std::exception or not), the exception is printed to stderr and the exit code is 1. Then
//     the child runs shmq::detail::run_exit_flush() (queues flush their per-process backlog),
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
//     child if it has already ended; otherwise it hands the pid to a process-wide list that the
//     next start() or destructor polls, so an abandoned child does not stay a zombie for long
//     (Python's multiprocessing._cleanup does the same).
//
// Exit codes follow Python: the child's exit status, or -N when signal N killed it.
//
// Threads: every member may be called from several threads at once (say, join() in one and
// terminate() in another). The child status is collected under a lock, and the blocking waits
// themselves do not consume it, so exactly one caller reaps and every caller sees the result.
//
// Not supported: a program that sets SIGCHLD to SIG_IGN, or reaps with waitpid(-1) elsewhere,
// takes the child's status away from shmq. The Process then reports the child as ended
// (is_alive() false, join() returns) but exitcode() stays empty because the code is unknown.
#pragma once

#include <shmq/export.hpp>

#include <shmq/errors.hpp>
#include <shmq/options.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <sys/types.h>

namespace shmq {

namespace detail { struct process_state; }

class SHMQ_API Process {
public:
    /// Stores the target. An empty std::function is allowed and does nothing in the child
    /// (exit code 0), like Python's Process(target=None). Throws std::bad_alloc only.
    explicit Process(std::function<void()> target);

    /// Move-only. A moved-from Process behaves like one never started whose start() throws
    /// value_error. Moving never throws.
    Process(Process&& other) noexcept;
    /// Hands this object's child (if any) over as the destructor would, then takes other's.
    Process& operator=(Process&& other) noexcept;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    /// Does not kill or wait for the child (see the header comment). Never throws.
    ~Process();

    /// Forks the child, which runs the target. Throws value_error if called a second time (or on
    /// a moved-from Process), shmq::error (with errno) if fork() fails; in that case the
    /// Process is left unstarted and start() may be tried again.
    void start();

    /// Waits until the child has ended and reaps it. May be called any number of times.
    /// Retries on EINTR. Throws value_error before start() or when called in a process other
    /// than the one that started the child (Python asserts in both cases); shmq::error if
    /// waitid(2) fails for another reason than EINTR/ECHILD (not expected to happen).
    void join();

    /// Waits at most `timeout` (nullopt = forever, <= 0 = just check) for the child to end.
    /// Returns true if it has ended (and is reaped), false on timeout. Sleeps in the kernel
    /// (pidfd + poll, or short backoff sleeps where pidfd is unavailable); signals do not
    /// shorten or lengthen the wait. Throws as join().
    bool join(timeout_t timeout);

    /// True from start() until the child ends; notices the end without join(). False before
    /// start(). Throws value_error when called in a process other than the one that started
    /// the child (Python asserts).
    bool is_alive();

    /// Empty before start() and while the child runs; then its exit status, or -N when signal N
    /// killed it (1 when the target threw). Notices the end without join(). In a process other
    /// than the parent it returns what was known when that process was forked. Never throws.
    std::optional<int> exitcode();

    /// The child's pid; 0 before start(). Never throws.
    pid_t pid() const noexcept;

    /// Sends SIGTERM to the child. Does nothing before start() or once the child is reaped (the
    /// pid may belong to someone else by then). Throws shmq::error if kill(2) fails otherwise.
    void terminate();
    /// Sends SIGKILL; otherwise as terminate().
    void kill();

private:
    void send_signal(int sig, const char* what);
    std::unique_ptr<detail::process_state> state_;
};

} // namespace shmq
