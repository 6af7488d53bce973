// SPDX-License-Identifier: BSL-1.0
// shmq — JoinableQueue<T>: a Queue<T> that also counts unfinished items (task_done/join), across
// processes. Every put counts one item (before it becomes visible); task_done() uncounts one;
// join() returns when the count is zero. The count is of puts, not gets, as in Python.
//
// Over NATS (a nats:// name, see queue.hpp): task_done() acknowledges the oldest item this
// process got through this handle and not yet acknowledged (value_error when there is none), and
// join() waits until the stream is empty and no acknowledgement is pending. A consumer that dies
// before task_done() has its item delivered again after ack_wait, so join() still returns (in
// Python, and with shared memory without options::redeliver, the item is lost instead).
#pragma once

#include <shmq/queue.hpp>

namespace shmq {

template <class T> class JoinableQueue : public Queue<T> {
    using base = Queue<T>;

public:
    explicit JoinableQueue(std::size_t maxsize = 0, options opts = {})
        : base(detail::queue_flavor::joinable, maxsize, opts) {}
    static JoinableQueue create(std::string_view name, std::size_t maxsize = 0, options opts = {}) {
        return JoinableQueue(detail::queue_core::create(detail::queue_flavor::joinable, name,
                                                        base::to_maxsize(maxsize), opts,
                                                        base::fingerprint()));
    }
    /// As Queue::open_or_create.
    static JoinableQueue open_or_create(std::string_view name, std::size_t maxsize = 0, options opts = {}) {
        opts.if_exists = if_exists::open;
        return create(name, maxsize, opts);
    }
    /// Throws as Queue::open; the second form takes options::trust_foreign.
    static JoinableQueue open(std::string_view name) { return open(name, options{}); }
    static JoinableQueue open(std::string_view name, const options& opts) {
        return JoinableQueue(detail::queue_core::open(detail::queue_flavor::joinable, name,
                                                      base::fingerprint(), opts));
    }
    static bool remove(std::string_view name) noexcept { return detail::queue_core::remove(name); }

    /// Marks one put item as done. Throws value_error when called more often than items were put.
    void task_done() { this->core_.task_done(); }
    /// Waits until every put item is marked done. Items of processes that died are not waited
    /// for: a dead producer's items that never reached shared memory (its backlog) and a dead
    /// consumer's items got and not marked done are uncounted when join() notices the death
    /// (within a liveness slice, ~20 ms, of waiting); the latter are counted in
    /// lost_to_dead_consumers().
    void join() { this->core_.join(std::nullopt); }
    /// As join(), for at most timeout; true when the count reached zero.
    bool join(timeout_t timeout) { return this->core_.join(timeout); }
    /// How many items, over the queue's lifetime and all processes, were got by a process that
    /// died before calling task_done() for them (those items' work may not have been done).
    std::uint64_t lost_to_dead_consumers() const noexcept { return this->core_.lost_to_dead_consumers(); }

    /// No loans or views on a JoinableQueue: an item must be counted at put and at get for
    /// task_done()/join(), and loans and views do not do that accounting (yet).
    template <class... A> void loan(A&&...) {
        static_assert(detail::always_false<T>, "shmq: JoinableQueue has no loan(); use put()");
    }
    template <class... A> void get_view(A&&...) {
        static_assert(detail::always_false<T>, "shmq: JoinableQueue has no get_view(); use get()");
    }

private:
    explicit JoinableQueue(detail::queue_core core) noexcept : base(std::move(core)) {}
};

} // namespace shmq
