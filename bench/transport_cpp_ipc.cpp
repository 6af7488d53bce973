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
//    cpp-ipc shares between all its channels on the machine and never removes: after a run,
//    /dev/shm keeps its __IPC_SHM__* entries (remove them by hand when no cpp-ipc program runs).
#include "harness.hpp"
#include "transport.hpp"

#include <memory>

#ifdef SHMQ_BENCH_HAVE_CPP_IPC
#include <libipc/ipc.h>

#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>
#endif

namespace shmq_bench {

#ifdef SHMQ_BENCH_HAVE_CPP_IPC
namespace {

// How long a writer waits for its receiver to connect (they are forked at the same time).
constexpr std::uint64_t connect_wait_ms = 10'000;

class cpp_ipc_transport final : public basic_transport<cpp_ipc_transport> {
public:
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
};

} // namespace

std::unique_ptr<transport> make_cpp_ipc_transport() { return std::make_unique<cpp_ipc_transport>(); }
#else
std::unique_ptr<transport> make_cpp_ipc_transport() { return nullptr; }
#endif

} // namespace shmq_bench
