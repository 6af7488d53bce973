// SPDX-License-Identifier: BSL-1.0
// The exit-flush registry: see include/shmq/detail/exit_flush.hpp.
#include <shmq/detail/exit_flush.hpp>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>

namespace shmq::detail {
namespace {

constexpr std::size_t max_hooks = 32;

// Slots fill from the front and are never cleared, so the registered hooks are always a prefix
// ending at the first null. Writers publish with a release CAS; run_exit_flush reads with
// acquire, so a hook it sees is a fully registered one. Constant-initialised (all null), so it is
// usable before any dynamic initialisation, e.g. from another translation unit's static.
constinit std::atomic<exit_flush_hook> hooks[max_hooks]{};

} // namespace

void add_exit_flush_hook(exit_flush_hook h) noexcept {
    if (h == nullptr) return;
    for (auto& slot : hooks) {
        exit_flush_hook seen = nullptr;
        // Either we claim the first free slot, or we learn who holds it. Since slots are never
        // freed, reaching a free slot without meeting h proves h is not registered yet; two
        // threads adding the same h race for the same slot and the loser sees h there.
        if (slot.compare_exchange_strong(seen, h, std::memory_order_acq_rel,
                                         std::memory_order_acquire))
            return;
        if (seen == h) return;
    }
    std::fputs("shmq: internal error: too many exit flush hooks\n", stderr);
    std::abort();
}

void run_exit_flush() noexcept {
    // Re-reading the slots as we go lets a hook register another hook; it runs too.
    for (auto& slot : hooks) {
        exit_flush_hook h = slot.load(std::memory_order_acquire);
        if (h == nullptr) break;
        try {
            h();
        } catch (...) {
            // The process is exiting: nobody can act on the error, and the other hooks must
            // still run.
        }
    }
}

} // namespace shmq::detail
