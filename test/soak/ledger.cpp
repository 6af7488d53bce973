// SPDX-License-Identifier: BSL-1.0
// shmq-soak — the shared ledger (see ledger.hpp).
#include "ledger.hpp"

#include <cerrno>
#include <cstdio>
#include <new>
#include <system_error>

#include <sys/mman.h>

namespace shmq_soak {

static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "the ledger is shared between processes: its atomics must be lock-free");

const char* state_name(std::uint32_t s) noexcept
{
    switch (s) {
    case ws_start: return "starting";
    case ws_put: return "in put/send";
    case ws_get: return "in get/recv";
    case ws_task_done: return "in task_done";
    case ws_flush: return "in close/join_thread";
    case ws_idle: return "idle";
    case ws_exit: return "exiting";
    }
    return "?";
}

ledger::ledger()
{
    std::size_t head = (sizeof(shared) + 4095) & ~std::size_t{4095};
    bytes_ = head + std::size_t{max_slots} * words_per_slot * 8;
    // MAP_NORESERVE: the bitmap is 64 MiB of address space, but only the pages of sequences
    // actually sent are ever touched.
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap ledger");
    shared_ = new (p) shared;   // zero pages: every field starts at 0 anyway
    bits_ = reinterpret_cast<std::atomic<std::uint64_t>*>(static_cast<char*>(p) + head);
}

ledger::~ledger()
{
    if (shared_) ::munmap(shared_, bytes_);
}

bool ledger::mark(std::uint32_t slot, std::uint64_t seq) noexcept
{
    auto& w = bits_[slot * words_per_slot + seq / 64];
    std::uint64_t bit = std::uint64_t{1} << (seq % 64);
    return (w.fetch_or(bit, std::memory_order_relaxed) & bit) == 0;
}

bool ledger::received(std::uint32_t slot, std::uint64_t seq) const noexcept
{
    auto& w = bits_[slot * words_per_slot + seq / 64];
    return (w.load(std::memory_order_relaxed) >> (seq % 64)) & 1;
}

void ledger::note_error(const char* who, const char* what) noexcept
{
    shared_->totals.errors.fetch_add(1, std::memory_order_relaxed);
    if (shared_->totals.error_text_taken.exchange(1) == 0)
        std::snprintf(shared_->totals.error_text, sizeof shared_->totals.error_text, "%s: %s",
                      who, what);
}

} // namespace shmq_soak
