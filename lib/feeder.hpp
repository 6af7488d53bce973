// SPDX-License-Identifier: BSL-1.0
// The per-process backlog of an unbounded queue and the thread that drains it (Python's feeder).
//
// put() on an unbounded queue never blocks (README, Behaviour; doc/design.md §11). When the ring
// has no room, or the writer lease is busy, or this process already has items waiting (so FIFO per
// producer holds), the encoded item is copied into this backlog and a feeder thread, started on
// demand, writes it into the ring as room appears, several items per lease hold when it can.
// An item of channel::large_item or more waits for room briefly first (direct_wait_per_mib in
// feeder.cpp); a streamed one that runs out of that time part-way parks (channel.hpp): this
// process keeps the writer lease, and only the rest is copied, for the thread to write first.
//
// Lifetime: flush() waits until the backlog is in shared memory (join_thread, handle destruction,
// process exit through atexit or a shmq::Process child's exit hook); cancel() makes every flush
// return at once and lets the process exit with the backlog lost, as cancel_join_thread does.
// Fork: a child starts with an empty backlog and no thread (the parent's pending items are
// not duplicated, as in Python), see feeder.cpp's atfork handlers.
//
// Failure: the thread never lets an exception out (that would abort the process). When a write
// throws (a corrupt ring gives broken_error, an allocation bad_alloc), the thread records the
// reason, drops this process's backlog (it can no longer be delivered in order) and ends; from
// then on put(), check() and so qsize() and join_thread() throw broken_error with that reason.
#pragma once

#include "channel.hpp"

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace shmq::detail {

/// What a feeder's thread keeps alive while it runs (the queue's state: the feeder itself, its
/// channel). Asked for a reference only when a thread starts: a shared_ptr passed to every put
/// cost two locked instructions per put in a process that has ever run a thread (libstdc++
/// counts references atomically from then on), which is most of what a biased writer saves.
class feeder_owner {
public:
    virtual std::shared_ptr<void> keep_alive() = 0;

protected:
    ~feeder_owner() = default;
};

class feeder {
public:
    /// max_messages: the ring's message bound (0 = none).
    /// what: how errors name the queue ("shmq: queue 'jobs'"). dropped: called (from the failing
    /// thread, under no lock of the channel) with how many items a failure dropped, so the
    /// queue can uncount them from JoinableQueue accounting; may be empty.
    feeder(channel& ch, std::uint64_t max_messages, std::string what = "shmq: queue",
           std::function<void(std::size_t)> dropped = {});
    ~feeder();
    feeder(const feeder&) = delete;
    feeder& operator=(const feeder&) = delete;

    /// Writes item now if nothing of this process is pending and it fits: without waiting for
    /// an item under channel::large_item, or when `block` is false; a larger item may wait
    /// for room for about as long as its copy into the backlog would take (direct_wait_per_mib,
    /// feeder.cpp), and no longer than `timeout`. Otherwise appends a copy to the backlog and
    /// starts the thread (holding owner.keep_alive() while it runs). Never waits for a
    /// reader beyond that. Throws broken_error once the thread has
    /// failed (and from the ring), error (with errno) when no thread can be started or the copy
    /// cannot be allocated; the item is then not queued.
    /// unpublished: this process's shared count of items not yet published (JoinableQueue,
    /// layout.hpp holder_slot), decremented with pending_ just before each item is published;
    /// null for other queues. The same pointer on every put of this process.
    void put(std::span<const std::byte> item, bool block, const timeout_t& timeout,
             feeder_owner& owner, std::atomic<std::uint64_t>* unpublished = nullptr);
    /// Throws broken_error when the thread has failed (see above).
    void check() const;
    /// Items of this process not yet in shared memory (backlog plus the batch being written).
    std::size_t pending() const noexcept { return pending_.load(std::memory_order_acquire); }
    /// Blocks until pending() == 0, or returns at once after cancel(). Never throws.
    void flush() noexcept;
    /// Blocks until pending() == 0 or the deadline passes (false); cancel() does not end it.
    /// For a loan (Queue::loan), which writes straight into the ring and must not overtake this
    /// process's earlier items. Throws broken_error when the thread has failed (see above).
    bool drain(const deadline& until);
    /// Lets flush() and the process's exit stop waiting; the backlog may then be lost.
    void cancel() noexcept;
    bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }
    /// Whether stop() let a cancelled thread go on alone (its queue handle is gone): the queue
    /// then ends the thread's waits once nobody can read the ring any more (queue_shm.cpp).
    bool orphaned() const noexcept { return orphaned_.load(std::memory_order_acquire); }
    /// Ends the thread: joins it (after flush) or, when cancelled, detaches it. Never throws.
    void stop() noexcept;
    /// Tells a thread waiting on an empty backlog to end now instead of after idle_linger (it
    /// still writes anything put meanwhile first), and joins a thread that has nothing left to
    /// write (or has ended by itself); one still writing is not waited for. Never throws.
    void end_lingering() noexcept;

private:
    friend struct feeder_list;
    void run(std::shared_ptr<void> owner) noexcept;
    void run_loop();
    void reset_after_fork() noexcept;

    channel& ch_;
    const std::uint64_t max_messages_;
    const std::string what_;
    std::mutex m_;
    std::condition_variable work_;      // the thread waits here for items or stop
    std::condition_variable drained_;   // flush() waits here
    std::deque<std::vector<std::byte>> backlog_;
    // Under m_: buffers of items the thread has published, for put() to copy the next items
    // into: a burst of large puts then allocates (and page-faults) only its first few buffers.
    // Kept while they total at most spare_bytes_max (spare_bytes_ is their capacity) and number
    // at most spare_max; dropped when the thread ends (idle_linger after running dry), so an
    // idle queue holds no memory. A byte budget rather than a count: a producer outrunning the
    // ring fills a backlog for a whole time slice while the thread (on the same CPU) waits, and
    // every buffer not kept is a fresh one to page-fault next time, a 1 MiB item's worth of
    // faults costing more than its two copies.
    std::vector<std::vector<std::byte>> spare_;
    std::size_t spare_bytes_ = 0;
    static constexpr std::size_t spare_max = 256;
    static constexpr std::size_t spare_bytes_max = std::size_t{64} << 20;
    void keep_spare(std::vector<std::byte>&& buf);   // under m_: a published item's buffer, if it fits the limits
    // For qsize(): items of this process not yet visible in the ring. The channel decrements it
    // just before it publishes them (so it never overlaps the ring's count).
    std::atomic<std::size_t> pending_{0};
    // The `unpublished` of put(): set by put() (always the same value within a process; reset in
    // a forked child), read by the thread for each batch.
    std::atomic<std::atomic<std::uint64_t>*> unpublished_{nullptr};
    const std::function<void(std::size_t)> dropped_;
    // Under m_: items the thread took from the backlog and has not yet published. flush() waits
    // for backlog and in-flight to be empty, i.e. for the items to be published, not just counted.
    std::size_t in_flight_ = 0;
    bool drained() const noexcept { return backlog_.empty() && in_flight_ == 0 && !parked_; }
    // The rest of a stream put() began and parked (channel stream_wait::park): this process
    // holds the writer lease until the thread writes it, so the thread writes it before any
    // other item. Written by put() and the thread under m_; parked_ also read without m_ by the
    // thread between its writes.
    std::vector<std::byte> parked_rest_;
    std::atomic<bool> parked_{false};
    void finish_parked();   // the thread, without m_: writes parked_rest_
    std::atomic<bool> cancelled_{false};
    // Set by stop() when it detaches a cancelled thread still writing; read by that thread and
    // by the queue's channel check (queue_shm.cpp). Never cleared except in a forked child
    // (which has no such thread): the handle that could clear it is gone.
    std::atomic<bool> orphaned_{false};
    // Set by the thread (after writing failure_ under m_) when a write threw; never cleared
    // except in a forked child. Read by put()/check() in any thread.
    std::atomic<bool> failed_{false};
    std::string failure_;   // under m_: why the thread failed
    void fail(const char* why) noexcept;   // the thread's catch: record, drop the backlog, stop
    bool running_ = false;
    // Under m_: set by stop() and end_lingering() so that a thread lingering on an empty
    // backlog ends at once instead of after idle_linger; cleared by put() when it starts one.
    bool stop_ = false;
    std::thread thread_;
    feeder* prev_ = nullptr;
    feeder* next_ = nullptr;
};

} // namespace shmq::detail
