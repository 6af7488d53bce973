// SPDX-License-Identifier: BSL-1.0
// Pollable handles: a file descriptor that is readable whenever a read of one channel would not
// block (Connection::fileno(), Queue::fileno()). The protocol is in doc/design.md ("Pollable
// handles"); in short:
//
//  * The handle's process binds an AF_UNIX datagram socket at an abstract address
//    "shmq.poll.<key>" (no file, gone when its last holder closes it; the key is random and the
//    bind exclusive, so no two live sockets share one) and stores the key in the channel's
//    poller_table (layout.hpp). Any process, related or not, can send to that address.
//  * Armed, the poller keeps the data event's sleeper bit set, like a futex sleeper. A writer
//    already checks that one word after each publication; only when it finds the bit (someone
//    sleeps or polls) does it start a wake-up round, and the round's winner also sends one byte
//    to every key in the table (poke_pollers). So writers pay nothing while nobody polls.
//  * Level-triggered: the byte stays until the polling process calls into the handle (recv, get,
//    poll, wait); rearm() then drains the socket, sets the sleeper bit again, re-checks the ring
//    and, if a read would still not block, sends itself a byte. Spurious readiness is possible
//    (another process took the message first); missed readiness is not.
//  * Dead peers: the descriptor handed out is an epoll fd holding the socket and a pidfd of each
//    process that may write (a Pipe's writer end; every holder of a queue), checked against the
//    registry's identity (pid + start time, liveness.hpp), so a peer's exit makes it readable at
//    once; rearm() then reaps the dead holder. For a Pipe that is how EOF after a SIGKILL is
//    reported; for both it covers a writer killed between publishing a message and poking
//    (readiness is never missed, even then), and a queue's dead consumer whose records become
//    deliverable again (options::redeliver). Where a pidfd cannot be had (a peer in another pid
//    namespace, no pidfd_open), a 50 ms timerfd stands in: spurious readiness at most every
//    50 ms, dead peers noticed within ~50 ms.
#pragma once

#include "channel.hpp"
#include "layout.hpp"
#include "liveness.hpp"
#include "segment.hpp"

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace shmq::detail {

/// Sends a byte to every poller of the table. Called by a notifier that has just started a
/// wake-up round of the data event (event::notify() returned true). Never throws; clears the
/// keys of pollers whose socket is gone.
void poke_pollers(poller_table& table) noexcept;

/// Pokes the pollers of every channel of `seg`: a new holder (an open, or a forked child) is
/// about to use it. A poller watches the deaths of the holders it knows of (see above); the poke
/// makes it look again, so a newcomer killed right after publishing is watched too. Costs one
/// load per channel when nobody polls. Never throws; async-signal-safe (run in atfork handlers).
void announce_holder(const segment& seg) noexcept;

class poller {
public:
    /// `watch_end`: the registry end whose holders are the processes that may write (a Pipe's
    /// writer end, whose holders also make EOF; queue_handle_end for a queue). Throws error
    /// (socket, epoll: the call and errno; every poller slot of the channel is taken by a live
    /// poller).
    poller(std::shared_ptr<segment> seg, channel& ch, std::uint32_t watch_end);
    ~poller();
    poller(const poller&) = delete;
    poller& operator=(const poller&) = delete;

    /// The descriptor to poll (an epoll fd): readable when a read would not block.
    int fd() const noexcept { return epfd_; }
    /// Drains what made the fd readable, reaps dead peers, arms again and makes the fd readable
    /// if a read would still not block. Returns that. Called after every read through the
    /// handle and by poll/wait. Never throws.
    bool rearm() noexcept;
    /// Before a read: if a peer's pidfd fired, reaps it now, so the read sees EOF at once
    /// instead of after a liveness slice. Never throws.
    void settle() noexcept;
    /// The process this poller belongs to (a forked child makes its own).
    std::uint32_t owner_pid() const noexcept { return pid_; }
    /// In a forked child (atfork handler): closes this process's copies of the descriptors, so
    /// the parent's socket dies with the parent. The object stays, inert, until its handle goes.
    void forget_in_child() noexcept;

private:
    struct peer {
        process_identity who;
        int pidfd;
    };
    bool drain() noexcept;        // true when a newcomer announced itself (announce_holder)
    bool reap_fired() noexcept;   // true when a peer ended (and was reaped)
    void track_peers(bool force) noexcept;
    /// The periodic timer that turns the fd readable every `period_ns` (0: off).
    void set_timer(long period_ns) noexcept;
    void poke_self() noexcept;

    std::shared_ptr<segment> seg_;
    channel& ch_;
    poller_table& table_;
    std::uint32_t watch_end_;
    std::uint32_t pid_;
    std::uint64_t key_ = 0;
    std::atomic<std::uint64_t>* slot_ = nullptr;
    int sock_ = -1, epfd_ = -1, timer_ = -1;
    long timer_ns_ = 0;          // the timer's period, 0 when off
    bool watch_blind_ = false;   // a holder not watched by a pidfd: the timer looks for the dead
    std::uint32_t seen_holders_ = ~0u;   // registry holders of watch_end_ when peers_ was made
    std::vector<peer> peers_;
    std::mutex mutex_;                   // threads of this process share the handle
};

/// A handle's poller, made on the first fileno() and per process: a forked child that inherited
/// the handle makes its own (the parent's socket and registration stay the parent's).
class poll_slot {
public:
    /// This process's poller, or null when this process never asked for fileno(): what every
    /// read checks (one load) to know whether it must re-arm.
    poller* active() const noexcept {
        poller* p = current_.load(std::memory_order_acquire);
        return p && p->owner_pid() == self_pid() ? p : nullptr;
    }
    /// This process's poller, made by `make` if needed. Throws what make throws.
    template <class Make> poller& get(Make make) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (poller* p = active()) return *p;
        std::unique_ptr<poller> fresh = make();
        inherited_ = std::move(own_);   // a parent's copy: freed with the handle, not under a reader
        own_ = std::move(fresh);
        current_.store(own_.get(), std::memory_order_release);
        return *own_;
    }
    /// Drops the pollers (close(); the channel they watch goes next). Never throws.
    void reset() noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        current_.store(nullptr, std::memory_order_release);
        own_.reset();
        inherited_.reset();
    }

private:
    std::atomic<poller*> current_{nullptr};
    std::mutex mutex_;
    std::unique_ptr<poller> own_, inherited_;
};

/// Around a read through a handle that may be polled: before it, reap peers whose pidfd fired
/// (so the read sees EOF at once); after it, whatever the outcome, re-arm (level-triggered).
class poll_guard {
public:
    explicit poll_guard(const poll_slot& slot) noexcept : p_(slot.active()) {
        if (p_) [[unlikely]] p_->settle();
    }
    ~poll_guard() {
        if (p_) [[unlikely]] p_->rearm();
    }
    poll_guard(const poll_guard&) = delete;
    poll_guard& operator=(const poll_guard&) = delete;

private:
    poller* p_;
};

} // namespace shmq::detail
