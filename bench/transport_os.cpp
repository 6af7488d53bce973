// SPDX-License-Identifier: BSL-1.0
// shmq-bench — the OS baselines: pipe(2) and a UNIX socketpair.
//
// Both are point to point (N->N runs N independent channels). They are written the way a
// careful C++ programmer would write them, so shmq is compared with a good baseline, not a
// strawman:
//  * pipe(2) and SOCK_STREAM carry length-prefixed frames (4-byte length, then the payload).
//    The writer sends header and payload with one writev(2); the reader reads up to 64 KiB at a
//    time and cuts frames out of that buffer, so many small messages cost one read(2). A large
//    payload is read straight into the destination (no second copy). The pipe keeps the
//    default 64 KiB kernel buffer: what a program gets unless it asks for more.
//  * SOCK_SEQPACKET keeps message boundaries itself, so it sends the payload alone: one send(2)
//    and one recv(2) per message. Its buffers are raised to 4 MiB each (SO_SNDBUFFORCE when
//    allowed, else SO_SNDBUF, capped by net.core.wmem_max); a datagram must fit in the send
//    buffer, so larger messages fall back to SOCK_STREAM with frames as above.
#include "transport.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

namespace shmq_bench {
namespace {

[[noreturn]] void sys_fail(const char* what) {
    throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

/// Writes header + payload as one frame; loops over partial writes (large frames).
void write_frame(int fd, std::span<const std::byte> payload) {
    std::uint32_t len = static_cast<std::uint32_t>(payload.size());
    iovec iov[2] = {{&len, sizeof len}, {const_cast<std::byte*>(payload.data()), payload.size()}};
    iovec* v = iov;
    int cnt = 2;
    while (cnt > 0) {
        ssize_t w = ::writev(fd, v, cnt);
        if (w < 0) {
            if (errno == EINTR) continue;
            sys_fail("writev");
        }
        auto left = static_cast<std::size_t>(w);
        while (cnt > 0 && left >= v->iov_len) {
            left -= v->iov_len;
            ++v;
            --cnt;
        }
        if (cnt > 0) {
            v->iov_base = static_cast<char*>(v->iov_base) + left;
            v->iov_len -= left;
        }
    }
}

/// Cuts length-prefixed frames out of a byte stream, reading 64 KiB at a time.
class frame_reader {
public:
    explicit frame_reader(int fd) : fd_(fd), buf_(64 * 1024) {}

    /// Reads one frame into dst (at most cap bytes) and returns its length.
    std::size_t read_frame(std::byte* dst, std::size_t cap) {
        fill(sizeof(std::uint32_t));
        std::uint32_t len;
        std::memcpy(&len, buf_.data() + pos_, sizeof len);
        pos_ += sizeof len;
        if (len > cap) throw std::runtime_error("frame of " + std::to_string(len) + " bytes is too long");
        std::size_t have = std::min<std::size_t>(len, end_ - pos_);
        std::memcpy(dst, buf_.data() + pos_, have);
        pos_ += have;
        std::size_t rest = len - have;
        if (rest >= buf_.size() / 2) {
            read_exact(dst + have, rest);   // big: straight into place
        } else if (rest > 0) {
            fill(rest);
            std::memcpy(dst + have, buf_.data() + pos_, rest);
            pos_ += rest;
        }
        return len;
    }

private:
    /// Makes at least n bytes available at pos_ (n <= buffer size).
    void fill(std::size_t n) {
        if (end_ - pos_ >= n) return;
        std::memmove(buf_.data(), buf_.data() + pos_, end_ - pos_);
        end_ -= pos_;
        pos_ = 0;
        while (end_ < n) {
            ssize_t r = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) sys_fail("read");
            if (r == 0) throw std::runtime_error("unexpected end of stream");
            end_ += static_cast<std::size_t>(r);
        }
    }
    void read_exact(std::byte* dst, std::size_t n) {
        while (n > 0) {
            ssize_t r = ::read(fd_, dst, n);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) sys_fail("read");
            if (r == 0) throw std::runtime_error("unexpected end of stream");
            dst += r;
            n -= static_cast<std::size_t>(r);
        }
    }

    int fd_;
    std::vector<std::byte> buf_;
    std::size_t pos_ = 0, end_ = 0;
};

/// Channels as (read fd, write fd) pairs, closed by the parent at the end.
class fd_channels {
public:
    ~fd_channels() { close_all(); }
    void add(int rd, int wr) { fds_.push_back({rd, wr}); }
    int reader(int ch) const { return fds_.at(static_cast<std::size_t>(ch)).first; }
    int writer(int ch) const { return fds_.at(static_cast<std::size_t>(ch)).second; }
    void close_all() noexcept {
        for (auto [r, w] : fds_) {
            ::close(r);
            ::close(w);
        }
        fds_.clear();
    }

private:
    std::vector<std::pair<int, int>> fds_;
};

// ---- pipe(2) ------------------------------------------------------------------------------------

class pipe_transport final : public basic_transport<pipe_transport> {
public:
    std::string name() const override { return "pipe(2)"; }
    role what() const override { return role::baseline; }
    bool shared() const override { return false; }

    void open_channels() {
        for (int i = 0; i < params().channels; ++i) {
            int fd[2];
            if (::pipe(fd) != 0) sys_fail("pipe");
            chans_.add(fd[0], fd[1]);
        }
    }
    void close() noexcept override { chans_.close_all(); }

    struct writer {
        writer(pipe_transport& t, int ch) : fd_(t.chans_.writer(ch)), msg_(t.params().size) {}
        void send(bool end) { write_frame(fd_, msg_.get(end)); }
        void finish() {}
        int fd_;
        byte_message msg_;
    };
    struct reader {
        reader(pipe_transport& t, int ch)
            : in_(t.chans_.reader(ch)), want_(t.params().size), buf_(touched_buffer(want_)) {}
        bool recv() {
            std::size_t n = in_.read_frame(buf_.data(), buf_.size());
            return is_end(buf_.data(), n, want_);
        }
        frame_reader in_;
        std::size_t want_;
        std::vector<std::byte> buf_;
    };

private:
    fd_channels chans_;
};

// ---- socketpair ---------------------------------------------------------------------------------

constexpr int socket_buffer = 4 << 20;

void set_buffers(int fd) {
    // FORCE ignores net.core.[rw]mem_max but needs CAP_NET_ADMIN; fall back to the capped one.
    int v = socket_buffer;
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) != 0)
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) != 0)
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
}

int send_buffer_of(int fd) {
    int v = 0;
    socklen_t len = sizeof v;
    ::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &len);
    return v;
}

/// The largest SOCK_SEQPACKET message this machine accepts with our buffers. The kernel
/// refuses a datagram longer than the send buffer (less a little overhead), so probe once.
std::size_t seqpacket_limit() {
    static const std::size_t limit = [] {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0) return std::size_t{0};
        set_buffers(sv[0]);
        set_buffers(sv[1]);
        std::size_t sndbuf = static_cast<std::size_t>(send_buffer_of(sv[0]));
        ::close(sv[0]);
        ::close(sv[1]);
        // unix_dgram_sendmsg: len > sk_sndbuf - 32 is EMSGSIZE; keep a margin for the skb.
        return sndbuf > 4096 ? sndbuf - 4096 : std::size_t{0};
    }();
    return limit;
}

class socketpair_transport final : public basic_transport<socketpair_transport> {
public:
    std::string name() const override { return "socketpair"; }
    role what() const override { return role::baseline; }
    bool shared() const override { return false; }
    std::string remark(payload, std::size_t size, mode) const override {
        return seqpacket(size) ? std::string() : "SOCK_STREAM: message > seqpacket limit";
    }

    static bool seqpacket(std::size_t size) { return size <= seqpacket_limit(); }

    void open_channels() {
        const int type = seqpacket(params().size) ? SOCK_SEQPACKET : SOCK_STREAM;
        for (int i = 0; i < params().channels; ++i) {
            int sv[2];
            if (::socketpair(AF_UNIX, type, 0, sv) != 0) sys_fail("socketpair");
            set_buffers(sv[0]);
            set_buffers(sv[1]);
            chans_.add(sv[0], sv[1]);   // sv[1] writes, sv[0] reads
        }
    }
    void close() noexcept override { chans_.close_all(); }

    struct writer {
        writer(socketpair_transport& t, int ch)
            : fd_(t.chans_.writer(ch)), seq_(seqpacket(t.params().size)), msg_(t.params().size) {}
        void send(bool end) {
            auto m = msg_.get(end);
            if (!seq_) return write_frame(fd_, m);
            for (;;) {
                ssize_t w = ::send(fd_, m.data(), m.size(), 0);
                if (w == static_cast<ssize_t>(m.size())) return;
                if (w < 0 && errno == EINTR) continue;
                if (w < 0) sys_fail("send");
                throw std::runtime_error("short send on SOCK_SEQPACKET");
            }
        }
        void finish() {}
        int fd_;
        bool seq_;
        byte_message msg_;
    };
    struct reader {
        reader(socketpair_transport& t, int ch)
            : fd_(t.chans_.reader(ch)), seq_(seqpacket(t.params().size)), in_(fd_),
              want_(t.params().size), buf_(touched_buffer(want_)) {}
        bool recv() {
            if (!seq_) {
                std::size_t n = in_.read_frame(buf_.data(), buf_.size());
                return is_end(buf_.data(), n, want_);
            }
            for (;;) {
                ssize_t r = ::recv(fd_, buf_.data(), buf_.size(), MSG_TRUNC);
                if (r < 0 && errno == EINTR) continue;
                if (r < 0) sys_fail("recv");
                if (r == 0) throw std::runtime_error("unexpected end of stream");
                return is_end(buf_.data(), static_cast<std::size_t>(r), want_);
            }
        }
        int fd_;
        bool seq_;
        frame_reader in_;
        std::size_t want_;
        std::vector<std::byte> buf_;
    };

private:
    fd_channels chans_;
};

} // namespace

std::unique_ptr<transport> make_pipe_transport() { return std::make_unique<pipe_transport>(); }
std::unique_ptr<transport> make_socketpair_transport() { return std::make_unique<socketpair_transport>(); }

} // namespace shmq_bench
