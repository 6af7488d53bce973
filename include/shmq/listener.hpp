// SPDX-License-Identifier: BSL-1.0
// shmq — Listener and Client: Python's multiprocessing.connection over shared memory, so
// unrelated processes get request/response connections by name, with no hand-made reply queues.
//
//     shmq::Listener l("calc");                    // server
//     shmq::Connection c = l.accept();
//     c.send(c.recv<int>() * 2);
//
//     shmq::Connection c = shmq::Client("calc");   // any process of the same user
//     c.send(21);  int r = c.recv<int>();          // 42
//
// How it works, and what lives where (README "Listener and Client"):
//  * The Listener owns a named bounded queue /dev/shm/shmq.<name> (the backlog). Client() creates
//    a named duplex Pipe segment /dev/shm/shmq.<name>.conn-<pid>-<n> holding its own ends, posts
//    that name in the backlog, and returns once accept() has attached the other ends; both then
//    unlink the pipe's name, so a connection leaves nothing in /dev/shm once accepted (and a
//    client killed before that leaves an orphan `shmq gc` removes).
//  * A connection is a duplex Pipe between the two processes, with all of Pipe's guarantees:
//    whole messages, EOF (eof_error) when the peer closes or dies, broken_pipe_error on send to
//    a closed or dead peer, never a hang. A forked child inherits connections as with Pipe.
//  * Client() waits for accept() (like a connect with a handshake): a connection is usable from
//    the start, in both directions. While it waits it watches the listener: a listener that
//    closes or dies makes Client() throw not_found_error ("connection refused") within ~0.1 s.
// Thread safety: accept() may be called from several threads and processes at once (each request
// goes to one of them). close(), move and destruction must not race other calls on the object.
#pragma once

#include <shmq/export.hpp>

#include <shmq/connection.hpp>
#include <shmq/detail/queue_core.hpp>
#include <shmq/errors.hpp>
#include <shmq/options.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shmq {

namespace detail {
/// The element fingerprint of a Listener's backlog queue, so no Queue<T> can open it by mistake
/// (type_error) and `shmq ls` can name it.
SHMQ_API std::uint64_t listener_fingerprint() noexcept;
} // namespace detail

class SHMQ_API Listener {
public:
    /// Listens on `name` (same rules as a queue name). opts.if_exists applies: a server restarted
    /// after a crash passes if_exists::replace_stale; if_exists::open shares a live listener (each
    /// client goes to one of the processes accepting; only the creator unlinks the name). opts.capacity is the ring size of each
    /// accepted connection's directions. Throws exists_error, value_error, permission_error, error.
    explicit Listener(std::string_view name, options opts = {}, std::size_t backlog = 128);
    Listener(Listener&&) noexcept;
    Listener& operator=(Listener&&) noexcept;
    ~Listener();   // close(); never throws

    /// The next client's connection. Waits up to `timeout` (nullopt: forever) and then throws
    /// timeout_error. Requests of clients that gave up or died before being accepted are skipped.
    /// Throws closed_error after close(), timeout_error, error.
    Connection accept(timeout_t timeout = std::nullopt);
    /// Stops listening. In the process that created the listener, also unlinks its name (unless
    /// the name has been given to another listener since); clients waiting for accept then fail.
    /// Idempotent; never throws.
    void close() noexcept;
    bool closed() const noexcept;
    /// The name it listens on (Python's Listener.address).
    const std::string& address() const noexcept { return name_; }

private:
    std::string name_;
    options opts_;
    std::optional<detail::queue_core> backlog_;
    std::uint32_t creator_pid_ = 0;
};

/// Connects to the Listener `name` and returns once it has accepted. Throws not_found_error (no
/// listener by that name, or it closed or died while we waited: "connection refused"),
/// timeout_error (not accepted within `timeout`; nullopt waits as long as the listener lives),
/// type_error (the name is another kind of object), permission_error, error. `opts.capacity`
/// sets the ring size of each direction; opts.mode the permission bits of the short-lived pipe
/// name. The listener's user must be able to open it: the same user, unless mode says otherwise
/// and the listener trusts foreign objects.
SHMQ_API Connection Client(std::string_view name, timeout_t timeout = std::nullopt, options opts = {});

} // namespace shmq
