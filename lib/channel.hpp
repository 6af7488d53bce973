// SPDX-License-Identifier: BSL-1.0
// One direction of framed byte messages through a ring in shared memory, with waiting and the
// end-of-stream rules. Not templated: everything that knows about T stays in the facade.
//
// Who may call what: any number of threads and processes may write and read at once. A writer
// holds the writer lease (channel_state::wlock) for a whole message and a reader the reader lease
// for a whole message, so messages never interleave; between the two lease holders the ring is
// single-producer single-consumer. Payloads are copied with no lock held by the other side.
//
// Death: a writer killed mid-copy never published its record (tail moves after the copy); a
// writer killed mid-stream leaves pieces that readers discard; a reader killed mid-copy never
// moved head, so the next reader gets that message; a reader killed mid-stream costs that one
// message (the next reader skips its remaining pieces). Leases of dead owners are taken over.
//
// A streamed message's first piece names its writer (the writer lease word), so a reader can
// tell a stream that is still coming from one whose writer died or gave up: ready() and empty()
// count only whole messages and live streams.
//
// Parking: a read that has begun a stream reads on past its deadline while the writer keeps
// sending (a piece at least every 500 ms, stall_grace in channel.cpp). Only when a live writer
// stalls longer (stopped, or blocked elsewhere) does the read return timed_out; it then parks the bytes so far in this
// handle and keeps the reader lease for this process, so the message is neither lost nor split:
// the next read through this handle, from any thread, resumes it (one at a time, under
// parked_mutex_). Threads of this process waiting for the lease notice a parked message within a
// slice. Closing or destroying the handle drops a parked message (it is then lost).
//
// A writer parks too (stream_wait::park, for an unbounded queue's put, feeder.hpp): a stream
// whose deadline passes after its first piece keeps the writer lease for this process, and its
// rest is written later by another thread (finish_stream), or given up (abandon_stream). To a
// reader it is a slow writer; if the process dies meanwhile, a dead one.
#pragma once

#include "bias.hpp"
#include "deadline.hpp"
#include "handle_turn.hpp"
#include <shmq/detail/message_sink.hpp>
#include "ring.hpp"
#include "segment.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <algorithm>
#include <optional>
#include <span>
#include <vector>

namespace shmq::detail {


enum class io_status {
    ok,
    timed_out,    ///< the deadline passed first (nothing consumed, nothing written)
    eof,          ///< read: every writer end is closed or dead and the ring is empty
    broken_pipe,  ///< write: every reader end is closed or dead
    too_long,     ///< read with maxlength: the next message is longer; it stays unread
    streamed,     ///< view: the next message is in pieces; nothing was taken (read() it)
    parked,       ///< write (stream_wait::park): the deadline passed part-way through a stream;
                  ///< this process keeps the writer lease (finish_stream / abandon_stream)
};

/// What write() decrements just before it publishes messages (see write()): a process-local
/// count (a feeder's backlog, for qsize) and/or a shared one (this process's `unpublished` in its
/// registry slot, for JoinableQueue accounting, layout.hpp). Either may be null.
struct uncounter {
    std::atomic<std::size_t>* local = nullptr;
    std::atomic<std::uint64_t>* shared = nullptr;
    void fetch_sub(std::size_t n, std::memory_order order) const noexcept {
        if (local) local->fetch_sub(n, order);
        if (shared) shared->fetch_sub(n, order);
    }
};

/// How write() waits for room for a message it must stream (larger than stream_limit()): each
/// piece as room for it appears, so the reader drains one while the writer fills the next.
/// When the deadline passes part-way, `pieces` gives up (the lease goes, and the reader drops
/// what it got of the message); `park` keeps the lease and returns io_status::parked, and the
/// caller finishes the message later, from any of its threads (finish_stream): the feeder's
/// direct put, which must not wait long and must not make its reader throw away what it read.
/// With a deadline already due, neither writes a piece unless all of the message fits: a
/// caller that may not wait never leaves a stream half written.
enum class stream_wait { pieces, park };

/// Who takes a JoinableQueue item (read()): registry slot index and that slot's `taken` count.
struct taker {
    std::uint32_t slot;
    std::atomic<std::uint64_t>* taken;
};

class channel {
public:
    /// eof_rules: whether ends count (Pipe) or not (queues, where readers and writers come and go).
    channel(std::shared_ptr<segment> seg, std::uint32_t index, bool eof_rules) noexcept;
    /// Drops a parked message (see above) and gives the reader lease back.
    ~channel();
    /// The same, now (a queue handle being closed). Never throws.
    void drop_parked() noexcept;
    /// For a queue's channel (no end-of-stream rules): `unread` says that nobody can ever read
    /// this ring again. Asked after each sleep of a write waiting for room, between the slices of
    /// an endless wait for the writer lease (both then end as broken_pipe), and by the feeder
    /// through unread(). Set before any other thread uses the channel. Must not throw.
    void end_waits_when(std::function<bool()> unread) { unread_ = std::move(unread); }
    /// What that check says now (false without one).
    bool unread() const { return unread_ && unread_(); }
    channel(const channel&) = delete;
    channel& operator=(const channel&) = delete;

    /// Writes one message. max_messages bounds how many messages the ring may hold (a bounded
    /// queue's maxsize; 0 = no bound). `uncount`, if given, is decremented by one just before the
    /// message becomes visible: a count of messages still on their way (a feeder's backlog) then
    /// never overlaps the ring's count, so a reader that got the message sees it uncounted.
    /// Throws broken_error on a corrupt segment.
    /// `wait`: how a message larger than stream_limit() waits for room (see stream_wait); when
    /// it returns io_status::parked, *written (required with park) is how many of the
    /// message's bytes are in the ring.
    io_status write(std::span<const std::byte> msg, const deadline& until,
                    std::uint64_t max_messages = 0, const uncounter* uncount = nullptr,
                    stream_wait wait = stream_wait::pieces, std::size_t* written = nullptr);
    /// Writes `rest`, the bytes of a parked stream not yet written (write() returned parked), as
    /// its remaining pieces, under the lease this process kept; any thread of the process may.
    /// Pieces wait as stream_wait::pieces: a timeout or broken pipe gives the message up.
    io_status finish_stream(std::span<const std::byte> rest, const deadline& until,
                            const uncounter* uncount = nullptr);
    /// Gives a parked stream up: releases the lease, and the reader drops what it got of it.
    void abandon_stream() noexcept;
    /// Writes as many of msgs (from the front) as fit without waiting, under one lease hold and one
    /// publication; whole-record messages only. Returns how many were written (0 if the lease
    /// was busy or nothing fit); `uncount` as for write().
    std::size_t write_some(std::span<const std::span<const std::byte>> msgs, const deadline& until,
                           std::uint64_t max_messages = 0,
                           const uncounter* uncount = nullptr);
    /// read()'s maxlength when there is none. (A plain size, not an optional: an optional passed
    /// by value is stored and reloaded on every call, on the small-message path.)
    static constexpr std::size_t no_maxlength = ~std::size_t{0};
    /// Reads one message into sink. A message longer than maxlength stays unread (too_long,
    /// and *length gets its size). Throws broken_error on a corrupt segment, error when the sink
    /// cannot hold the message (that message is then dropped, the next one stays readable).
    /// The deadline bounds the wait for a message to begin: once a streamed message has begun,
    /// the read goes on until its last piece while its writer lives (and drops it if the writer
    /// dies or gives up), so a message is never split between readers nor parked.
    /// `taker`, for a JoinableQueue: the reader's registry slot (see taker), whose `taken` count
    /// goes up as the message is consumed, under the reader lease; with retained records
    /// (options::redeliver, retained.hpp) the record is also marked as taken by that slot.
    io_status read(message_sink& sink, const deadline& until,
                   std::size_t maxlength = no_maxlength,
                   std::size_t* length = nullptr, const struct taker* taker = nullptr);
    /// Whether records stay until task_done (retained.hpp).
    bool retains() const noexcept { return retain_; }
    /// True when a message or EOF is there, waiting until the deadline. Consumes nothing.
    bool poll(const deadline& until);

    /// poll() without waiting: a message is there (a whole record, a complete stream, or a stream
    /// whose writer is still sending it), or EOF. For wait().
    bool ready();
    /// The event readers sleep on, for waiting on several channels at once (wait()).
    event& data_event() noexcept { return st_.data; }
    /// Who polls this channel through a file descriptor (poller.hpp).
    poller_table& pollers() noexcept { return st_.pollers; }
    /// A read would not block now: a message (or a retained one to deliver again), or EOF. For
    /// pollers (poller.hpp); consumes nothing, never waits.
    bool readable_now();
    /// Looks for dead writers if the liveness period has passed (what a sleeping reader does
    /// after each slice). For wait().
    void check_writers() noexcept;

    /// For a reader that set its sleeper bit on data_event() and is about to check once more
    /// before it sleeps: makes a biased writer's unfenced notifies visible (bias.hpp, seal).
    /// False when that failed: sleep no longer than bias_blind_sleep then.
    bool seal_writer() noexcept { return seal(st_); }

    /// Some reader end is still held, after dropping dead holders (send_handle's waits).
    bool readers_present() noexcept;
    /// Messages published and not yet consumed (a snapshot).
    std::uint64_t size() const noexcept;
    /// True when no message is waiting (pieces of abandoned streams do not count).
    bool empty() noexcept;
    /// Wakes every sleeper on this channel (after an end was closed: they re-check EOF rules).
    void wake_all() noexcept;
    /// Wakes the readers (and pollers) only: a writer end was closed (EOF may be due).
    void wake_readers() noexcept { notify_data(); }
    /// Wakes the writers only: a reader end was closed (broken pipe may be due).
    void wake_writers() noexcept { st_.space.notify(); }
    /// Messages of at most this many bytes can be written as one record (write_some, the
    /// feeder's direct path, and every message of a ring that retains records).
    std::uint64_t whole_limit() const noexcept { return cap_ / 2 - ring::header_size; }
    /// write() streams messages larger than this, in pieces of piece_max().
    std::uint64_t stream_limit() const noexcept { return whole_limit(); }
    /// Items at least this large are copied into a feeder's backlog outside its mutex.
    static constexpr std::uint64_t large_item = std::uint64_t{64} << 10;

    // ---- zero-copy (Connection::loan / recv_view, Queue's loan / get_view). One of each at a
    // time per channel handle: the lent lease is kept in the handle, and the robust mutex cannot
    // tell this process's threads apart (its owner word is the process), so this handle's
    // threads take turns (loan_turn_, view_turn_, handle_turn.hpp) before they take the lease.
    // Each loan and view gets a ticket, which its commit or release must present: after a fork,
    // a Loan or View object the child inherited may outlive the turn (taken over by another
    // thread of the child), and must then do nothing.

    /// Waits for this handle's loan turn, takes the writer lease and reserves room for a whole
    /// record of up to n bytes (n <= whole_limit()); *data points at it (8-aligned), *ticket
    /// names the loan. Nothing is published until commit_loan; abandon_loan, or the process's
    /// death, publishes nothing. max_messages as for write(): a bounded queue's loan waits for a
    /// free slot as its put does. The deadline covers the turn too (timed_out).
    io_status loan(std::size_t n, const deadline& until, std::byte** data, std::uint64_t* ticket,
                   std::uint64_t max_messages = 0);
    /// Publishes the first `size` bytes of the loan as one message (size <= n).
    void commit_loan(std::uint64_t ticket, std::size_t size) noexcept;
    /// The caller-side checks of a commit (Connection::Loan, Queue's Loan): value_error unless
    /// something is on loan and size <= the bytes lent.
    static void check_commit(bool on_loan, std::size_t size, std::size_t lent);
    void abandon_loan(std::uint64_t ticket) noexcept;

    /// Waits for this handle's view turn, takes the reader lease and lends the next message in
    /// place: ok with *data/*size/*ticket set, or eof, or timed_out, or `streamed` when the next
    /// message is in pieces (or this process parked one): then nothing was taken (the turn is
    /// given back) and the caller reads it with read().
    io_status view(const deadline& until, const std::byte** data, std::size_t* size,
                   std::uint64_t* ticket);
    /// Consumes the viewed message and gives the lease back.
    void release_view(std::uint64_t ticket) noexcept;

private:
    enum class wait_result { ready, timed_out, eof, broken_pipe, abandoned };
    /// read() for everything its short path does not take: a lease another handle holds, a
    /// message this process parked, streamed messages, retained records, waits beyond the busy
    /// spin, messages too long for maxlength or the sink. `held`: the caller already holds the
    /// reader lease (taken by the short path); it is adopted.
    io_status read_any(message_sink& sink, const deadline& until, std::size_t maxlength,
                       std::size_t* length, const struct taker* taker, bool held);
    /// Under the reader lease: bytes published beyond head (from the cached tail unless it says
    /// none), and the record there (its offset, bytes to the ring's end, header, kind), checked.
    std::uint64_t published_after(std::uint64_t head);
    struct record_at_head {
        std::uint64_t off, cont;
        ring::record_header h;
        ring::kind k;
    };
    record_at_head record_at(std::uint64_t head, std::uint64_t avail) const;
    /// Under the reader lease: if a viewer died holding the record at head, skip that record.
    void skip_dead_view(std::uint64_t& head) noexcept;
    // Taken by loan() / view() before the lease, given back with it (commit_loan, abandon_loan,
    // release_view, or a failed loan/view). A child forked while a loan or view was out inherits
    // its turn, its lease and its ticket: a Loan object the forking thread held is still there
    // and may commit or abandon it (which only forgets it, see finish_lent); a turn another
    // thread held is taken over by the child's next loan (view), which forgets what was lent.
    handle_turn loan_turn_, view_turn_;
    std::optional<robust_lock> loan_lease_;   // while a loan is out: its lease, record start, size
    std::uint64_t loan_tail_ = 0, loan_size_ = 0;
    std::optional<robust_lock> view_lease_;   // while a view is out: its lease and record
    std::uint64_t view_head_ = 0, view_rec_ = 0;
    // The process that took the loan / view: a forked child that inherits one must neither
    // publish nor unlock its parent's lease (drop_lent()). Atomic, as is the ticket: after a
    // fork, an inherited Loan (View) reads them while a thread that took the turn over writes
    // them (finish_lent()). Written under the turn: the ticket first, then the pid (release).
    std::atomic<std::uint32_t> loan_pid_{0}, view_pid_{0};
    std::atomic<std::uint64_t> loan_ticket_{0}, view_ticket_{0};
    /// Whether the loan (view) `ticket` is this process's current one. If it is the parent's
    /// instead (a forked child's inherited object), forgets it (when the turn can still be taken
    /// over) and returns false; false too for a ticket that is no longer current.
    bool finish_lent(handle_turn& turn, std::optional<robust_lock>& lease,
                     const std::atomic<std::uint32_t>& pid, const std::atomic<std::uint64_t>& current,
                     std::uint64_t ticket) noexcept;
    static void drop_lent(std::optional<robust_lock>& lease, std::uint32_t pid) noexcept;
    /// `stream_writer`: when non-zero, the read is inside a stream written by that lease owner:
    /// wait for its next piece (no deadline) unless the stream is abandoned.
    wait_result wait_for_data(std::uint64_t head, const deadline& until, std::uint64_t stream_writer);
    /// Whether a stream begun by `writer` can still complete: its writer holds the lease and lives.
    bool stream_alive(std::uint64_t writer) const noexcept;
    /// What lies between head and tail: whether a message is ready (see ready()), and where the
    /// pieces that can never make a message (orphans, abandoned streams) in front of it end.
    struct walk_result {
        bool ready;
        std::uint64_t garbage_end;    // a packed position; == head when there are none
        std::uint64_t garbage_msgs;   // orphan last pieces among them (counted in the position)
    };
    walk_result walk(std::uint64_t head, std::uint64_t tail) const noexcept;
    /// Whether a message is ready; drops unusable pieces in front when the reader lease is free.
    bool message_ready() noexcept;
    /// After taking a lease: trust the cached copy of the other side's position only if no other
    /// handle held this lease since this one did (layout.hpp, wgen/rgen).
    /// True when no other handle held the lease since this one did.
    bool claim_writer_lease() noexcept;
    void claim_reader_lease() noexcept;

    // The biased writer lease (bias.hpp). A handle biases only while one thread writes through
    // it: bias_thread_ is that thread's token (thread_token(): pid << 32 | a per-thread tag),
    // bias_multi once another thread wrote. bias_holder_ is the token of the thread that holds
    // the bias, 0 if none: that thread's belief, which the lease word confirms at each message
    // (another process may have taken the bias away since). bias_streak_ counts plain writes in
    // a row that took the lease uncontended with nobody else between. All three are written by
    // the writing thread only (relaxed atomics: a second thread reads them to find it is not
    // the one). bias_busy_ is this process's mark in its registry slot, found at the grant.
    static constexpr std::uint64_t bias_multi = ~std::uint64_t{0};
    /// Plain writes in a row before the bias: a revocation costs a membarrier (~1-60 µs here),
    /// so writers that take turns must not be biased at each turn.
    static constexpr std::uint32_t bias_after = 256;
    /// The largest message a biased writer writes without the lease: its copy is what a revoker
    /// may have to wait for.
    static constexpr std::size_t bias_max = 4096;
    std::atomic<std::uint64_t> bias_thread_{0}, bias_holder_{0};
    std::atomic<std::uint32_t> bias_streak_{0};
    std::atomic<std::uint32_t>* bias_busy_ = nullptr;
    // The tail as the bias holder left it: set at the grant, moved by each biased message, read
    // only by the holder thread (a plain member). Exact while the bias holds, since no other
    // writer moves tail without first revoking the bias, and a bias is only ever granted again
    // through grant_bias. Loading st_.tail instead made the 64 B round trip 804-820 ns here
    // against 652-660: a waiting reader spins on that line, so the load missed on every message
    // (doc/design.md §5, "The holder's own tail").
    std::uint64_t bias_tail_ = 0;
    writer_revoker revoker_;
    static std::uint64_t thread_token() noexcept;
    /// write() with the bias this thread holds: true (and *out) when it wrote; false when the
    /// bias is gone, the message does not fit without waiting, or the plain path has to say why
    /// not (readers gone, a corrupt ring).
    bool write_biased(std::span<const std::byte> msg, std::uint64_t max_messages,
                      const uncounter* uncount, io_status* out);
    /// Turns the bias this thread holds into a plain hold of the lease (false: this thread holds
    /// none, or lost it); *asked: a revoker had raised its bit.
    bool take_own_bias(bool* asked = nullptr) noexcept;
    /// Moves the lease word from this process's bias (revoke bit or not) to `to`, its previous
    /// value in *was; false when the word is not this process's bias.
    bool unbias(std::uint64_t to, std::uint64_t* was) noexcept;
    /// After a plain write, under the lease: whether this thread may now be biased. `again`:
    /// it held the bias before this message and nobody asked for it.
    bool bias_due(bool uncontended, bool again) noexcept;
    /// Makes the plain hold a bias (false: a waiter came, unlock the plain way); `tail` is
    /// where this hold left the ring's tail.
    bool grant_bias(std::uint64_t tail) noexcept;
    /// Frees a bias of this process's at close (no thread writes through the handle any more).
    void drop_bias() noexcept;
    const std::atomic<std::uint32_t>* foreign() const noexcept;
    wait_result wait_for_space(std::uint64_t tail, std::uint64_t need, const deadline& until,
                               std::uint64_t max_messages);
    /// wait_for_space's first look, inline on write()'s path: `need` bytes fit by the cached
    /// head (which only underestimates the room). False sends the writer to wait_for_space,
    /// which reloads head; always false with retained records, whose room ends at release.
    bool fits_cached(std::uint64_t tail, std::uint64_t need, std::uint64_t max_messages) const noexcept;
    /// Under the writer lease (or a bias), room checked: writes msg as one whole record of
    /// `need` bytes at tail, uncounts it and publishes it. Never throws and never waits.
    /// Returns the tail it published.
    std::uint64_t publish_whole(std::span<const std::byte> msg, std::uint64_t tail, std::uint64_t need,
                                const uncounter* uncount) noexcept;
    /// Records `need` bytes (and a pad first if they would cross the end) at tail; returns the
    /// offset where the record goes and updates tail past the pad.
    std::uint64_t place(std::uint64_t& tail, std::uint64_t need) noexcept;
    std::uint64_t room_for(std::uint64_t tail, std::uint64_t need) const noexcept;
    std::uint64_t load_tail() const;
    std::uint64_t load_head() const;
    /// Where the writers' room ends: head, or release with retained records.
    std::uint64_t load_floor() const;
    bool readers_gone();
    bool writers_gone();
    std::function<bool()> unread_;   // see end_waits_when(); empty for Connections
    /// Writes msg as a stream from tail; `rest`: msg is the rest of a parked stream (no first
    /// piece). On io_status::parked, *written is how many bytes of msg are in the ring.
    io_status stream(std::span<const std::byte> msg, std::uint64_t& tail, const deadline& until,
                     std::uint64_t max_messages, const uncounter* uncount, stream_wait wait,
                     bool rest, std::size_t* written);
    /// The largest piece of a streamed message, header excluded: 64 KiB records, or a quarter
    /// of a smaller ring. The reader copies a piece out while the writer copies the next one in,
    /// so a large message's round trip is about one copy plus one piece: with the default 1 MiB
    /// ring, 64 KiB pieces instead of 256 KiB took a 1 MiB round trip from 96 to 85 µs (p50)
    /// and a Queue of 1 MiB items from 18.9 k to 21.3 k items/s, with Pipe throughput and
    /// 64 MiB items unchanged (doc/design.md §3). Measure again before changing it.
    static constexpr std::uint64_t piece_bytes = std::uint64_t{64} << 10;
    std::uint64_t piece_max() const noexcept {
        return std::min(cap_ / 4, piece_bytes) - ring::header_size;
    }
    /// Ring bytes a stream of `total` bytes takes when written from `tail`, padding included.
    std::uint64_t stream_room(std::uint64_t tail, std::uint64_t total) const noexcept;

    // The reader that keeps up (read()'s short path; doc/design.md §4, "The reader that keeps
    // up"). A reader that empties the ring looks at `tail` at once for the next record, and that
    // look takes the line the writer is about to store its next `tail` into: every message then
    // costs the writer a cross-core transfer before its next locked instruction. In a stream, a
    // reader that waits catch_up_pauses before that look finds several records per look instead
    // (64 B Pipe 5.6 → 7.8 M msg/s, 8 B 6.4 → 11.4 M, round trips unchanged). Whether it is in a
    // stream is learnt by probing: a wait that then found two records or more says yes; one that
    // found fewer says no, and the next probe comes twice as many reads later, at most
    // catch_up_probe_max, so a ping-pong (one record per look) waits on 8 of its first 300 reads
    // and then on about one in 256, and then only until its reply arrives.
    // 32 pauses, not 16: with 16 (0.3 µs where a pause is 18.5 ns) a 1 KiB writer had often
    // published only one record by the look, which turns the stream off, and then half the
    // reads polled `tail`; 64 B reads got 10 records per look against 14 with 32. 64 pauses
    // would gain a little more, but a probe would then outlast a 64 B round trip. doc/design.md
    // §4 has the runs.
    static constexpr unsigned catch_up_pauses = 32;           // ~0.6 µs on the reference machine
    static constexpr std::uint32_t catch_up_probe_max = 256;

    // The writer that waits for a batch (doc/design.md §4, "The writer that waits for a batch").
    // A writer that finds the ring full of small records is waiting for the reader, whose pace
    // is then the channel's. Looking at head at every pause would take head's line from the
    // reader each time it consumes a record, and writing each record as soon as it fits would put
    // the writer into the line the reader is reading: both slow the reader down, which keeps the
    // ring full. So wait_for_space first waits for space_batch bytes of room (a quarter of a
    // smaller ring), looking every space_look_pauses, for the busy spin's time at most
    // (spinner::busy_spin); then for its own record as before, so a reader that stops after one
    // record never holds a writer back for longer than that. Measured in the fast state, 1→1
    // (15 alternated rounds): 8 B Queue 12.3 → 15.9 M msg/s, SimpleQueue 9.6 → 20.6 M, 64 B
    // Queue 12.1 → 20.7 M; unchanged in the slow state and for records of this size or more
    // (streams' pieces), which wait as before.
    static constexpr std::uint64_t space_batch = 4096;
    static constexpr unsigned space_look_pauses = 8;
    /// Before a read that starts with an empty ring: waits catch_up_pauses if this reader is
    /// streaming or a probe is due; true if it waited (the read then calls learn_stream).
    bool catch_up_wait() noexcept;
    /// After a wait of catch_up_wait(): `batch` says whether more than one record was there.
    void learn_stream(bool batch) noexcept;

    // A streamed message parked by a read whose deadline passed while its live writer stalled.
    // parked_pid_ is the process that parked it (0: none), so a forked child never adopts its
    // parent's; the rest is written and read under parked_mutex_.
    struct parked_message {
        bool held = false;
        bool counted = false;   // already in the taker's `taken` (see read())
        std::uint64_t writer = 0, total = 0;
        std::vector<std::byte> bytes;
    };
    std::timed_mutex parked_mutex_;
    std::atomic<std::uint32_t> parked_pid_{0};
    parked_message parked_;

    std::shared_ptr<segment> seg_;
    channel_state& st_;
    std::byte* ring_;
    std::uint64_t cap_;
    std::uint32_t index_;
    bool eof_rules_;
    bool retain_;                 // segment flag retain_records, channel 0
    std::uint32_t kind_mask_;     // record kinds carry state bits when retained
    // Local caches. seen_head_/seen_tail_ are copies of the other side's position: positions only
    // grow, so a stale copy underestimates room or data and is reloaded before anything waits.
    // They are valid only while my_wgen_/my_rgen_ match the channel's lease generations (no other
    // handle moved our side's position since), which keeps them within one ring of the truth.
    // Written only under the corresponding lease; relaxed atomics because several threads of
    // this process may use one channel (the lease orders them).
    std::atomic<std::uint64_t> seen_head_{0}, seen_tail_{0};
    std::atomic<std::uint64_t> my_wgen_{~std::uint64_t{0}}, my_rgen_{~std::uint64_t{0}};
    // The reader that keeps up (catch_up_wait above). caught_up_: the last short-path read
    // emptied the ring as far as this handle knew; streaming_: the last probe found a batch;
    // probe_in_: reads left before the next probe; probe_gap_: the last interval between probes.
    // A heuristic of this process only, read and written outside the reader lease (the wait
    // comes before it, so other readers of a Queue are not held up): relaxed atomics, and a race
    // between two threads costs at most one wait or one probe.
    std::atomic<bool> caught_up_{false}, streaming_{false};
    std::atomic<std::uint32_t> probe_in_{0}, probe_gap_{1};
    // When liveness of the far end was last checked (write() fast path and wait slices), in
    // CLOCK_MONOTONIC_COARSE nanoseconds; atomic because threads of this process share the channel.
    std::atomic<clock::rep> last_reap_{0};
    // The last stream writer found alive and when (CLOCK_MONOTONIC_COARSE ns): stream_alive()
    // re-reads /proc for it at most once a liveness slice.
    mutable std::atomic<std::uint64_t> probed_writer_{0};
    mutable std::atomic<clock::rep> probed_at_{0};
    /// True (and the clock reset) when the far end's liveness is due for a check.
    bool reap_due() noexcept;
    /// Wakes readers after a publication or a close: the data event, and, when that started a
    /// wake-up round (someone sleeps or polls), the file-descriptor pollers too. A writer whose
    /// reader spins or nobody waits pays one load, as before pollers existed.
    void notify_data() noexcept;
};

} // namespace shmq::detail
