// SPDX-License-Identifier: BSL-1.0
// shmq — synchronization primitives between processes: Python's multiprocessing.Lock, RLock,
// Semaphore, BoundedSemaphore, Event, Condition and Barrier, in shared memory.
//
//   shmq::Lock lock;                          // anonymous: shared with children forked later
//   shmq::Process p([&] { std::lock_guard g(lock); ... });
//   auto ev = shmq::Event::create("shutdown"); // named: /dev/shm/shmq.shutdown, any process
//   auto ev2 = shmq::Event::open("shutdown");  // ... until shmq::Event::remove("shutdown")
//
// Handles. Every object is a handle to shared state; copying a handle shares the object (as
// passing a Python object to a child does). A handle stays valid in children forked after it was
// made. Named objects follow the queues' rules: create() refuses an existing name
// (exists_error), open() a missing one (not_found_error) or another kind of object (type_error);
// names are 1..200 characters without '/'; options::mode sets the permission bits exactly and
// options::trust_foreign lets open() accept a segment of another user; remove() unlinks the name
// (handles already open keep working) and never throws.
//
// Lifetime, step by step: an anonymous object's memory exists while some handle maps it, in any
// process (children forked later inherit the mapping); it goes with the last one. A named object's
// entry /dev/shm/shmq.<name> exists from create() until remove(), whoever holds handles; each
// process unmaps its view when its last handle to it goes. Nothing is destroyed "in" shared memory:
// a lock held when the last handle goes simply disappears with it.
//
// Timeouts are Python's (timeout_t): std::nullopt waits forever, <= 0 does not wait, block=false
// ignores the timeout. They are measured on steady_clock. Signals do not end a wait early.
//
// Dead holders (the improvement over Python, whose locks stay held forever by a dead process):
//  * A Lock, RLock or Condition whose holder died (SIGKILL, a crash, _exit inside the critical
//    section) is taken over by the next acquire(), which succeeds — within about 20 ms of the
//    death being visible. Nothing is thrown: the new holder asks previous_owner_died(), which is
//    true while it holds a lock that it took over from a dead holder, so that it can repair the
//    state the critical section protects (the dead holder may have stopped anywhere in it).
//    owner_died_error is never thrown by these objects: lock() must stay usable by
//    std::lock_guard, and a throwing acquire would leave the lock held by nobody who knows.
//  * Death means the process: a lock held by a thread that exits while its process lives stays
//    held, as in Python. A process is dead when /proc says so (pid gone, zombie, or the pid now
//    belongs to a process started at another time); a holder in another pid namespace is never
//    taken over.
//  * Semaphores have no owner, as in Python: units acquired by a process that died stay acquired.
//  * A Barrier party that dies while waiting breaks the barrier: the other waiters get
//    broken_barrier_error within about 100 ms (waiters record who they are and check each other).
//  * An Event or Condition waiter that dies costs nothing (a dead Condition waiter's slot is
//    reclaimed, and notify() skips it).
//  * No wait is unbounded inside: every sleep lasts at most a slice of 20 ms, after which the
//    waiter looks again (and for dead peers).
//
// A named object truncated under its users (someone with write access shrank
// /dev/shm/shmq.<name>) kills nobody with SIGBUS (see the README): acquire, release and wait on
// it throw broken_error from then on; set(), clear() and is_set() cannot report it.
//
// Threads: every member may be called from several threads at once.
#pragma once

#include <shmq/errors.hpp>
#include <shmq/export.hpp>
#include <shmq/options.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

namespace shmq {

namespace detail {
struct lock_state;
struct rlock_state;
struct semaphore_state;
struct event_state;
struct condition_state;
struct barrier_state;
struct object_access;
} // namespace detail

/// multiprocessing.Lock: a non-recursive lock between processes and threads. Lockable
/// (lock/try_lock/unlock), so std::lock_guard, std::unique_lock and std::scoped_lock work.
/// As in Python (a Lock is a binary semaphore), release() by another thread or process than the
/// acquirer is allowed; acquiring twice from one thread deadlocks (or times out).
class SHMQ_API Lock {
public:
    /// Anonymous. Throws error (no shared memory).
    Lock();
    /// Throws exists_error, value_error (bad name), permission_error, error.
    static Lock create(std::string_view name, options opts = {});
    /// Throws not_found_error, type_error (not a Lock), permission_error, broken_error, error.
    static Lock open(std::string_view name) { return open(name, options{}); }
    /// As open(name); of opts only trust_foreign counts (the creator fixed the rest).
    static Lock open(std::string_view name, const options& opts);
    /// Unlinks the name. Never throws; false when there was nothing to remove.
    static bool remove(std::string_view name) noexcept;

    /// True when acquired; false when block is false or the timeout passed first. Takes the lock
    /// over from a dead holder (then previous_owner_died() is true). Throws only broken_error
    /// (a truncated named object).
    bool acquire(bool block = true, timeout_t timeout = std::nullopt);
    /// Throws value_error when the lock is not held.
    void release();
    /// True while the caller holds the lock and got it by taking it over from a holder that died
    /// inside its critical section. Read it right after acquiring. Never throws.
    bool previous_owner_died() const noexcept;

    void lock() { acquire(); }
    bool try_lock() { return acquire(false); }
    void unlock() { release(); }

private:
    friend struct detail::object_access;
    Lock(std::shared_ptr<void> keep, detail::lock_state* s) noexcept : keep_(std::move(keep)), s_(s) {}
    std::shared_ptr<void> keep_;
    detail::lock_state* s_ = nullptr;
};

/// multiprocessing.RLock: recursive per thread; release() as many times as acquire(). Lockable.
class SHMQ_API RLock {
public:
    RLock();
    static RLock create(std::string_view name, options opts = {});
    static RLock open(std::string_view name) { return open(name, options{}); }
    /// As open(name); of opts only trust_foreign counts (the creator fixed the rest).
    static RLock open(std::string_view name, const options& opts);
    static bool remove(std::string_view name) noexcept;

    /// As Lock::acquire; the holding thread acquires again at once (recursion count + 1).
    bool acquire(bool block = true, timeout_t timeout = std::nullopt);
    /// Throws value_error when the calling thread does not hold the lock.
    void release();
    /// As Lock::previous_owner_died.
    bool previous_owner_died() const noexcept;
    /// Whether the calling thread holds the lock.
    bool is_owned() const noexcept;

    void lock() { acquire(); }
    bool try_lock() { return acquire(false); }
    void unlock() { release(); }

private:
    friend struct detail::object_access;
    friend class Condition;
    RLock(std::shared_ptr<void> keep, detail::rlock_state* s) noexcept : keep_(std::move(keep)), s_(s) {}
    std::shared_ptr<void> keep_;
    detail::rlock_state* s_ = nullptr;
};

/// multiprocessing.Semaphore. No owner: a dead process's acquisitions stay acquired.
class SHMQ_API Semaphore {
public:
    /// Throws value_error (value above INT32_MAX), error.
    explicit Semaphore(unsigned value = 1);
    static Semaphore create(std::string_view name, unsigned value = 1, options opts = {});
    static Semaphore open(std::string_view name) { return open(name, options{}); }
    /// As open(name); of opts only trust_foreign counts (the creator fixed the rest).
    static Semaphore open(std::string_view name, const options& opts);
    static bool remove(std::string_view name) noexcept;

    /// Takes one unit; true when taken, false when block is false or the timeout passed. Throws
    /// only broken_error (a truncated named object).
    bool acquire(bool block = true, timeout_t timeout = std::nullopt);
    /// Gives n units back and wakes waiters. Throws value_error when the value would pass
    /// INT32_MAX (or, for a BoundedSemaphore, its initial value); the value is then unchanged.
    void release(unsigned n = 1);
    unsigned get_value() const;

    void lock() { acquire(); }
    bool try_lock() { return acquire(false); }
    void unlock() { release(); }

protected:
    friend struct detail::object_access;
    Semaphore(std::shared_ptr<void> keep, detail::semaphore_state* s) noexcept : keep_(std::move(keep)), s_(s) {}
    std::shared_ptr<void> keep_;
    detail::semaphore_state* s_ = nullptr;
};

/// multiprocessing.BoundedSemaphore: release() above the initial value throws value_error.
class SHMQ_API BoundedSemaphore : public Semaphore {
public:
    explicit BoundedSemaphore(unsigned value = 1);
    static BoundedSemaphore create(std::string_view name, unsigned value = 1, options opts = {});
    static BoundedSemaphore open(std::string_view name) { return open(name, options{}); }
    /// As open(name); of opts only trust_foreign counts (the creator fixed the rest).
    static BoundedSemaphore open(std::string_view name, const options& opts);
    static bool remove(std::string_view name) noexcept;

private:
    friend struct detail::object_access;
    BoundedSemaphore(std::shared_ptr<void> keep, detail::semaphore_state* s) noexcept
        : Semaphore(std::move(keep), s) {}
};

/// multiprocessing.Event: a flag, initially false.
class SHMQ_API Event {
public:
    Event();
    static Event create(std::string_view name, options opts = {});
    static Event open(std::string_view name) { return open(name, options{}); }
    /// As open(name); of opts only trust_foreign counts (the creator fixed the rest).
    static Event open(std::string_view name, const options& opts);
    static bool remove(std::string_view name) noexcept;

    /// Sets the flag and wakes every waiter. Never throws.
    void set() noexcept;
    void clear() noexcept;
    bool is_set() const noexcept;
    /// Waits until the flag is set; true if it is (or was set while waiting), false on timeout.
    bool wait(timeout_t timeout = std::nullopt);

private:
    friend struct detail::object_access;
    Event(std::shared_ptr<void> keep, detail::event_state* s) noexcept : keep_(std::move(keep)), s_(s) {}
    std::shared_ptr<void> keep_;
    detail::event_state* s_ = nullptr;
};

/// multiprocessing.Condition with its own recursive lock (an RLock, Python's default). Lockable.
/// notify(n) wakes the n longest-waiting waiters; a waiter that timed out or died is not counted.
/// At most 128 waiters at once (error beyond).
class SHMQ_API Condition {
public:
    Condition();
    static Condition create(std::string_view name, options opts = {});
    static Condition open(std::string_view name) { return open(name, options{}); }
    /// As open(name); of opts only trust_foreign counts (the creator fixed the rest).
    static Condition open(std::string_view name, const options& opts);
    static bool remove(std::string_view name) noexcept;

    bool acquire(bool block = true, timeout_t timeout = std::nullopt);
    /// Throws value_error when the calling thread does not hold the lock.
    void release();
    /// As Lock::previous_owner_died (also after wait() re-acquired the lock).
    bool previous_owner_died() const noexcept;

    /// Releases the lock (however many times this thread holds it), waits for a notify or the
    /// timeout, re-acquires the lock. True when notified, false on timeout. Throws value_error
    /// when the lock is not held by the calling thread; error when 128 waiters already wait.
    bool wait(timeout_t timeout = std::nullopt);
    /// Waits until pred() is true (checked with the lock held), or the timeout. Returns the last
    /// value of pred(), as Python does.
    template <class Pred> bool wait_for(Pred pred, timeout_t timeout = std::nullopt) {
        using clk = std::chrono::steady_clock;
        std::optional<clk::time_point> end;
        if (timeout) end = clk::now() + std::chrono::duration_cast<clk::duration>(*timeout);
        bool result = pred();
        while (!result) {
            timeout_t left;
            if (end) {
                left = std::chrono::duration<double>(*end - clk::now());
                if (left->count() <= 0) break;
            }
            wait(left);
            result = pred();
        }
        return result;
    }
    /// Wakes up to n waiters. Throws value_error when the lock is not held by the calling thread.
    void notify(std::size_t n = 1);
    void notify_all();

    void lock() { acquire(); }
    bool try_lock() { return acquire(false); }
    void unlock() { release(); }

private:
    friend struct detail::object_access;
    Condition(std::shared_ptr<void> keep, detail::condition_state* s) noexcept : keep_(std::move(keep)), s_(s) {}
    std::shared_ptr<void> keep_;
    detail::condition_state* s_ = nullptr;
};

/// multiprocessing.Barrier (threading.Barrier's semantics) for up to 256 parties.
///  * wait() returns the arrival index, 0 .. parties-1 (parties-1 for the last one, which runs
///    the action before anyone is released). If the action throws, the barrier breaks and the
///    exception reaches that caller; the others get broken_barrier_error.
///  * A wait that times out breaks the barrier (broken_barrier_error for it and every waiter),
///    as does abort(), and a party dying while waiting. Later waits throw until reset().
///  * The action is per handle (a function cannot live in shared memory): whichever party comes
///    last runs its own handle's action. A handle from open() has no action unless given one.
class SHMQ_API Barrier {
public:
    /// Throws value_error (parties 0 or above 256), error.
    explicit Barrier(std::size_t parties, std::function<void()> action = {},
                     timeout_t timeout = std::nullopt);
    static Barrier create(std::string_view name, std::size_t parties,
                          std::function<void()> action = {}, timeout_t timeout = std::nullopt,
                          options opts = {});
    static Barrier open(std::string_view name) { return open(name, {}, options{}); }
    static Barrier open(std::string_view name, std::function<void()> action,
                        const options& opts = {});
    static bool remove(std::string_view name) noexcept;

    /// Throws broken_barrier_error; whatever the action throws.
    std::size_t wait(timeout_t timeout = std::nullopt);
    /// Returns the barrier to its empty state; waiters inside get broken_barrier_error.
    void reset();
    /// Breaks the barrier: waiters now and later get broken_barrier_error until reset().
    void abort();
    std::size_t parties() const noexcept;
    std::size_t n_waiting() const noexcept;
    bool broken() const noexcept;

private:
    friend struct detail::object_access;
    Barrier(std::shared_ptr<void> keep, detail::barrier_state* s, std::function<void()> action) noexcept
        : keep_(std::move(keep)), s_(s), action_(std::move(action)) {}
    std::shared_ptr<void> keep_;
    detail::barrier_state* s_ = nullptr;
    std::function<void()> action_;
};

namespace detail {
/// How the library and <shmq/shared_value.hpp> build handles and reach their shared state.
struct object_access {
    template <class H, class... A> static H make(A&&... a) { return H(std::forward<A>(a)...); }
    template <class H> static auto state(const H& h) noexcept { return h.s_; }
};
} // namespace detail

} // namespace shmq
