// One direction of framed byte messages through a ring in shared memory, with waiting and the
// end-of-stream rules. Not templated: everything that knows about T stays in the facade.
//
// Who may call what: any number of threads and processes may write and read at once. A writer
// holds the writer lease (channel_state::wlock) for a whole message and a reader the reader lease
// for a whole message, so messages never interleave; between the two lease holders the ring is
// single-producer single-consumer. Payloads are copied with no lock held by the other side.
//
// Death: a writer killed mid-copy never published its record (tail moves after the copy); a
// writer killed mid-stream leaves pieces that the reader discards; a reader killed mid-copy never
// moved head, so the next reader gets that message; a reader killed mid-stream costs that one
// message (the next reader skips its remaining pieces). Leases of dead owners are taken over.
#pragma once

#include "deadline.hpp"
#include <shmq/detail/message_sink.hpp>
#include "ring.hpp"
#include "segment.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
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
};

class channel {
public:
    /// eof_rules: whether ends count (Pipe) or not (queues, where readers and writers come and go).
    channel(std::shared_ptr<segment> seg, std::uint32_t index, bool eof_rules) noexcept;
    /// Gives back a reader lease kept for a parked message (that message is then lost).
    ~channel();
    /// The same, now (a queue handle being closed). Never throws.
    void drop_parked() noexcept;
    channel(const channel&) = delete;
    channel& operator=(const channel&) = delete;

    /// Writes one message. max_messages bounds how many messages the ring may hold (a bounded
    /// queue's maxsize; 0 = no bound). `uncount`, if given, is decremented by one just before the
    /// message becomes visible: a count of messages still on their way (a feeder's backlog) then
    /// never overlaps the ring's count, so a reader that got the message sees it uncounted.
    /// Throws broken_error on a corrupt segment.
    io_status write(std::span<const std::byte> msg, const deadline& until,
                    std::uint64_t max_messages = 0, std::atomic<std::size_t>* uncount = nullptr);
    /// Writes as many of msgs (from the front) as fit without waiting, under one lease hold and one
    /// publication; whole-record messages only. Returns how many were written (0 if the lease
    /// was busy or nothing fit); `uncount` as for write().
    std::size_t write_some(std::span<const std::span<const std::byte>> msgs, const deadline& until,
                           std::uint64_t max_messages = 0,
                           std::atomic<std::size_t>* uncount = nullptr);
    /// Reads one message into sink. With maxlength, a longer message stays unread (too_long,
    /// and *length gets its size). Throws broken_error on a corrupt segment.
    /// A streamed message whose (live) writer stalls past the deadline is not lost: this process
    /// keeps the reader lease and the pieces read so far, returns timed_out, and its next read
    /// resumes the message. Other readers wait (their own deadlines apply) meanwhile.
    io_status read(message_sink& sink, const deadline& until,
                   std::optional<std::size_t> maxlength = std::nullopt,
                   std::size_t* length = nullptr);
    /// True when a record or EOF is there, waiting until the deadline. Consumes nothing.
    bool poll(const deadline& until);

    /// poll() without waiting: a record is there, or EOF. For wait().
    bool ready();
    /// The event readers sleep on, for waiting on several channels at once (wait()).
    event& data_event() noexcept { return st_.data; }
    /// Looks for dead writers if the liveness period has passed (what a sleeping reader does
    /// after each slice). For wait().
    void check_writers() noexcept;

    /// Messages published and not yet consumed (a snapshot).
    std::uint64_t size() const noexcept;
    /// True when no record is waiting.
    bool empty() const noexcept;
    /// Wakes every sleeper on this channel (after an end was closed: they re-check EOF rules).
    void wake_all() noexcept;
    /// Messages of at most this many bytes are written as one record; larger ones are streamed.
    std::uint64_t whole_limit() const noexcept { return cap_ / 2 - ring::header_size; }

private:
    enum class wait_result { ready, timed_out, eof, broken_pipe, abandoned };
    wait_result wait_for_data(std::uint64_t head, const deadline& until, bool assembling);
    wait_result wait_for_space(std::uint64_t tail, std::uint64_t need, const deadline& until,
                               std::uint64_t max_messages);
    /// Records `need` bytes (and a pad first if they would cross the end) at tail; returns the
    /// offset where the record goes and updates tail past the pad.
    std::uint64_t place(std::uint64_t& tail, std::uint64_t need) noexcept;
    std::uint64_t room_for(std::uint64_t tail, std::uint64_t need) const noexcept;
    std::uint64_t load_tail() const;
    std::uint64_t load_head() const;
    bool readers_gone();
    bool writers_gone();
    io_status stream(std::span<const std::byte> msg, std::uint64_t& tail, const deadline& until,
                     std::uint64_t max_messages, std::atomic<std::size_t>* uncount);

    // A streamed message parked by a read that timed out while its writer was still sending.
    // `held` means this process (pid) still holds the reader lease for it; `busy` is claimed by
    // the thread resuming it.
    struct parked_message {
        std::atomic<bool> held{false};
        std::atomic<bool> busy{false};
        std::uint32_t pid = 0;
        std::uint64_t total = 0;
        std::vector<std::byte> bytes;
    };

    std::shared_ptr<segment> seg_;
    parked_message parked_;
    channel_state& st_;
    std::byte* ring_;
    std::uint64_t cap_;
    std::uint32_t index_;
    bool eof_rules_;
    // Local caches. seen_head_/seen_tail_ are copies of the other side's position: positions only
    // grow, so a stale copy underestimates room or data and is reloaded before anything waits.
    // Relaxed atomics because several threads of this process may use one channel.
    std::atomic<std::uint64_t> seen_head_{0}, seen_tail_{0};
    // When liveness of the far end was last checked (write() fast path and wait slices), in
    // CLOCK_MONOTONIC_COARSE nanoseconds; atomic because threads of this process share the channel.
    std::atomic<clock::rep> last_reap_{0};
    /// True (and the clock reset) when the far end's liveness is due for a check.
    bool reap_due() noexcept;
};

} // namespace shmq::detail
