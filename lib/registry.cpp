#include "registry.hpp"

#include <shmq/errors.hpp>

namespace shmq::detail::registry {
namespace {

// Takes the registry lock. A holder that died inside the lock may have updated a slot but not
// `holders`: after a takeover, recompute holders from the slots (the slots are the truth).
class locked {
public:
    explicit locked(registry_state& r) noexcept : r_(r), g_(r.lock, deadline()) {
        if (g_.result() == robust_mutex::result::recovered) recompute();
    }
    void recompute() noexcept {
        for (std::size_t e = 0; e < max_ends; ++e) {
            std::uint32_t sum = 0;
            for (auto& slot : r_.slots)
                if (slot.pid.load(std::memory_order_relaxed) != 0)
                    sum += slot.count[e].load(std::memory_order_relaxed);
            for (auto& p : r_.pending)
                if (p.token.load(std::memory_order_relaxed) != 0)
                    sum += p.count[e].load(std::memory_order_relaxed);
            r_.holders[e].store(sum, std::memory_order_release);
        }
    }

private:
    registry_state& r_;
    robust_lock g_;
};

holder_slot* find(registry_state& r, const process_identity& who) noexcept {
    for (auto& slot : r.slots)
        if (slot.pid.load(std::memory_order_relaxed) == who.pid &&
            slot.start.load(std::memory_order_relaxed) == who.start)
            return &slot;
    return nullptr;
}

void clear(registry_state& r, holder_slot& slot) noexcept {
    for (std::size_t e = 0; e < max_ends; ++e) {
        std::uint32_t c = slot.count[e].exchange(0, std::memory_order_relaxed);
        if (c) r.holders[e].fetch_sub(c, std::memory_order_release);
    }
    slot.start.store(0, std::memory_order_relaxed);
    slot.pid.store(0, std::memory_order_release);
}

// Empties a pending fork entry; adds what it held to *moved when given.
void clear_pending(registry_state& r, pending_fork& p, end_counts* moved = nullptr) noexcept {
    for (std::size_t e = 0; e < max_ends; ++e) {
        std::uint32_t c = p.count[e].exchange(0, std::memory_order_relaxed);
        if (moved) (*moved)[e] += c;
        if (c) r.holders[e].fetch_sub(c, std::memory_order_release);
    }
    p.token.store(0, std::memory_order_release);
}

constexpr std::uint32_t any_end = max_ends;

// Drops the slots of dead processes (those holding `end`, or all with any_end), and pending forks
// whose parent died. Returns how many. Reads /proc once per candidate: slow paths only.
std::uint32_t drop_dead(registry_state& r, std::uint32_t end) noexcept {
    auto holds = [&](const auto& entry) {
        return end == any_end || entry.count[end].load(std::memory_order_relaxed) != 0;
    };
    std::uint32_t dropped = 0;
    for (auto& slot : r.slots) {
        std::uint32_t pid = slot.pid.load(std::memory_order_relaxed);
        if (pid && holds(slot) && !is_alive(pid, slot.start.load(std::memory_order_relaxed))) {
            clear(r, slot);
            ++dropped;
        }
    }
    for (auto& p : r.pending) {
        if (p.token.load(std::memory_order_relaxed) != 0 && holds(p) &&
            !is_alive(p.parent_pid.load(std::memory_order_relaxed),
                      p.parent_start.load(std::memory_order_relaxed))) {
            clear_pending(r, p);
            ++dropped;
        }
    }
    return dropped;
}

} // namespace

static void attach_locked(registry_state& r, const process_identity& who, const end_counts& counts) {
    holder_slot* slot = find(r, who);
    if (!slot) {
        for (int pass = 0; pass < 2 && !slot; ++pass) {
            for (auto& candidate : r.slots)
                if (candidate.pid.load(std::memory_order_relaxed) == 0) { slot = &candidate; break; }
            if (!slot && pass == 0) drop_dead(r, any_end);   // full: make room
        }
        if (!slot)
            throw error("shmq: more than " + std::to_string(max_holders) +
                        " live processes hold this object");
        slot->start.store(who.start, std::memory_order_relaxed);
        slot->pid.store(who.pid, std::memory_order_release);
    }
    for (std::size_t e = 0; e < max_ends; ++e)
        if (counts[e]) {
            slot->count[e].fetch_add(counts[e], std::memory_order_relaxed);
            r.holders[e].fetch_add(counts[e], std::memory_order_release);
        }
}


void attach(const segment& s, const process_identity& who, const end_counts& counts) {
    registry_state& r = s.registry();
    locked guard(r);
    attach_locked(r, who, counts);
}

bool park_for_fork(const segment& s, std::uint64_t token, const process_identity& parent,
                   const end_counts& counts) noexcept {
    registry_state& r = s.registry();
    locked guard(r);
    for (auto& p : r.pending) {
        if (p.token.load(std::memory_order_relaxed) != 0) continue;
        p.parent_pid.store(parent.pid, std::memory_order_relaxed);
        p.parent_start.store(parent.start, std::memory_order_relaxed);
        for (std::size_t e = 0; e < max_ends; ++e) {
            p.count[e].store(counts[e], std::memory_order_relaxed);
            if (counts[e]) r.holders[e].fetch_add(counts[e], std::memory_order_release);
        }
        p.token.store(token, std::memory_order_release);
        return true;
    }
    return false;
}

void settle_fork(const segment& s, std::uint64_t token, const process_identity* child,
                 bool is_self, const end_counts& counts) noexcept {
    registry_state& r = s.registry();
    locked guard(r);
    end_counts total{};
    bool found = false;
    for (auto& p : r.pending) {
        if (p.token.load(std::memory_order_relaxed) != token) continue;
        found = true;
        clear_pending(r, p, &total);
    }
    if (!found && is_self && child && !find(r, *child)) {
        // Our parent died between parking and settling, and reap() dropped the entry: nobody
        // attached us, so do it now.
        total = counts;
        found = true;
    }
    if (found && child) {
        try {
            attach_locked(r, *child, total);
        } catch (...) {
            // Registry full: the child does not count as a holder (EOF may come early for it).
        }
    }
}


void detach(const segment& s, const process_identity& who, const end_counts& counts) noexcept {
    registry_state& r = s.registry();
    locked guard(r);
    holder_slot* slot = find(r, who);
    if (!slot) return;   // already reaped
    bool empty = true;
    for (std::size_t e = 0; e < max_ends; ++e) {
        std::uint32_t have = slot->count[e].load(std::memory_order_relaxed);
        std::uint32_t take = std::min(have, counts[e]);
        if (take) {
            slot->count[e].store(have - take, std::memory_order_relaxed);
            r.holders[e].fetch_sub(take, std::memory_order_release);
        }
        if (have - take) empty = false;
    }
    if (empty) {
        slot->start.store(0, std::memory_order_relaxed);
        slot->pid.store(0, std::memory_order_release);
    }
}

std::uint32_t reap(const segment& s, std::uint32_t end) noexcept {
    registry_state& r = s.registry();
    locked guard(r);
    return drop_dead(r, end);
}

} // namespace shmq::detail::registry
