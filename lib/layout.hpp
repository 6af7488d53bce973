// SPDX-License-Identifier: BSL-1.0
// The bytes of a shmq segment, in one place. Every process maps the same layout, so these
// structs are the wire format between processes: change one and bump layout_version.
//
//   offset 0                  segment_header   what this is, sizes, fingerprint of T, ready flag
//   align 64                  registry_state   who holds which end (endpoint accounting)
//   align 64                  queue_state      counters that only the queue family uses
//   align 64, per channel     channel_state    leases, positions and wake-ups of one direction
//   align 64, per channel     ring bytes       `capacity` bytes of records
// Object kinds (locks, events, ..., shared values) have instead:
//   offset 0                  segment_header
//   align 64                  the object area  `capacity` bytes (sync/object_layout.hpp)
//
// Everything is zero-initialized by the creator before `ready` is set; every field a reader takes
// as a size or an offset is re-validated on use (segment.cpp, channel.cpp).
#pragma once

#include "sync/event.hpp"
#include "sync/robust_mutex.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shmq::detail {

inline constexpr std::uint64_t segment_magic = 0x31474553'514d4853ull;   // "SHMQSEG1"
inline constexpr std::uint32_t layout_version = 8;   // bump on any change below
inline constexpr std::size_t cache_line = 64;

/// segment_header::flags.
enum segment_flags : std::uint32_t {
    /// JoinableQueue with options::redeliver: records stay in the ring until task_done
    /// (retained.hpp); writers' room ends at channel_state::release instead of head.
    retain_records = 1,
};

enum class segment_kind : std::uint32_t {
    pipe = 1, queue = 2, simple_queue = 3, joinable_queue = 4,
    // Synchronization objects and shared values (<shmq/sync.hpp>, <shmq/shared_value.hpp>): no
    // registry, no channels, no rings; the header is followed by one object area
    // (sync/object_layout.hpp) whose size is in segment_header::capacity.
    lock = 5, rlock = 6, semaphore = 7, bounded_semaphore = 8, event = 9, condition = 10,
    barrier = 11, value = 12, array = 13,
};
inline constexpr bool is_object_kind(std::uint32_t k) noexcept {
    return k >= static_cast<std::uint32_t>(segment_kind::lock) &&
           k <= static_cast<std::uint32_t>(segment_kind::array);
}
inline constexpr bool is_object_kind(segment_kind k) noexcept {
    return is_object_kind(static_cast<std::uint32_t>(k));
}
/// The largest object area (a shared Array), so that sizes read from a header stay sane.
inline constexpr std::uint64_t max_object_bytes = std::uint64_t{1} << 40;

/// Ring sizes: a power of two between these bounds. The upper bound keeps the message count
/// of a position (28 bits) from wrapping: even 8-byte records cannot fill 2^28 slots.
inline constexpr std::uint64_t min_capacity = 4096;
inline constexpr std::uint64_t max_capacity = std::uint64_t{1} << 30;

struct segment_header {
    std::uint64_t magic;            // segment_magic
    std::uint32_t version;          // layout_version
    std::uint32_t kind;             // segment_kind
    std::uint64_t total_size;       // bytes of the whole mapping
    std::uint64_t type_fingerprint; // of T for typed objects, 0 for a Pipe
    std::uint64_t capacity;         // ring bytes per channel; object kinds: bytes of the object area
    std::int64_t maxsize;           // queue item bound, <= 0 unbounded; Array: element count
    std::uint32_t flags;            // segment_flags, fixed at create
    std::uint32_t channels;         // 1 or 2; 0 for object kinds
    std::atomic<std::uint32_t> ready;  // set (release) by the creator once everything above is written
    std::uint64_t pidns;            // the creator's pid namespace (liveness.hpp); 0 = unknown
    // Set (never cleared) by any process of another pid namespace that opens the segment. Pids in
    // lease words then may belong to another namespace, so a lease owner that looks dead is not
    // taken over (liveness::unknown); registry slots carry their own namespace and stay exact.
    std::atomic<std::uint32_t> foreign_pidns;
    // Named objects with a registry (not the object kinds): set once, 0 -> 1, under the registry
    // lock, by a process that found no live holder and is about to unlink or replace the name
    // (lib/lifecycle.cpp: `shmq gc --yes`, create with if_exists::replace_stale). Read under the
    // same lock by registry::attach, which then refuses (retired_error) so an opener that
    // mapped the old object goes back to the name and finds the new one or none. Never cleared:
    // a retired segment is never used again. A retirer killed after setting it leaves the name
    // in place with a segment nobody can open (not_found_error); the next gc or replace_stale
    // removes it, since a retired segment is stale by definition.
    std::atomic<std::uint32_t> retired;
};

/// Endpoint accounting. An "end" is the writer (2c) or reader (2c+1) side of channel c.
/// Each process that holds ends owns one slot; `holders[e]` is the sum of the slots' counts,
/// kept so the hot path reads one word. Writers of slots and holders: only under `lock`, slot
/// counts first, holders second, so a takeover after a death can recompute holders from slots.
inline constexpr std::size_t max_ends = 4;
inline constexpr std::size_t max_holders = 256;

struct holder_slot {
    std::atomic<std::uint32_t> pid;         // 0 = free; written last when a slot is taken or freed
    std::uint32_t reserved;
    std::atomic<std::uint64_t> start;       // process start time (pid reuse guard)
    std::atomic<std::uint64_t> pidns;       // the holder's pid namespace (liveness.hpp)
    std::atomic<std::uint32_t> count[max_ends];
    // JoinableQueue accounting of this process (A.10), so a reaper can undo what a dead process
    // left counted in queue_state::unfinished. Written only by the slot's own process, with
    // atomic RMWs outside the registry lock (a death mid-update leaves a whole value); read and
    // zeroed by the reaper under the registry lock once the process is certainly dead, and
    // zeroed when the slot is freed or claimed. Zero in Pipe segments.
    //   unpublished: items this process counted in `unfinished` at put and has not yet published
    //                to the ring (+1 before `unfinished` += 1 in put; -1 by the channel just
    //                before the tail store that publishes the item, channel.hpp `uncounter`).
    //   taken:       items this process got and has not task_done'd (+1 after a get returned
    //                an item; -1, clamped at 0, by this process's task_done).
    std::atomic<std::uint64_t> unpublished;
    std::atomic<std::uint64_t> taken;
    // The biased writer lease of channel c (lib/bias.hpp): 1 while this process's bias holder is
    // inside a message it writes without taking the lease, 0 otherwise. Written only by that
    // holder, with plain stores (the whole point: no locked instruction per message); read by a
    // revoker after its membarrier. Per process, so that a holder that lost its bias and has
    // not noticed yet can only ever write its own word. Zeroed when the slot is claimed.
    std::atomic<std::uint32_t> bias_busy[2];
};

/// Ends a process holds on behalf of a child it is forking, until the child's own slot exists
/// (see endpoint.hpp). `token` identifies the fork within its parent (a per-process counter);
/// parent_pid + parent_start + parent_pidns identify the parent, so a recycled pid's forks never
/// match a dead parent's entries. token 0 = free.
inline constexpr std::size_t max_pending_forks = 64;

struct pending_fork {
    std::atomic<std::uint64_t> token;
    std::atomic<std::uint32_t> parent_pid;    // who parked it: if it dies, reap() drops the entry
    std::atomic<std::uint64_t> parent_start;
    std::atomic<std::uint64_t> parent_pidns;
    std::atomic<std::uint32_t> count[max_ends];
};

struct alignas(cache_line) registry_state {
    robust_mutex lock;
    std::atomic<std::uint32_t> holders[max_ends];   // slots' counts plus pending forks' counts
    // How many times registry::attach() succeeded (opens and creations; fork settlements do not
    // count). Written under `lock`, only grows. Read without the lock by a Client waiting for
    // its connection to be accepted (listener.cpp): a sticky "someone opened the other ends",
    // which a holder count is not (an accepter may close again before the client looks).
    std::atomic<std::uint64_t> opens;
    holder_slot slots[max_holders];
    pending_fork pending[max_pending_forks];
};

/// Queue-family state. `unfinished` counts put items not yet marked done (JoinableQueue);
/// `all_done` wakes join(). Written with atomic RMWs only, so a death mid-update is harmless.
/// Writers of `unfinished`: put (+1), task_done (-1), a failed put (-1), and the reaper of a dead
/// holder (-(unpublished + taken) of its slot, under the registry lock); it pairs with the slots'
/// counters (holder_slot), which say how much of it each live process accounts for.
struct alignas(cache_line) queue_state {
    std::atomic<std::int64_t> unfinished;
    event all_done;
    // Items got by processes that died before task_done (the reaper adds a dead slot's `taken`,
    // under the registry lock). Only grows; shown by `shmq stat` and lost_to_dead_consumers().
    std::atomic<std::uint64_t> lost_to_dead_consumers;
    // retain_records only (retained.hpp): a hint that records of dead takers wait to be
    // delivered again. The reaper adds what it marks; a get that claims one subtracts one, and
    // one that finds none resets it. Gets look between release and head only while it is > 0.
    std::atomic<std::uint64_t> redeliverable;
    // retain_records only: items delivered again after their taker died (only grows).
    std::atomic<std::uint64_t> redelivered;
};

/// Who polls a channel's reading side through a file descriptor (Connection::fileno(),
/// Queue::fileno(); lib/poller.hpp, doc/design.md "Pollable handles"). One line, read by a
/// notifier only after it found the data event's sleeper bit set (a poller keeps that bit set
/// while it waits), so a writer with no sleeper and no poller never touches it.
///   keys[i]  the 64-bit key of one poller's socket (the abstract AF_UNIX datagram address
///            "shmq.poll.<key in hex>"); 0 = free. Written by the poller (compare-exchange 0 ->
///            key when it registers, key -> 0 when it goes) and by any notifier that finds
///            nobody bound at that address (ECONNREFUSED: its process is gone), key -> 0.
///   count    >= the number of non-zero keys (a hint: 0 lets a notifier skip the scan). Raised
///            before a key is stored, lowered after one is cleared, so a death between the two
///            leaves it too high (one needless scan per wake-up round), never too low.
/// Pairs with channel_state::data: a poller stores its key, then (release fence) sets the sleeper
/// bit; a notifier that clears that bit (acquire fence) then reads the keys.
inline constexpr std::size_t max_pollers = 7;

struct alignas(cache_line) poller_table {
    std::atomic<std::uint32_t> count;
    std::uint32_t reserved;
    std::atomic<std::uint64_t> keys[max_pollers];
};
static_assert(sizeof(poller_table) == cache_line, "poller_table: one cache line");

/// Ring positions pack a byte count (low 36 bits) and a message count (high 28 bits) into one
/// word, so one atomic store publishes both: a writer killed between the two cannot leave the
/// item count and the bytes disagreeing.
inline constexpr unsigned position_byte_bits = 36;
inline constexpr std::uint64_t position_byte_mask = (std::uint64_t{1} << position_byte_bits) - 1;
inline constexpr std::uint64_t position_msg_mask = (std::uint64_t{1} << (64 - position_byte_bits)) - 1;

/// One direction. Writers hold `wlock` (the writer lease) for a whole message, readers hold
/// `rlock` (the reader lease) for a whole message, so pieces of two messages never interleave.
/// Between the current writer and the current reader the ring is single-producer
/// single-consumer: the writer publishes `tail` with release after copying, the reader
/// publishes `head` with release after copying out. Each side keeps a local copy of the other's
/// position and reloads it only when that copy says "full" or "empty". The events sit on lines
/// of their own: they are read on every publication but written only when someone goes to sleep.
struct alignas(cache_line) channel_state {
    // The leases have lines of their own: only writers (resp. readers) touch them, so taking an
    // uncontended lease never waits for the other side's cache.
    robust_mutex wlock;
    // Bumped by every writer right after it takes the writer lease (the line is already its own).
    // A handle's cached copy of head (channel.hpp) is trusted only if wgen still holds the value
    // that handle left: then no other writer moved tail since, so the copy is at most one ring
    // behind tail and the 36-bit arithmetic cannot alias, however much traffic passed meanwhile.
    std::atomic<std::uint64_t> wgen;
    alignas(cache_line) robust_mutex rlock;
    // The same for readers and their cached copy of tail.
    std::atomic<std::uint64_t> rgen;
    // Written by the reader-lease holder: head + 1 while it lends the record at head in place
    // (Connection::recv_view), 0 otherwise (records start 8-aligned, so head + 1 is never 0).
    // Set after the pads in front are consumed, cleared after head moves past the record. A
    // reader that takes the lease and finds it equal to head + 1 knows the viewer died holding
    // the view and skips that record: a message that killed its reader is not handed to the
    // next one (at most once, channel.cpp skip_dead_view).
    std::atomic<std::uint64_t> viewing;
    // Written by the writer-lease holder after each publication, read by readers that run dry.
    alignas(cache_line) std::atomic<std::uint64_t> tail;   // packed position: end of published records
    // Written by the reader-lease holder after each consumption, read by writers that run out of room.
    alignas(cache_line) std::atomic<std::uint64_t> head;   // packed position: first unconsumed record
    // Only with retain_records (retained.hpp): the first record not yet task_done'd, <= head.
    // Advanced with compare-exchange by whoever finishes the records in front of it; read by
    // writers instead of head as the end of their room.
    std::atomic<std::uint64_t> release;
    alignas(cache_line) event data;       // readers sleep here waiting for records
    alignas(cache_line) event space;      // writers sleep here waiting for room
    poller_table pollers;                 // file-descriptor pollers of `data` (see poller_table)
};

static_assert(sizeof(channel_state) == 7 * cache_line, "channel_state: seven cache lines");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "positions need lock-free 64-bit atomics");

} // namespace shmq::detail
