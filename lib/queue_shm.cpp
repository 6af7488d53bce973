// SPDX-License-Identifier: BSL-1.0
// The shared-memory backend of Queue, SimpleQueue and JoinableQueue (queue_impl.hpp): one channel
// (one ring) in one segment.
//
//  * maxsize bounds the number of items in the ring (the channel's message bound), as Python's
//    semaphore does; puts on a bounded queue wait for a free slot up to their timeout.
//  * Unbounded Queue/JoinableQueue puts never block: see feeder.hpp. SimpleQueue has no feeder:
//    its put waits for room, as Python's does.
//  * JoinableQueue counts unfinished items in shared memory; put counts an item before it
//    becomes visible (so a fast consumer's task_done never finds zero) and uncounts it if the
//    put fails.
//  * Every handle registers its process as a holder (endpoint, queue_handle_end), so a forked
//    child has a slot of its own. In that slot a JoinableQueue process accounts for what it alone
//    can uncount (layout.hpp holder_slot): `unpublished` (counted at put, not yet in the ring:
//    its backlog) and `taken` (got, not yet task_done'd). When it dies, the reaper (registry.cpp,
//    run by join() every liveness slice) takes both off `unfinished` and adds `taken` to
//    lost_to_dead_consumers, so join() stops waiting for items nobody can finish.
//    Crash windows left (each a few instructions wide, under SIGKILL of that process):
//      - put, between `unpublished` += 1 and `unfinished` += 1: the reaper uncounts one item
//        that was never counted (join() may return one item early). Chosen over the other order,
//        whose window would leave one item counted for ever (join() would never return).
//      - publication, between the channel's `unpublished` -= 1 and its tail store (channel.cpp):
//        the item is counted but never arrives;
//      - get, between the reader's head store and `taken` += 1 (adjacent, under the reader lease
//        in channel.cpp): the item is counted but nobody has it.
//        (Counting before the read instead would uncount items of consumers killed while
//        blocked in get(), a window as long as the wait.)
//        These two would leave join() waiting for ever; join() repairs them: once the queue is
//        quiet (no counts in any slot, the ring empty, no live lease holder: quiet() below) for
//        two looks a liveness slice apart, whatever `unfinished` still holds belongs to nobody
//        and is set to 0.
//      - task_done, between `unfinished` -= 1 and `taken` -= 1: the item is uncounted twice.
//    And a task_done by another process than the getter leaves the getter's `taken` one too
//    high (task_done names no item): if the getter then dies, one item is uncounted twice and
//    counted lost. Uncounting is clamped at zero.
#include "queue_impl.hpp"

#include "bias.hpp"
#include "channel.hpp"
#include "endpoint.hpp"
#include "feeder.hpp"
#include "lifecycle.hpp"
#include "registry.hpp"
#include "retained.hpp"
#include "liveness.hpp"
#include "poller.hpp"
#include "segment.hpp"
#include "sync/wait_loop.hpp"

#include <algorithm>
#include <chrono>
#include <optional>

namespace shmq::detail {
namespace {

// The message count of a ring position has 28 bits; keep maxsize well inside it.
constexpr std::int64_t maxsize_limit = (std::int64_t{1} << 27) - 1;

segment_params params_for(queue_flavor flavor, std::int64_t maxsize, const options& opts,
                          std::uint64_t fp) {
    if (maxsize > maxsize_limit)
        throw value_error("shmq: maxsize " + std::to_string(maxsize) + " exceeds the limit of " +
                          std::to_string(maxsize_limit) + " (use maxsize <= 0 for unbounded)");
    segment_params p;
    p.kind = static_cast<segment_kind>(flavor);
    p.channels = 1;
    p.capacity = opts.capacity;
    p.type_fingerprint = fp;
    p.maxsize = flavor == queue_flavor::simple ? 0 : std::max<std::int64_t>(maxsize, 0);
    if (opts.redeliver) {
        if (flavor != queue_flavor::joinable)
            throw value_error("shmq: options::redeliver applies to JoinableQueue only");
        p.flags |= retain_records;
    }
    return p;
}


// join()'s repair of a count that nothing can bring down any more (the adjacent-step crash
// windows above, and any other way a process dies between two accounting steps).
//
// Every item counted in `unfinished` is, at any instant, in one of these places: a live slot's
// `unpublished` (its backlog), a lease window (between two steps under the writer or reader
// lease), the ring (between tail and head, or head and release with retained records), or a live
// slot's `taken`; or it is counted in no slot yet (put, before `unfinished` += 1: then it is not
// in `unfinished` either). A snapshot that finds every slot's counters zero, the ring empty, and
// no lease held by a process that may be alive proves that what `unfinished` holds belongs to
// nobody: those items died in a window with their process. Taken twice, a liveness slice apart,
// with nothing moved in between, the count is then set to 0 by a compare-exchange from exactly
// the value seen, so a put or task_done that lands meanwhile makes it fail.
//
// Why the reads need no lock: they run in the order gens+owners, unfinished, slots, positions,
// gens+owners. Every lease acquisition bumps its gen (channel.cpp claim_lease), so equal gens and
// free-or-dead owners at both ends mean no live process was inside a lease window at any point of
// the snapshot. A put's `unpublished` += 1 precedes its `unfinished` += 1, and `unfinished` is
// read before the slots, so an item the count includes is seen in a slot unless it has left the
// slot through a lease window (excluded) or a task_done (which lowers `unfinished` first, so the
// compare-exchange fails).
struct quiet_snapshot {
    std::int64_t unfinished;
    std::uint64_t tail, head, release, wgen, rgen;
    bool operator==(const quiet_snapshot&) const = default;
};

std::optional<quiet_snapshot> quiet(const segment& seg) noexcept {
    const channel_state& ch = seg.channel(0);
    const std::atomic<std::uint32_t>* foreign = &seg.header().foreign_pidns;
    auto lease_free = [&](const robust_mutex& m) {
        const std::uint64_t owner = m.owner();
        return owner == 0 || robust_mutex::owner_dead(owner, foreign);
    };
    // A biased writer takes no lease per message and bumps no gen (bias.hpp): take the bias
    // away first, with no more wait than the revoker's short spin (a holder still inside a
    // message then makes this snapshot fail). Its next message takes the lease the plain way.
    const std::uint64_t w = ch.wlock.owner();
    if (w & robust_mutex::biased_bit) {
        writer_revoker revoker(seg, 0);
        if (!revoker.revoke(w, deadline(timeout_t(std::chrono::duration<double>(0)))))
            return std::nullopt;
    }
    const std::uint64_t wgen = ch.wgen.load(std::memory_order_acquire);
    const std::uint64_t rgen = ch.rgen.load(std::memory_order_acquire);
    if (!lease_free(ch.wlock) || !lease_free(ch.rlock)) return std::nullopt;
    quiet_snapshot q{};
    q.unfinished = seg.queue().unfinished.load(std::memory_order_acquire);
    if (q.unfinished <= 0) return std::nullopt;
    for (const holder_slot& s : seg.registry().slots)
        if (s.unpublished.load(std::memory_order_acquire) != 0 ||
            s.taken.load(std::memory_order_acquire) != 0)
            return std::nullopt;
    if (seg.queue().redeliverable.load(std::memory_order_acquire) != 0) return std::nullopt;
    q.tail = ch.tail.load(std::memory_order_acquire);
    q.head = ch.head.load(std::memory_order_acquire);
    q.release = ch.release.load(std::memory_order_acquire);
    if (q.head != q.tail) return std::nullopt;
    if ((seg.header().flags & retain_records) && q.release != q.tail) return std::nullopt;
    if (!lease_free(ch.wlock) || !lease_free(ch.rlock)) return std::nullopt;
    q.wgen = ch.wgen.load(std::memory_order_acquire);
    q.rgen = ch.rgen.load(std::memory_order_acquire);
    if (q.wgen != wgen || q.rgen != rgen) return std::nullopt;
    return q;
}

} // namespace

class shm_queue final : public queue_impl,
                        public feeder_owner,
                        public std::enable_shared_from_this<shm_queue> {
public:
    /// adopt: seg was just created with this process pre-attached (lifecycle::create).
    shm_queue(std::shared_ptr<segment> seg, queue_flavor flavor, bool adopt = false)
        : seg_(std::move(seg)),
          flavor_(flavor),
          maxsize_(seg_->header().maxsize),
          ep_(seg_, handle_counts(), adopt),
          ch_(seg_, 0, false) {
        if (maxsize_ < 0 || maxsize_ > maxsize_limit)
            throw broken_error("shmq: corrupt queue header (maxsize)");
        if (flavor_ != queue_flavor::simple && maxsize_ == 0)
            feeder_.emplace(ch_, 0,
                            seg_->name().empty() ? std::string("shmq: queue")
                                                 : "shmq: queue '" + seg_->name() + "'",
                            [this](std::size_t n) noexcept { uncount_unpublished(n); });
        if (feeder_) ch_.end_waits_when([this]() noexcept { return nobody_else_reads(); });
    }

    // Whether the ring can never be read again, asked by the channel after each sleep of a write
    // waiting for room: only an orphaned feeder (cancel_join_thread, then this handle dropped;
    // it keeps this object alive) can be the writer then. Nobody can read once no process can
    // open the queue by name (removed, replaced, or anonymous) and no handle that can still read
    // holds it: forked children's inherited handles count, dropped handles whose feeders go on
    // alone (this one's, and other orphans', queue_orphan_end) do not, dead holders are reaped.
    bool nobody_else_reads() const noexcept {
        if (!feeder_->orphaned() || seg_->openable_by_name()) return false;
        // Until finish() has moved this handle's count apart, it is one of the holders.
        const std::uint32_t self_count = counted_apart_.load(std::memory_order_acquire) ? 0 : 1;
        // The slots (dead holders dropped first) and the holders word agree unless the segment
        // is corrupt; then either may be anything, and a wrong one must not keep the thread for
        // ever, so the smaller count decides.
        const std::uint64_t in_slots = registry::held_in_slots(*seg_, queue_handle_end);
        return std::min<std::uint64_t>(in_slots, registry::holders(*seg_, queue_handle_end)) <=
               self_count;
    }
    // Set by finish() once this orphaned handle counts as queue_orphan_end (registry.hpp); read
    // by the feeder thread's nobody_else_reads().
    std::atomic<bool> counted_apart_{false};

    static end_counts handle_counts() noexcept {
        end_counts c{};
        c[queue_handle_end] = 1;
        return c;
    }

    bool joinable() const noexcept { return flavor_ == queue_flavor::joinable; }

    // This process's registry slot (its JoinableQueue accounting); null in a forked child that
    // found the registry full: its items are then not accounted, and if it dies they stay
    // counted (join() waits for them). Looked up once per process: the slot stays ours while
    // ep_ holds a count in it.
    holder_slot* slot() noexcept {
        const std::uint32_t pid = self_pid();
        if (slot_pid_.load(std::memory_order_acquire) != pid) {
            // Not cached when not found: the lookup may have given up on a registry lock held
            // too long (registry.cpp, holder_wait), and the next call looks again.
            holder_slot* s = registry::slot_of(*seg_, self());
            if (!s) return nullptr;
            slot_.store(s, std::memory_order_relaxed);
            slot_pid_.store(pid, std::memory_order_release);
        }
        return slot_.load(std::memory_order_relaxed);
    }

    // Takes n items off `unfinished` (clamped at zero) and wakes join() when it reaches zero.
    void uncount(std::int64_t n) noexcept {
        auto& qs = seg_->queue();
        std::int64_t v = qs.unfinished.load(std::memory_order_acquire);
        while (v > 0 && !qs.unfinished.compare_exchange_weak(v, v - std::min(v, n),
                                                             std::memory_order_acq_rel)) {
        }
        if (v > 0 && v <= n) qs.all_done.notify();
    }

    // Items counted at put that will never be published (the feeder failed and dropped them).
    void uncount_unpublished(std::size_t n) noexcept {
        if (!joinable() || n == 0) return;
        if (holder_slot* s = slot()) s->unpublished.fetch_sub(n, std::memory_order_acq_rel);
        uncount(static_cast<std::int64_t>(n));
    }

    std::shared_ptr<segment> seg_;
    queue_flavor flavor_;
    std::int64_t maxsize_;
    endpoint ep_;    // this process's holder slot; outlives the feeder (destroyed after it)
    std::atomic<std::uint32_t> slot_pid_{0};     // the process slot_ was looked up for
    std::atomic<holder_slot*> slot_{nullptr};
    mutable channel ch_;   // empty()/qsize() read it through a const handle, as before the seam
    poll_slot poll_;                 // fileno(): after ch_, so it goes first
    std::optional<feeder> feeder_;   // unbounded Queue and JoinableQueue only
    // The pid that closed this handle. A child forked afterwards may use the queue it inherited
    // (Python resets _closed after fork), so "closed" means closed by this very process.
    std::atomic<std::uint32_t> closed_by_{0};
    bool closed() const noexcept override {
        return closed_by_.load(std::memory_order_acquire) == self_pid();
    }

    void put(std::span<const std::byte> item, bool block, const timeout_t& timeout) override;
    void get(message_sink& sink, bool block, const timeout_t& timeout) override;
    std::size_t qsize() const override;
    bool empty() const override {
        // A polled handle re-arms here too: a loop woken spuriously may only look (empty()) and
        // wait again, and must not find its descriptor still readable (it would spin).
        if (poller* p = poll_.active()) [[unlikely]] p->rearm();
        return ch_.empty();
    }
    int fileno() override {
        check_open();
        // A queue has no EOF; its writers are any of its holders (queue_handle_end), whose
        // deaths the poller watches (poller.hpp).
        return poll_.get([&] {
            return std::make_unique<poller>(seg_, ch_, queue_handle_end);
        }).fd();
    }
    bool poll_ready() override {
        check_open();
        if (poller* p = poll_.active()) return p->rearm();
        return !ch_.empty();
    }
    bool full() const override {
        return maxsize_ > 0 && ch_.size() >= static_cast<std::uint64_t>(maxsize_);
    }
    std::int64_t maxsize() const noexcept override { return maxsize_; }
    void close() noexcept override;
    void check_open() const override;
    std::shared_ptr<void> keep_alive() override { return shared_from_this(); }
    bool remove_if_named_here() const noexcept override {
        return seg_->named_here() && segment::remove(seg_->name());
    }
    void join_thread() override;
    void cancel_join_thread() noexcept override {
        if (feeder_) feeder_->cancel();
    }
    void finish() noexcept override {
        // Like Python's finalizer: the backlog reaches shared memory before the handle goes,
        // unless cancel_join_thread() said otherwise.
        if (feeder_) feeder_->stop();
        if (feeder_ && feeder_->orphaned()) {
            // Its thread goes on alone: this handle holds the segment but reads no more.
            end_counts orphan{};
            orphan[queue_orphan_end] = 1;
            if (ep_.recount(orphan)) counted_apart_.store(true, std::memory_order_release);
        }
    }
    void task_done() override;
    bool join(const timeout_t& timeout) override;
    std::uint64_t lost_to_dead_consumers() const noexcept override {
        return seg_->queue().lost_to_dead_consumers.load(std::memory_order_acquire);
    }

    // Loans and views (queue_loan.hpp). The channel keeps one loan and one view per handle and
    // makes this handle's threads take turns for them (channel.hpp).
    std::span<std::byte> loan(std::size_t n, bool block, const timeout_t& timeout,
                              std::uint64_t* ticket) override;
    void commit_loan(std::uint64_t ticket, std::size_t size) noexcept override {
        ch_.commit_loan(ticket, size);
    }
    void abandon_loan(std::uint64_t ticket) noexcept override { ch_.abandon_loan(ticket); }
    std::span<const std::byte> view(bool block, const timeout_t& timeout,
                                    std::vector<std::byte>& own, bool* lent,
                                    std::uint64_t* ticket) override;
    void release_view(std::uint64_t ticket) noexcept override {
        ch_.release_view(ticket);
        // The item is gone now: a polled handle may turn unreadable (as Connection::View).
        if (poller* p = poll_.active()) p->rearm();
    }
    std::size_t max_loan() const override {
        check_open();
        return static_cast<std::size_t>(ch_.whole_limit());
    }
    void check_lendable() const;
};


std::shared_ptr<queue_impl> shm_queue_anonymous(queue_flavor flavor, std::int64_t maxsize,
                                                const options& opts, std::uint64_t fp) {
    return std::make_shared<shm_queue>(
        segment::create_anonymous(params_for(flavor, maxsize, opts, fp)), flavor);
}

std::shared_ptr<queue_impl> shm_queue_create(queue_flavor flavor, std::string_view name,
                                             std::int64_t maxsize, const options& opts,
                                             std::uint64_t fp) {
    segment_params p = params_for(flavor, maxsize, opts, fp);
    p.creator_counts = shm_queue::handle_counts();
    return lifecycle::reopen([&]() -> std::shared_ptr<queue_impl> {
        auto made = lifecycle::create(name, p, opts);
        return std::make_shared<shm_queue>(std::move(made.seg), flavor, made.fresh);
    });
}

std::shared_ptr<queue_impl> shm_queue_open(queue_flavor flavor, std::string_view name,
                                           std::uint64_t fp, const options& opts) {
    return lifecycle::reopen([&]() -> std::shared_ptr<queue_impl> {
        auto seg = segment::open_named(name, static_cast<segment_kind>(flavor), fp, opts.trust_foreign);
        return std::make_shared<shm_queue>(std::move(seg), flavor);
    });
}

bool shm_queue_remove(std::string_view name) noexcept { return segment::remove(name); }

void shm_queue::check_open() const {
    if (closed()) throw closed_error("shmq: queue is closed");
    // A child forked while every registry slot was taken is not accounted for (its dead items
    // would stay counted): refuse clearly rather than miscount.
    ep_.check_registered();
}

void shm_queue::put(std::span<const std::byte> item, bool block, const timeout_t& timeout) {
    check_open();
    shm_queue& q = *this;
    if (q.ch_.retains() && item.size() > q.ch_.whole_limit())
        throw value_error("shmq: with options::redeliver an item must fit in half the ring (" +
                          std::to_string(q.ch_.whole_limit()) + " bytes); this one has " +
                          std::to_string(item.size()));
    const bool joinable = q.joinable();
    auto& unfinished = q.seg_->queue().unfinished;
    // This process's `unpublished` first, then `unfinished` (see the crash windows above). The
    // channel takes it back off just before it publishes the item.
    std::atomic<std::uint64_t>* unpublished = nullptr;
    if (joinable) {
        if (holder_slot* s = q.slot()) unpublished = &s->unpublished;
        if (unpublished) unpublished->fetch_add(1, std::memory_order_acq_rel);
        unfinished.fetch_add(1, std::memory_order_acq_rel);
    }
    bool handed_over = false;   // published, or in the backlog (which then accounts for it)
    try {
        if (q.feeder_) {
            q.feeder_->put(item, block, timeout, q, unpublished);
            handed_over = true;
            q.seg_->check_lost();   // written into a truncated segment's stand-in: not delivered
            return;
        }
        // SimpleQueue's facade always waits (Python's has no timeouts); the `shmq` tool passes one.
        deadline until = deadline::from(block, timeout);
        const uncounter unc{nullptr, unpublished};
        const io_status st = q.ch_.write(item, until, static_cast<std::uint64_t>(q.maxsize_), &unc);
        handed_over = st == io_status::ok;
        q.seg_->check_lost();
        if (st != io_status::ok) throw full_error("shmq: queue is full");
    } catch (...) {
        if (joinable) {
            if (unpublished && !handed_over) unpublished->fetch_sub(1, std::memory_order_acq_rel);
            if (unfinished.fetch_sub(1, std::memory_order_acq_rel) == 1)
                q.seg_->queue().all_done.notify();
        }
        throw;
    }
}

void shm_queue::get(message_sink& sink, bool block, const timeout_t& timeout) {
    check_open();
    shm_queue& q = *this;
    deadline until = deadline::from(block, timeout);   // SimpleQueue: always forever (see put)
    // A JoinableQueue item is ours to task_done once read: the channel counts it in our slot
    // under the reader lease (see the crash windows above); retained records are also marked.
    std::optional<taker> tk;
    if (q.joinable()) {
        if (holder_slot* s = q.slot())
            tk.emplace(taker{static_cast<std::uint32_t>(s - q.seg_->registry().slots), &s->taken});
        else if (q.ch_.retains())
            throw error("shmq: this process is not registered as a holder of the queue");
    }
    poll_guard polled(q.poll_);
    const io_status st = q.ch_.read(sink, until, channel::no_maxlength, nullptr, tk ? &*tk : nullptr);
    q.seg_->check_lost();   // what was read may come from a truncated segment's stand-in
    if (st != io_status::ok) throw empty_error("shmq: queue is empty");
}

void shm_queue::check_lendable() const {
    check_open();
    // A JoinableQueue counts each item at put and at get (its slot's unpublished/taken, the
    // channel's uncounter and taker); loans and views do not do that accounting yet.
    if (joinable())
        throw value_error("shmq: JoinableQueue has no loans or views (task_done accounting for "
                          "them is not built); use put/get");
}

std::span<std::byte> shm_queue::loan(std::size_t n, bool block, const timeout_t& timeout,
                                     std::uint64_t* ticket) {
    check_lendable();
    if (n > ch_.whole_limit())
        throw value_error("shmq: loan: " + std::to_string(n) + " bytes is more than max_loan() = " +
                          std::to_string(ch_.whole_limit()) +
                          " (half the ring less a record header); put larger items with put()");
    const deadline until = deadline::from(block, timeout);
    // FIFO per producer: a loan writes straight into the ring, so it must not overtake what this
    // process put before and its feeder has not yet written. Waiting for the backlog (rather
    // than writing it here) keeps one writer of the backlog, the feeder, and its order.
    if (feeder_ && !feeder_->drain(until))
        throw full_error("shmq: queue is full (this process's earlier items are still waiting for room)");
    std::byte* data = nullptr;
    // A bounded queue's maxsize counts ring items: the loan waits for a free slot as put does.
    if (ch_.loan(n, until, &data, ticket, static_cast<std::uint64_t>(maxsize_)) != io_status::ok)
        throw full_error("shmq: queue is full");
    if (seg_->lost()) {   // the ring is a truncated segment's stand-in: nothing would arrive
        ch_.abandon_loan(*ticket);
        seg_->check_lost();
    }
    return {data, n};
}

std::span<const std::byte> shm_queue::view(bool block, const timeout_t& timeout,
                                           std::vector<std::byte>& own, bool* lent,
                                           std::uint64_t* ticket) {
    check_lendable();
    const deadline until = deadline::from(block, timeout);
    poll_guard polled(poll_);
    const std::byte* data = nullptr;
    std::size_t size = 0;
    switch (ch_.view(until, &data, &size, ticket)) {
    case io_status::ok:
        if (seg_->lost()) {   // read from a truncated segment's stand-in: not delivered
            ch_.release_view(*ticket);
            seg_->check_lost();
        }
        *lent = true;
        return {data, size};
    case io_status::streamed: {   // in pieces: assembled into the view's own buffer
        container_sink<std::vector<std::byte>> sink(own);
        const io_status st = ch_.read(sink, until);
        seg_->check_lost();
        if (st != io_status::ok) throw empty_error("shmq: queue is empty");
        *lent = false;
        return {own.data(), own.size()};
    }
    default:   // a queue has no EOF: timed out
        throw empty_error("shmq: queue is empty");
    }
}

std::size_t shm_queue::qsize() const {
    std::size_t n = static_cast<std::size_t>(ch_.size());
    // Like Python, qsize counts items this process has put but not yet flushed.
    if (feeder_) {
        feeder_->check();   // the feeder thread failed: its backlog is gone
        n += feeder_->pending();
    }
    seg_->check_lost();
    return n;
}

void shm_queue::close() noexcept {
    closed_by_.store(self_pid(), std::memory_order_release);
    poll_.reset();   // its descriptor closes (and leaves any epoll set) with the handle
    // A message parked by a timed-out get can no longer be resumed through this handle.
    ch_.drop_parked();
}

void shm_queue::join_thread() {
    if (feeder_) {
        feeder_->stop();
        feeder_->check();
    }
}

void shm_queue::task_done() {
    auto& qs = seg_->queue();
    holder_slot* s = slot();
    const bool retains = ch_.retains();
    if (retains) {
        // At-least-once mode: the record is marked done first, and that mark is what decides:
        // a consumer killed before it is delivered again and finished (and counted) once by
        // another; killed after it, not delivered again. So `unfinished` below only follows
        // the marks (clamped, never "too many"); the window between the two costs a join()
        // that waits for one item, like the other adjacent-step windows above.
        if (!s || !retained::finish_one(*seg_,
                                        static_cast<std::uint32_t>(s - seg_->registry().slots)))
            throw value_error("shmq: task_done() called too many times");
    }
    std::int64_t v = qs.unfinished.load(std::memory_order_acquire);
    do {
        if (v <= 0) {
            if (retains) return;
            throw value_error("shmq: task_done() called too many times");
        }
    } while (!qs.unfinished.compare_exchange_weak(v, v - 1, std::memory_order_acq_rel));
    // One item fewer that this process answers for, if it got any (task_done names no item and
    // may come from another process than the getter: clamp at zero).
    if (s) {
        std::uint64_t t = s->taken.load(std::memory_order_acquire);
        while (t > 0 && !s->taken.compare_exchange_weak(t, t - 1, std::memory_order_acq_rel)) {
        }
    }
    if (v == 1) qs.all_done.notify();
}

bool shm_queue::join(const timeout_t& timeout) {
    auto& qs = seg_->queue();
    const segment& seg = *seg_;
    using R = std::optional<bool>;
    // Items of dead holders are uncounted when their death is noticed, and join's own waiting
    // notices: it reaps at the start and then at most once per liveness slice (a waiter woken
    // more often, by signals or notifications, does not read /proc more often).
    registry::reap_any(seg);
    auto last_reap = std::chrono::steady_clock::now();
    std::optional<quiet_snapshot> last_quiet;   // see quiet()
    return await(
        qs.all_done, deadline(timeout), false,
        [&]() -> R {
            if (qs.unfinished.load(std::memory_order_acquire) <= 0) return true;
            return std::nullopt;
        },
        [&]() -> R {
            const auto now = std::chrono::steady_clock::now();
            if (now - last_reap >= liveness_slice) {
                last_reap = now;
                registry::reap_any(seg);   // notifies all_done when it uncounted anything
                std::optional<quiet_snapshot> q = quiet(seg);
                if (q && last_quiet && *q == *last_quiet) {
                    std::int64_t v = q->unfinished;
                    if (qs.unfinished.compare_exchange_strong(v, 0, std::memory_order_acq_rel))
                        qs.all_done.notify();
                    q.reset();
                }
                last_quiet = q;
            }
            return std::nullopt;
        });
}

} // namespace shmq::detail
