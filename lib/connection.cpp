// SPDX-License-Identifier: BSL-1.0
// Connection and Pipe: two channels (one when simplex) in one anonymous segment, plus this
// process's endpoint. All the waiting and EOF logic lives in channel.cpp.
#include <shmq/connection.hpp>

#include "connection_impl.hpp"

#include <optional>
#include <utility>

#include <cerrno>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace shmq {
namespace detail {

namespace {

using vector_sink = container_sink<std::vector<std::byte>>;

// Sink for recv_bytes_into: the caller's buffer, or a vector when the message does not fit
// (it is consumed and handed back in buffer_too_short_error, as Python does).
class span_sink final : public message_sink {
public:
    span_sink(std::span<std::byte> buf, std::size_t offset) : buf_(buf), offset_(offset) {
        offer(buf_.data() + offset_, buf_.size() - offset_);
    }
    std::byte* reserve(std::size_t total) override {
        // Called with growing sizes for a streamed message (message_sink.hpp): once it outgrows
        // the caller's buffer, what arrived so far moves to the overflow vector.
        const bool was_short = too_short_ && total >= reserved_;
        reserved_ = total;
        too_short_ = total > buf_.size() - offset_;
        if (!too_short_) return buf_.data() + offset_;
        if (!was_short)
            overflow_.assign(buf_.begin() + static_cast<std::ptrdiff_t>(offset_), buf_.end());
        overflow_.resize(total);
        return overflow_.data();
    }
    bool too_short_ = false;
    std::vector<std::byte> overflow_;

private:
    std::span<std::byte> buf_;
    std::size_t offset_;
};

} // namespace
} // namespace detail

Connection::Connection() noexcept = default;
Connection::Connection(std::unique_ptr<detail::connection_impl> impl) noexcept : impl_(std::move(impl)) {}
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&& other) noexcept {
    if (this != &other) {
        close();
        impl_ = std::move(other.impl_);
    }
    return *this;
}
Connection::~Connection() { close(); }

void Connection::close() noexcept {
    if (impl_) impl_->close();
}

bool Connection::closed() const noexcept { return !impl_ || impl_->closed_; }
bool Connection::readable() const noexcept { return impl_ && impl_->readable_; }
bool Connection::writable() const noexcept { return impl_ && impl_->writable_; }

namespace {
void check_open(const std::unique_ptr<detail::connection_impl>& impl) {
    if (!impl || impl->closed_) throw closed_error("shmq: connection is closed");
    impl->ep_->check_registered();
}
} // namespace

void Connection::check_writable() const {
    check_open(impl_);
    if (!impl_->writable_) throw value_error("shmq: connection is read-only");
}

// Inlined into every read: it is on the fast path, and with six callers GCC would call it.
[[gnu::always_inline]] static inline void check_readable(const std::unique_ptr<detail::connection_impl>& impl) {
    check_open(impl);
    if (!impl->readable_) throw value_error("shmq: connection is write-only");
}

// Callers have checked that the connection is open and writable (before encoding, so the
// closed check comes first).
void Connection::send_raw(std::span<const std::byte> bytes) {
    if (impl_->tx_->write(bytes, detail::deadline()) == detail::io_status::broken_pipe)
        throw broken_pipe_error("shmq: broken pipe: every reading end is closed");
}

void Connection::recv_raw(detail::message_sink& sink) {
    check_readable(impl_);
    detail::poll_guard polled(impl_->poll_);
    if (impl_->rx_->read(sink, detail::deadline()) == detail::io_status::eof)
        throw eof_error("shmq: end of stream: every writing end is closed");
}

Connection::Loan Connection::loan(std::size_t n) {
    check_writable();
    if (n > max_loan())
        throw value_error("shmq: loan: " + std::to_string(n) + " bytes is more than max_loan() = " +
                          std::to_string(max_loan()) + " (half the ring); send larger messages with send_bytes");
    std::byte* data = nullptr;
    std::uint64_t ticket = 0;
    if (impl_->tx_->loan(n, detail::deadline(), &data, &ticket) == detail::io_status::broken_pipe)
        throw broken_pipe_error("shmq: broken pipe: every reading end is closed");
    return Loan(&*impl_->tx_, std::span<std::byte>(data, n), ticket);
}

std::size_t Connection::max_loan() const {
    check_writable();
    return static_cast<std::size_t>(impl_->tx_->whole_limit());
}

Connection::View Connection::recv_view() {
    check_readable(impl_);
    // A polled connection re-arms now (the message is still there until release) and again at
    // release, when it is gone.
    detail::poll_guard polled(impl_->poll_);
    View v;
    const std::byte* data = nullptr;
    std::size_t size = 0;
    switch (impl_->rx_->view(detail::deadline(), &data, &size, &v.ticket_)) {
    case detail::io_status::ok:
        v.ch_ = &*impl_->rx_;
        v.poll_ = &impl_->poll_;
        v.bytes_ = std::span<const std::byte>(data, size);
        return v;
    case detail::io_status::eof:
        throw eof_error("shmq: end of stream: every writing end is closed");
    default: {   // in pieces: assembled into the view's own buffer
        detail::vector_sink sink(v.own_);
        if (impl_->rx_->read(sink, detail::deadline()) == detail::io_status::eof)
            throw eof_error("shmq: end of stream: every writing end is closed");
        v.bytes_ = std::span<const std::byte>(v.own_.data(), v.own_.size());
        return v;
    }
    }
}

Connection::Loan::Loan(Loan&& other) noexcept
    : ch_(std::exchange(other.ch_, nullptr)), bytes_(std::exchange(other.bytes_, {})),
      ticket_(other.ticket_) {}

Connection::Loan& Connection::Loan::operator=(Loan&& other) noexcept {
    if (this != &other) {
        if (ch_) ch_->abandon_loan(ticket_);
        ch_ = std::exchange(other.ch_, nullptr);
        bytes_ = std::exchange(other.bytes_, {});
        ticket_ = other.ticket_;
    }
    return *this;
}

Connection::Loan::~Loan() {
    if (ch_) ch_->abandon_loan(ticket_);
}

void Connection::Loan::commit(std::size_t size) {
    detail::channel::check_commit(ch_ != nullptr, size, bytes_.size());
    std::exchange(ch_, nullptr)->commit_loan(ticket_, size);
    bytes_ = {};
}

Connection::View::View(View&& other) noexcept
    : ch_(std::exchange(other.ch_, nullptr)),
      poll_(std::exchange(other.poll_, nullptr)),
      bytes_(std::exchange(other.bytes_, {})),
      own_(std::move(other.own_)),
      ticket_(other.ticket_) {
    if (!ch_) bytes_ = std::span<const std::byte>(own_.data(), own_.size());
}

Connection::View& Connection::View::operator=(View&& other) noexcept {
    if (this != &other) {
        release();
        ch_ = std::exchange(other.ch_, nullptr);
        poll_ = std::exchange(other.poll_, nullptr);
        bytes_ = std::exchange(other.bytes_, {});
        own_ = std::move(other.own_);
        ticket_ = other.ticket_;
        if (!ch_) bytes_ = std::span<const std::byte>(own_.data(), own_.size());
    }
    return *this;
}

void Connection::View::release() noexcept {
    if (ch_) std::exchange(ch_, nullptr)->release_view(ticket_);
    if (poll_)
        if (detail::poller* p = std::exchange(poll_, nullptr)->active()) p->rearm();
    bytes_ = {};
    own_.clear();
}

void Connection::throw_bad_range(std::size_t length, std::size_t offset, std::size_t size) {
    if (offset > length)
        throw value_error("shmq: send_bytes: buffer length " + std::to_string(length) +
                          " < offset " + std::to_string(offset));
    throw value_error("shmq: send_bytes: buffer length " + std::to_string(length) +
                      " < offset + size " + std::to_string(offset) + " + " + std::to_string(size));
}

std::vector<std::byte> Connection::recv_bytes(std::optional<std::size_t> maxlength) {
    check_readable(impl_);
    detail::poll_guard polled(impl_->poll_);
    std::vector<std::byte> out;
    detail::vector_sink sink(out);
    std::size_t length = 0;
    switch (impl_->rx_->read(sink, detail::deadline(), maxlength.value_or(detail::channel::no_maxlength), &length)) {
    case detail::io_status::eof:
        throw eof_error("shmq: end of stream: every writing end is closed");
    case detail::io_status::too_long:
        throw message_too_long_error("shmq: recv_bytes: message of " + std::to_string(length) +
                                     " bytes exceeds maxlength " + std::to_string(*maxlength) +
                                     "; it was left unread");
    default:
        return out;
    }
}

std::size_t Connection::recv_bytes_into(std::span<std::byte> buf, std::size_t offset) {
    check_readable(impl_);
    if (offset > buf.size())
        throw value_error("shmq: recv_bytes_into: offset " + std::to_string(offset) +
                          " is beyond the buffer of " + std::to_string(buf.size()) + " bytes");
    detail::poll_guard polled(impl_->poll_);
    detail::span_sink sink(buf, offset);
    if (impl_->rx_->read(sink, detail::deadline()) == detail::io_status::eof)
        throw eof_error("shmq: end of stream: every writing end is closed");
    if (sink.too_short_) throw buffer_too_short_error(std::move(sink.overflow_));
    return sink.reserved();
}

bool Connection::poll(timeout_t timeout) {
    check_readable(impl_);
    detail::poll_guard polled(impl_->poll_);
    return impl_->rx_->poll(detail::deadline(timeout));
}

int Connection::fileno() {
    check_readable(impl_);
    return impl_->poll_fd().fd();
}

// ---- passing descriptors (send_handle / recv_handle) -------------------------------------------
//
// The descriptor travels over the Pipe's AF_UNIX datagram socketpair (SCM_RIGHTS); a marker
// message goes through the ring after it, so poll(), fileno() and wait() see a handle like any
// message and a reader takes one datagram per marker. The datagram is sent first: whoever reads
// a marker finds at least one datagram queued (datagrams sent >= markers published >= markers
// read), so recv_handle never waits on the socket. Handles from several concurrent senders may
// pair with each other's markers, which is harmless: markers are all alike, and each sender's
// own handles stay in its order (one socket, FIFO). A sender killed between its datagram and
// its marker leaves one descriptor more than markers: the next marker gets that one and each
// later handle comes one marker late; a reader killed between marker and datagram does the same.
namespace {
constexpr char handle_marker[] = "shmq:send_handle";   // 16 bytes, no NUL sent
constexpr std::size_t handle_marker_size = sizeof handle_marker - 1;

// One datagram of the descriptor socket: the marker's bytes and room for one SCM_RIGHTS
// descriptor. Not movable: msg points into the object itself.
struct handle_datagram {
    char payload[handle_marker_size];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov{payload, sizeof payload};
    msghdr msg{};
    handle_datagram() {
        std::memcpy(payload, handle_marker, handle_marker_size);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
    }
    handle_datagram(const handle_datagram&) = delete;
    handle_datagram& operator=(const handle_datagram&) = delete;
};

[[noreturn]] void no_handle_socket() {
    throw value_error(
        "shmq: send_handle/recv_handle need a Pipe made by shmq::Pipe() in this process or in "
        "an ancestor it was forked from (the descriptors travel over a socketpair made with the "
        "Pipe; it is missing when the process was out of file descriptors then)");
}
} // namespace

void Connection::send_handle(int fd) {
    check_writable();
    if (impl_->handle_fd_ < 0) no_handle_socket();
    if (fd < 0) throw value_error("shmq: send_handle: bad descriptor " + std::to_string(fd));
    handle_datagram d;
    msghdr& msg = d.msg;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    for (;;) {
        if (::sendmsg(impl_->handle_fd_, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) break;
        const int e = errno;
        if (e == EINTR) continue;
        if (e == EAGAIN || e == EWOULDBLOCK) {
            // The socket's queue is full: the reader is behind. Wait for room a slice at a time,
            // and give up with broken_pipe_error once every reading end is gone.
            pollfd p{impl_->handle_fd_, POLLOUT, 0};
            ::poll(&p, 1, 100);
            if (!impl_->tx_->readers_present())
                throw broken_pipe_error("shmq: broken pipe: every reading end is closed");
            continue;
        }
        if (e == ECONNREFUSED || e == EPIPE || e == ECONNRESET)
            throw broken_pipe_error("shmq: broken pipe: every reading end is closed");
        throw error(std::string("shmq: send_handle: sendmsg: ") + std::strerror(e));
    }
    send_raw(std::as_bytes(std::span<const char>(d.payload, sizeof d.payload)));
}

int Connection::recv_handle() {
    check_readable(impl_);
    if (impl_->handle_fd_ < 0) no_handle_socket();
    std::vector<std::byte> marker;
    {
        detail::poll_guard polled(impl_->poll_);
        detail::vector_sink sink(marker);
        std::size_t length = 0;
        switch (impl_->rx_->read(sink, detail::deadline(), handle_marker_size, &length)) {
        case detail::io_status::eof:
            throw eof_error("shmq: end of stream: every writing end is closed");
        case detail::io_status::too_long:
            throw value_error("shmq: recv_handle: the next message is not a handle (" +
                              std::to_string(length) + " bytes); it was left unread");
        default: break;
        }
    }
    if (marker.size() != handle_marker_size ||
        std::memcmp(marker.data(), handle_marker, handle_marker_size) != 0)
        throw value_error("shmq: recv_handle: the message received was not sent by send_handle "
                          "(it was consumed)");
    handle_datagram d;
    msghdr& msg = d.msg;
    for (int attempt = 0;; ++attempt) {
        const ssize_t r = ::recvmsg(impl_->handle_fd_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (r >= 0) break;
        const int e = errno;
        if (e == EINTR) continue;
        // Cannot happen unless markers were read or sent by other means (recv_bytes, send_bytes
        // of the marker's bytes): the datagram always precedes its marker.
        if ((e == EAGAIN || e == EWOULDBLOCK) && attempt < 10) {
            pollfd p{impl_->handle_fd_, POLLIN, 0};
            ::poll(&p, 1, 100);
            continue;
        }
        throw error(std::string("shmq: recv_handle: no descriptor came with the handle message: ") +
                    std::strerror(e));
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
            return fd;
        }
    }
    throw error("shmq: recv_handle: the datagram carried no descriptor (the receiver's "
                "descriptor limit was reached, so the kernel dropped it)");
}

std::pair<Connection, Connection> Pipe(bool duplex, options opts) {
    detail::segment_params p;
    p.kind = detail::segment_kind::pipe;
    p.channels = duplex ? 2 : 1;
    p.capacity = opts.capacity;
    auto seg = detail::segment::create_anonymous(p);
    std::unique_ptr<detail::connection_impl> a, b;
    if (duplex) {
        // c1 reads channel 0 and writes channel 1; c2 the other way round.
        a = std::make_unique<detail::connection_impl>(seg, 0u, 1u);
        b = std::make_unique<detail::connection_impl>(seg, 1u, 0u);
    } else {
        a = std::make_unique<detail::connection_impl>(seg, 0u, std::nullopt);
        b = std::make_unique<detail::connection_impl>(seg, std::nullopt, 0u);
    }
    // The descriptor socket of send_handle: a datagram socketpair, one end per connection (what a
    // datagram sent on b's end arrives at a's and back), inherited by forked children as the
    // segment is. Made now because a socket made later could not reach a child forked meanwhile;
    // without descriptors left the Pipe still works, and send_handle says why it cannot.
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0) {
        a->handle_fd_ = sv[0];
        b->handle_fd_ = sv[1];
    }
    return {Connection(std::move(a)), Connection(std::move(b))};
}

} // namespace shmq
