// SPDX-License-Identifier: BSL-1.0
// shmq-bench — the ceiling: a lock-free single-producer single-consumer byte ring in shared
// memory that spins instead of sleeping (after rigtorp/SPSCQueue). A queue with locks, waiting,
// death detection and MPMC cannot beat it; shmq's figures are printed as a share of it.
//
// Messages are an 8-byte length and the payload in a 1 MiB ring (shmq's default ring size), copied
// around the wrap in two pieces, and laid out as shmq lays out its records (lib/ring.hpp,
// footprint): padded to 8 bytes, and to whole cache lines when that is more than half a line, so
// that the writer never writes into a line the reader is copying from. Packed back to back, the
// 64 B ceiling was lower by a third in one sitting (8.0-8.4 against 11.2-13.9 M msg/s, three
// alternated runs) and by an eighth in another (9.26 against 10.5 M, medians of eight): a ceiling
// must be the best layout, not the one shmq had. A message that fits is published with
// one release store of the tail; a larger one is streamed through the ring in pieces. Point to point:
// N->N runs N rings. The waiting side spins with `pause` and yields the core every 128 spins, so
// that on an oversubscribed machine (4->4 on 2 cores) the peer gets to run; it never sleeps.
//
// The same ring "with leases" (64 B only) also makes, per message, the locked instructions a
// shmq channel makes and nothing else: each side takes its lease with a compare-exchange, gives
// it back with an exchange after publishing, and checks the other side's wake-up word after a
// seq_cst fence (lib/channel.cpp, lib/sync/event.hpp). Its rate over the bare ring's is what
// shmq's way of sharing an end between processes costs on this machine, without shmq's code
// (the issue 12 targets print it as the limit of the 64 B rows against the ring).
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
// Streamed pieces: 64 KiB, as shmq's (lib/channel.hpp, piece_max). Quarter-ring pieces (256 KiB)
// made the 1 MiB round trip longer by the larger last piece.
constexpr std::uint64_t piece_bytes = std::min<std::uint64_t>(ring_bytes / 4, 64 * 1024);

// Layout of one channel's mapping: this control block, then ring_bytes of data. Each word has
// a cache line of its own so the two sides do not false-share (as in lib/layout.hpp).
struct control {
    alignas(64) std::atomic<std::uint64_t> head;   // bytes consumed: written by the consumer only
    alignas(64) std::atomic<std::uint64_t> tail;   // bytes published: written by the producer only
    // Used only "with leases": each side's lease (taken and given back by that side alone), and
    // the words a sleeper would mark, read by the other side after each publication (nobody
    // sleeps here, so they stay 0).
    alignas(64) std::atomic<std::uint64_t> writer_lease;
    alignas(64) std::atomic<std::uint64_t> reader_lease;
    alignas(64) std::atomic<std::uint32_t> data_sleepers;
    alignas(64) std::atomic<std::uint32_t> space_sleepers;
};
static_assert(sizeof(control) == 6 * 64, "every word on a cache line of its own");

/// The locked instructions a shmq channel makes around each message on one side (see above).
struct lease_steps {
    static void take(std::atomic<std::uint64_t>& lease) noexcept {
        std::uint64_t free = 0;
        // Only this side takes it, so the first compare-exchange always succeeds.
        (void)lease.compare_exchange_strong(free, 1, std::memory_order_acquire, std::memory_order_relaxed);
    }
    static void give_back(std::atomic<std::uint64_t>& lease, std::atomic<std::uint32_t>& sleepers) noexcept {
        lease.exchange(0, std::memory_order_release);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        // Nobody sleeps here, so there is never anyone to wake; the load is what a notify costs
        // then (an atomic load is never optimised away).
        (void)sleepers.load(std::memory_order_relaxed);
    }
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "indices must be lock-free in shared memory");

/// The bytes a message of `bytes` (its length word included) leaves unused after it: the padding
/// of shmq's record layout (see the top of this file).
constexpr std::uint64_t slack(std::uint64_t bytes) noexcept {
    const std::uint64_t packed = (bytes + 7) & ~std::uint64_t{7};
    const std::uint64_t slot = packed <= 32 ? packed : (packed + 63) & ~std::uint64_t{63};
    return slot - bytes;
}
static_assert(slack(16) == 0 && slack(8 + 64) == 56 && slack(8 + 24) == 0 && slack(8 + 25) == 31,
              "small records packed, larger ones in whole lines");


class spsc_transport final : public basic_transport<spsc_transport> {
public:
    explicit spsc_transport(bool with_leases) : leases_(with_leases) {}
    std::string name() const override { return leases_ ? "SPSC ring with leases" : "SPSC ring (ceiling)"; }
    role what() const override { return leases_ ? role::baseline : role::ceiling; }
    bool shared() const override { return false; }
    std::string unsupported(payload kind, std::size_t size, mode) const override {
        if (kind != payload::bytes) return "bytes only";
        if (leases_ && size != 64) return "64 B only (the small-message limit)";
        return {};
    }

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
            : c_(t.maps_.at(static_cast<std::size_t>(ch))), ring_(data_of(c_)), msg_(t.params().size),
              leases_(t.leases_) {
            tail_ = c_->tail.load(std::memory_order_relaxed);   // only this writer moves it
            head_cache_ = c_->head.load(std::memory_order_acquire);
        }
        void send(bool end) {
            auto m = msg_.get(end);
            const std::uint64_t len = m.size();
            if (sizeof len + len <= ring_bytes) {
                if (leases_) lease_steps::take(c_->writer_lease);
                const std::uint64_t pad = slack(sizeof len + len);
                wait_space(sizeof len + len + pad);
                copy_in(&len, sizeof len);
                copy_in(m.data(), len);
                tail_ += pad;
                c_->tail.store(tail_, std::memory_order_release);   // pairs with the reader's acquire
                if (leases_) lease_steps::give_back(c_->writer_lease, c_->data_sleepers);
                return;
            }
            wait_space(sizeof len);
            copy_in(&len, sizeof len);
            c_->tail.store(tail_, std::memory_order_release);
            const std::byte* src = m.data();
            std::uint64_t left = len;
            // Pieces published one by one, so the reader copies one piece out while this writer
            // copies the next one in.
            while (left > 0) {
                const std::uint64_t piece = std::min(left, piece_bytes);
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
        bool leases_;
        std::uint64_t tail_ = 0, head_cache_ = 0;
    };

    /// \pre one reader per channel (one process, one thread).
    struct reader {
        reader(spsc_transport& t, int ch)
            : c_(t.maps_.at(static_cast<std::size_t>(ch))), ring_(data_of(c_)), want_(t.params().size),
              buf_(touched_buffer(want_)), leases_(t.leases_) {
            head_ = c_->head.load(std::memory_order_relaxed);   // only this reader moves it
            tail_cache_ = c_->tail.load(std::memory_order_acquire);
        }
        bool recv() {
            std::uint64_t len;
            if (leases_) lease_steps::take(c_->reader_lease);
            wait_data(sizeof len);
            copy_out(&len, sizeof len);
            if (len > buf_.size()) throw std::runtime_error("SPSC ring: message too long");
            if (sizeof len + len <= ring_bytes) {
                wait_data(len);   // published together with the header: no wait in practice
                copy_out(buf_.data(), len);
                head_ += slack(sizeof len + len);
                c_->head.store(head_, std::memory_order_release);   // pairs with the writer's acquire
                if (leases_) lease_steps::give_back(c_->reader_lease, c_->space_sleepers);
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
        bool leases_;
        std::uint64_t head_ = 0, tail_cache_ = 0;
    };

private:
    bool leases_;
    std::vector<control*> maps_;
};

} // namespace

std::unique_ptr<transport> make_spsc_transport(bool with_leases) {
    return std::make_unique<spsc_transport>(with_leases);
}

} // namespace shmq_bench
