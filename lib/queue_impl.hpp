// SPDX-License-Identifier: BSL-1.0
// shmq — the backend seam under Queue, SimpleQueue and JoinableQueue.
//
// queue_core (include/shmq/detail/queue_core.hpp) is the handle the class templates hold; it
// forwards every call to one queue_impl, chosen once in create/open by the name:
//   * a plain name, or an anonymous queue: shared memory (lib/queue_shm.cpp);
//   * a `nats://` URL: NATS JetStream (lib/nats/queue_nats.cpp, URL grammar in lib/nats/url.hpp).
// One virtual call per put/get is the whole price of the seam on the shared-memory hot path
// (a put or get through shared memory costs tens of nanoseconds; an indirect call, one or two).
//
// Each function has queue_core's contract (see there): the same errors, the same "closed
// first" order. A backend that cannot meet a clause says so in its own file and in the headers.
#pragma once

#include <shmq/detail/message_sink.hpp>
#include <shmq/detail/queue_core.hpp>
#include <shmq/options.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace shmq::detail {

class queue_impl {
public:
    virtual ~queue_impl() = default;

    virtual void put(std::span<const std::byte> item, bool block, const timeout_t& timeout) = 0;
    virtual void get(message_sink& sink, bool block, const timeout_t& timeout) = 0;
    virtual std::size_t qsize() const = 0;
    virtual bool empty() const = 0;
    virtual bool full() const = 0;
    virtual std::int64_t maxsize() const noexcept = 0;
    /// This process's handle only; never throws.
    virtual void close() noexcept = 0;
    virtual bool closed() const noexcept = 0;
    /// closed_error when closed (or the handle cannot be used in this process).
    virtual void check_open() const = 0;
    /// After close(): waits until what this handle buffered has left the process.
    virtual void join_thread() = 0;
    virtual void cancel_join_thread() noexcept = 0;
    /// The handle is going away (queue_core's destructor, after close()): flush what this
    /// handle still buffers unless cancel_join_thread() was called. Never throws.
    virtual void finish() noexcept = 0;
    virtual void task_done() = 0;
    virtual bool join(const timeout_t& timeout) = 0;
    virtual std::uint64_t lost_to_dead_consumers() const noexcept = 0;
    /// Unlinks the name if this process created the object under it (Listener's backlog).
    virtual bool remove_if_named_here() const noexcept { return false; }
    /// A descriptor readable whenever get would not block (Queue::fileno(), lib/poller.hpp).
    /// Backends without one throw value_error.
    virtual int fileno() {
        throw value_error("shmq: fileno() is not available for a queue over NATS (nats://): "
                          "only shared-memory queues have one");
    }
    /// Whether a get would not block now; re-arms this process's fileno() (wait()).
    virtual bool poll_ready() { return !empty(); }

    // ---- Zero copy (Queue::loan / get_view, queue_loan.hpp). Shared memory only: the other
    // backends keep these defaults, which check the handle (closed first) and throw value_error.

    /// Room for an item of up to n bytes in the ring (n <= max_loan()), 8-byte aligned; nothing
    /// is published until commit_loan. One loan at a time per handle: other threads wait.
    /// Throws closed_error, value_error, full_error (the deadline passed), broken_error.
    /// *ticket names the loan (channel.hpp), for its commit or abandon.
    virtual std::span<std::byte> loan(std::size_t n, bool block, const timeout_t& timeout,
                                      std::uint64_t* ticket) {
        (void)n, (void)block, (void)timeout, (void)ticket;
        zero_copy_unavailable();
    }
    /// Publishes the first `size` bytes of this handle's loan (size <= n), or drops it.
    virtual void commit_loan(std::uint64_t ticket, std::size_t size) noexcept { (void)ticket, (void)size; }
    virtual void abandon_loan(std::uint64_t ticket) noexcept { (void)ticket; }
    /// The next item: lent in place (*lent = true; release_view consumes it), or, for an item
    /// that came in pieces, read into `own` (*lent = false: already consumed). Throws
    /// closed_error, value_error, empty_error, broken_error.
    virtual std::span<const std::byte> view(bool block, const timeout_t& timeout,
                                            std::vector<std::byte>& own, bool* lent,
                                            std::uint64_t* ticket) {
        (void)block, (void)timeout, (void)own, (void)lent, (void)ticket;
        zero_copy_unavailable();
    }
    virtual void release_view(std::uint64_t ticket) noexcept { (void)ticket; }
    /// The largest loan: half the ring less a record header.
    virtual std::size_t max_loan() const { zero_copy_unavailable(); }

private:
    [[noreturn]] void zero_copy_unavailable() const {
        check_open();
        throw value_error("shmq: loans and views (loan, get_view, max_loan) are not available for "
                          "a queue over NATS (nats://): only shared-memory queues have them");
    }
};

// Shared memory (lib/queue_shm.cpp).
std::shared_ptr<queue_impl> shm_queue_anonymous(queue_flavor flavor, std::int64_t maxsize,
                                                const options& opts, std::uint64_t fp);
std::shared_ptr<queue_impl> shm_queue_create(queue_flavor flavor, std::string_view name,
                                             std::int64_t maxsize, const options& opts,
                                             std::uint64_t fp);
std::shared_ptr<queue_impl> shm_queue_open(queue_flavor flavor, std::string_view name,
                                           std::uint64_t fp, const options& opts);
bool shm_queue_remove(std::string_view name) noexcept;

// NATS JetStream (lib/nats/queue_nats.cpp). `url` starts with "nats://".
std::shared_ptr<queue_impl> nats_queue_create(queue_flavor flavor, std::string_view url,
                                              std::int64_t maxsize, const options& opts,
                                              std::uint64_t fp);
std::shared_ptr<queue_impl> nats_queue_open(queue_flavor flavor, std::string_view url,
                                            std::uint64_t fp);
bool nats_queue_remove(std::string_view url) noexcept;

} // namespace shmq::detail
