// SPDX-License-Identifier: BSL-1.0
// Synchronization objects and shared values (issue 10): Lock, RLock, Semaphore,
// BoundedSemaphore, Event, Condition, Barrier, Value<T>, Array<T> — Python's semantics and
// timeouts, Lockable use with the std guards, anonymous objects across fork, named objects
// (create/open/remove, type_error), and the dead-holder improvements: a Lock/RLock/Condition
// holder killed inside its critical section is taken over and the new holder is told; a Barrier
// party killed while waiting breaks the barrier for the others; dead Event/Condition waiters
// cost nothing.
//
// Children report by exit code and end with _exit (fork_child); every blocking call is bounded
// by a timeout or a watchdog; named objects are removed by shm_remover even on failure.
#define BOOST_TEST_MODULE sync
#include <boost/test/unit_test.hpp>

#include <shmq/shmq.hpp>

#include "test_fixtures.hpp"

#include <atomic>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

using namespace std::chrono_literals;
using namespace shmq::test;

namespace {

/// Polls pred every 200 µs for at most `limit`; returns its last value.
template <class Pred> bool eventually(Pred pred, seconds_d limit = 5s) {
    stopwatch sw;
    while (!pred()) {
        if (sw.seconds() > limit.count()) return pred();
        std::this_thread::sleep_for(200us);
    }
    return true;
}

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now().time_since_epoch()).count();
}

/// A lock held for the scope, taken with a bound (a lock_guard would wait for ever if a bug left
/// the lock held by a child): fails the test instead.
template <class L> class held_for {
public:
    explicit held_for(L& l, seconds_d limit = 5s) : l_(l) { BOOST_REQUIRE(l_.acquire(true, limit)); }
    ~held_for() { l_.release(); }
    held_for(const held_for&) = delete;
    held_for& operator=(const held_for&) = delete;

private:
    L& l_;
};

/// A short busy wait (a random point inside a critical section).
void spin_for(unsigned iterations) {
    for (unsigned i = 0; i < iterations; ++i) asm volatile("" ::: "memory");
}

} // namespace

// ---- The pinned API (DESIGN §6.3): outside tests take these exact signatures ---------------------

BOOST_AUTO_TEST_CASE(pinned_signatures_exist) {
    shmq::Lock (*lock_open)(std::string_view) = &shmq::Lock::open;
    shmq::Event (*event_open)(std::string_view) = &shmq::Event::open;
    shmq::Barrier (*barrier_open)(std::string_view) = &shmq::Barrier::open;
    shmq::Value<int> (*value_open)(std::string_view) = &shmq::Value<int>::open;
    shmq::Array<int> (*array_open)(std::string_view) = &shmq::Array<int>::open;
    bool (*remove)(std::string_view) noexcept = &shmq::Semaphore::remove;
    bool (shmq::Lock::*acquire)(bool, shmq::timeout_t) = &shmq::Lock::acquire;
    void (shmq::RLock::*rrelease)() = &shmq::RLock::release;
    void (shmq::Semaphore::*release)(unsigned) = &shmq::Semaphore::release;
    unsigned (shmq::Semaphore::*get_value)() const = &shmq::Semaphore::get_value;
    void (shmq::Event::*set)() = &shmq::Event::set;
    bool (shmq::Event::*is_set)() const = &shmq::Event::is_set;
    bool (shmq::Condition::*cwait)(shmq::timeout_t) = &shmq::Condition::wait;
    void (shmq::Condition::*notify)(std::size_t) = &shmq::Condition::notify;
    std::size_t (shmq::Barrier::*bwait)(shmq::timeout_t) = &shmq::Barrier::wait;
    std::size_t (shmq::Barrier::*n_waiting)() const = &shmq::Barrier::n_waiting;
    shmq::Lock& (shmq::Value<int>::*get_lock)() = &shmq::Value<int>::get_lock;
    int* (shmq::Array<int>::*data)() = &shmq::Array<int>::data;
    BOOST_TEST((lock_open && event_open && barrier_open && value_open && array_open && remove &&
                acquire && rrelease && release && get_value && set && is_set && cwait && notify &&
                bwait && n_waiting && get_lock && data));
    static_assert(std::is_base_of_v<shmq::Semaphore, shmq::BoundedSemaphore>);
    static_assert(std::is_base_of_v<shmq::error, shmq::broken_barrier_error>);
}

// ---- Lock ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(lock_acquire_release_and_errors) {
    shmq::Lock l;
    BOOST_TEST(l.acquire());
    BOOST_TEST(!l.previous_owner_died());
    BOOST_TEST(!l.acquire(false));            // not recursive
    BOOST_TEST(!l.try_lock());
    l.release();
    BOOST_CHECK_THROW(l.release(), shmq::value_error);   // not held
    BOOST_TEST(l.try_lock());
    l.unlock();
}

BOOST_AUTO_TEST_CASE(lock_timeouts) {
    shmq::Lock l;
    l.acquire();
    // block=false ignores the timeout.
    double t = timed([&] { BOOST_TEST(!l.acquire(false, 5s)); });
    BOOST_TEST(t < 0.1);
    t = timed([&] { BOOST_TEST(!l.acquire(true, 0.2s)); });
    BOOST_TEST(t >= 0.1);
    BOOST_TEST(t < 1.2);
    t = timed([&] { BOOST_TEST(!l.acquire(true, -1s)); });   // negative = do not wait
    BOOST_TEST(t < 0.1);
    l.release();
    BOOST_TEST(l.acquire(true, 0s));   // free: a zero timeout still takes it
    l.release();
}

BOOST_AUTO_TEST_CASE(std_guards_work_with_every_lockable) {
    shmq::Lock l;
    shmq::RLock r;
    shmq::Condition c;
    shmq::Semaphore s(1);
    {
        std::lock_guard g(l);
        BOOST_TEST(!l.try_lock());
    }
    BOOST_TEST(l.try_lock());
    l.unlock();
    {
        std::unique_lock u(l, std::try_to_lock);
        BOOST_TEST(u.owns_lock());
        std::unique_lock u2(l, std::try_to_lock);
        BOOST_TEST(!u2.owns_lock());
    }
    {
        std::scoped_lock g(l, r, c, s);
        BOOST_TEST(r.is_owned());
        BOOST_TEST(s.get_value() == 0u);
        std::lock_guard again(r);   // recursive
    }
    BOOST_TEST(!r.is_owned());
    BOOST_TEST(s.get_value() == 1u);
    BOOST_TEST(l.try_lock());
    l.unlock();
}

BOOST_AUTO_TEST_CASE(lock_between_threads) {
    shmq::Lock l;
    long counter = 0;
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
        ts.emplace_back([&] {
            for (int i = 0; i < 2000; ++i) {
                std::lock_guard g(l);
                ++counter;
            }
        });
    for (auto& t : ts) t.join();
    BOOST_TEST(counter == 8000);
}

BOOST_AUTO_TEST_CASE(lock_across_processes_and_release_by_another) {
    shmq::Lock l;
    shared_array<std::atomic<int>> flag(2);
    scoped_child holder([&] {
        SHMQ_CHILD_CHECK(l.acquire(true, 5s), 1);
        flag[0] = 1;
        SHMQ_CHILD_CHECK(eventually([&] { return flag[1].load() == 1; }), 2);
        return 0;   // exits holding it: the lock was released by the parent meanwhile
    });
    BOOST_REQUIRE(eventually([&] { return flag[0].load() == 1; }));
    BOOST_TEST(!l.acquire(true, 0.05s));
    l.release();   // as in Python, another process may release a Lock
    BOOST_TEST(l.acquire(true, 1s));
    BOOST_TEST(!l.previous_owner_died());
    flag[1] = 1;
    BOOST_TEST(holder.wait(10s) == 0);
    l.release();
}

BOOST_AUTO_TEST_CASE(dead_lock_holder_is_taken_over_and_reported) {
    shmq::Lock l;
    scoped_child holder([&] {
        SHMQ_CHILD_CHECK(l.acquire(true, 5s), 1);
        ::_exit(0);   // dies holding the lock
        return 0;
    });
    BOOST_TEST(holder.wait(10s) == 0);
    stopwatch sw;
    BOOST_REQUIRE(l.acquire(true, 5s));
    BOOST_TEST_MESSAGE("takeover after " << sw.millis() << " ms");
    BOOST_TEST(sw.seconds() < 1.0);
    BOOST_TEST(l.previous_owner_died());
    l.release();
    BOOST_TEST(!l.previous_owner_died());
    BOOST_REQUIRE(l.acquire(true, 1s));
    BOOST_TEST(!l.previous_owner_died());   // a normal acquire clears it
    l.release();
}

BOOST_AUTO_TEST_CASE(dead_holder_is_taken_over_by_a_try_lock_loop_too) {
    shmq::Lock l;
    scoped_child holder([&] {
        SHMQ_CHILD_CHECK(l.acquire(true, 5s), 1);
        ::_exit(0);
        return 0;
    });
    BOOST_TEST(holder.wait(10s) == 0);
    stopwatch sw;
    bool got = false;
    while (!(got = l.try_lock()) && sw.seconds() < 5) std::this_thread::sleep_for(1ms);
    BOOST_REQUIRE(got);
    BOOST_TEST(sw.seconds() < 1.0);
    BOOST_TEST(l.previous_owner_died());
    l.unlock();
}

// The critical section of a counter incremented by 4 processes, its holders SIGKILLed at random
// points inside it. The invariant is count == sum(log): each increment adds 1 to count, then
// (after a random delay, so a kill can land between) 1 to its process's log entry. A holder
// that took the lock over is told (previous_owner_died) and repairs the invariant by recounting.
namespace {
struct counter_state {
    std::uint64_t count;
    std::uint64_t log[32];
    std::uint64_t recoveries;   // takeovers seen by the acquirer
    std::uint64_t repaired;     // takeovers that found the invariant broken
};
constexpr int min_increments = 50;

void repair(counter_state& c) {
    std::uint64_t sum = 0;
    for (auto v : c.log) sum += v;
    ++c.recoveries;
    if (c.count != sum) {
        c.count = sum;
        ++c.repaired;
    }
}
} // namespace

BOOST_AUTO_TEST_CASE(counter_survives_holders_killed_inside_the_critical_section) {
    shmq::Value<counter_state> v;
    shared_array<std::atomic<int>> holding(32);   // slot is inside the critical section
    shared_array<std::atomic<std::uint64_t>> done(32);   // increments a worker finished (after release)
    shared_array<std::atomic<int>> stop(1);
    const auto seed = test_seed();
    BOOST_TEST_MESSAGE("seed " << seed);
    auto worker = [&](int slot) {
        return [&, slot] {
            std::mt19937 rng(static_cast<unsigned>(seed) + slot);
            for (int i = 0; i < min_increments || stop[0].load() == 0; ++i) {
                SHMQ_CHILD_CHECK(v.get_lock().acquire(true, 20s), 1);
                counter_state& c = v.value();
                if (v.get_lock().previous_owner_died()) repair(c);
                holding[slot] = 1;
                ++c.count;
                spin_for(rng() % 20000);
                ++c.log[slot];
                spin_for(rng() % 2000);
                holding[slot] = 0;
                v.get_lock().release();
                ++done[slot];
                spin_for(rng() % 3000);
            }
            return 0;
        };
    };
    std::vector<scoped_child> kids;
    std::vector<int> slot_of;
    for (int s = 0; s < 4; ++s) {
        kids.emplace_back(worker(s));
        slot_of.push_back(s);
    }
    std::mt19937 rng(static_cast<unsigned>(seed));
    int kills = 0, killed_holding = 0;
    std::vector<int> killed_slots;
    for (int k = 0; k < 8; ++k) {
        // A live worker, killed at a random moment once it is inside the critical section.
        std::vector<std::size_t> live;
        for (std::size_t i = 0; i < kids.size(); ++i)
            if (kids[i].pid() > 0 && !kids[i].exited()) live.push_back(i);
        if (live.empty()) break;
        const std::size_t victim = live[rng() % live.size()];
        const int slot = slot_of[victim];
        BOOST_REQUIRE(eventually([&] { return holding[slot].load() == 1 || kids[victim].exited(); }, 10s));
        BOOST_REQUIRE(!kids[victim].exited());
        spin_for(rng() % 20000);
        kids[victim].kill(SIGKILL);
        const int rc = kids[victim].wait(10s);
        BOOST_REQUIRE(rc == -SIGKILL);
        ++kills;
        killed_slots.push_back(slot);
        if (holding[slot].load() == 1) ++killed_holding;
        const int fresh = 4 + k;
        kids.emplace_back(worker(fresh));
        slot_of.push_back(fresh);
    }
    stop[0] = 1;
    for (std::size_t i = 0; i < kids.size(); ++i) {
        if (kids[i].pid() <= 0) continue;
        BOOST_TEST(kids[i].wait(60s) == 0, "worker in slot " << slot_of[i]);
    }
    BOOST_REQUIRE(v.get_lock().acquire(true, 5s));
    if (v.get_lock().previous_owner_died()) repair(v.value());
    const counter_state c = v.value();
    v.get_lock().release();

    std::uint64_t sum = 0;
    for (auto x : c.log) sum += x;
    BOOST_TEST(c.count == sum);
    for (std::size_t i = 0; i < slot_of.size(); ++i) {
        const bool killed = std::find(killed_slots.begin(), killed_slots.end(), slot_of[i]) != killed_slots.end();
        const std::uint64_t log = c.log[slot_of[i]], finished = done[slot_of[i]].load();
        // A killed worker may have logged one increment it did not get to count as finished.
        if (killed) BOOST_TEST((log == finished || log == finished + 1), "slot " << slot_of[i]);
        else BOOST_TEST(log == finished, "slot " << slot_of[i]);
        if (!killed) BOOST_TEST(finished >= std::uint64_t(min_increments));
    }
    BOOST_TEST_MESSAGE(kills << " kills, " << killed_holding << " inside the critical section, "
                             << c.recoveries << " takeovers reported, " << c.repaired << " repairs");
    BOOST_TEST(kills == 8);
    BOOST_TEST(killed_holding >= 1);
    // Every death inside the critical section was reported to the next holder, and only deaths were.
    BOOST_TEST(c.recoveries >= std::uint64_t(killed_holding));
    BOOST_TEST(c.recoveries <= std::uint64_t(kills));
}

// ---- RLock -----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(rlock_is_recursive_per_thread) {
    shmq::RLock r;
    BOOST_CHECK_THROW(r.release(), shmq::value_error);
    BOOST_TEST(r.acquire());
    BOOST_TEST(r.acquire(false));
    BOOST_TEST(r.is_owned());
    std::thread other([&] {
        BOOST_TEST(!r.is_owned());
        BOOST_TEST(!r.acquire(true, 0.05s));
        BOOST_CHECK_THROW(r.release(), shmq::value_error);   // not the owner
    });
    other.join();
    r.release();
    BOOST_TEST(r.is_owned());
    r.release();
    BOOST_TEST(!r.is_owned());
    BOOST_CHECK_THROW(r.release(), shmq::value_error);
    std::thread taker([&] {
        BOOST_TEST(r.acquire(true, 1s));
        r.release();
    });
    taker.join();
}

BOOST_AUTO_TEST_CASE(rlock_other_process_cannot_release_and_dead_holder_is_taken_over) {
    shmq::RLock r;
    r.acquire();
    scoped_child other([&] {
        try {
            r.release();
            return 1;
        } catch (const shmq::value_error&) {
        }
        SHMQ_CHILD_CHECK(!r.acquire(true, 0.05s), 2);
        return 0;
    });
    BOOST_TEST(other.wait(10s) == 0);
    r.release();
    scoped_child holder([&] {
        SHMQ_CHILD_CHECK(r.acquire(true, 5s) && r.acquire(true, 5s) && r.acquire(true, 5s), 1);
        ::_exit(0);   // dies holding it three levels deep
        return 0;
    });
    BOOST_TEST(holder.wait(10s) == 0);
    BOOST_REQUIRE(r.acquire(true, 5s));
    BOOST_TEST(r.previous_owner_died());
    r.release();   // one level: ours, not the dead holder's three
    BOOST_TEST(!r.is_owned());
    BOOST_TEST(r.acquire(true, 1s));
    BOOST_TEST(!r.previous_owner_died());
    r.release();
}

// ---- Semaphore -------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(semaphore_counts_and_times_out) {
    shmq::Semaphore s(2);
    BOOST_TEST(s.get_value() == 2u);
    BOOST_TEST(s.acquire());
    BOOST_TEST(s.acquire(false));
    BOOST_TEST(!s.acquire(false));
    double t = timed([&] { BOOST_TEST(!s.acquire(true, 0.2s)); });
    BOOST_TEST(t >= 0.1);
    BOOST_TEST(t < 1.2);
    s.release(3);
    BOOST_TEST(s.get_value() == 3u);
    s.release();   // unbounded: above the initial value is fine
    BOOST_TEST(s.get_value() == 4u);
    BOOST_CHECK_THROW(shmq::Semaphore(0x80000000u), shmq::value_error);
    shmq::Semaphore zero(0);
    BOOST_TEST(!zero.acquire(false));
}

BOOST_AUTO_TEST_CASE(bounded_semaphore_refuses_over_release) {
    shmq::BoundedSemaphore b(2);
    BOOST_CHECK_THROW(b.release(), shmq::value_error);
    BOOST_TEST(b.get_value() == 2u);
    b.acquire();
    b.acquire();
    BOOST_CHECK_THROW(b.release(3), shmq::value_error);
    BOOST_TEST(b.get_value() == 0u);   // unchanged by the refused release
    b.release(2);
    BOOST_TEST(b.get_value() == 2u);
    BOOST_CHECK_THROW(b.release(), shmq::value_error);
}

BOOST_AUTO_TEST_CASE(semaphore_wakes_a_waiter_in_another_process_and_has_no_owner) {
    shmq::Semaphore s(0);
    scoped_child waiter([&] {
        SHMQ_CHILD_CHECK(s.acquire(true, 5s), 1);
        return 0;
    });
    std::this_thread::sleep_for(50ms);
    s.release();
    BOOST_TEST(waiter.wait(10s) == 0);
    BOOST_TEST(s.get_value() == 0u);
    // No owner: a process that dies after acquiring keeps its unit, as in Python.
    s.release(2);
    scoped_child taker([&] {
        SHMQ_CHILD_CHECK(s.acquire(false), 1);
        ::_exit(0);
        return 0;
    });
    BOOST_TEST(taker.wait(10s) == 0);
    BOOST_TEST(s.get_value() == 1u);
}

// ---- Event -----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(event_set_clear_wait) {
    shmq::Event e;
    BOOST_TEST(!e.is_set());
    double t = timed([&] { BOOST_TEST(!e.wait(0.2s)); });
    BOOST_TEST(t >= 0.1);
    BOOST_TEST(t < 1.2);
    BOOST_TEST(!e.wait(0s));
    e.set();
    BOOST_TEST(e.is_set());
    BOOST_TEST(e.wait());
    BOOST_TEST(e.wait(0s));
    e.set();   // idempotent
    e.clear();
    BOOST_TEST(!e.is_set());
    BOOST_TEST(!e.wait(0.01s));
}

BOOST_AUTO_TEST_CASE(event_wakes_waiters_in_other_processes) {
    shmq::Event e;
    shared_array<std::atomic<std::int64_t>> woke(3);
    std::vector<scoped_child> kids;
    for (int i = 0; i < 3; ++i)
        kids.emplace_back([&, i] {
            SHMQ_CHILD_CHECK(e.wait(10s), 1);
            woke[i] = now_ns();
            return 0;
        });
    std::this_thread::sleep_for(100ms);
    const std::int64_t set_at = now_ns();
    e.set();
    for (auto& k : kids) BOOST_TEST(k.wait(10s) == 0);
    for (int i = 0; i < 3; ++i) BOOST_TEST((woke[i] - set_at) < 500'000'000);   // promptly, not by polling
}

BOOST_AUTO_TEST_CASE(event_set_then_clear_still_wakes_a_sleeping_waiter) {
    shmq::Event e;
    shared_array<std::atomic<int>> started(1);
    scoped_child waiter([&] {
        started[0] = 1;
        return e.wait(5s) ? 0 : 1;   // Python's Event.wait: woken by the set, so true
    });
    BOOST_REQUIRE(eventually([&] { return started[0].load() == 1; }));
    std::this_thread::sleep_for(100ms);
    e.set();
    e.clear();
    BOOST_TEST(waiter.wait(10s) == 0);
}

BOOST_AUTO_TEST_CASE(dead_event_waiter_costs_nothing) {
    shmq::Event e;
    scoped_child doomed([&] { return e.wait(30s) ? 0 : 1; });
    std::this_thread::sleep_for(100ms);
    doomed.kill();
    BOOST_TEST(doomed.wait(10s) == -SIGKILL);
    scoped_child live([&] { return e.wait(5s) ? 0 : 1; });
    std::this_thread::sleep_for(50ms);
    e.set();
    BOOST_TEST(live.wait(10s) == 0);
}

// ---- Condition -------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(condition_requires_its_lock_and_times_out) {
    shmq::Condition c;
    BOOST_CHECK_THROW(c.wait(0.01s), shmq::value_error);
    BOOST_CHECK_THROW(c.notify(), shmq::value_error);
    BOOST_CHECK_THROW(c.release(), shmq::value_error);
    std::lock_guard g(c);
    double t = timed([&] { BOOST_TEST(!c.wait(0.2s)); });
    BOOST_TEST(t >= 0.1);
    BOOST_TEST(t < 1.2);
    BOOST_TEST(c.try_lock());   // still held after the wait, recursively
    c.unlock();
    c.notify();       // nobody waits: nothing happens
    c.notify_all();
}

BOOST_AUTO_TEST_CASE(condition_notify_wakes_exactly_n_then_notify_all_the_rest) {
    shmq::Condition c;
    shared_array<std::atomic<int>> woken(1);
    shared_array<std::atomic<int>> waiting(1);
    std::vector<scoped_child> kids;
    for (int i = 0; i < 3; ++i)
        kids.emplace_back([&] {
            SHMQ_CHILD_CHECK(c.acquire(true, 5s), 1);
            ++waiting[0];
            const bool notified = c.wait(10s);
            ++woken[0];
            c.release();
            return notified ? 0 : 2;
        });
    BOOST_REQUIRE(eventually([&] { return waiting[0].load() == 3; }));
    {
        held_for g(c);   // every waiter is inside wait() once it released the lock
        c.notify();
    }
    BOOST_TEST(eventually([&] { return woken[0].load() >= 1; }));
    std::this_thread::sleep_for(150ms);
    BOOST_TEST(woken[0].load() == 1);   // exactly one
    {
        held_for g(c);
        c.notify_all();
    }
    for (auto& k : kids) BOOST_TEST(k.wait(10s) == 0);
    BOOST_TEST(woken[0].load() == 3);
}

BOOST_AUTO_TEST_CASE(condition_wait_for_a_predicate_across_processes) {
    shmq::Condition c;
    shmq::Value<int> state(0);
    scoped_child producer([&] {
        for (int i = 1; i <= 5; ++i) {
            std::this_thread::sleep_for(10ms);
            std::lock_guard g(c);
            state.value() = i;
            c.notify_all();
        }
        return 0;
    });
    {
        held_for g(c);
        BOOST_TEST(c.wait_for([&] { return state.value() == 5; }, 10s));
        BOOST_TEST(!c.wait_for([&] { return state.value() == 6; }, 0.1s));   // last value of pred
    }
    BOOST_TEST(producer.wait(10s) == 0);
}

BOOST_AUTO_TEST_CASE(dead_condition_waiter_does_not_absorb_a_notify) {
    shmq::Condition c;
    shared_array<std::atomic<int>> waiting(2);
    scoped_child doomed([&] {
        c.acquire();
        waiting[0] = 1;
        c.wait(30s);
        return 0;
    });
    BOOST_REQUIRE(eventually([&] { return waiting[0].load() == 1; }));
    {   // it is asleep once it released the lock
        held_for g(c);
    }
    doomed.kill();
    BOOST_TEST(doomed.wait(10s) == -SIGKILL);
    std::this_thread::sleep_for(100ms);   // its slot's heartbeat goes stale
    scoped_child live([&] {
        c.acquire();
        waiting[1] = 1;
        const bool notified = c.wait(5s);
        c.release();
        return notified ? 0 : 1;
    });
    BOOST_REQUIRE(eventually([&] { return waiting[1].load() == 1; }));
    {
        held_for g(c);
        c.notify(1);   // the oldest slot is the dead one: skipped
    }
    BOOST_TEST(live.wait(10s) == 0);
}

BOOST_AUTO_TEST_CASE(dead_condition_holder_is_taken_over) {
    shmq::Condition c;
    scoped_child holder([&] {
        SHMQ_CHILD_CHECK(c.acquire(true, 5s), 1);
        ::_exit(0);
        return 0;
    });
    BOOST_TEST(holder.wait(10s) == 0);
    BOOST_REQUIRE(c.acquire(true, 5s));
    BOOST_TEST(c.previous_owner_died());
    c.release();
}

BOOST_AUTO_TEST_CASE(condition_wait_releases_every_level_and_restores_them) {
    shmq::Condition c;
    shared_array<std::atomic<int>> got_lock(1);
    BOOST_REQUIRE(c.acquire(true, 5s));
    BOOST_REQUIRE(c.acquire(true, 5s));   // two levels
    scoped_child notifier([&] {
        SHMQ_CHILD_CHECK(c.acquire(true, 5s), 1);   // only possible if wait released both levels
        got_lock[0] = 1;
        c.notify();
        c.release();
        return 0;
    });
    BOOST_TEST(c.wait(5s));
    BOOST_TEST(got_lock[0].load() == 1);
    c.release();
    c.release();   // both levels are back
    BOOST_CHECK_THROW(c.release(), shmq::value_error);
    BOOST_TEST(notifier.wait(10s) == 0);
}

BOOST_AUTO_TEST_CASE(waiter_learns_that_the_notifier_died_holding_the_lock) {
    shmq::Condition c;
    BOOST_REQUIRE(c.acquire(true, 5s));
    scoped_child notifier([&] {
        SHMQ_CHILD_CHECK(c.acquire(true, 5s), 1);
        c.notify();
        ::_exit(0);   // dies holding the lock the waiter must get back
        return 0;
    });
    stopwatch sw;
    BOOST_TEST(c.wait(5s));
    BOOST_TEST(sw.seconds() < 2.0);
    BOOST_TEST(c.previous_owner_died());
    c.release();
    BOOST_TEST(notifier.wait(10s) == 0);
}

BOOST_AUTO_TEST_CASE(semaphore_and_event_between_threads) {
    shmq::Semaphore s(0);
    shmq::Event e;
    std::atomic<int> taken{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < 3; ++i)
        ts.emplace_back([&] {
            if (e.wait(5s))
                for (int k = 0; k < 100; ++k)
                    if (s.acquire(true, 5s)) ++taken;
        });
    e.set();
    for (int k = 0; k < 300; ++k) s.release();
    for (auto& t : ts) t.join();
    BOOST_TEST(taken.load() == 300);
    BOOST_TEST(s.get_value() == 0u);
}

// ---- Barrier ---------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(barrier_indices_action_and_reuse) {
    shared_array<std::atomic<int>> actions(1);
    shmq::Barrier b(4, [&] { ++actions[0]; });
    BOOST_TEST(b.parties() == 4u);
    BOOST_TEST(b.n_waiting() == 0u);
    shared_array<std::atomic<int>> seen(4 * 3);   // per round, how often each index came
    std::vector<scoped_child> kids;
    for (int i = 0; i < 3; ++i)
        kids.emplace_back([&] {
            for (int round = 0; round < 3; ++round) {
                const std::size_t idx = b.wait(10s);
                SHMQ_CHILD_CHECK(idx < 4, 1);
                ++seen[round * 4 + idx];
            }
            return 0;
        });
    for (int round = 0; round < 3; ++round) {
        const std::size_t idx = b.wait(10s);
        BOOST_REQUIRE(idx < 4u);
        ++seen[round * 4 + idx];
    }
    for (auto& k : kids) BOOST_TEST(k.wait(10s) == 0);
    for (int i = 0; i < 12; ++i) BOOST_TEST(seen[i].load() == 1, "round " << i / 4 << " index " << i % 4);
    BOOST_TEST(actions[0].load() == 3);   // once per trip, by the last party
    BOOST_TEST(!b.broken());
}

BOOST_AUTO_TEST_CASE(barrier_timeout_breaks_it_and_reset_repairs_it) {
    shmq::Barrier b(3);
    scoped_child waiter([&] {
        try {
            b.wait(10s);
            return 1;
        } catch (const shmq::broken_barrier_error&) {
            return 0;
        }
    });
    BOOST_REQUIRE(eventually([&] { return b.n_waiting() == 1; }));
    double t = timed([&] { BOOST_CHECK_THROW(b.wait(0.2s), shmq::broken_barrier_error); });
    BOOST_TEST(t >= 0.1);
    BOOST_TEST(t < 2.0);
    BOOST_TEST(waiter.wait(10s) == 0);
    BOOST_TEST(b.broken());
    BOOST_CHECK_THROW(b.wait(1s), shmq::broken_barrier_error);   // stays broken
    b.reset();
    BOOST_TEST(!b.broken());
    scoped_child party([&] { return b.wait(10s) < 3 ? 0 : 1; });
    scoped_child party2([&] { return b.wait(10s) < 3 ? 0 : 1; });
    BOOST_TEST(b.wait(10s) < 3u);
    BOOST_TEST(party.wait(10s) == 0);
    BOOST_TEST(party2.wait(10s) == 0);
}

BOOST_AUTO_TEST_CASE(barrier_abort_and_default_timeout_and_throwing_action) {
    shmq::Barrier b(2);
    scoped_child waiter([&] {
        try {
            b.wait(10s);
            return 1;
        } catch (const shmq::broken_barrier_error&) {
            return 0;
        }
    });
    BOOST_REQUIRE(eventually([&] { return b.n_waiting() == 1; }));
    b.abort();
    BOOST_TEST(waiter.wait(10s) == 0);
    BOOST_TEST(b.broken());
    BOOST_TEST(b.n_waiting() == 0u);

    shmq::Barrier timed_out(2, {}, 0.1s);   // the default timeout applies to wait()
    double t = timed([&] { BOOST_CHECK_THROW(timed_out.wait(), shmq::broken_barrier_error); });
    BOOST_TEST(t >= 0.05);
    BOOST_TEST(t < 2.0);

    BOOST_CHECK_THROW(shmq::Barrier(0), shmq::value_error);
    BOOST_CHECK_THROW(shmq::Barrier(257), shmq::value_error);

    shmq::Barrier failing(1, [] { throw std::runtime_error("action failed"); });
    BOOST_CHECK_THROW(failing.wait(1s), std::runtime_error);
    BOOST_TEST(failing.broken());
}

BOOST_AUTO_TEST_CASE(barrier_party_killed_while_waiting_breaks_it_for_the_others) {
    shmq::Barrier b(6);
    shared_array<std::atomic<std::int64_t>> broke_at(3);
    std::vector<scoped_child> survivors;
    for (int i = 0; i < 3; ++i)
        survivors.emplace_back([&, i] {
            try {
                b.wait(20s);
                return 1;
            } catch (const shmq::broken_barrier_error&) {
                broke_at[i] = now_ns();
                return 0;
            }
        });
    scoped_child victim1([&] { b.wait(30s); return 0; });
    scoped_child victim2([&] { b.wait(30s); return 0; });
    BOOST_REQUIRE(eventually([&] { return b.n_waiting() == 5; }));
    std::this_thread::sleep_for(50ms);
    const std::int64_t killed_at = now_ns();
    victim1.kill();
    victim2.kill();
    for (auto& s : survivors) BOOST_TEST(s.wait(10s) == 0);
    std::int64_t worst = 0;
    for (int i = 0; i < 3; ++i) worst = std::max(worst, broke_at[i].load() - killed_at);
    BOOST_TEST_MESSAGE("survivors broke " << worst / 1e6 << " ms after the kill");
    BOOST_TEST(worst < 1'000'000'000);   // ~100 ms; generous for sanitizer builds
    BOOST_TEST(victim1.wait(10s) == -SIGKILL);
    BOOST_TEST(victim2.wait(10s) == -SIGKILL);
    BOOST_TEST(b.broken());
    b.reset();
    BOOST_TEST(b.n_waiting() == 0u);   // the dead parties left no count behind
    std::vector<scoped_child> round;
    for (int i = 0; i < 5; ++i) round.emplace_back([&] { return b.wait(10s) < 6 ? 0 : 1; });
    BOOST_TEST(b.wait(10s) < 6u);
    for (auto& r : round) BOOST_TEST(r.wait(10s) == 0);
}

BOOST_AUTO_TEST_CASE(barrier_party_dying_inside_the_action_breaks_it) {
    shared_array<std::atomic<int>> doomed(1);   // the pid whose action dies
    shmq::Barrier b(3, [&] {
        if (doomed[0].load() == ::getpid()) ::_exit(0);
    });
    shared_array<std::atomic<int>> waiting(1);
    scoped_child other([&] {
        try {
            b.wait(20s);
            return 1;
        } catch (const shmq::broken_barrier_error&) {
            return 0;
        }
    });
    BOOST_REQUIRE(eventually([&] { return b.n_waiting() == 1; }));
    scoped_child last([&] {
        doomed[0] = ::getpid();
        waiting[0] = 1;
        SHMQ_CHILD_CHECK(eventually([&] { return b.n_waiting() == 2; }), 3);
        b.wait(20s);   // comes last: runs the action, which ends this process
        return 2;
    });
    BOOST_REQUIRE(eventually([&] { return waiting[0].load() == 1; }));
    stopwatch sw;
    BOOST_CHECK_THROW(b.wait(20s), shmq::broken_barrier_error);
    BOOST_TEST(sw.seconds() < 2.0);
    BOOST_TEST(last.wait(10s) == 0);
    BOOST_TEST(other.wait(10s) == 0);
}

// ---- Value, Array ----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(value_counter_across_processes) {
    shmq::Value<long> v(5);
    BOOST_TEST(v.value() == 5);
    std::vector<scoped_child> kids;
    for (int i = 0; i < 4; ++i)
        kids.emplace_back([&] {
            for (int k = 0; k < 1000; ++k) {
                std::lock_guard g(v.get_lock());
                ++v.value();
            }
            return 0;
        });
    for (auto& k : kids) BOOST_TEST(k.wait(20s) == 0);
    BOOST_TEST(v.value() == 4005);
    shmq::Value<long> copy = v;   // a handle: shares the value
    copy.value() = 1;
    BOOST_TEST(v.value() == 1);
}

BOOST_AUTO_TEST_CASE(value_of_an_atomic_needs_no_lock) {
    shmq::Value<std::atomic<long>> v;
    std::vector<scoped_child> kids;
    for (int i = 0; i < 2; ++i)
        kids.emplace_back([&] {
            for (int k = 0; k < 5000; ++k) v.value().fetch_add(1);
            return 0;
        });
    for (auto& k : kids) BOOST_TEST(k.wait(20s) == 0);
    BOOST_TEST(v.value().load() == 10000);
}

BOOST_AUTO_TEST_CASE(array_is_shared_and_contiguous) {
    shmq::Array<double> a(100, 1.5);
    BOOST_TEST(a.size() == 100u);
    for (double x : a) BOOST_TEST(x == 1.5);
    scoped_child writer([&] {
        std::lock_guard g(a.get_lock());
        for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<double>(i);
        return 0;
    });
    BOOST_TEST(writer.wait(10s) == 0);
    BOOST_TEST(a.data()[99] == 99.0);
    BOOST_TEST(std::distance(a.begin(), a.end()) == 100);
    shmq::Array<int> empty(0);
    BOOST_TEST(empty.size() == 0u);
}

// ---- Named objects ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(named_objects_create_open_remove) {
    shm_remover cleanup;
    const auto lock_name = cleanup.add(unique_name("sync-lock"));
    const auto ev_name = cleanup.add(unique_name("sync-ev"));
    const auto val_name = cleanup.add(unique_name("sync-val"));
    const auto arr_name = cleanup.add(unique_name("sync-arr"));
    const auto misc = cleanup.add(unique_name("sync-misc"));

    auto l = shmq::Lock::create(lock_name);
    BOOST_CHECK_THROW(shmq::Lock::create(lock_name), shmq::exists_error);
    auto l2 = shmq::Lock::open(lock_name);
    l.acquire();
    BOOST_TEST(!l2.acquire(false));
    l2.release();   // the same lock
    BOOST_CHECK_THROW(shmq::Event::open(lock_name), shmq::type_error);
    BOOST_CHECK_THROW(shmq::RLock::open(lock_name), shmq::type_error);

    auto v = shmq::Value<int>::create(val_name, 42);
    BOOST_TEST(shmq::Value<int>::open(val_name).value() == 42);
    BOOST_CHECK_THROW(shmq::Value<float>::open(val_name), shmq::type_error);
    BOOST_CHECK_THROW(shmq::Value<unsigned>::open(val_name), shmq::type_error);
    BOOST_CHECK_THROW(shmq::Array<int>::open(val_name), shmq::type_error);
    BOOST_CHECK_THROW(shmq::Lock::open(val_name), shmq::type_error);

    auto a = shmq::Array<std::uint16_t>::create(arr_name, 10, 7);
    auto a2 = shmq::Array<std::uint16_t>::open(arr_name);
    BOOST_TEST(a2.size() == 10u);
    BOOST_TEST(a2[9] == 7);
    a[3] = 9;
    BOOST_TEST(a2[3] == 9);
    BOOST_CHECK_THROW(shmq::Array<std::int16_t>::open(arr_name), shmq::type_error);

    // Every kind round-trips by name.
    {
        auto s = shmq::Semaphore::create(misc, 3);
        BOOST_TEST(shmq::Semaphore::open(misc).get_value() == 3u);
        BOOST_CHECK_THROW(shmq::BoundedSemaphore::open(misc), shmq::type_error);
        BOOST_TEST(shmq::Semaphore::remove(misc));
        auto bs = shmq::BoundedSemaphore::create(misc, 2);
        BOOST_CHECK_THROW(shmq::BoundedSemaphore::open(misc).release(), shmq::value_error);
        BOOST_TEST(shmq::BoundedSemaphore::remove(misc));
        auto r = shmq::RLock::create(misc);
        BOOST_TEST(shmq::RLock::open(misc).acquire(false));
        BOOST_TEST(shmq::RLock::remove(misc));
        auto c = shmq::Condition::create(misc);
        BOOST_TEST(shmq::Condition::open(misc).acquire(false));
        BOOST_TEST(shmq::Condition::remove(misc));
        auto b = shmq::Barrier::create(misc, 3, {}, 1s);
        BOOST_TEST(shmq::Barrier::open(misc).parties() == 3u);
        BOOST_TEST(shmq::Barrier::remove(misc));
    }

    // Names follow the queues' rules.
    BOOST_CHECK_THROW(shmq::Lock::create(""), shmq::value_error);
    BOOST_CHECK_THROW(shmq::Event::create("a/b"), shmq::value_error);
    BOOST_CHECK_THROW(shmq::Semaphore::create(std::string(201, 'x')), shmq::value_error);
    BOOST_CHECK_THROW(shmq::Lock::open(unique_name("sync-missing")), shmq::not_found_error);

    // The mode is applied exactly.
    {
        shmq::options o;
        o.mode = 0640;
        auto e = shmq::Event::create(ev_name, o);
        struct stat st {};
        BOOST_REQUIRE(::stat(shm_path(ev_name).c_str(), &st) == 0);
        BOOST_TEST((st.st_mode & 0777) == 0640u);
    }

    // Cross-process by name: a child opens the Event and waits; the parent sets it.
    scoped_child waiter([&] {
        auto e = shmq::Event::open(ev_name);
        return e.wait(5s) ? 0 : 1;
    });
    std::this_thread::sleep_for(50ms);
    shmq::Event::open(ev_name).set();
    BOOST_TEST(waiter.wait(10s) == 0);

    for (const auto* n : {&lock_name, &ev_name, &val_name, &arr_name}) {
        BOOST_TEST(shmq::Lock::remove(*n));
        BOOST_TEST(!shmq::Lock::remove(*n));
        BOOST_TEST(shm_entries(*n).empty());
    }
    BOOST_TEST(shm_entries(misc).empty());
    // Handles outlive remove().
    BOOST_TEST(l.acquire(false));
    l.release();
}

BOOST_AUTO_TEST_CASE(truncated_named_object_is_broken_not_sigbus) {
    shm_remover cleanup;
    const auto name = cleanup.add(unique_name("sync-trunc"));
    auto l = shmq::Lock::create(name);
    auto e = shmq::Event::create(cleanup.add(unique_name("sync-trunc-ev")));
    BOOST_TEST(l.acquire(false));
    l.release();
    const int fd = ::shm_open(("/shmq." + name).c_str(), O_RDWR, 0);
    BOOST_REQUIRE(fd >= 0);
    BOOST_TEST(::ftruncate(fd, 0) == 0);
    ::close(fd);
    BOOST_CHECK_THROW(l.acquire(false), shmq::broken_error);
    BOOST_CHECK_THROW(l.release(), shmq::broken_error);
    BOOST_TEST(!e.wait(0s));   // another object is unaffected
}
