// SPDX-License-Identifier: BSL-1.0
// shmq — wait(): block until one of several connections has something to receive, like Python's
// multiprocessing.connection.wait. A dispatcher waits on its workers' pipes with one call; the
// second form waits on connections, queues, Process sentinels and raw descriptors (sockets) at
// once.
#pragma once

#include <shmq/export.hpp>

#include <shmq/connection.hpp>
#include <shmq/options.hpp>
#include <shmq/queue.hpp>
#include <shmq/simple_queue.hpp>

#include <initializer_list>
#include <span>
#include <vector>

namespace shmq {

class Process;

/// One thing wait() can watch, made implicitly from what it names (it holds a pointer: the
/// object must outlive the wait):
///   Connection&            ready when recv would not block (a message, or EOF);
///   Queue<T>&, JoinableQueue<T>&, SimpleQueue<T>&   ready when get would not block;
///   const Process&         ready once the child has ended (its sentinel());
///   int                    a descriptor (a socket, a pipe, an eventfd...): ready when poll()
///                          reports it readable, hung up or in error.
/// Connections and queues are watched through their fileno() (made on first use).
class SHMQ_API waitable {
public:
    enum class kind { connection, queue, process, descriptor };

    waitable(Connection& c) noexcept : kind_(kind::connection), object_(&c) {}
    template <class T>
    waitable(Queue<T>& q) noexcept : kind_(kind::queue), object_(&q), core_(&q.core_) {}
    template <class T>
    waitable(SimpleQueue<T>& q) noexcept : kind_(kind::queue), object_(&q), core_(&q.core_) {}
    waitable(const Process& p) noexcept : kind_(kind::process), object_(&p) {}
    waitable(int fd) noexcept : kind_(kind::descriptor), fd_(fd) {}

    kind what() const noexcept { return kind_; }
    /// Whether this names `x` (a Connection, a queue or a Process): `if (r.is(conn)) ...`.
    template <class X> bool is(const X& x) const noexcept {
        return object_ == static_cast<const void*>(&x);
    }
    /// The descriptor of kind::descriptor (-1 otherwise).
    int fd() const noexcept { return kind_ == kind::descriptor ? fd_ : -1; }
    /// The object named (null for a descriptor).
    const void* object() const noexcept { return object_; }
    friend bool operator==(const waitable& a, const waitable& b) noexcept {
        return a.kind_ == b.kind_ && a.object_ == b.object_ && a.fd_ == b.fd_;
    }

private:
    friend SHMQ_API std::vector<waitable> wait(std::span<const waitable>, timeout_t);
    kind kind_;
    const void* object_ = nullptr;
    detail::queue_core* core_ = nullptr;
    int fd_ = -1;
};

/// Waits until at least one of `conns` is ready — a message (or its first piece) is waiting, or
/// every peer has closed or died so recv would throw eof_error — or until the timeout passes
/// (nullopt: forever; <= 0: just look). Returns the ready ones in the order given (empty on
/// timeout); consumes nothing. A peer's death makes its connection ready within ~20-40 ms.
/// Throws closed_error (a closed connection in the list), value_error (a write-only one, a null
/// pointer, or one listed twice).
SHMQ_API std::vector<Connection*> wait(std::span<Connection* const> conns, timeout_t timeout = std::nullopt);

inline std::vector<Connection*> wait(std::initializer_list<Connection*> conns,
                                     timeout_t timeout = std::nullopt) {
    return wait(std::span<Connection* const>(conns.begin(), conns.size()), timeout);
}

/// Waits until at least one of `objects` is ready (see waitable), or until the timeout passes
/// (nullopt: forever; <= 0: just look), as Python's multiprocessing.connection.wait. Returns the
/// ready ones in the order given (empty on timeout); consumes nothing. One poll(2) covers them
/// all; a connection or queue that a poll reports is confirmed (its fileno() may be spuriously
/// readable: another process took the message), so what is returned is ready at return. A
/// Pipe peer's death makes its connection ready at once (fileno() watches its pidfd).
/// Throws closed_error (a closed connection or queue), value_error (a write-only connection, a
/// negative descriptor, the same object twice, a Process not started, a nats:// queue), error
/// (no descriptor left for a fileno(); poll failed).
SHMQ_API std::vector<waitable> wait(std::span<const waitable> objects, timeout_t timeout = std::nullopt);

inline std::vector<waitable> wait(std::initializer_list<waitable> objects,
                                  timeout_t timeout = std::nullopt) {
    return wait(std::span<const waitable>(objects.begin(), objects.size()), timeout);
}

} // namespace shmq
