// SPDX-License-Identifier: BSL-1.0
// The biased writer lease (doc/design.md §5, "The biased writer lease").
//
// A writer that keeps writing alone pays, per message, a compare-exchange to take the writer
// lease, an exchange to give it back and a fence before it looks for sleeping readers. Each is a
// locked instruction, which waits until the message's stores have reached the reader's core.
// Without them the writer's stores stream, and the 64 B Pipe and Queue ran 1.5x faster here.
//
// So a writer that took the lease uncontended for `bias_after` messages in a row keeps it: the
// lease word then says "biased" (robust_mutex::biased_bit), and its next messages take no locked
// instruction at all. Inside one, it marks its registry slot's bias_busy word with a plain store
// and checks the lease word again; it publishes and notifies readers without a fence. The other
// side of each of those orderings is paid by whoever needs it, rarely:
//   - a writer that wants the lease (revoke()) raises the revoke bit, calls
//     membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), which runs a full barrier on every CPU that
//     runs a registered process, and then reads bias_busy: either the holder's check came after
//     the barrier and saw the bit, or its mark is visible. It waits until the mark is 0 (or its
//     process is dead) and frees the word. The holder finds its bias gone at its next message
//     and takes the lease the plain way.
//   - a reader about to sleep (seal()) raises the revoke bit and calls membarrier after it has
//     set its sleeper bit: a publication it cannot see yet is then one whose notify sees the bit.
//     The holder gives the bias up at its next message (one locked instruction), so a reader that
//     sleeps often costs one membarrier per bias, not one per sleep.
// A process may hold a bias only once it registered for expedited membarrier (membarrier_ready);
// where the call is forbidden (seccomp) or missing, nothing is ever biased.
//
// Who holds a bias in a process: one thread through one handle. A handle written by a second
// thread never biases again; a process holding two writer handles of one channel never biases
// it. So no thread of the process can hold a stale belief in a bias that another thread of the
// same process holds now, and the per-process bias_busy word is only ever written by one thread.
#pragma once

#include "deadline.hpp"
#include "layout.hpp"
#include "segment.hpp"

#include <atomic>
#include <cstdint>

namespace shmq::detail {

/// Registers this process for expedited membarrier (once per process; a forked child inherits
/// it). False when the kernel or a seccomp filter refuses: then this process never biases.
bool membarrier_ready() noexcept;
/// A full barrier on every CPU that runs a registered process. False when the call failed.
bool membarrier_all() noexcept;

/// The registry slot of the process behind a lease word, found without the registry lock (a
/// slot stays its process's while it holds a count there), or null when it has none.
holder_slot* slot_of_word(const segment& seg, std::uint64_t word) noexcept;
/// The bias_busy word of the process behind a biased lease word, or null when no slot of `seg`
/// belongs to it any more (it detached or was reaped: it is not inside a message).
std::atomic<std::uint32_t>* bias_busy_of(const segment& seg, std::uint64_t word,
                                         std::uint32_t channel) noexcept;

/// Takes a bias away from the writer lease of `channel`, so that lock() can take it the plain
/// way: the revoke bit, membarrier, then waits until the holder is outside its message (or
/// dead), and frees the word. True when the word is no longer the biased `word` (whoever changed
/// it); false when the deadline passed first.
class writer_revoker final : public bias_revoker {
public:
    writer_revoker(const segment& seg, std::uint32_t channel) noexcept : seg_(seg), channel_(channel) {}
    bool revoke(std::uint64_t word, const deadline& until) noexcept override;

private:
    const segment& seg_;
    std::uint32_t channel_;
};

/// For a reader that has set its sleeper bit and is about to check for data one last time: if
/// the writer lease is biased, asks it to end (revoke bit) and runs membarrier, so that the
/// check sees every publication whose notify missed the sleeper bit. False when membarrier
/// failed: the caller then sleeps in short slices (bias_blind_sleep).
bool seal(channel_state& st) noexcept;
/// How long a reader sleeps at most when seal() failed: a wake-up may then be missed, and this
/// bounds what that costs.
inline constexpr std::chrono::microseconds bias_blind_sleep{200};

} // namespace shmq::detail
