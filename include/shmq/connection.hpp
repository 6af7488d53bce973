// SPDX-License-Identifier: BSL-1.0
// shmq — Pipe and Connection: Python's multiprocessing.Pipe over shared-memory rings.
//
// A Pipe is one anonymous segment holding two one-way channels (one for !duplex). Each
// Connection holds a reader end, a writer end, or both. Ends are counted across processes: a
// child forked while a Connection is open holds its own copy, and the peer sees EOF (on recv) or
// a broken pipe (on send) only once every copy in every process is closed or its process has died.
//
// Guarantees:
//  * one send is one message; each recv returns one whole message, FIFO per direction;
//  * messages are atomic: never torn, never seen twice, even when a peer is killed mid-message;
//  * messages larger than the ring are streamed through it (the writer blocks until the reader
//    drains, as with an OS pipe);
//  * several processes may send (or receive) on the same end at once: each message stays whole;
//    so may several threads through one Connection, except that close(), move and destruction
//    must not race with other calls on the same object (as with any C++ object).
// Errors: closed_error (checked first), value_error (wrong direction or bad argument),
// eof_error, broken_pipe_error, message_too_long_error, buffer_too_short_error, codec_error,
// broken_error (the shared segment is corrupt).
#pragma once

#include <shmq/export.hpp>

#include <shmq/codec.hpp>
#include <shmq/detail/message_sink.hpp>
#include <shmq/errors.hpp>
#include <shmq/options.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace shmq {

namespace detail { class connection_impl; struct connection_access; struct connection_factory; class channel; class poll_slot; }

class Connection;
SHMQ_API std::pair<Connection, Connection> Pipe(bool duplex, options opts);

class SHMQ_API Connection {
public:
    Connection() noexcept;                       // a closed connection
    Connection(Connection&&) noexcept;
    Connection& operator=(Connection&&) noexcept;
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection();                               // closes; never throws

    /// Sends one message holding codec<T>'s encoding of obj. Encoding happens first: if it
    /// fails (codec_error) nothing is sent. Blocks while the ring is full.
    template <class T> void send(const T& obj) {
        check_writable();
        auto& scratch = detail::encode_scratch();
        send_raw(codec<T>::encode(obj, scratch));
    }

    /// Receives one message and decodes it as T. A failing decode throws codec_error and the
    /// message is consumed; the next recv gets the next message.
    template <class T> T recv() {
        if constexpr (detail::decodes_in_place_v<T>) {
            T out;   // std::string or a byte vector: the message is copied straight into it
            detail::container_sink<T> sink(out);
            recv_raw(sink);
            return out;
        } else {
            auto& buf = detail::decode_scratch();
            detail::container_sink<std::vector<std::byte>> sink(buf);
            recv_raw(sink);
            return codec<T>::decode(std::span<const std::byte>(buf.data(), buf.size()));
        }
    }

    /// Sends buf[offset, offset+size) as one message (size defaults to the rest of buf).
    /// Throws value_error when offset or offset+size lies beyond buf.
    void send_bytes(std::span<const std::byte> buf, std::size_t offset = 0,
                    std::optional<std::size_t> size = std::nullopt) {
        // Inline: an optional passed by value into the library was stored and reloaded at once,
        // a store-to-load forwarding stall that cost a 64-byte send ~17 %.
        check_writable();
        if (offset > buf.size() || (size && *size > buf.size() - offset))
            throw_bad_range(buf.size(), offset, size.value_or(0));
        send_raw(buf.subspan(offset, size ? *size : buf.size() - offset));
    }
    /// Receives one message. With maxlength, a longer message throws message_too_long_error and
    /// stays unread.
    std::vector<std::byte> recv_bytes(std::optional<std::size_t> maxlength = std::nullopt);
    /// Receives one message into buf at offset and returns its length. A message that does not
    /// fit is consumed and thrown as buffer_too_short_error. offset > buf.size() is a value_error
    /// (checked before anything is consumed).
    std::size_t recv_bytes_into(std::span<std::byte> buf, std::size_t offset = 0);
    // ---- Zero-copy: write into the ring, read in place --------------------------------------
    class Loan;
    class View;
    /// Room for a message of up to n bytes inside the ring, to fill in place and publish with
    /// Loan::commit(size) — no copy on the way in. Blocks while the ring lacks the room, as
    /// send() does. The writer lease is held until commit or destruction: other senders on this
    /// end (threads or processes) wait meanwhile, so fill it and commit promptly. Destroyed
    /// uncommitted, or its process killed before commit: nothing is published (a dead holder's
    /// lease is taken over like any dead writer's). n may be at most max_loan(); larger: use
    /// send_bytes (streamed in pieces). The bytes start 8-byte aligned. One loan per
    /// Connection at a time: other threads' loans on it wait. Fork: a child forked while a loan
    /// was out (in any thread) inherits it as its parent's (committing or dropping it there
    /// publishes and releases nothing), and its own loans wait only for the parent's lease,
    /// as they would for any other process's. Throws closed_error, value_error (read-only end,
    /// n > max_loan()), broken_pipe_error.
    Loan loan(std::size_t n);
    /// The largest loan: half the ring, less a record header (options::capacity).
    std::size_t max_loan() const;
    /// The next message, in place in the ring when it is one record (any message of up to
    /// 64 KiB, and every loaned one); a larger message sent with send()/send_bytes() travels in
    /// pieces and is assembled into a buffer the View owns. The reader lease is held until the
    /// View is released or destroyed: other receivers on this end wait meanwhile. A process
    /// killed holding a view loses that message, and only it: the next reader skips it (so a
    /// message that crashes its reader does not crash the next one). One view per Connection
    /// at a time, and across fork as for loan(). Throws closed_error, value_error (write-only
    /// end), eof_error.
    View recv_view();

    /// True when a message (or its first piece) is waiting, or at EOF. Never consumes.
    bool poll(timeout_t timeout = std::chrono::duration<double>(0));
    /// A file descriptor for epoll/poll/select and event loops (Boost.Asio's
    /// posix::stream_descriptor, libuv, ...): readable whenever recv would not block — a message
    /// is waiting, or every peer end is closed or its process died (EOF). Level-triggered: it
    /// stays readable while that holds and turns unreadable once the messages are taken. Only
    /// wait for readability on it (EPOLLIN; it is an epoll descriptor) and never read it, close
    /// it or make it non-blocking yourself: it belongs to the connection and is valid until
    /// close() (which removes it from any epoll set, as closing a descriptor does).
    ///  * Spurious readiness is possible, missed readiness is not: after a wake-up, poll() or a
    ///    recv tells. It happens when another process reading the same end took the message
    ///    first, when one of several copies of the writer end is closed, when a process starts
    ///    holding the writer end (a fork, so the descriptor can watch it), and when a send's
    ///    wake-up lands just after a recv took its message.
    ///  * The descriptor re-arms only when this process calls into the connection (recv*, poll,
    ///    fileno, wait): an event loop must read (or poll()) after each wake-up, else it keeps
    ///    waking for a message that is still there — which is what level-triggered means.
    ///  * A peer's death makes it readable at once (a pidfd of each process holding the other
    ///    end is inside); where that cannot be had (a peer in another pid namespace), within
    ///    ~50 ms, and then it also wakes every 50 ms while that peer lives.
    ///  * Costs nothing until first called: senders check one word they already check for
    ///    sleepers. Then it costs this process an AF_UNIX socket and the epoll descriptor, and
    ///    each send that finds the connection idle one extra datagram.
    ///  * Per process: a forked child that calls fileno() gets a descriptor of its own.
    ///  * At most 7 processes (or handles) may poll one direction at a time.
    /// Throws closed_error, value_error (write-only), error (no descriptor left: the call and
    /// errno; 7 pollers already).
    int fileno();

    /// Sends an open file descriptor (a socket, a file, a pidfd) to the process that will call
    /// recv_handle() on the other end, as Python's multiprocessing.reduction.send_handle: the
    /// receiver gets its own descriptor for the same open file (SCM_RIGHTS); this process keeps
    /// `fd` and may close it at once. The handle is one message in the connection's order (so
    /// poll(), fileno() and wait() report it). Blocks while the receiver's queue is full.
    /// Needs a Pipe made by shmq::Pipe() in this process or in an ancestor it was forked from:
    /// each such Pipe carries an AF_UNIX socketpair, made with it (forked children inherit it;
    /// a socket made later could not reach them). There is no such channel between unrelated
    /// processes (a Listener/Client connection: value_error): connect an AF_UNIX socket
    /// yourself and use SCM_RIGHTS there.
    /// Throws closed_error, value_error (read-only, fd < 0, no descriptor socket: a Pipe made
    /// while this process was out of descriptors), broken_pipe_error, error (sendmsg: EBADF...).
    /// Pair it with recv_handle(): a recv of that message gets the marker's bytes and leaves the
    /// descriptor queued, which the next recv_handle then receives in place of its own.
    void send_handle(int fd);
    /// Receives a descriptor sent by send_handle() (close-on-exec set); the caller owns it.
    /// Throws closed_error, value_error (write-only; the next message is not a handle: a long
    /// one stays unread, a short one is consumed), eof_error, error (no descriptor came: the
    /// kernel drops it when this process is at its descriptor limit).
    int recv_handle();

    /// Closes this process's copy of the ends. Idempotent; never throws.
    void close() noexcept;

    bool closed() const noexcept;
    bool readable() const noexcept;
    bool writable() const noexcept;

private:
    friend std::pair<Connection, Connection> Pipe(bool, options);
    friend struct detail::connection_access;
    friend struct detail::connection_factory;   // Listener and Client (lib/listener.cpp)
    explicit Connection(std::unique_ptr<detail::connection_impl> impl) noexcept;
    void check_writable() const;
    void send_raw(std::span<const std::byte> bytes);
    [[noreturn]] static void throw_bad_range(std::size_t length, std::size_t offset, std::size_t size);
    void recv_raw(detail::message_sink& sink);

    std::unique_ptr<detail::connection_impl> impl_;
};

/// A message being written in place (Connection::loan). Move-only; must not outlive the
/// Connection's close().
class SHMQ_API Connection::Loan {
public:
    Loan() noexcept = default;   // no loan
    Loan(Loan&& other) noexcept;
    Loan& operator=(Loan&& other) noexcept;
    ~Loan();                     // not committed: nothing is published
    /// The room: n bytes, 8-byte aligned. Empty once committed.
    std::span<std::byte> bytes() const noexcept { return bytes_; }
    /// Publishes the first `size` bytes as one message. value_error when size > bytes().size()
    /// or nothing is on loan (committed already, moved from).
    void commit(std::size_t size);
    void commit() { commit(bytes_.size()); }

private:
    friend class Connection;
    Loan(detail::channel* ch, std::span<std::byte> bytes, std::uint64_t ticket) noexcept
        : ch_(ch), bytes_(bytes), ticket_(ticket) {}
    detail::channel* ch_ = nullptr;
    std::span<std::byte> bytes_;
    std::uint64_t ticket_ = 0;   // which loan of the channel this is (channel.hpp)
};

/// A received message read in place (Connection::recv_view). Move-only; must not outlive the
/// Connection's close().
class SHMQ_API Connection::View {
public:
    View() noexcept = default;
    View(View&& other) noexcept;
    View& operator=(View&& other) noexcept;
    ~View() { release(); }
    std::span<const std::byte> bytes() const noexcept { return bytes_; }
    /// Consumes the message and lets other receivers go on. Idempotent.
    void release() noexcept;

private:
    friend class Connection;
    detail::channel* ch_ = nullptr;   // non-null while lent in place
    detail::poll_slot* poll_ = nullptr;   // the connection's fileno(): re-armed at release
    std::span<const std::byte> bytes_;
    std::vector<std::byte> own_;      // a message that came in pieces
    std::uint64_t ticket_ = 0;        // which view of the channel this is (channel.hpp)
};

/// Creates a pipe. duplex: two connections that both send and receive. !duplex: (reader, writer).
/// options::capacity is the ring size of each direction. Shared with children forked later.
std::pair<Connection, Connection> Pipe(bool duplex = true, options opts = {});

} // namespace shmq
