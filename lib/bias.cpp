// SPDX-License-Identifier: BSL-1.0
// The biased writer lease: see bias.hpp.
#include "bias.hpp"

#include "liveness.hpp"
#include "sync/futex.hpp"   // cpu_relax
#include "sync/robust_mutex.hpp"
#include "test_hook.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <thread>

namespace shmq::detail {
namespace {

int membarrier(int cmd) noexcept { return static_cast<int>(::syscall(__NR_membarrier, cmd, 0, 0)); }

// The process that registered (0: none yet, or it failed in this one). A forked child inherits
// the registration (the kernel keeps it in the memory map it copies), so a child whose parent
// registered is registered too; the pid is compared only to register again after exec, where
// this variable is fresh anyway.
std::atomic<std::uint32_t> registered_pid{0};
std::atomic<bool> refused{false};

} // namespace

bool membarrier_ready() noexcept {
    if (registered_pid.load(std::memory_order_acquire) != 0) return true;
    if (refused.load(std::memory_order_relaxed)) return false;
    const int have = membarrier(MEMBARRIER_CMD_QUERY);
    if (have < 0 || !(have & MEMBARRIER_CMD_GLOBAL_EXPEDITED) ||
        membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0 ||
        membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0) {   // the revoker's call, tried once
        refused.store(true, std::memory_order_relaxed);
        return false;
    }
    registered_pid.store(self_pid(), std::memory_order_release);
    return true;
}

bool membarrier_all() noexcept {
    SHMQ_TEST_HOOK("bias.membarrier");
    // A call refused after the registration (a sandboxed reader beside an unsandboxed writer) is
    // rare, so tests refuse it on purpose to reach the fallbacks: the revoker's wait for the
    // holder, the reader's blind sleep and the poller's timer.
    if (test_hook::membarrier_refused()) return false;
    return membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
}

holder_slot* slot_of_word(const segment& seg, std::uint64_t word) noexcept {
    const std::uint32_t pid = robust_mutex::pid_of(word);
    const std::uint32_t start = static_cast<std::uint32_t>(word >> 32);
    for (holder_slot& s : const_cast<registry_state&>(seg.registry()).slots) {
        if (s.pid.load(std::memory_order_acquire) != pid) continue;
        // A lease word keeps the low 32 bits of the start time (0 there: not known).
        if (start != 0 && static_cast<std::uint32_t>(s.start.load(std::memory_order_relaxed)) != start)
            continue;
        return &s;
    }
    return nullptr;
}

std::atomic<std::uint32_t>* bias_busy_of(const segment& seg, std::uint64_t word,
                                         std::uint32_t channel) noexcept {
    holder_slot* s = slot_of_word(seg, word);
    return s ? &s->bias_busy[channel] : nullptr;
}

bool writer_revoker::revoke(std::uint64_t word, const deadline& until) noexcept {
    auto& w = const_cast<segment&>(seg_).channel(channel_).wlock.word();
    if (!(word & robust_mutex::revoke_bit)) {
        if (!w.compare_exchange_strong(word, word | robust_mutex::revoke_bit,
                                       std::memory_order_acq_rel, std::memory_order_relaxed))
            return true;   // changed meanwhile: lock() looks again
        word |= robust_mutex::revoke_bit;
    }
    SHMQ_TEST_HOOK("bias.revoking");
    // Either the holder's check of the word comes after this barrier (and sees the revoke bit),
    // or its bias_busy mark is visible to the loads below. Without the call, a holder that has
    // not seen the bit yet may be inside a message: wait for it to give the bias up itself.
    const bool fenced = membarrier_all();
    const std::atomic<std::uint32_t>* busy = bias_busy_of(seg_, word, channel_);
    const auto* foreign = &seg_.header().foreign_pidns;
    const clock::time_point since = clock::now();
    clock::time_point probed = since;
    for (unsigned spins = 0;; ++spins) {
        if (w.load(std::memory_order_acquire) != word) return true;   // the holder gave it up
        if (fenced && (!busy || busy->load(std::memory_order_acquire) == 0)) break;
        const auto now = clock::now();
        if (now - probed >= liveness_slice) {
            probed = now;
            if (robust_mutex::owner_dead(word & ~(robust_mutex::biased_bit | robust_mutex::revoke_bit),
                                         foreign))
                break;   // died inside a message: nothing of it was published
        }
        // As lock() spins a little even for a caller that may not wait (put_nowait): a holder
        // inside its message is usually out of it within these spins.
        if (spins >= 256 && until.expired()) return false;
        // A message is a copy of at most bias_max bytes; longer means the holder was preempted.
        if (spins < 256) cpu_relax();
        else std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    SHMQ_TEST_HOOK("bias.revoked");
    // Nobody sleeps on a biased word (lock() revokes instead), so freeing it wakes no one.
    std::uint64_t v = word;
    w.compare_exchange_strong(v, 0, std::memory_order_acq_rel, std::memory_order_relaxed);
    return true;
}

bool seal(channel_state& st) noexcept {
    auto& w = st.wlock.word();
    std::uint64_t v = w.load(std::memory_order_acquire);
    if (!(v & robust_mutex::biased_bit)) return true;
    if (!(v & robust_mutex::revoke_bit))
        w.compare_exchange_strong(v, v | robust_mutex::revoke_bit, std::memory_order_acq_rel,
                                  std::memory_order_relaxed);
    return membarrier_all();
}

} // namespace shmq::detail
