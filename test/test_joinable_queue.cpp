// SPDX-License-Identifier: BSL-1.0
// shmq::JoinableQueue<T>: task_done()/join() with Python's contract (clauses J1-J6)
// and the fix of J5 (a put that fails to encode is not counted, so join() does not hang).
// JoinableQueue is a Queue (J1): the closed-queue clauses are checked here for it too.
//
// Children report by exit code under a watchdog; every get and join has a timeout.
#define BOOST_TEST_MODULE joinable_queue
#include <boost/test/unit_test.hpp>

#include "queue_fixtures.hpp"

#include <shmq/joinable_queue.hpp>
#include <shmq/serialization.hpp>   // types sent with Boost.Serialization

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using namespace shmq::test;
using shmq::JoinableQueue;


BOOST_AUTO_TEST_CASE(task_done_on_a_fresh_queue_is_value_error) {
    JoinableQueue<int> q;
    BOOST_CHECK_THROW(q.task_done(), shmq::value_error);
    BOOST_TEST(q.join(0s));   // the failed call changed nothing
}

BOOST_AUTO_TEST_CASE(task_done_more_often_than_puts_is_value_error) {
    JoinableQueue<int> q;
    q.put(1);
    q.put(2);
    BOOST_TEST(q.get(true, 1s) == 1);
    BOOST_TEST(q.get(true, 1s) == 2);
    q.task_done();
    q.task_done();
    BOOST_CHECK_THROW(q.task_done(), shmq::value_error);
    BOOST_CHECK_THROW(q.task_done(), shmq::value_error);
    // The counter did not go negative: one more put needs exactly one more task_done.
    q.put(3);
    BOOST_TEST(!q.join(0s));
    q.task_done();
    BOOST_TEST(q.join(0s));
    BOOST_CHECK_THROW(q.task_done(), shmq::value_error);
}

BOOST_AUTO_TEST_CASE(join_on_a_fresh_queue_returns_at_once) {
    JoinableQueue<int> q;
    BOOST_TEST(timed([&] { q.join(); }) < at_once.count());
    BOOST_TEST(timed([&] { BOOST_TEST(q.join(5s)); }) < at_once.count());
    BOOST_TEST(q.join(0s));
    BOOST_TEST(q.join(-1s));
}

BOOST_AUTO_TEST_CASE(timed_join_is_false_while_items_are_unfinished) {
    JoinableQueue<int> q;
    q.put(1);
    bool done = true;
    const double t = timed([&] { done = q.join(200ms); });
    BOOST_TEST(!done);
    BOOST_TEST(t >= 0.2 - clock_res.count());
    BOOST_TEST(t < 0.2 + late.count());
    BOOST_TEST(timed([&] { BOOST_TEST(!q.join(0s)); }) < at_once.count());
    BOOST_TEST(timed([&] { BOOST_TEST(!q.join(-1s)); }) < at_once.count());
    BOOST_TEST(q.get(true, 1s) == 1);
    BOOST_TEST(!q.join(50ms));   // got is not done
    q.task_done();
    BOOST_TEST(q.join(0s));
}

BOOST_AUTO_TEST_CASE(task_done_without_get_is_accepted) {
    // J3: the count is of puts, not gets.
    JoinableQueue<int> q;
    q.put(1);
    q.task_done();
    BOOST_TEST(q.join(0s));
    BOOST_TEST(q.qsize() == 1u);   // the item is still there
    BOOST_TEST(q.get(true, 1s) == 1);
    BOOST_CHECK_THROW(q.task_done(), shmq::value_error);
}

BOOST_AUTO_TEST_CASE(failed_encode_is_not_counted) {
    // J5, fixed: Python's feeder drops an unpicklable item without counting it down, so join()
    // hangs; here put throws codec_error before anything is counted.
    JoinableQueue<fragile> q;
    BOOST_CHECK_THROW(q.put(fragile{fragile::encode_bomb, "bad"}), shmq::codec_error);
    BOOST_TEST(q.join(0s));
    BOOST_TEST(q.qsize() == 0u);
    BOOST_CHECK_THROW(q.task_done(), shmq::value_error);
    q.put(fragile{1, "good"});
    BOOST_TEST(!q.join(0s));
    BOOST_TEST(q.get(true, 1s).text == "good");
    q.task_done();
    BOOST_TEST(q.join(1s));
}

BOOST_AUTO_TEST_CASE(failed_put_on_a_full_queue_is_not_counted) {
    JoinableQueue<int> q(1);
    q.put(1);
    BOOST_CHECK_THROW(q.put_nowait(2), shmq::full_error);
    BOOST_CHECK_THROW(q.put(2, true, 50ms), shmq::full_error);
    q.task_done();
    BOOST_TEST(q.join(0s));   // only the one successful put was counted
    BOOST_CHECK_THROW(q.task_done(), shmq::value_error);
}

BOOST_AUTO_TEST_CASE(put_after_close_is_closed_error_and_not_counted) {
    // J1 / test_closed_queue_put_get_exceptions loops over Queue and JoinableQueue.
    JoinableQueue<int> q;
    q.put(1);
    q.close();
    q.close();
    BOOST_CHECK_THROW(q.put(2), shmq::closed_error);
    BOOST_CHECK_THROW(q.put_nowait(2), shmq::closed_error);
    BOOST_CHECK_THROW(q.get(true, 1s), shmq::closed_error);
    BOOST_CHECK_THROW(q.get_nowait(), shmq::closed_error);
    BOOST_TEST(q.qsize() == 1u);
    BOOST_TEST(!q.join(0s));   // exactly the one put before close is unfinished
    q.task_done();
    BOOST_TEST(q.join(0s));
    q.join_thread();
}

BOOST_AUTO_TEST_CASE(task_done_wakes_every_joiner) {
    // J3: when the count reaches zero, all join() waiters wake (notify_all).
    JoinableQueue<int> q;
    q.put(1);
    std::atomic<int> returned{0};
    std::vector<std::thread> joiners;
    for (int i = 0; i < 3; ++i)
        joiners.emplace_back([&] {
            if (q.join(10s)) ++returned;
        });
    std::this_thread::sleep_for(100ms);
    BOOST_TEST(returned.load() == 0);
    stopwatch sw;
    q.task_done();
    for (auto& t : joiners) t.join();
    BOOST_TEST(returned.load() == 3);
    BOOST_TEST(sw.seconds() < 1.0);
}

BOOST_AUTO_TEST_CASE(test_task_done_port_four_worker_processes) {
    // _TestQueue.test_task_done: 4 worker processes get and task_done; the parent puts 0-9 and
    // join() returns once every item is done; then one sentinel per worker.
    JoinableQueue<int> q;
    shared_array<std::atomic<int>> done_by(4);
    std::vector<scoped_child> workers;
    for (int w = 0; w < 4; ++w)
        workers.push_back(queue_child([&, w]() -> int {
            for (;;) {
                int v;
                try {
                    v = q.get(true, 20s);
                } catch (const shmq::empty_error&) {
                    return child_timed_out_get;
                }
                if (v < 0) return child_ok;
                std::this_thread::sleep_for(10ms);   // Python sleeps DELTA here
                done_by[w].fetch_add(1);
                q.task_done();
            }
        }, 40));
    for (int i = 0; i < 10; ++i) q.put(i);
    BOOST_TEST(q.join(20s));
    int total = 0;
    for (int w = 0; w < 4; ++w) total += done_by[w].load();
    BOOST_TEST(total == 10);   // join returned only after every task_done
    for (int w = 0; w < 4; ++w) q.put(-1);
    for (auto& w : workers) BOOST_TEST(w.wait(20s) == child_ok);
    // The 4 sentinels were got and never marked done. Python's join() would wait for them for
    // ever; here their getters have exited, so they are uncounted and reported lost (A.10).
    BOOST_TEST(q.join(2s));
    BOOST_TEST(q.lost_to_dead_consumers() == 4u);
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(join_in_a_child_waits_for_the_parents_task_done) {
    // The count lives in shared memory: a child's join() returns when the parent's task_done()
    // brings it to zero, and not before.
    JoinableQueue<int> q;
    q.put(1);
    shared_array<std::atomic<int>> joined(1);
    auto child = queue_child([&]() -> int {
        if (!q.join(15s)) return child_timed_out_get;
        joined[0].store(1);
        return child_ok;
    });
    std::this_thread::sleep_for(200ms);
    BOOST_TEST(joined[0].load() == 0);
    q.task_done();
    BOOST_TEST(child.wait(20s) == child_ok);
    BOOST_TEST(joined[0].load() == 1);
}

BOOST_AUTO_TEST_CASE(unbounded_joinable_queue_counts_items_in_the_backlog) {
    // Items waiting in the per-process backlog are counted as soon as put returns: a worker that
    // finishes the first items cannot make join() return early.
    JoinableQueue<std::string> q(0, shmq::options{.capacity = 4096});
    const std::string item(1024, 'j');
    for (int i = 0; i < 20; ++i) q.put(item);
    BOOST_TEST(q.qsize() == 20u);
    for (int i = 0; i < 3; ++i) {
        BOOST_REQUIRE_NO_THROW(q.get(true, 5s));
        q.task_done();
    }
    BOOST_TEST(!q.join(100ms));
    for (int i = 3; i < 20; ++i) {
        BOOST_REQUIRE_NO_THROW(q.get(true, 5s));
        q.task_done();
    }
    BOOST_TEST(q.join(1s));
    q.close();
    q.join_thread();
}

// ---------------------------------------------------------------------------------------------
// A.10: dead producers and consumers no longer make join() hang. A producer's items that never
// reached shared memory (its private backlog) are uncounted when its death is noticed; a
// consumer's items taken and not task_done'd are uncounted and reported by
// lost_to_dead_consumers(). join()'s own waiting notices the death.

namespace {

// Gets every item that is in the ring now (none more arrives), marking each done.
int drain_and_mark_done(JoinableQueue<std::string>& q) {
    int n = 0;
    for (;;) {
        try {
            q.get(true, 200ms);
        } catch (const shmq::empty_error&) {
            return n;
        }
        q.task_done();
        ++n;
    }
}

// Waits (bounded) until flag becomes non-zero; false on timeout.
bool wait_flag(std::atomic<int>& flag, seconds_d limit = 10s) {
    stopwatch sw;
    while (flag.load() == 0) {
        if (sw.seconds() > limit.count()) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

} // namespace

BOOST_AUTO_TEST_CASE(killed_producer_backlog_is_uncounted_from_join) {
    // Nobody reads while the producer puts 10 000 items into a small ring: nearly all of them
    // wait in its private backlog when it is SIGKILLed. They never reached shared memory, so
    // join() must not wait for them (before A.10 it waited for ever).
    JoinableQueue<std::string> q(0, shmq::options{.capacity = 4096});
    shared_array<std::atomic<int>> ready(1);
    auto producer = queue_child([&]() -> int {
        const std::string item(100, 'p');
        for (int i = 0; i < 10000; ++i) q.put(item);
        ready[0].store(1);
        ::pause();
        return child_ok;
    });
    BOOST_REQUIRE(wait_flag(ready[0]));
    producer.kill();
    BOOST_REQUIRE(producer.wait(10s) == -SIGKILL);
    const int consumed = drain_and_mark_done(q);
    BOOST_TEST(consumed > 0);
    BOOST_TEST(consumed < 10000);
    BOOST_TEST(q.join(2s));
    BOOST_TEST(q.lost_to_dead_consumers() == 0u);   // a producer's loss is not a consumer's
}

BOOST_AUTO_TEST_CASE(killed_consumer_between_get_and_task_done_is_counted_as_lost) {
    JoinableQueue<std::string> q;
    for (int i = 0; i < 5; ++i) q.put("item " + std::to_string(i));
    shared_array<std::atomic<int>> got(1);
    auto consumer = queue_child([&]() -> int {
        q.get(true, 5s);
        got[0].store(1);
        ::pause();   // killed before task_done
        return child_ok;
    });
    BOOST_REQUIRE(wait_flag(got[0]));
    consumer.kill();
    BOOST_REQUIRE(consumer.wait(10s) == -SIGKILL);
    BOOST_TEST(drain_and_mark_done(q) == 4);
    BOOST_TEST(q.join(2s));
    BOOST_TEST(q.lost_to_dead_consumers() == 1u);
    // The count is exact afterwards: one more put needs exactly one task_done.
    q.put("after");
    BOOST_TEST(!q.join(0s));
    q.get(true, 1s);
    q.task_done();
    BOOST_TEST(q.join(0s));
    BOOST_CHECK_THROW(q.task_done(), shmq::value_error);
}

BOOST_AUTO_TEST_CASE(a_waiting_join_notices_a_consumer_death_itself) {
    // join() is already waiting when the consumer dies: its own waiting must notice (nobody
    // else touches the queue), well within a second of the kill.
    JoinableQueue<int> q;
    q.put(7);
    shared_array<std::atomic<int>> got(1);
    auto consumer = queue_child([&]() -> int {
        q.get(true, 5s);
        got[0].store(1);
        ::pause();
        return child_ok;
    });
    BOOST_REQUIRE(wait_flag(got[0]));
    std::atomic<bool> joined{false};
    std::atomic<double> joined_at{0};
    stopwatch sw;
    std::thread joiner([&] {
        joined.store(q.join(10s));
        joined_at.store(sw.seconds());
    });
    std::this_thread::sleep_for(200ms);
    const double killed_at = sw.seconds();
    consumer.kill();
    // Not reaped on purpose until join returned: a zombie is dead too (liveness.hpp).
    joiner.join();
    BOOST_TEST(consumer.wait(10s) == -SIGKILL);
    BOOST_TEST(joined.load());
    BOOST_TEST(joined_at.load() - killed_at < 1.0);
    BOOST_TEST(q.lost_to_dead_consumers() == 1u);
}

BOOST_AUTO_TEST_CASE(task_done_by_another_process_than_the_getter) {
    JoinableQueue<int> q;
    q.put(1);
    BOOST_TEST(q.get(true, 1s) == 1);
    auto helper = queue_child([&]() -> int {
        try {
            q.task_done();
        } catch (const shmq::value_error&) {
            return child_wrong_error;
        }
        return child_ok;
    });
    BOOST_TEST(helper.wait(10s) == child_ok);
    BOOST_TEST(q.join(1s));
    // The helper exited normally and had taken nothing: nothing is reported lost.
    BOOST_TEST(q.lost_to_dead_consumers() == 0u);
    q.put(2);
    BOOST_TEST(q.get(true, 1s) == 2);
    q.task_done();
    BOOST_TEST(q.join(0s));
}

BOOST_AUTO_TEST_CASE(a_forked_childs_puts_and_gets_are_its_own) {
    // The child inherits the parent's handle; what it puts and gets is accounted to its own
    // holder slot, so killing it uncounts only its items and leaves the parent's alone.
    JoinableQueue<std::string> q(0, shmq::options{.capacity = 4096});
    const std::string item(512, 'f');
    for (int i = 0; i < 3; ++i) q.put(item);
    q.get(true, 1s);   // the parent holds one unfinished item of its own
    shared_array<std::atomic<int>> ready(1);
    auto child = queue_child([&]() -> int {
        q.get(true, 5s);                          // one taken by the child
        for (int i = 0; i < 200; ++i) q.put(item);   // most wait in the child's backlog
        ready[0].store(1);
        ::pause();
        return child_ok;
    });
    BOOST_REQUIRE(wait_flag(ready[0]));
    child.kill();
    BOOST_REQUIRE(child.wait(10s) == -SIGKILL);
    drain_and_mark_done(q);
    BOOST_TEST(!q.join(300ms));   // the parent's own taken item still counts
    BOOST_TEST(q.lost_to_dead_consumers() == 1u);
    q.task_done();
    BOOST_TEST(q.join(1s));
    BOOST_CHECK_THROW(q.task_done(), shmq::value_error);
}
