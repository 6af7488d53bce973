// SPDX-License-Identifier: BSL-1.0
// shmq-bench — the ceiling: a lock-free single-producer single-consumer byte ring in shared
// memory that spins instead of sleeping (after rigtorp/SPSCQueue). A queue with locks, waiting,
// death detection and MPMC cannot beat it; shmq's figures are printed as a share of it.
//
// Messages are an 8-byte length and the payload, back to back in a 1 MiB ring (shmq's default
// ring size), copied around the wrap in two pieces. A message that fits is published with one
// release store of the tail; a larger one is streamed through the ring in pieces. Point to point:
// N->N runs N rings. The waiting side spins with `pause` and yields the core every 128 spins, so
// that on an oversubscribed machine (4->4 on 2 cores) the peer gets to run; it never sleeps.
#include "transport.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <sched.h>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/mman.h>

namespace shmq_bench {
namespace {

constexpr std::size_t ring_bytes = std::size_t{1} << 20;
static_assert((ring_bytes & (ring_bytes - 1)) == 0, "the ring size must be a power of two");

// Layout of one channel's mapping: this control block, then ring_bytes of data. Each index has
// a cache line of its own so the two sides do not false-share.
struct control {
    alignas(64) std::atomic<std::uint64_t> head;   // bytes consumed: written by the consumer only
    alignas(64) std::atomic<std::uint64_t> tail;   // bytes published: written by the producer only
};
static_assert(sizeof(control) == 128, "head and tail on separate cache lines");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "indices must be lock-free in shared memory");


class spsc_transport final : public basic_transport<spsc_transport> {
public:
    std::string name() const override { return "SPSC ring (ceiling)"; }
    role what() const override { return role::ceiling; }
    bool shared() const override { return false; }

    void open_channels() {
        for (int i = 0; i < params().channels; ++i) {
            void* p = ::mmap(nullptr, sizeof(control) + ring_bytes, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) throw std::runtime_error(std::string("mmap: ") + std::strerror(errno));
            maps_.push_back(new (p) control{});
        }
    }
    void close() noexcept override {
        for (auto* c : maps_) ::munmap(c, sizeof(control) + ring_bytes);
        maps_.clear();
    }

    static std::byte* data_of(control* c) noexcept { return reinterpret_cast<std::byte*>(c + 1); }

    /// \pre one writer per channel (one process, one thread).
    struct writer {
        writer(spsc_transport& t, int ch)
            : c_(t.maps_.at(static_cast<std::size_t>(ch))), ring_(data_of(c_)), msg_(t.params().size) {
            tail_ = c_->tail.load(std::memory_order_relaxed);   // only this writer moves it
            head_cache_ = c_->head.load(std::memory_order_acquire);
        }
        void send(bool end) {
            auto m = msg_.get(end);
            const std::uint64_t len = m.size();
            if (sizeof len + len <= ring_bytes) {
                wait_space(sizeof len + len);
                copy_in(&len, sizeof len);
                copy_in(m.data(), len);
                c_->tail.store(tail_, std::memory_order_release);   // pairs with the reader's acquire
                return;
            }
            wait_space(sizeof len);
            copy_in(&len, sizeof len);
            c_->tail.store(tail_, std::memory_order_release);
            const std::byte* src = m.data();
            std::uint64_t left = len;
            // Quarter-ring pieces, published one by one, so the reader copies one piece out
            // while this writer copies the next one in (a larger piece would leave it idle).
            while (left > 0) {
                const std::uint64_t piece = std::min<std::uint64_t>(left, ring_bytes / 4);
                wait_space(piece);
                copy_in(src, piece);
                c_->tail.store(tail_, std::memory_order_release);
                src += piece;
                left -= piece;
            }
        }
        void finish() {}

        void wait_space(std::uint64_t need) {
            unsigned spins = 0;
            // The cached head is stale-low (positions only grow), so it can only underestimate
            // the room: reload the reader's line only when the cache says "full".
            while (ring_bytes - (tail_ - head_cache_) < need) {
                head_cache_ = c_->head.load(std::memory_order_acquire);
                if (ring_bytes - (tail_ - head_cache_) >= need) break;
                spin_relax(spins);
            }
        }
        void copy_in(const void* src, std::uint64_t n) noexcept {
            const std::uint64_t off = tail_ & (ring_bytes - 1);
            const std::uint64_t first = std::min(n, ring_bytes - off);
            std::memcpy(ring_ + off, src, first);
            std::memcpy(ring_, static_cast<const std::byte*>(src) + first, n - first);
            tail_ += n;
        }

        control* c_;
        std::byte* ring_;
        byte_message msg_;
        std::uint64_t tail_ = 0, head_cache_ = 0;
    };

    /// \pre one reader per channel (one process, one thread).
    struct reader {
        reader(spsc_transport& t, int ch)
            : c_(t.maps_.at(static_cast<std::size_t>(ch))), ring_(data_of(c_)), want_(t.params().size),
              buf_(touched_buffer(want_)) {
            head_ = c_->head.load(std::memory_order_relaxed);   // only this reader moves it
            tail_cache_ = c_->tail.load(std::memory_order_acquire);
        }
        bool recv() {
            std::uint64_t len;
            wait_data(sizeof len);
            copy_out(&len, sizeof len);
            if (len > buf_.size()) throw std::runtime_error("SPSC ring: message too long");
            if (sizeof len + len <= ring_bytes) {
                wait_data(len);   // published together with the header: no wait in practice
                copy_out(buf_.data(), len);
                c_->head.store(head_, std::memory_order_release);   // pairs with the writer's acquire
                return is_end(buf_.data(), len, want_);
            }
            c_->head.store(head_, std::memory_order_release);
            std::byte* dst = buf_.data();
            std::uint64_t left = len;
            while (left > 0) {
                wait_data(1);
                std::uint64_t piece = std::min(left, tail_cache_ - head_);
                copy_out(dst, piece);
                c_->head.store(head_, std::memory_order_release);
                dst += piece;
                left -= piece;
            }
            return is_end(buf_.data(), len, want_);
        }

        void wait_data(std::uint64_t need) {
            unsigned spins = 0;
            while (tail_cache_ - head_ < need) {
                tail_cache_ = c_->tail.load(std::memory_order_acquire);
                if (tail_cache_ - head_ >= need) break;
                spin_relax(spins);
            }
        }
        void copy_out(void* dst, std::uint64_t n) noexcept {
            const std::uint64_t off = head_ & (ring_bytes - 1);
            const std::uint64_t first = std::min(n, ring_bytes - off);
            std::memcpy(dst, ring_ + off, first);
            std::memcpy(static_cast<std::byte*>(dst) + first, ring_, n - first);
            head_ += n;
        }

        control* c_;
        std::byte* ring_;
        std::size_t want_;
        std::vector<std::byte> buf_;
        std::uint64_t head_ = 0, tail_cache_ = 0;
    };

private:
    std::vector<control*> maps_;
};

} // namespace

std::unique_ptr<transport> make_spsc_transport() { return std::make_unique<spsc_transport>(); }

} // namespace shmq_bench
