// SPDX-License-Identifier: BSL-1.0
#include "feeder.hpp"
#include "test_hook.hpp"

#include <shmq/detail/exit_flush.hpp>
#include <shmq/detail/message_sink.hpp>

#include <shmq/errors.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <pthread.h>
#include <sched.h>
#include <system_error>

namespace shmq::detail {
namespace {

// How long the thread waits for room before it looks at stop/cancel again.
constexpr auto feeder_slice = std::chrono::milliseconds(50);
// Items written per lease hold at most: bounds how long other writers wait behind the feeder.
constexpr std::size_t batch_max = 256;
// How long the thread waits for more items once the backlog is empty before it ends. A producer
// that outruns the ring puts again within microseconds: ending at once meant a thread start and
// fresh (page-faulting) backlog buffers for every item of a burst of large items — an unbounded
// Queue of 1 MiB items through a 1 MiB ring ran at ~0.1x the bounded one.
constexpr auto idle_linger = std::chrono::milliseconds(100);
// Why an orphaned thread's write ended (channel::end_waits_when): fail() reports it.
constexpr const char* unreadable =
    "nobody can read the queue any more (its name is gone, and no other handle holds it)";
// How long a put of a large item (channel::large_item or more) may wait for room to write it
// directly, per MiB of the item: about what the copy into the backlog, which it saves, costs in
// memory that is not in cache. Measured here: into a fresh buffer 120-150 µs per MiB at 1 MiB
// and 2.5-3 ms per MiB at 64 MiB (page faults); into a reused 64 MiB buffer 300-470 µs per MiB.
// A producer whose consumer keeps up then writes each item once, into the ring, instead of
// copying it into the backlog and having the feeder thread copy it again on the same CPU
// (doc/design.md §11). A streamed item still unfinished when the time is up is parked: the
// feeder thread writes the rest. A put whose consumer does not keep up costs this wait plus the
// copy. 100 µs per MiB was too short for 64 MiB items (0.3x a bounded queue against 0.96x).
constexpr auto direct_wait_per_mib = std::chrono::microseconds(300);

// The deadline of put()'s direct write: now for a small item or a put that may not block.
deadline direct_deadline(std::size_t size, bool block, const timeout_t& timeout) {
    static const deadline now(timeout_t(std::chrono::duration<double>(0)));
    if (size < channel::large_item || !block) return now;
    const auto wait = std::chrono::nanoseconds(
        (size * static_cast<std::uint64_t>(
                    std::chrono::nanoseconds(direct_wait_per_mib).count())) >> 20);
    return deadline(timeout).within(wait);
}

} // namespace

// Every live feeder of this process, for fork and exit.
struct feeder_list {
    static std::mutex& mutex() { static std::mutex m; return m; }
    static feeder*& first() { static feeder* head = nullptr; return head; }

    static void add(feeder* f) {
        std::call_once(once(), [] {
            ::pthread_atfork(&prepare, &in_parent, &in_child);
            add_exit_flush_hook(&flush_all);
            std::atexit(&flush_all);
        });
        std::lock_guard<std::mutex> lock(mutex());
        f->next_ = first();
        if (first()) first()->prev_ = f;
        first() = f;
    }
    static void remove(feeder* f) noexcept {
        std::lock_guard<std::mutex> lock(mutex());
        if (f->prev_) f->prev_->next_ = f->next_; else if (first() == f) first() = f->next_;
        if (f->next_) f->next_->prev_ = f->prev_;
        f->prev_ = f->next_ = nullptr;
    }
    static std::once_flag& once() { static std::once_flag o; return o; }

    // Process exit (atexit) or a Process child's exit: every backlog reaches shared memory unless
    // its queue was cancel_join_thread()ed, and a thread lingering on an empty backlog
    // (idle_linger) ends now, and is joined, rather than while the process tears down its
    // statics. Another thread of the process may still be putting (and so starting a thread)
    // meanwhile: that one is joined by the queue's handle, as ever.
    static void flush_all() {
        std::lock_guard<std::mutex> lock(mutex());
        for (feeder* f = first(); f; f = f->next_) {
            f->flush();
            f->end_lingering();
        }
    }

    // Fork: hold every feeder's lock across fork so the child sees no half-updated backlog.
    static void prepare() {
        mutex().lock();
        for (feeder* f = first(); f; f = f->next_) f->m_.lock();
    }
    static void in_parent() {
        for (feeder* f = first(); f; f = f->next_) f->m_.unlock();
        mutex().unlock();
    }
    static void in_child() {
        for (feeder* f = first(); f; f = f->next_) f->reset_after_fork();
        mutex().unlock();
    }
};

feeder::feeder(channel& ch, std::uint64_t max_messages, std::string what,
               std::function<void(std::size_t)> dropped)
    : ch_(ch), max_messages_(max_messages), what_(std::move(what)), dropped_(std::move(dropped)) {
    feeder_list::add(this);
}

feeder::~feeder() {
    stop();
    feeder_list::remove(this);
}

void feeder::reset_after_fork() noexcept {
    // Only the forking thread exists in the child. The parent's backlog stays the parent's, and
    // its thread does not exist here: forget both without destroying what the parent's thread
    // was using (a condition variable may have had that thread as a waiter).
    backlog_.clear();
    parked_rest_.clear();   // the lease it needs is the parent's
    parked_.store(false, std::memory_order_release);
    spare_.clear();
    spare_bytes_ = 0;
    in_flight_ = 0;
    pending_.store(0, std::memory_order_release);
    unpublished_.store(nullptr, std::memory_order_release);   // the parent's slot, not ours
    cancelled_.store(false, std::memory_order_release);   // per process, as in Python
    failed_.store(false, std::memory_order_release);      // the parent's thread failed, not ours
    orphaned_.store(false, std::memory_order_release);    // the parent's thread, not ours
    failure_.clear();
    running_ = false;
    stop_ = false;
    new (&work_) std::condition_variable();
    new (&drained_) std::condition_variable();
    new (&thread_) std::thread();
    m_.unlock();
}

void feeder::check() const {
    if (!failed_.load(std::memory_order_acquire)) return;
    std::lock_guard<std::mutex> lock(const_cast<std::mutex&>(m_));
    throw broken_error(failure_);
}

void feeder::put(std::span<const std::byte> item, bool block, const timeout_t& timeout,
                 feeder_owner& owner, std::atomic<std::uint64_t>* unpublished) {
    check();
    if (unpublished_.load(std::memory_order_relaxed) != unpublished)
        unpublished_.store(unpublished, std::memory_order_release);
    // Fast path: nothing of ours is pending, so writing now keeps FIFO order. Any size. A small
    // item (or put_nowait) does not wait: a message that does not fit now is refused whole
    // (channel::stream writes all of it or nothing) and only then copied into the backlog. A
    // large item waits for room a little (direct_wait_per_mib); a streamed one still
    // unfinished then is parked (stream_wait::park: this process keeps the writer lease) and
    // only its rest goes to the feeder thread, which writes it before anything else.
    std::span<const std::byte> rest = item;
    struct abandon_guard {   // a parked stream not handed to the thread is given up
        channel* ch = nullptr;
        ~abandon_guard() { if (ch) ch->abandon_stream(); }
    } parked;
    if (pending_.load(std::memory_order_acquire) == 0) {
        const uncounter shared_only{nullptr, unpublished};
        std::size_t written = 0;
        const io_status st = ch_.write(item, direct_deadline(item.size(), block, timeout),
                                       max_messages_, &shared_only, stream_wait::park, &written);
        if (st == io_status::ok) return;
        if (st == io_status::parked) {
            rest = item.subspan(written);
            parked.ch = &ch_;
        }
    }
    // A large item is copied outside m_: the thread takes m_ between batches, and a copy of
    // a megabyte under it held the thread (sharing this process's CPU) off the ring for ~0.1 ms
    // per item. Small items are copied under it: one lock instead of two.
    const bool copy_unlocked = rest.size() >= channel::large_item;
    std::unique_lock<std::mutex> lock(m_);
    if (failed_.load(std::memory_order_acquire)) throw broken_error(failure_);
    std::vector<std::byte> buf;
    if (!spare_.empty()) {
        buf = std::move(spare_.back());   // its capacity is reused
        spare_.pop_back();
        spare_bytes_ -= buf.capacity();
    }
    if (copy_unlocked) lock.unlock();
    try {
        if (buf.capacity() < rest.size()) {
            // A fresh buffer for a large item: huge pages where the kernel offers them, as for a
            // large received message (message_sink.hpp), fault it in 2 MiB at a time.
            std::vector<std::byte>().swap(buf);
            buf.reserve(rest.size());
            advise_large_buffer(buf.data(), rest.size());
        }
        buf.assign(rest.begin(), rest.end());
    } catch (const std::bad_alloc&) {
        throw error(what_ + ": no memory to keep a " + std::to_string(rest.size()) +
                    "-byte item in this process's backlog: " + std::strerror(ENOMEM) + " (errno " +
                    std::to_string(ENOMEM) + ")");
    }
    if (copy_unlocked) {
        lock.lock();
        if (failed_.load(std::memory_order_acquire)) throw broken_error(failure_);
    }
    if (parked.ch) {
        parked_rest_ = std::move(buf);
        parked_.store(true, std::memory_order_release);
    } else {
        backlog_.push_back(std::move(buf));
    }
    pending_.fetch_add(1, std::memory_order_acq_rel);
    const bool start = !running_;
    if (start) {
        if (thread_.joinable()) thread_.join();   // a previous thread that ran dry and ended
        running_ = true;
        stop_ = false;
        try {
            thread_ = std::thread([this, kept = owner.keep_alive()] { run(kept); });
        } catch (const std::system_error& e) {
            running_ = false;
            if (parked.ch) {
                parked_.store(false, std::memory_order_release);   // the guard gives it up
                parked_rest_.clear();
            } else {
                backlog_.pop_back();
            }
            pending_.fetch_sub(1, std::memory_order_acq_rel);
            const int err = e.code().value();
            throw error(what_ + ": cannot start the feeder thread: " + std::strerror(err) +
                        " (errno " + std::to_string(err) + ")");
        }
    }
    parked.ch = nullptr;   // the thread writes the rest
    if (!start) {
        work_.notify_one();
        // A large item went to the backlog: give the rest of this time slice to whoever shares
        // the CPU, which is often the feeder thread (a producer pinned to one CPU, a container
        // with one). Otherwise the producer, which never waits here, runs its whole slice
        // copying items into an ever longer backlog in cold memory while the thread that would
        // move them into the ring waits for the CPU and the consumer starves: an unbounded Queue
        // of 1 MiB items ran at 0.16-0.21x the bounded one, and at 0.39-0.45x with this (doc/
        // design.md §11). It does not wait for anything: with nobody else runnable on this CPU
        // it returns at once. Small items never yield: a system call per put would cost them
        // more than their copy.
        if (copy_unlocked) {
            lock.unlock();
            ::sched_yield();
        }
    }
}

void feeder::fail(const char* why) noexcept {
    std::lock_guard<std::mutex> guard(m_);
    try {
        failure_ = what_ + ": the feeder thread failed, this process's unsent items are lost: " + why;
    } catch (...) {
        failure_.clear();   // no memory even for the message: broken_error with an empty what()
    }
    // Dropped items were counted (pending_, and for a JoinableQueue `unfinished` and this
    // process's `unpublished`) and will never be published: uncount them, or join() would wait
    // for them for ever.
    const std::size_t dropped = backlog_.size() + in_flight_ + (parked_ ? 1 : 0);
    backlog_.clear();
    in_flight_ = 0;
    if (parked_) {   // a stream put() parked and the thread had not taken: give it up
        parked_.store(false, std::memory_order_release);
        parked_rest_.clear();
        ch_.abandon_stream();
    }
    pending_.store(0, std::memory_order_release);
    if (dropped && dropped_) dropped_(dropped);
    failed_.store(true, std::memory_order_release);
    running_ = false;
    drained_.notify_all();
}

void feeder::run(std::shared_ptr<void> owner) noexcept {
    (void)owner;   // held only to keep the queue's state (this feeder, its channel) alive
    // Nothing may leave a thread's function (std::terminate): a failure is recorded for the
    // queue's next put/qsize/join_thread instead.
    try {
        run_loop();
    } catch (const std::exception& e) {
        fail(e.what());
    } catch (...) {
        fail("unknown exception");
    }
}

void feeder::run_loop() {
    std::vector<std::vector<std::byte>> batch;
    std::vector<std::span<const std::byte>> views;
    std::unique_lock<std::mutex> lock(m_);
    for (;;) {
        batch.clear();   // published; their buffers went to spare_ as they were
        // A thread per queue only while there is a backlog, and idle_linger after: ended when
        // idle, so an idle queue holds neither a thread nor buffers. cancel() does not stop
        // delivery (as in Python, it only stops others waiting for it).
        if (backlog_.empty() && !parked_) {
            drained_.notify_all();
            work_.wait_for(lock, idle_linger, [&] { return !backlog_.empty() || parked_ || stop_; });
        }
        if (parked_) {
            lock.unlock();
            finish_parked();
            lock.lock();
            continue;
        }
        if (backlog_.empty()) {
            running_ = false;
            std::vector<std::vector<std::byte>>().swap(spare_);
            spare_bytes_ = 0;
            drained_.notify_all();
            return;
        }
        while (!backlog_.empty() && batch.size() < batch_max) {
            batch.push_back(std::move(backlog_.front()));
            backlog_.pop_front();
        }
        in_flight_ = batch.size();
        lock.unlock();
        const uncounter unc{&pending_, unpublished_.load(std::memory_order_acquire)};

        std::size_t done = 0;
        while (done < batch.size()) {
            // A stream put() parked holds the writer lease: nothing else of ours is written
            // before its rest (a wait for the lease below would wait for ever).
            if (parked_.load(std::memory_order_acquire)) finish_parked();
            const auto& item = batch[done];
            std::size_t n = 0;
            io_status st = io_status::timed_out;
            if (item.size() > ch_.stream_limit()) {
                // Streamed, parking rather than giving up between pieces (that would throw away
                // the pieces a reader already has): the rest then waits as long as it takes.
                // Only the lease and the first piece wait a slice at a time, so that a stream
                // put() parked meanwhile (it holds the lease) is finished first.
                std::size_t written = 0;
                st = ch_.write(item, deadline(timeout_t(feeder_slice)), max_messages_, &unc,
                               stream_wait::park, &written);
                if (st == io_status::parked)
                    st = ch_.finish_stream(std::span(item).subspan(written), deadline(), &unc);
                if (st == io_status::ok) n = 1;
            } else {
                views.clear();
                for (std::size_t i = done; i < batch.size() && batch[i].size() <= ch_.stream_limit(); ++i)
                    views.emplace_back(batch[i].data(), batch[i].size());
                n = ch_.write_some(views, deadline(timeout_t(feeder_slice)), max_messages_, &unc);
                // No room: wait for some, a slice at a time.
                if (n == 0) {
                    st = ch_.write(item, deadline(timeout_t(feeder_slice)), max_messages_, &unc);
                    if (st == io_status::ok) n = 1;
                }
            }
            // Only an orphaned thread's waits end so (channel::end_waits_when), or find so when
            // they time out (a lease nobody gives back): its items can never be read. fail()
            // drops them and ends the thread.
            if (st == io_status::broken_pipe ||
                (n == 0 && orphaned_.load(std::memory_order_acquire) && ch_.unread()))
                throw std::runtime_error(unreadable);
            if (n) {
                // The channel uncounted them from pending_ just before publishing, so qsize()
                // (ring + pending) never counts an item twice, even for an instant.
                {
                    std::lock_guard<std::mutex> guard(m_);
                    in_flight_ -= n;   // published: flush() may return
                    // Their buffers are free now, not at the end of the batch: a producer that
                    // keeps the backlog non-empty then copies into warm memory instead of
                    // allocating (and page-faulting) a buffer per item.
                    for (std::size_t i = done; i < done + n; ++i) keep_spare(std::move(batch[i]));
                }
                done += n;
                drained_.notify_all();
            }
        }
        lock.lock();
    }
}

void feeder::finish_parked() {
    // Tests stop the thread here to fork while a parked rest waits (a child must not take it).
    SHMQ_TEST_HOOK("feeder.parked.taking");
    std::vector<std::byte> rest;
    {
        std::lock_guard<std::mutex> guard(m_);
        rest = std::move(parked_rest_);
        parked_rest_.clear();
        parked_.store(false, std::memory_order_release);
        ++in_flight_;   // flush() waits for it; fail() counts it
    }
    const uncounter unc{&pending_, unpublished_.load(std::memory_order_acquire)};
    // No deadline, as for any streamed item (run_loop): a reader already has its first pieces.
    // Only an orphaned thread's wait ends early (end_waits_when), as broken_pipe.
    if (ch_.finish_stream(rest, deadline(), &unc) != io_status::ok)
        throw std::runtime_error(unreadable);
    std::lock_guard<std::mutex> guard(m_);
    --in_flight_;
    keep_spare(std::move(rest));
    drained_.notify_all();
}

void feeder::keep_spare(std::vector<std::byte>&& buf) {
    if (spare_.size() >= spare_max || buf.capacity() > spare_bytes_max - spare_bytes_) return;
    spare_bytes_ += buf.capacity();
    spare_.push_back(std::move(buf));
}

void feeder::flush() noexcept {
    std::unique_lock<std::mutex> lock(m_);
    drained_.wait(lock, [&] { return drained() || cancelled() || !running_; });
}

bool feeder::drain(const deadline& until) {
    check();
    {
        std::unique_lock<std::mutex> lock(m_);
        // !running_ with items left happens only after a failure, which check() reports.
        auto done = [&] { return drained() || !running_; };
        if (until.forever()) drained_.wait(lock, done);
        else if (!drained_.wait_until(lock, until.at(), done)) return false;
    }
    check();
    return true;
}

void feeder::cancel() noexcept {
    cancelled_.store(true, std::memory_order_release);
    std::lock_guard<std::mutex> lock(m_);
    drained_.notify_all();
}

void feeder::end_lingering() noexcept {
    std::unique_lock<std::mutex> lock(m_);
    stop_ = true;   // cleared by the next put() that has to start a thread
    work_.notify_all();
    // A drained thread ends at once now: join it, so that the process does not exit with an
    // ended thread nobody joined (ThreadSanitizer reports one as a leak in every Process child
    // that used an unbounded Queue). Under m_, as put() joins: a put() of another thread then
    // starts a new one. The thread needs m_ no more once running_ is false, and its reference
    // to the queue is never the last while a handle can still stop() it. A thread still
    // writing (a cancelled queue's) is left to go on, as before, and so is one that another
    // thread's put() gives more to meanwhile: the wait is bounded (a drained thread ends within
    // microseconds), since that one could write for as long as the ring stays full.
    if (!drained()) return;
    drained_.wait_for(lock, idle_linger, [&] { return !running_ || !drained(); });
    if (!running_ && thread_.joinable()) thread_.join();
}

void feeder::stop() noexcept {
    std::unique_lock<std::mutex> lock(m_);
    if (!cancelled()) drained_.wait(lock, [&] { return drained() || !running_; });
    if (!thread_.joinable()) return;
    stop_ = true;   // a thread lingering on an empty backlog ends now
    work_.notify_all();
    if (running_ && cancelled()) {
        // Still writing into a ring nobody drains: let it go; `owner` keeps its state alive.
        // It writes on while someone may still read (Python's feeder likewise writes on while
        // the pipe has a reader), and ends when the queue says nobody can (orphaned()).
        orphaned_.store(true, std::memory_order_release);
        thread_.detach();
        return;
    }
    lock.unlock();
    thread_.join();
}

} // namespace shmq::detail
