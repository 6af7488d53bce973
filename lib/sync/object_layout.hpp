// SPDX-License-Identifier: BSL-1.0
// The shared bytes of the synchronization objects and shared values (<shmq/sync.hpp>,
// <shmq/shared_value.hpp>): the object area of a segment of an object kind (layout.hpp). Like
// layout.hpp, these structs are the wire format between processes: every field is valid when
// all-zero except where the creator writes it before publishing `ready`.
//
// Everything is built on the two primitives of lib/sync/: robust_mutex (a 64-bit owner word with
// dead-owner takeover) and event (a futex event count without lost wake-ups). Waits sleep at most
// a liveness slice at a time (deadline.hpp), so none is unbounded.
#pragma once

#include "liveness.hpp"
#include "sync/event.hpp"
#include "sync/robust_mutex.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shmq::detail {

/// Lock, and the lock of a Value/Array.
struct lock_state {
    robust_mutex mutex;
    // Written by each acquirer right after it got the mutex (1: it took the mutex over from a
    // dead holder, 0: a normal acquire); read by the holder. Only the holder writes it.
    std::atomic<std::uint32_t> owner_died;
    std::uint32_t reserved;
};
static_assert(sizeof(lock_state) == 16);

/// RLock, and the lock of a Condition. The process owning `mutex` and the thread `owner_tid` in
/// it hold the lock `count` times. owner_tid and count are written only by the holder (after it
/// got the mutex, before it releases it); a takeover resets them.
struct rlock_state {
    robust_mutex mutex;
    std::atomic<std::uint32_t> owner_died;   // as lock_state
    std::atomic<std::uint32_t> count;
    std::atomic<std::uint64_t> owner_tid;    // gettid() of the holding thread; 0 = none
};
static_assert(sizeof(rlock_state) == 24);

/// Semaphore and BoundedSemaphore. No owner (as in Python): a dead process's acquisitions stay.
struct semaphore_state {
    // Changed only with compare-exchange (acquire: -1 when > 0; release: +n, bounded by
    // maxvalue), seq_cst so that release's notify needs no fence (event.hpp).
    std::atomic<std::uint32_t> value;
    std::uint32_t maxvalue;   // BoundedSemaphore: the initial value; 0 = unbounded. Set at creation.
    event posted;             // acquirers sleep here
    std::uint32_t reserved;
};

/// Event: word = (number of set() calls that changed clear to set) << 1 | flag. A waiter returns
/// true when the flag is set or the count moved since it began (a set() then clear() while it
/// slept still wakes it with true, as Python's Event.wait does).
struct event_state {
    std::atomic<std::uint32_t> word;
    event changed;
};

/// One waiting party of a Condition or a Barrier: who waits, so that a waiter that died can be
/// found without its help. state 0 free, 1 being filled by its claimer, 2 waiting, 3 notified
/// (Condition). pid/start/pidns/seq are written by the claimer while state is 1 and published by
/// the release store of 2. heartbeat (steady_clock ticks, CLOCK_MONOTONIC: the same in every
/// process) is refreshed by the waiter after each sleep slice: others probe /proc only for a slot
/// whose heartbeat is stale, so live waiters cost a clock read, not a /proc read.
struct waiter_slot {
    std::atomic<std::uint32_t> state;
    std::atomic<std::uint32_t> pid;
    std::atomic<std::uint64_t> start;
    std::atomic<std::uint64_t> pidns;
    std::atomic<std::uint64_t> seq;         // Condition: arrival order (notify wakes the oldest)
    std::atomic<std::int64_t> heartbeat;
};
static_assert(sizeof(waiter_slot) == 40);

enum waiter_slot_state : std::uint32_t { slot_free = 0, slot_filling = 1, slot_waiting = 2, slot_notified = 3 };

inline constexpr std::size_t max_condition_waiters = 128;
inline constexpr std::size_t max_barrier_parties = 256;

/// Condition: an RLock, plus the table of waiters. A waiter claims a slot while holding the lock,
/// releases the lock and sleeps until its slot says notified (or its timeout). notify(n), with the
/// lock held, marks the n oldest live waiting slots notified and wakes `changed`.
struct condition_state {
    rlock_state lock;
    std::atomic<std::uint64_t> next_seq;   // written under the lock
    event changed;
    std::uint32_t reserved;
    waiter_slot slots[max_condition_waiters];
};

/// Barrier: threading.Barrier's state machine, under `mutex`, with the waiting parties recorded
/// in `slots` (count = occupied slots), so that a party that died inside wait() is noticed by
/// the others (its slot's heartbeat stops, a probe says dead) and breaks the barrier.
enum barrier_phase : std::uint32_t {
    barrier_filling = 0, barrier_acting = 1, barrier_draining = 2, barrier_resetting = 3,
    barrier_broken = 4,
};
struct barrier_state {
    robust_mutex mutex;
    std::uint32_t parties;                   // set at creation
    std::atomic<std::uint32_t> phase;        // barrier_phase; written under mutex
    std::atomic<std::uint32_t> count;        // parties inside wait(); written under mutex
    std::atomic<std::uint32_t> reserved;
    std::atomic<std::uint64_t> generation;   // +1 each time the barrier trips; written under mutex
    std::atomic<std::int64_t> timeout_ns;    // the default timeout; < 0 = none. Set at creation.
    event changed;                           // phase or generation changed
    std::uint32_t reserved2;
    waiter_slot slots[max_barrier_parties];
};

/// Value<T> and Array<T>: a lock, then the elements at value_data_offset.
inline constexpr std::size_t value_data_offset = 64;

} // namespace shmq::detail
