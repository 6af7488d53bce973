// SPDX-License-Identifier: BSL-1.0
// shmq-soak — the object under test in one phase: an anonymous Pipe, or a Queue / bounded Queue
// / JoinableQueue, anonymous or named. The runner holds it (an anonymous object must be inherited,
// so every fork, respawns included, comes from the runner, which keeps it for the whole phase);
// each child then calls attach() and uses only the calls below.
#pragma once

#include <shmq/shmq.hpp>

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace shmq_soak {

enum class kind { pipe, queue, bounded, joinable };

struct phase_spec {
    kind what;
    bool named;
    std::string label() const;   // "Pipe", "Queue(named)", "Queue(maxsize=8)"...
    /// Unbounded queues keep a killed producer's unpublished puts in its private backlog: that
    /// loss is documented, and counted apart (lost_backlog).
    bool has_backlog() const noexcept { return what == kind::queue || what == kind::joinable; }
};

using bytes = std::vector<std::byte>;

class subject {
public:
    static constexpr std::size_t bounded_maxsize = 8;

    /// Runner: creates the object. A named one is created, then the runner's handle is dropped
    /// (the name keeps it alive), so children reach it only by open(). name: unique per run.
    subject(const phase_spec& spec, std::size_t capacity, const std::string& name);
    ~subject();   // runner: removes the name (also on failure); never throws

    /// Child, right after fork: a named object is opened by name here; a Pipe child closes the
    /// end it does not use (a consumer holding a writer end would keep every reader from EOF).
    void attach(bool producer);
    /// Child (producer): one message; false when a timed put ran out (the message was not put).
    bool put(std::span<const std::byte> msg);
    /// Child (consumer) or runner: one message into out; false after timeout with nothing.
    /// Throws shmq::eof_error on a Pipe whose writers are all gone.
    bool get(bytes& out, double timeout_s);
    void task_done();                     // JoinableQueue only
    std::size_t backlog_hint();           // qsize() of an unbounded queue, else 0
    void producer_exit();                 // close + join_thread (flushes the backlog)

    /// Runner, after the producers have gone: a Pipe's readers see EOF once the runner's own
    /// writer end is closed too.
    void close_writer();
    /// Runner, JoinableQueue: join(timeout); opens by name when named.
    bool join(double timeout_s);

    const phase_spec& spec() const noexcept { return spec_; }

private:
    phase_spec spec_;
    std::string name_;
    std::optional<shmq::Connection> reader_, writer_;
    std::optional<shmq::Queue<bytes>> queue_;
    std::optional<shmq::JoinableQueue<bytes>> joinable_;
};

} // namespace shmq_soak
