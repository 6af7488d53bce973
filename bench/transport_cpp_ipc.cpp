// SPDX-License-Identifier: BSL-1.0
// shmq-bench — cpp-ipc (github.com/mutouyun/cpp-ipc) as a peer: another C++ shared-memory IPC
// library, measured in the same run. It is not a Debian package and never part of this tree:
// `b2 bench --cpp-ipc=DIR` (or `b2 variant=release bench//shmq-bench --cpp-ipc=DIR`) builds it
// from a checkout at DIR into the runner (bench/Jamfile); without it this file compiles to
// nothing and the runner has no cpp-ipc rows.
//
// Each pair gets its own ipc::route (one sender, broadcast to its receivers), the cpp-ipc
// counterpart of a Pipe end. Its semantics differ from shmq's, and the figures should be read
// with that in mind:
//  * broadcast only: every connected receiver gets every message; no work sharing, so there is
//    no counterpart of a Queue (N->N runs give each pair its own route, like pipes);
//  * send() forces a message past a receiver that has not taken it within 100 ms (it is dropped
//    for that receiver); here every send is try_send with no timeout, which waits instead, so no
//    message is lost and the comparison is like for like;
//  * no end of stream and no detection of a dead peer: a receiver whose sender died waits
//    forever (the runner's own end marker and watchdog stand in);
//  * messages larger than 64 bytes go through a separate chunk store in shared memory, which
//    cpp-ipc shares between all its channels on the machine and never removes. The runner
//    removes, when it ends, the /dev/shm/__IPC_SHM__* names that appeared while it ran (the
//    ones that were there before belong to some other cpp-ipc program and stay); a runner
//    killed or interrupted leaves them (remove them by hand when no cpp-ipc program runs).
//  * cpp-ipc logs to stderr, with no switch to turn it off, every shm_unlink that finds its
//    segment already gone: the last route to let go of a segment unlinks it and clear_storage
//    unlinks it again, so every teardown printed a screenful of "[E][...] fail shm_unlink[2]:".
//    Those lines are dropped (quiet_teardown); every other line still reaches stderr.
#include "harness.hpp"
#include "transport.hpp"

#include <memory>

#ifdef SHMQ_BENCH_HAVE_CPP_IPC
#include <libipc/ipc.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace shmq_bench {

#ifdef SHMQ_BENCH_HAVE_CPP_IPC
namespace {

// How long a writer waits for its receiver to connect (they are forked at the same time).
constexpr std::uint64_t connect_wait_ms = 10'000;

/// While it lives, stderr goes into a pipe; when it ends, the captured lines go on to the real
/// stderr, except cpp-ipc's reports of an unlink that found nothing to unlink (ENOENT, errno 2:
/// see the header comment). The pipe is non-blocking, so a flood beyond its 64 KiB would be
/// cut rather than hang the process; a teardown writes a few hundred bytes.
class quiet_teardown {
public:
    quiet_teardown() noexcept {
        std::fflush(stderr);
        if (::pipe2(fds_, O_CLOEXEC | O_NONBLOCK) != 0) return;
        saved_ = ::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
        if (saved_ < 0 || ::dup2(fds_[1], STDERR_FILENO) < 0) restore();
    }
    ~quiet_teardown() {
        std::string text = restore();
        for (std::size_t at = 0; at < text.size();) {
            std::size_t end = text.find('\n', at);
            end = end == std::string::npos ? text.size() : end + 1;
            const std::string_view line(text.data() + at, end - at);
            if (line.find("fail shm_unlink[2]: /__IPC_SHM__") == std::string_view::npos)
                std::fwrite(line.data(), 1, line.size(), stderr);
            at = end;
        }
    }
    quiet_teardown(const quiet_teardown&) = delete;
    quiet_teardown& operator=(const quiet_teardown&) = delete;

private:
    /// Puts stderr back and returns what the pipe caught. Safe to call twice.
    std::string restore() noexcept {
        std::fflush(stderr);
        if (saved_ >= 0) {
            ::dup2(saved_, STDERR_FILENO);
            ::close(saved_);
            saved_ = -1;
        }
        std::clearerr(stderr);   // a write that found the pipe full left the error flag set
        std::string text;
        if (fds_[1] >= 0) ::close(fds_[1]);
        if (fds_[0] >= 0) {
            char buf[4096];
            for (ssize_t n; (n = ::read(fds_[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
            ::close(fds_[0]);
        }
        fds_[0] = fds_[1] = -1;
        return text;
    }
    int fds_[2] = {-1, -1};
    int saved_ = -1;
};

/// The names in /dev/shm with cpp-ipc's prefix (resource.h: make_prefix).
std::set<std::string> cpp_ipc_segments() noexcept {
    std::set<std::string> v;
    std::error_code ec;
    std::filesystem::directory_iterator it("/dev/shm", ec), end;
    for (; !ec && it != end; it.increment(ec)) {
        std::string n = it->path().filename().string();
        if (n.starts_with("__IPC_SHM__")) v.insert(std::move(n));
    }
    return v;
}

class cpp_ipc_transport final : public basic_transport<cpp_ipc_transport> {
public:
    cpp_ipc_transport() : before_(cpp_ipc_segments()) {}
    /// The runner is done with cpp-ipc: its segments that appeared since are removed.
    ~cpp_ipc_transport() override {
        for (const auto& n : cpp_ipc_segments())
            if (!before_.count(n)) ::shm_unlink(("/" + n).c_str());
    }
    std::string name() const override { return "cpp-ipc route"; }
    role what() const override { return role::baseline; }
    bool shared() const override { return false; }
    std::string remark(payload, std::size_t, mode) const override { return "broadcast, try_send"; }

    void open_channels() {
        static int serial = 0;
        names_.clear();
        for (int i = 0; i < params().channels; ++i)
            names_.push_back("shmq-bench-ipc." + std::to_string(::getpid()) + "." + std::to_string(serial++));
    }
    void close() noexcept override {
        quiet_teardown quiet;
        for (const auto& n : names_) ipc::route::clear_storage(n.c_str());
        names_.clear();
    }

    struct writer {
        writer(cpp_ipc_transport& t, int ch)
            : r_(t.names_.at(static_cast<std::size_t>(ch)).c_str(), ipc::sender), msg_(t.params().size) {
            // A message sent before a receiver connects goes to nobody.
            if (!r_.wait_for_recv(1, connect_wait_ms))
                throw std::runtime_error("cpp-ipc: no receiver connected to " + std::string(r_.name()));
        }
        void send(bool end) {
            auto m = msg_.get(end);
            if (!r_.try_send(m.data(), m.size(), ipc::invalid_value))
                throw std::runtime_error("cpp-ipc: try_send failed");
        }
        void finish() {}
        ipc::route r_;
        byte_message msg_;
    };
    struct reader {
        reader(cpp_ipc_transport& t, int ch)
            : r_(t.names_.at(static_cast<std::size_t>(ch)).c_str(), ipc::receiver), want_(t.params().size) {}
        bool recv() {
            ipc::buff_t b = r_.recv();
            if (b.empty()) throw std::runtime_error("cpp-ipc: recv failed");
            return is_end(static_cast<const std::byte*>(b.data()), b.size(), want_);
        }
        ipc::route r_;
        std::size_t want_;
    };

private:
    std::vector<std::string> names_;
    std::set<std::string> before_;   // cpp-ipc's names in /dev/shm when the runner started
};

} // namespace

std::unique_ptr<transport> make_cpp_ipc_transport() { return std::make_unique<cpp_ipc_transport>(); }
#else
std::unique_ptr<transport> make_cpp_ipc_transport() { return nullptr; }
#endif

} // namespace shmq_bench
