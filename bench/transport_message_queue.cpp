// SPDX-License-Identifier: BSL-1.0
// shmq-bench — the boost::interprocess::message_queue baseline.
//
// message_queue is a queue of fixed-size slots in named shared memory, guarded by one
// process-shared mutex and two condition variables; each send/receive copies one message
// under the lock. It is MPMC, so N->N runs share one queue. Slot size = the scenario's message
// size (it cannot carry a larger message); slot count = enough for about 1 MiB of payload (the
// size of shmq's default ring), at least 2 and at most 1024. So a 16 MiB scenario uses two
// 16 MiB slots, 32 MiB of shared memory: message_queue has no way to stream a message through a
// smaller buffer.
#include "harness.hpp"
#include "transport.hpp"

#include <boost/interprocess/ipc/message_queue.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

namespace shmq_bench {
namespace {

namespace bip = boost::interprocess;

std::size_t slots_for(std::size_t size) {
    return std::clamp<std::size_t>((std::size_t{1} << 20) / std::max<std::size_t>(size, 1), 2, 1024);
}

class message_queue_transport final : public basic_transport<message_queue_transport> {
public:
    std::string name() const override { return "message_queue"; }
    role what() const override { return role::baseline; }
    bool shared() const override { return true; }
    std::string remark(payload, std::size_t size, mode) const override {
        return std::to_string(slots_for(size)) + " slots of " + size_label(size);
    }

    void open_channels() {
        static int serial = 0;
        for (int i = 0; i < params().channels; ++i) {
            std::string name = "shmq-bench-mq." + std::to_string(::getpid()) + "." + std::to_string(serial++);
            bip::message_queue::remove(name.c_str());
            register_shm_name(name);
            names_.push_back(name);
            // Created before fork: children use the inherited mapping, no open by name.
            queues_.push_back(std::make_unique<bip::message_queue>(
                bip::create_only, name.c_str(), slots_for(params().size), params().size));
        }
    }
    void close() noexcept override {
        queues_.clear();
        for (const auto& n : names_) {
            bip::message_queue::remove(n.c_str());
            unregister_shm_name(n);
        }
        names_.clear();
    }

    struct writer {
        writer(message_queue_transport& t, int ch)
            : q_(*t.queues_.at(static_cast<std::size_t>(ch))), msg_(t.params().size) {}
        void send(bool end) {
            auto m = msg_.get(end);
            q_.send(m.data(), m.size(), 0);
        }
        void finish() {}
        bip::message_queue& q_;
        byte_message msg_;
    };
    struct reader {
        reader(message_queue_transport& t, int ch)
            : q_(*t.queues_.at(static_cast<std::size_t>(ch))), want_(t.params().size),
              buf_(touched_buffer(want_)) {}
        bool recv() {
            bip::message_queue::size_type got = 0;
            unsigned prio = 0;
            q_.receive(buf_.data(), buf_.size(), got, prio);
            return is_end(buf_.data(), got, want_);
        }
        bip::message_queue& q_;
        std::size_t want_;
        std::vector<std::byte> buf_;
    };

private:
    std::vector<std::string> names_;
    std::vector<std::unique_ptr<bip::message_queue>> queues_;
};

} // namespace

std::unique_ptr<transport> make_message_queue_transport() {
    return std::make_unique<message_queue_transport>();
}

} // namespace shmq_bench
