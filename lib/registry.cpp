// SPDX-License-Identifier: BSL-1.0
#include "registry.hpp"

#include "retained.hpp"
#include "test_hook.hpp"

#include <shmq/errors.hpp>

#include <algorithm>

namespace shmq::detail::registry {
namespace {

// The handles on `end` that the slots and pending forks record (the truth `holders` caches).
std::uint64_t counted_in_slots(const registry_state& r, std::uint32_t end) noexcept {
    std::uint64_t sum = 0;
    for (const auto& slot : r.slots)
        if (slot.pid.load(std::memory_order_relaxed) != 0) sum += slot.count[end].load(std::memory_order_relaxed);
    for (const auto& p : r.pending)
        if (p.token.load(std::memory_order_relaxed) != 0) sum += p.count[end].load(std::memory_order_relaxed);
    return sum;
}

// Takes the registry lock. A holder that died inside the lock may have updated a slot but not
// `holders`: after a takeover, recompute holders from the slots (the slots are the truth).
class locked {
public:
    explicit locked(registry_state& r, const deadline& until = deadline()) noexcept
        : r_(r), g_(r.lock, until) {
        if (g_.result() == robust_mutex::result::recovered) recompute();
    }
    bool owns() const noexcept { return g_.owns(); }
    void recompute() noexcept {
        for (std::uint32_t e = 0; e < max_ends; ++e)
            r_.holders[e].store(static_cast<std::uint32_t>(counted_in_slots(r_, e)), std::memory_order_release);
    }

private:
    registry_state& r_;
    robust_lock g_;
};

// How long a fork handler of the parent waits for the registry lock: fork() must not hang on a
// process that is stopped while it holds the lock.
deadline fork_wait() noexcept { return deadline(timeout_t(std::chrono::milliseconds(50))); }

// How long everything else waits for it (attach at open and in a forked child, detach at close,
// a slot lookup). The lock is held for microseconds; a holder that keeps it this long is stopped
// (SIGSTOP, a debugger), or its owner word cannot be judged (another pid namespace, a corrupt
// segment: found by fuzz_segment, whose open() waited for ever). A bounded wait turns that into
// an error at open and a skipped detach (the reaper uncounts the process once it has died),
// never a hang.
constexpr auto holder_wait = std::chrono::seconds(2);
deadline holder_deadline() noexcept { return deadline(timeout_t(holder_wait)); }

holder_slot* find(registry_state& r, const process_identity& who) noexcept {
    for (auto& slot : r.slots)
        if (slot.pid.load(std::memory_order_relaxed) == who.pid &&
            slot.start.load(std::memory_order_relaxed) == who.start &&
            slot.pidns.load(std::memory_order_relaxed) == who.pidns)
            return &slot;
    return nullptr;
}

process_identity holder_of(const holder_slot& slot) noexcept {
    process_identity id;
    id.pid = slot.pid.load(std::memory_order_relaxed);
    id.start = slot.start.load(std::memory_order_relaxed);
    id.pidns = slot.pidns.load(std::memory_order_relaxed);
    return id;
}

process_identity parent_of(const pending_fork& p) noexcept {
    process_identity id;
    id.pid = p.parent_pid.load(std::memory_order_relaxed);
    id.start = p.parent_start.load(std::memory_order_relaxed);
    id.pidns = p.parent_pidns.load(std::memory_order_relaxed);
    return id;
}

// A dead holder's JoinableQueue accounting (layout.hpp, holder_slot): what it counted in
// `unfinished` and will never uncount, items it never published and items it got and never
// task_done'd, comes off `unfinished` (clamped at 0: a task_done by another process than the
// getter leaves the getter's `taken` one too high); the latter are reported lost. Then join()
// is woken. Called under the registry lock with the holder certainly dead, so its counters no
// longer move. Crash window: a reaper killed after the subtraction and before zeroing the
// counters makes the next reaper (after its lock takeover) subtract them again, so join() may
// return that many items early; the other order would risk a join() that never returns.
void uncount_dead(const segment* qseg, holder_slot& slot, std::uint32_t index) noexcept {
    queue_state* q = qseg ? &qseg->queue() : nullptr;
    const std::uint64_t unpublished = slot.unpublished.load(std::memory_order_acquire);
    std::uint64_t taken = slot.taken.load(std::memory_order_acquire);
    if (qseg && (qseg->header().flags & retain_records)) {
        // At-least-once mode: what it took is still in the ring and goes to another consumer
        // (retained.hpp); it stays counted until that one's task_done.
        retained::release_dead(*qseg, index);
        taken = 0;
    }
    if (q && unpublished + taken != 0) {
        // Unsigned throughout: the counters of a corrupt slot may be anything (their sum too,
        // wrapping), and the amount taken off is at most `unfinished` itself.
        const std::uint64_t n = unpublished + taken;
        std::int64_t v = q->unfinished.load(std::memory_order_acquire);
        while (v > 0 &&
               !q->unfinished.compare_exchange_weak(
                   v, v - static_cast<std::int64_t>(std::min(static_cast<std::uint64_t>(v), n)),
                   std::memory_order_acq_rel)) {
        }
        if (taken) q->lost_to_dead_consumers.fetch_add(taken, std::memory_order_acq_rel);
        SHMQ_TEST_HOOK("registry.uncount_dead");
        q->all_done.notify();
    }
    slot.unpublished.store(0, std::memory_order_relaxed);
    slot.taken.store(0, std::memory_order_relaxed);
    for (auto& b : slot.bias_busy) b.store(0, std::memory_order_relaxed);
}

void clear(registry_state& r, holder_slot& slot) noexcept {
    for (std::size_t e = 0; e < max_ends; ++e) {
        std::uint32_t c = slot.count[e].exchange(0, std::memory_order_relaxed);
        if (c) r.holders[e].fetch_sub(c, std::memory_order_release);
    }
    slot.start.store(0, std::memory_order_relaxed);
    slot.pidns.store(0, std::memory_order_relaxed);
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
// whose parent died. Returns how many. Reads /proc once per candidate: slow paths only. Only a
// certain death counts (liveness::dead): a holder we cannot judge (no fd left, another pid
// namespace) stays counted.
// For a queue segment, q receives the dead holders' JoinableQueue accounting (uncount_dead).
std::uint32_t drop_dead(registry_state& r, std::uint32_t end, const segment* q) noexcept {
    auto holds = [&](const auto& entry) {
        return end == any_end || entry.count[end].load(std::memory_order_relaxed) != 0;
    };
    std::uint32_t dropped = 0;
    for (auto& slot : r.slots) {
        std::uint32_t pid = slot.pid.load(std::memory_order_relaxed);
        if (pid && holds(slot) && probe(holder_of(slot)) == liveness::dead) {
            uncount_dead(q, slot, static_cast<std::uint32_t>(&slot - r.slots));
            clear(r, slot);
            ++dropped;
        }
    }
    for (auto& p : r.pending) {
        if (p.token.load(std::memory_order_relaxed) != 0 && holds(p) &&
            probe(parent_of(p)) == liveness::dead) {
            clear_pending(r, p);
            ++dropped;
        }
    }
    return dropped;
}

} // namespace

// The queue state of a queue-family segment (whose slots carry JoinableQueue accounting).
static const segment* queue_of(const segment& s) noexcept {
    return s.kind() == segment_kind::pipe ? nullptr : &s;
}

static void attach_locked(registry_state& r, const process_identity& who, const end_counts& counts,
                          const segment* q) {
    holder_slot* slot = find(r, who);
    if (!slot) {
        for (int pass = 0; pass < 2 && !slot; ++pass) {
            for (auto& candidate : r.slots)
                if (candidate.pid.load(std::memory_order_relaxed) == 0) { slot = &candidate; break; }
            if (!slot && pass == 0) drop_dead(r, any_end, q);   // full: make room
        }
        if (!slot)
            throw error("shmq: more than " + std::to_string(max_holders) +
                        " live processes hold this object");
        slot->start.store(who.start, std::memory_order_relaxed);
        slot->pidns.store(who.pidns, std::memory_order_relaxed);
        // Freed slots are zeroed already; this also covers one freed by a holder killed mid-free.
        slot->unpublished.store(0, std::memory_order_relaxed);
        slot->taken.store(0, std::memory_order_relaxed);
        for (auto& b : slot->bias_busy) b.store(0, std::memory_order_relaxed);
        SHMQ_TEST_HOOK("registry.attach");
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
    locked guard(r, holder_deadline());
    if (guard.owns() && s.header().retired.load(std::memory_order_acquire) != 0)
        throw retired_error("shmq: '" + s.name() + "' was removed or replaced while being opened");
    if (!guard.owns())
        throw error("shmq: " + (s.name().empty() ? std::string("an anonymous object") : "'" + s.name() + "'") +
                    ": its registry lock has been held by process " +
                    std::to_string(robust_mutex::pid_of(r.lock.owner())) + " for more than " +
                    std::to_string(holder_wait.count()) +
                    " s (stopped, or in another pid namespace, or the segment is corrupt)");
    attach_locked(r, who, counts, queue_of(s));
    r.opens.fetch_add(1, std::memory_order_release);
}

bool park_for_fork(const segment& s, std::uint64_t token, const process_identity& parent,
                   const end_counts& counts) noexcept {
    registry_state& r = s.registry();
    locked guard(r, fork_wait());
    if (!guard.owns()) return false;   // the child attaches itself (endpoint.cpp)
    for (auto& p : r.pending) {
        if (p.token.load(std::memory_order_relaxed) != 0) continue;
        p.parent_pid.store(parent.pid, std::memory_order_relaxed);
        p.parent_start.store(parent.start, std::memory_order_relaxed);
        p.parent_pidns.store(parent.pidns, std::memory_order_relaxed);
        for (std::size_t e = 0; e < max_ends; ++e) {
            p.count[e].store(counts[e], std::memory_order_relaxed);
            if (counts[e]) r.holders[e].fetch_add(counts[e], std::memory_order_release);
        }
        p.token.store(token, std::memory_order_release);
        return true;
    }
    return false;
}

bool settle_fork(const segment& s, std::uint64_t token, const process_identity& parent,
                 const process_identity* child, bool is_self, const end_counts& counts) noexcept {
    registry_state& r = s.registry();
    // The parent only helps (the child settles its own ends): it never waits long for a lock
    // that a stopped process may hold. The child waits as long as it takes.
    locked guard(r, is_self ? holder_deadline() : fork_wait());
    if (!guard.owns()) return false;
    end_counts total{};
    bool found = false;
    for (auto& p : r.pending) {
        if (p.token.load(std::memory_order_relaxed) != token || !(parent_of(p) == parent)) continue;
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
            attach_locked(r, *child, total, queue_of(s));
        } catch (...) {
            // Registry full: the child is not counted, so it must not use these ends (it would
            // write after an EOF was given, or be given EOF early). endpoint marks them unusable
            // in the child, whose every use then reports the limit.
            return false;
        }
    }
    return !is_self || found || (child && find(r, *child));
}


void detach(const segment& s, const process_identity& who, const end_counts& counts) noexcept {
    registry_state& r = s.registry();
    locked guard(r, holder_deadline());
    if (!guard.owns()) return;   // still counted: reaped once this process has died
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
    // A process that still accounts for JoinableQueue items (got and not task_done'd, or not yet
    // published) keeps its slot after its last handle closed: if it dies, the reaper must find them.
    if (slot->unpublished.load(std::memory_order_acquire) != 0 ||
        slot->taken.load(std::memory_order_acquire) != 0)
        empty = false;
    if (empty) {
        slot->start.store(0, std::memory_order_relaxed);
        slot->pid.store(0, std::memory_order_release);
    }
}

std::uint32_t reap(const segment& s, std::uint32_t end) noexcept {
    registry_state& r = s.registry();
    // Opportunistic: if another process holds the registry lock (it may be stopped, with
    // SIGSTOP or a debugger), skip this round rather than make a bounded wait unbounded. A dead
    // holder is still taken over: the lock watches its owner across these attempts.
    locked guard(r, deadline(timeout_t(std::chrono::duration<double>(0))));
    if (!guard.owns()) return 0;
    return drop_dead(r, end, queue_of(s));
}

std::uint64_t held_in_slots(const segment& s, std::uint32_t end) noexcept {
    registry_state& r = s.registry();
    locked guard(r, deadline(timeout_t(std::chrono::duration<double>(0))));
    if (!guard.owns()) return holders(s, end);
    drop_dead(r, end, queue_of(s));
    return counted_in_slots(r, end);
}

std::uint32_t reap_any(const segment& s) noexcept {
    registry_state& r = s.registry();
    // Opportunistic: if another process holds the registry lock (it may be stopped, with
    // SIGSTOP or a debugger), skip this round rather than make a bounded wait unbounded. A dead
    // holder is still taken over: the lock watches its owner across these attempts.
    locked guard(r, deadline(timeout_t(std::chrono::duration<double>(0))));
    if (!guard.owns()) return 0;
    return drop_dead(r, any_end, queue_of(s));
}

verdict retire(const segment& s, bool need_dead, const std::function<bool()>& then,
               process_identity* live) noexcept {
    registry_state& r = s.registry();
    locked guard(r, holder_deadline());
    if (!guard.owns()) return verdict::busy;
    auto& retired = s.header().retired;
    const bool again = retired.load(std::memory_order_acquire) != 0;
    const std::uint32_t dead = drop_dead(r, any_end, queue_of(s));
    for (auto& slot : r.slots)
        if (slot.pid.load(std::memory_order_relaxed) != 0) {
            if (live) *live = holder_of(slot);
            return verdict::held;
        }
    for (auto& p : r.pending)
        if (p.token.load(std::memory_order_relaxed) != 0) {
            if (live) *live = parent_of(p);
            return verdict::held;
        }
    if (need_dead && dead == 0 && !again) return verdict::unheld;
    retired.store(1, std::memory_order_release);
    SHMQ_TEST_HOOK("registry.retired");
    if (then()) return verdict::retired;
    // Nobody attached meanwhile (attach needs this lock), so clearing it is unobservable.
    if (!again) retired.store(0, std::memory_order_release);
    return verdict::kept;
}

holder_slot* slot_of(const segment& s, const process_identity& who) noexcept {
    registry_state& r = s.registry();
    locked guard(r, holder_deadline());
    if (!guard.owns()) return nullptr;
    return find(r, who);
}

} // namespace shmq::detail::registry
