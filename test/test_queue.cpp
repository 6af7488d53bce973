// SPDX-License-Identifier: BSL-1.0
// shmq::Queue<T>: Python's multiprocessing.Queue contract (clauses Q1-Q20, numbered in these tests)
// and the improvements the README's Guarantees keep: CPython's test_put/test_get/test_qsize ported,
// block/timeout variants, close(), codec errors, the unbounded put that never blocks (per-process
// backlog and feeder), messages larger than the ring, random sizes with backpressure.
//
// Fork-heavy scenarios (several producers and consumers, fork while the feeder runs, Process
// children flushing on exit) are in test_queue_fork.cpp.
//
// Every get has a timeout; children run under a watchdog and report by exit code; a case that
// still contains an unbounded call (join_thread) carries a Boost.Test timeout.
#define BOOST_TEST_MODULE queue
#include <boost/test/unit_test.hpp>

#include "queue_fixtures.hpp"

#include <shmq/queue.hpp>
#include <shmq/serialization.hpp>   // types sent with Boost.Serialization

#include "layout.hpp"     // a corrupt registry word, below
#include "registry.hpp"
#include "segment.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <csignal>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using namespace shmq::test;
using shmq::Queue;
namespace utf = boost::unit_test;

namespace {

/// Seconds a call took before it threw E; fails the test (and returns -1) if it threw anything
/// else or nothing.
template <class E, class F> double seconds_until_throw(F&& f) {
    stopwatch sw;
    try {
        f();
    } catch (const E&) {
        return sw.seconds();
    } catch (const std::exception& e) {
        BOOST_ERROR("threw the wrong exception: " << e.what());
        return -1;
    }
    BOOST_ERROR("did not throw");
    return -1;
}

template <class Pred> bool eventually(Pred pred, seconds_d limit = 5s) {
    const auto give_up = clk::now() + std::chrono::duration_cast<clk::duration>(limit);
    while (clk::now() < give_up) {
        if (pred()) return true;
        std::this_thread::sleep_for(1ms);
    }
    return pred();
}

const shmq::options small_ring{.capacity = 4096};

} // namespace

// ---- CPython _TestQueue ports ----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(test_put_port) {
    // _TestQueue.test_put: maxsize 6, every put flavour, then Full for each flavour with its
    // timing; a child then gets the six items and the queue is empty and not full again.
    constexpr int maxsize = 6;
    Queue<int> q(maxsize);
    go_signal child_can_start;
    auto child = queue_child([&]() -> int {
        if (!child_can_start.wait(20s)) return child_no_go;
        for (int i = 1; i <= maxsize; ++i) {
            int v = 0;
            try {
                v = q.get(true, 10s);
            } catch (const shmq::empty_error&) {
                return child_timed_out_get;
            }
            SHMQ_CHILD_CHECK(v == i, child_bad_order);
        }
        return child_ok;
    });

    BOOST_TEST(q.empty());
    BOOST_TEST(!q.full());
    BOOST_TEST(q.qsize() == 0u);

    q.put(1);
    q.put(2, true);
    q.put(3, true, std::nullopt);
    q.put(4, false);
    q.put(5, false, std::nullopt);
    q.put_nowait(6);

    BOOST_TEST(!q.empty());   // no sleep(DELTA) needed: put is synchronous (Q3)
    BOOST_TEST(q.full());
    BOOST_TEST(q.qsize() == 6u);

    double t;
    t = seconds_until_throw<shmq::full_error>([&] { q.put(7, false); });
    BOOST_TEST(t < at_once.count());
    t = seconds_until_throw<shmq::full_error>([&] { q.put(7, false, std::nullopt); });
    BOOST_TEST(t < at_once.count());
    t = seconds_until_throw<shmq::full_error>([&] { q.put_nowait(7); });
    BOOST_TEST(t < at_once.count());
    t = seconds_until_throw<shmq::full_error>([&] { q.put(7, true, 100ms); });
    BOOST_TEST(t >= 0.09);
    BOOST_TEST(t < 1.2);
    t = seconds_until_throw<shmq::full_error>([&] { q.put(7, false, 5s); });   // timeout ignored
    BOOST_TEST(t >= 0.0);
    BOOST_TEST(t < at_once.count());
    t = seconds_until_throw<shmq::full_error>([&] { q.put(7, true, 200ms); });
    BOOST_TEST(t >= 0.2 - clock_res.count());
    BOOST_TEST(t < 0.2 + late.count());
    BOOST_TEST(q.qsize() == 6u);   // failed puts changed nothing

    child_can_start.go();
    BOOST_TEST(child.wait(20s) == child_ok);
    BOOST_TEST(q.empty());
    BOOST_TEST(!q.full());
    BOOST_TEST(q.qsize() == 0u);
}

BOOST_AUTO_TEST_CASE(test_get_port) {
    // _TestQueue.test_get: a child puts 2, 3, 4, 5; every get flavour; then Empty for each
    // flavour with its timing.
    Queue<int> q;
    go_signal child_can_start;
    auto child = queue_child([&]() -> int {
        if (!child_can_start.wait(20s)) return child_no_go;
        for (int i : {2, 3, 4, 5}) q.put(i);
        return child_ok;
    });
    BOOST_TEST(q.empty());
    child_can_start.go();
    BOOST_REQUIRE(child.wait(20s) == child_ok);

    BOOST_TEST(!q.empty());
    BOOST_TEST(q.qsize() == 4u);
    BOOST_TEST(q.get(true, 10s) == 2);   // stands for get(True, None): data is known to be there
    BOOST_TEST(q.get(true, 10s) == 3);
    BOOST_TEST(q.get(true, 1s) == 4);
    BOOST_TEST(q.get_nowait() == 5);
    BOOST_TEST(q.empty());

    double t;
    t = seconds_until_throw<shmq::empty_error>([&] { q.get(false); });
    BOOST_TEST(t < at_once.count());
    t = seconds_until_throw<shmq::empty_error>([&] { q.get(false, std::nullopt); });
    BOOST_TEST(t < at_once.count());
    t = seconds_until_throw<shmq::empty_error>([&] { q.get_nowait(); });
    BOOST_TEST(t < at_once.count());
    t = seconds_until_throw<shmq::empty_error>([&] { q.get(true, 100ms); });
    BOOST_TEST(t >= 0.09);
    BOOST_TEST(t < 1.2);
    t = seconds_until_throw<shmq::empty_error>([&] { q.get(false, 5s); });   // timeout ignored
    BOOST_TEST(t < at_once.count());
    t = seconds_until_throw<shmq::empty_error>([&] { q.get(true, 300ms); });
    BOOST_TEST(t >= 0.3 - clock_res.count());
    BOOST_TEST(t < 0.3 + late.count());
}

BOOST_AUTO_TEST_CASE(test_qsize_port) {
    Queue<int> q;
    BOOST_TEST(q.qsize() == 0u);
    q.put(1);
    BOOST_TEST(q.qsize() == 1u);
    q.put(5);
    BOOST_TEST(q.qsize() == 2u);
    BOOST_TEST(q.get(true, 1s) == 1);
    BOOST_TEST(q.qsize() == 1u);
    BOOST_TEST(q.get(true, 1s) == 5);
    BOOST_TEST(q.qsize() == 0u);
}

BOOST_AUTO_TEST_CASE(test_timeout_port) {
    // _TestQueue.test_timeout and the issue: get(true, 200ms) waits >= 100 ms and < 1.2 s.
    Queue<int> q;
    const double t = seconds_until_throw<shmq::empty_error>([&] { q.get(true, 200ms); });
    BOOST_TEST(t >= 0.1);
    BOOST_TEST(t < 1.2);
}

BOOST_AUTO_TEST_CASE(zero_and_negative_timeouts_never_wait) {
    // Q20: a timeout <= 0 is "do not wait", never ValueError, never "forever".
    Queue<int> q(1);
    for (shmq::timeout_t to : {shmq::timeout_t(0s), shmq::timeout_t(-1s), shmq::timeout_t(-1e-9s),
                               shmq::timeout_t(-3600s)}) {
        BOOST_TEST_CONTEXT("timeout " << to->count() << " s") {
            double t = seconds_until_throw<shmq::empty_error>([&] { q.get(true, to); });
            BOOST_TEST(t < at_once.count());
            q.put(1, true, to);   // room: succeeds without waiting
            t = seconds_until_throw<shmq::full_error>([&] { q.put(2, true, to); });
            BOOST_TEST(t < at_once.count());
            BOOST_TEST(q.get(true, to) == 1);   // data there: a zero timeout still gets it
        }
    }
}

BOOST_AUTO_TEST_CASE(get_timeout_covers_waiting_behind_another_consumer) {
    // Q6: one deadline covers waiting behind other consumers too: a second process blocked in
    // get() must not stretch our get(200ms).
    Queue<int> q;
    auto child = queue_child([&]() -> int {
        try {
            (void)q.get(true, 1500ms);
        } catch (const shmq::empty_error&) {
            return child_ok;
        }
        return child_bad_value;
    });
    std::this_thread::sleep_for(100ms);   // let the child block first
    const double t = seconds_until_throw<shmq::empty_error>([&] { q.get(true, 200ms); });
    BOOST_TEST(t >= 0.1);
    BOOST_TEST(t < 1.2);
    BOOST_TEST(child.wait(20s) == child_ok);
}

BOOST_AUTO_TEST_CASE(get_timeout_covers_waiting_behind_another_thread) {
    // The same within one process: a thread blocked in get() holds the reader lease, and another
    // thread's get(200ms) still times out on time; the blocked one then gets the next item.
    Queue<int> q;
    std::atomic<int> got{-1};
    std::thread blocked([&] {
        try {
            got = q.get(true, 5s);
        } catch (const shmq::empty_error&) {
            got = -2;
        }
    });
    std::this_thread::sleep_for(100ms);
    const double t = seconds_until_throw<shmq::empty_error>([&] { q.get(true, 200ms); });
    BOOST_TEST(t >= 0.1);
    BOOST_TEST(t < 1.2);
    q.put(5);
    blocked.join();
    BOOST_TEST(got.load() == 5);
}

BOOST_AUTO_TEST_CASE(huge_timeouts_wait_like_none) {
    // A timeout too large for steady_clock's nanoseconds (1e12 s and up) must wait like nullopt,
    // not overflow into "already expired".
    Queue<int> q;
    for (double huge : {1e10, 1e12, 1e30, 1e300}) {
        BOOST_TEST_CONTEXT("timeout " << huge << " s") {
            std::thread later([&] {
                std::this_thread::sleep_for(200ms);
                q.put(1);
            });
            stopwatch sw;
            int v = 0;
            BOOST_CHECK_NO_THROW(v = q.get(true, std::chrono::duration<double>(huge)));
            BOOST_TEST(v == 1);
            BOOST_TEST(sw.seconds() >= 0.1);
            later.join();
            try {
                (void)q.get(false);
            } catch (const shmq::empty_error&) {
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(fifo_and_values_survive) {
    Queue<std::string> q;
    for (int i = 0; i < 100; ++i) q.put("item " + std::to_string(i));
    for (int i = 0; i < 100; ++i) BOOST_TEST(q.get(true, 1s) == "item " + std::to_string(i));
    q.put(std::string());   // an empty message is a message
    BOOST_TEST(q.qsize() == 1u);
    BOOST_TEST(q.get(true, 1s).empty());
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(maxsize_does_not_wrap) {
    // Q1: maxsize <= 0 is unbounded; an absurd maxsize is refused with value_error rather than
    // silently becoming something else.
    BOOST_CHECK_THROW(Queue<int>(static_cast<std::size_t>(INT64_MAX) + 1), shmq::value_error);
    Queue<int> unbounded(0);
    for (int i = 0; i < 1000; ++i) unbounded.put_nowait(i);
    BOOST_TEST(!unbounded.full());
    BOOST_TEST(unbounded.qsize() == 1000u);
}

// ---- close / join_thread / cancel_join_thread ------------------------------------------------

BOOST_AUTO_TEST_CASE(put_and_get_after_close_throw_closed_error) {
    // Q13 / _TestQueue.test_closed_queue_put_get_exceptions.
    Queue<int> q;
    q.put(1);
    q.close();
    BOOST_CHECK_THROW(q.put(2), shmq::closed_error);
    BOOST_CHECK_THROW(q.put(2, false), shmq::closed_error);
    BOOST_CHECK_THROW(q.put(2, true, 1s), shmq::closed_error);
    BOOST_CHECK_THROW(q.put_nowait(2), shmq::closed_error);
    BOOST_CHECK_THROW(q.get(true, 1s), shmq::closed_error);   // closed first, data waits
    BOOST_CHECK_THROW(q.get(false), shmq::closed_error);
    BOOST_CHECK_THROW(q.get_nowait(), shmq::closed_error);
    // closed_error is a shmq::error (and nothing was consumed or added)
    BOOST_CHECK_THROW(q.get_nowait(), shmq::error);
    BOOST_TEST(q.qsize() == 1u);
}

BOOST_AUTO_TEST_CASE(closed_check_comes_before_full_and_before_empty) {
    // The closed check comes first: a full queue still says closed_error on put, and an empty
    // one closed_error (not after waiting out the timeout) on get.
    Queue<int> full_q(1);
    full_q.put(1);
    BOOST_REQUIRE(full_q.full());
    full_q.close();
    double t = seconds_until_throw<shmq::closed_error>([&] { full_q.put(2, true, 2s); });
    BOOST_TEST(t < at_once.count());
    BOOST_CHECK_THROW(full_q.put_nowait(2), shmq::closed_error);

    Queue<int> empty_q;
    empty_q.close();
    t = seconds_until_throw<shmq::closed_error>([&] { empty_q.get(true, 2s); });
    BOOST_TEST(t < at_once.count());
    BOOST_CHECK_THROW(empty_q.get_nowait(), shmq::closed_error);
}

BOOST_AUTO_TEST_CASE(closed_check_comes_before_encoding) {
    // A closed queue does not even look at the object: closed_error, not codec_error.
    Queue<fragile> q;
    q.close();
    BOOST_CHECK_THROW(q.put(fragile{fragile::encode_bomb, "x"}), shmq::closed_error);
}

BOOST_AUTO_TEST_CASE(close_is_idempotent_and_queries_keep_working) {
    Queue<int> q(3);
    q.put(1);
    q.put(2);
    q.put(3);
    q.close();
    q.close();
    q.close();
    BOOST_TEST(q.qsize() == 3u);
    BOOST_TEST(q.full());
    BOOST_TEST(!q.empty());
    q.join_thread();   // after close: fine (nothing pending)
    q.join_thread();
    BOOST_TEST(q.qsize() == 3u);
}

BOOST_AUTO_TEST_CASE(close_is_per_handle_other_processes_keep_using_the_queue) {
    // Q13: the flag is per process; a child that closed its copy does not affect the parent.
    Queue<int> q;
    auto child = queue_child([&]() -> int {
        q.put(10);
        q.close();
        try {
            q.put(11);
            return child_bad_value;
        } catch (const shmq::closed_error&) {
        }
        return child_ok;
    });
    BOOST_REQUIRE(child.wait(20s) == child_ok);
    q.put(12);
    BOOST_TEST(q.get(true, 5s) == 10);
    BOOST_TEST(q.get(true, 5s) == 12);
}

BOOST_AUTO_TEST_CASE(join_thread_before_close_is_value_error) {
    Queue<int> q;
    BOOST_CHECK_THROW(q.join_thread(), shmq::value_error);
    q.put(1);
    BOOST_CHECK_THROW(q.join_thread(), shmq::value_error);
    Queue<int> bounded(2);
    BOOST_CHECK_THROW(bounded.join_thread(), shmq::value_error);
    q.close();
    q.join_thread();
}

BOOST_AUTO_TEST_CASE(cancel_join_thread_on_an_idle_queue) {
    // Q15: may be called before any put; afterwards puts and gets still work and join_thread()
    // (after close) returns at once.
    Queue<int> q;
    q.cancel_join_thread();
    q.put(1);
    BOOST_TEST(q.get(true, 1s) == 1);
    q.close();
    const double t = timed([&] { q.join_thread(); });
    BOOST_TEST(t < at_once.count());
}

BOOST_AUTO_TEST_CASE(cancel_join_thread_lets_a_stuck_backlog_go, *utf::timeout(30)) {
    // A backlog nobody will ever read: without cancel, join_thread() and the destructor would wait
    // forever (as in Python); with it both return at once.
    std::optional<Queue<std::string>> q(std::in_place, 0, small_ring);
    const std::string item(1024, 'x');
    for (int i = 0; i < 20; ++i) q->put(item);
    BOOST_TEST(q->qsize() == 20u);
    q->cancel_join_thread();
    q->close();
    BOOST_TEST(timed([&] { q->join_thread(); }) < at_once.count());
    BOOST_TEST(timed([&] { q.reset(); }) < at_once.count());
}

BOOST_AUTO_TEST_CASE(cancel_join_thread_does_not_stop_delivery_while_the_process_lives) {
    // Q15: cancel_join_thread() only makes join_thread() and the exit skip the wait ("a better
    // name might be allow_exit_without_flush()"); while the process lives, its backlog is still
    // delivered, in order.
    constexpr int n = 20;
    Queue<std::string> q(0, small_ring);
    q.cancel_join_thread();
    for (int i = 0; i < n; ++i) q.put(pattern_string(1024, static_cast<std::uint64_t>(i)));
    int got = 0;
    for (; got < n; ++got) {
        std::string s;
        try {
            s = q.get(true, 2s);
        } catch (const shmq::empty_error&) {
            break;
        }
        BOOST_TEST(matches_pattern(s, static_cast<std::uint64_t>(got)), "item " << got);
    }
    BOOST_TEST(got == n, "got " << got << " of " << n << " items");
    BOOST_TEST(q.qsize() == static_cast<std::size_t>(n - got));
}

// cancel_join_thread, then the handle dropped with a backlog: the feeder thread goes on alone
// (delivery continues while the process lives, above). Once nobody can ever read the ring (no
// name to open it by, no other handle), it ends and frees what it held; it used to wait for
// room for ever, one stuck thread and one mapped segment per such queue.
namespace {
/// Waits (bounded) until this process is back to `threads` threads.
bool threads_back_to(std::size_t threads, std::chrono::seconds within) {
    const auto until = std::chrono::steady_clock::now() + within;
    while (threads_of_this_process() != threads) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}
/// This process's thread count once it holds still for 200 ms (bounded): a feeder of an earlier
/// test may still be ending.
std::size_t settled_threads() {
    std::size_t n = threads_of_this_process();
    for (int i = 0; i < 25; ++i) {
        std::this_thread::sleep_for(200ms);
        const std::size_t now = threads_of_this_process();
        if (now == n) break;
        n = now;
    }
    return n;
}
/// Fills a queue's 4 KiB ring and leaves a backlog: whole items and one streamed.
template <class Q> void stuck_backlog(Q& q) {
    for (int i = 0; i < 10; ++i) q.put(pattern_string(1024, static_cast<std::uint64_t>(i)));
    q.put(pattern_string(10000, 10));   // larger than the ring: written in pieces
    q.put(pattern_string(1024, 11));
}
} // namespace

BOOST_AUTO_TEST_CASE(an_abandoned_backlog_nobody_can_read_ends_its_thread, *utf::timeout(60)) {
    const std::size_t before = settled_threads();
    {
        Queue<std::string> q(0, small_ring);   // anonymous: nobody else can ever hold it
        stuck_backlog(q);
        BOOST_TEST(threads_of_this_process() == before + 1);   // the feeder
        q.cancel_join_thread();
    }
    BOOST_TEST(threads_back_to(before, 10s), threads_of_this_process() << " threads, " << before
                                                                        << " before");
}

BOOST_AUTO_TEST_CASE(an_abandoned_backlog_is_delivered_to_a_forked_reader, *utf::timeout(60)) {
    // A child forked with the handle holds the anonymous queue, so it may still read: the
    // orphaned feeder must go on (not drop the backlog) and the child gets every item, in order.
    const std::size_t before = settled_threads();
    std::optional<Queue<std::string>> q(std::in_place, 0, small_ring);
    scoped_child reader([&] {
        std::this_thread::sleep_for(500ms);   // the parent's handle is gone by then
        for (std::uint64_t i = 0; i < 12; ++i) {
            std::string s;
            try {
                s = q->get(true, 5s);
            } catch (const shmq::error&) {
                return 10 + static_cast<int>(i);   // missing
            }
            if (!matches_pattern(s, i) || s.size() != (i == 10 ? 10000u : 1024u))
                return 30 + static_cast<int>(i);   // wrong or out of order
        }
        return 0;
    });
    stuck_backlog(*q);
    q->cancel_join_thread();
    q.reset();
    std::this_thread::sleep_for(200ms);
    BOOST_TEST(threads_of_this_process() == before + 1);   // still delivering
    BOOST_TEST(reader.wait(20s) == 0);
    BOOST_TEST(threads_back_to(before, 10s));
}

BOOST_AUTO_TEST_CASE(an_abandoned_backlog_waits_while_the_name_exists_then_ends, *utf::timeout(60)) {
    const std::string name = unique_name("abandoned");
    shm_remover cleanup(name);
    const std::size_t before = settled_threads();
    {
        auto q = Queue<std::string>::create(name, 0, small_ring);
        stuck_backlog(q);
        q.cancel_join_thread();
    }
    // Anyone may still open it by name and read: the thread stays.
    std::this_thread::sleep_for(300ms);
    BOOST_TEST(threads_of_this_process() == before + 1);
    {
        // A handle opened meanwhile reads everything, in order, streamed item included.
        auto reader = Queue<std::string>::open(name);
        for (std::uint64_t i = 0; i < 12; ++i) {
            const std::string s = reader.get(true, 5s);
            BOOST_TEST(matches_pattern(s, i), "item " << i);
            BOOST_TEST(s.size() == (i == 10 ? 10000u : 1024u));
        }
    }
    BOOST_TEST(threads_back_to(before, 10s));   // drained: it ended as any idle feeder does

    {
        auto q = Queue<std::string>::open(name);
        stuck_backlog(q);
        q.cancel_join_thread();
    }
    std::this_thread::sleep_for(300ms);
    BOOST_TEST(threads_of_this_process() == before + 1);
    Queue<std::string>::remove(name);   // now nobody can open it again
    BOOST_TEST(threads_back_to(before, 10s));
}

BOOST_AUTO_TEST_CASE(two_abandoned_backlogs_do_not_wait_for_each_other, *utf::timeout(60)) {
    // Two handles, each dropped with its own backlog: neither can read any more, so neither may
    // count as the other's reader (each used to keep the other's thread waiting for ever).
    const std::string name = unique_name("abandoned2");
    shm_remover cleanup(name);
    const std::size_t before = settled_threads();
    {
        auto a = Queue<std::string>::create(name, 0, small_ring);
        auto b = Queue<std::string>::open(name);
        stuck_backlog(a);
        stuck_backlog(b);
        BOOST_TEST(threads_of_this_process() == before + 2);
        a.cancel_join_thread();
        b.cancel_join_thread();
    }
    Queue<std::string>::remove(name);
    BOOST_TEST(threads_back_to(before, 10s), threads_of_this_process() << " threads, " << before
                                                                        << " before");
}

BOOST_AUTO_TEST_CASE(a_corrupt_registry_does_not_keep_an_abandoned_backlog, *utf::timeout(60)) {
    // Found by fuzz_segment: a registry that says 1000 handles hold the queue, in its holders word
    // or in a slot of a live process (this one), or both, with a slot of garbage. The count in the
    // slots and the word agree unless the segment is corrupt, so the orphan believes the smaller
    // (queue_shm.cpp), and a slot naming an impossible process is dead (liveness.hpp).
    namespace sd = shmq::detail;
    const std::function<void(sd::segment&)> corruptions[] = {
        [](sd::segment& seg) { seg.registry().holders[sd::queue_handle_end].store(1000); },
        [](sd::segment& seg) {
            sd::holder_slot* mine = sd::registry::slot_of(seg, sd::self());
            BOOST_TEST_REQUIRE(mine != nullptr);
            mine->count[sd::queue_handle_end].fetch_add(1000);
        },
        // Both say so: the word, and a slot overwritten with 0x78 bytes, which names a process of
        // "another pid namespace" (registry.cpp keeps those) that no kernel could give.
        [](sd::segment& seg) {
            seg.registry().holders[sd::queue_handle_end].store(1000);
            for (sd::holder_slot& slot : seg.registry().slots) {
                if (slot.pid.load() != 0) continue;
                std::memset(static_cast<void*>(&slot), 0x78, sizeof slot);
                break;
            }
        },
    };
    for (const auto& corrupt : corruptions) {
        const std::string name = unique_name("abandoned3");
        shm_remover cleanup(name);
        const std::size_t before = settled_threads();
        {
            auto q = Queue<std::string>::create(name, 0, small_ring);
            stuck_backlog(q);
            q.cancel_join_thread();
            const auto seg =
                sd::segment::inspect(name, sd::inspect_mode{.read_only = false, .wait = true});
            corrupt(*seg);
        }
        Queue<std::string>::remove(name);
        BOOST_TEST(threads_back_to(before, 10s), threads_of_this_process() << " threads, "
                                                                            << before << " before");
    }
}

// ---- codec errors ----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(failing_encode_is_codec_error_and_changes_nothing) {
    // Q4/Q5 and the README (put encodes in the caller): the error reaches put's caller; qsize is
    // unchanged and the queue keeps working.
    Queue<fragile> q;
    q.put(fragile{1, "before"});
    BOOST_CHECK_THROW(q.put(fragile{fragile::encode_bomb, "bad"}), shmq::codec_error);
    BOOST_CHECK_THROW(q.put_nowait(fragile{fragile::encode_bomb, "bad"}), shmq::codec_error);
    BOOST_TEST(q.qsize() == 1u);
    q.put(fragile{2, "after"});
    BOOST_TEST(q.qsize() == 2u);
    BOOST_TEST(q.get(true, 1s).text == "before");
    BOOST_TEST(q.get(true, 1s).text == "after");
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(failing_encode_on_a_maxsize_1_queue_does_not_deadlock) {
    // _TestQueue.test_queue_feeder_donot_stop_onexc, adapted: put(bad) then put(good) on
    // Queue(1) must not deadlock; qsize() == 1, get() == good, then empty().
    Queue<fragile> q(1);
    BOOST_CHECK_THROW(q.put(fragile{fragile::encode_bomb, "bad"}, true, 1s), shmq::codec_error);
    BOOST_TEST(q.qsize() == 0u);
    BOOST_TEST(!q.full());
    q.put(fragile{7, "good"}, true, 1s);   // full_error here would mean the bad put kept its slot
    BOOST_TEST(q.qsize() == 1u);
    BOOST_TEST(q.full());
    const fragile got = q.get(true, 1s);
    BOOST_TEST(got.value == 7);
    BOOST_TEST(got.text == "good");
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(failing_decode_is_codec_error_and_consumes_one_item) {
    // Q8 / README (a failing decode consumes only that message): the bad item is consumed, the next
    // get works.
    Queue<fragile> q;
    q.put(fragile{fragile::decode_bomb, "poison"});
    q.put(fragile{8, "next"});
    BOOST_TEST(q.qsize() == 2u);
    BOOST_CHECK_THROW(q.get(true, 1s), shmq::codec_error);
    BOOST_TEST(q.qsize() == 1u);
    const fragile got = q.get(true, 1s);
    BOOST_TEST(got.value == 8);
    BOOST_TEST(got.text == "next");
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(failing_decode_in_another_process) {
    // A consumer process meets the poison item: codec_error there, and the item after it arrives.
    Queue<fragile> q;
    auto child = queue_child([&]() -> int {
        try {
            (void)q.get(true, 10s);
            return child_bad_value;
        } catch (const shmq::codec_error&) {
        } catch (...) {
            return child_wrong_error;
        }
        fragile f;
        try {
            f = q.get(true, 10s);
        } catch (...) {
            return child_timed_out_get;
        }
        SHMQ_CHILD_CHECK(f.value == 9 && f.text == "fine", child_bad_value);
        return child_ok;
    });
    q.put(fragile{fragile::decode_bomb, "poison"});
    q.put(fragile{9, "fine"});
    BOOST_TEST(child.wait(20s) == child_ok);
    BOOST_TEST(q.empty());
}

// ---- unbounded put never blocks (per-process backlog and feeder) ------------------------------

BOOST_AUTO_TEST_CASE(unbounded_put_never_blocks_then_a_child_drains_in_order, *utf::timeout(50)) {
    // Nobody reads while 10 000 items of 1 KiB go into a 4 KiB ring: every put returns quickly,
    // qsize() counts the backlog; after close() a child drains everything in order and
    // join_thread() returns.
    constexpr int n = 10'000;
    constexpr std::size_t item_size = 1024;
    Queue<std::string> q(0, small_ring);
    go_signal drain;
    auto child = queue_child([&]() -> int {
        if (!drain.wait(30s)) return child_no_go;
        for (int i = 0; i < n; ++i) {
            std::string s;
            try {
                s = q.get(true, 10s);
            } catch (const shmq::empty_error&) {
                std::fprintf(stderr, "child: timed out waiting for item %d\n", i);
                return child_timed_out_get;
            }
            SHMQ_CHILD_CHECK(s.size() == item_size, child_bad_value);
            SHMQ_CHILD_CHECK(matches_pattern(s, static_cast<std::uint64_t>(i)), child_bad_order);
        }
        try {
            (void)q.get(true, 200ms);
            return child_bad_count;   // one too many: something was delivered twice
        } catch (const shmq::empty_error&) {
        }
        return child_ok;
    }, 45);

    double slowest = 0;
    stopwatch total;
    for (int i = 0; i < n; ++i) {
        const std::string s = pattern_string(item_size, static_cast<std::uint64_t>(i));
        slowest = std::max(slowest, timed([&] { q.put(s); }));
    }
    BOOST_TEST(slowest < 2 * at_once.count());   // a put that waited for a reader would never return
    BOOST_TEST(total.seconds() < 10.0);
    BOOST_TEST(q.qsize() == static_cast<std::size_t>(n));
    BOOST_TEST(!q.full());

    q.close();
    drain.go();
    stopwatch join;
    q.join_thread();   // returns once the child has taken enough for the backlog to fit
    BOOST_TEST(join.seconds() < 40.0);
    BOOST_TEST(child.wait(40s) == child_ok);
    BOOST_TEST(q.qsize() == 0u);
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(message_four_times_the_ring_through_an_unbounded_queue, *utf::timeout(30)) {
    // README (Behaviour): put on an unbounded queue never blocks, even for one item larger than the
    // ring; a child then gets it intact, and a small item put after it arrives after it.
    constexpr std::size_t ring = 4096;
    const std::string big = pattern_string(4 * ring, 4242);
    Queue<std::string> q(0, shmq::options{.capacity = ring});

    BOOST_TEST(timed([&] { q.put(big); }) < at_once.count());
    BOOST_TEST(timed([&] { q.put("after"); }) < at_once.count());
    BOOST_TEST(q.qsize() == 2u);

    auto child = queue_child([&]() -> int {
        std::string s;
        try {
            s = q.get(true, 10s);
        } catch (const shmq::empty_error&) {
            return child_timed_out_get;
        }
        SHMQ_CHILD_CHECK(s.size() == 4 * ring, child_bad_value);
        SHMQ_CHILD_CHECK(matches_pattern(s, 4242), child_bad_value);
        try {
            s = q.get(true, 10s);
        } catch (const shmq::empty_error&) {
            return child_timed_out_get;
        }
        SHMQ_CHILD_CHECK(s == "after", child_bad_order);
        return child_ok;
    });
    BOOST_TEST(child.wait(20s) == child_ok);
    q.close();
    BOOST_TEST(timed([&] { q.join_thread(); }) < 5.0);
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(large_messages_through_a_bounded_queue) {
    // A bounded queue streams messages larger than its ring too (the put waits for the reader).
    constexpr std::size_t ring = 4096;
    Queue<std::string> q(2, shmq::options{.capacity = ring});
    auto child = queue_child([&]() -> int {
        for (std::uint64_t i = 0; i < 5; ++i) q.put(pattern_string(10 * ring + i, i), true, 10s);
        return child_ok;
    });
    for (std::uint64_t i = 0; i < 5; ++i) {
        const std::string s = q.get(true, 10s);
        BOOST_TEST(s.size() == 10 * ring + i);
        BOOST_TEST(matches_pattern(s, i));
    }
    BOOST_TEST(child.wait(20s) == child_ok);
}

BOOST_AUTO_TEST_CASE(bounded_put_nowait_of_an_item_larger_than_the_ring_returns_at_once) {
    // Q2/Q20: put(block=false) never waits, and put(block=true, timeout) waits at most about the
    // timeout; on a bounded queue with free slots and nobody reading, an item larger than the ring
    // must still give either success or full_error promptly (it must not stream into a ring nobody
    // drains and wait there for ever). Each attempt runs in a child, so a hang fails the case
    // instead of the suite.
    constexpr std::size_t ring = 4096;
    for (int flavour = 0; flavour < 3; ++flavour) {
        BOOST_TEST_CONTEXT((flavour == 0 ? "put_nowait" : flavour == 1 ? "put(false, 5s)" : "put(true, 200ms)")) {
            Queue<std::string> q(10, shmq::options{.capacity = ring});
            auto child = queue_child([&]() -> int {
                const std::string big = pattern_string(4 * ring, 9);
                stopwatch sw;
                try {
                    if (flavour == 0) q.put_nowait(big);
                    else if (flavour == 1) q.put(big, false, 5s);
                    else q.put(big, true, 200ms);
                } catch (const shmq::full_error&) {
                }
                q.cancel_join_thread();   // if it was accepted into a backlog, don't wait at exit
                return sw.seconds() < 1.2 ? child_ok : child_timed_out_get;
            }, 10);
            BOOST_TEST(child.wait(3s) == child_ok);
        }
    }
}

BOOST_AUTO_TEST_CASE(get_timeout_holds_while_a_live_writer_stalls_mid_message) {
    // Q7, C++ clause: "messages are atomic, and get(timeout) must honour its timeout". The writer
    // of a message four times the ring is stopped (SIGSTOP, alive) after its first pieces; a
    // reader's get(300ms) must give empty_error in about 300 ms rather than wait for the writer.
    constexpr std::size_t ring = 4096;
    Queue<std::string> q(0, shmq::options{.capacity = ring});
    auto writer = queue_child([&]() -> int {
        q.put(pattern_string(4 * ring, 5));
        return child_ok;
    }, 20);
    BOOST_REQUIRE(eventually([&] { return !q.empty(); }));
    std::this_thread::sleep_for(100ms);   // the ring is full of first pieces; the writer waits
    BOOST_REQUIRE(::kill(writer.pid(), SIGSTOP) == 0);
    auto reader = queue_child([&]() -> int {
        stopwatch sw;
        try {
            (void)q.get(true, 300ms);
            return child_bad_value;   // a whole message cannot have come from a stopped writer
        } catch (const shmq::empty_error&) {
        }
        return sw.seconds() < 1.3 ? child_ok : child_timed_out_get;
    }, 3);
    const int code = reader.wait(6s);
    BOOST_TEST(code == child_ok, "reader exit " << code << " (-14: still inside get(300ms) after 3 s)");
    ::kill(writer.pid(), SIGCONT);
    writer.kill();
}

BOOST_AUTO_TEST_CASE(qsize_is_exact_while_the_feeder_waits_mid_batch, *utf::timeout(30)) {
    // Q11: qsize() counts every item put by this process and not yet got, backlog included,
    // exactly when nothing moves. Here the feeder has written part of a batch and waits for room
    // for the rest: the written part is in the ring and must not be counted again as backlog.
    Queue<std::string> q(0, small_ring);
    const std::string item(1024, 'q');   // 3 fit in 4 KiB
    constexpr int n = 20;
    for (int i = 0; i < n; ++i) q.put(item);
    std::this_thread::sleep_for(150ms);   // the feeder is now waiting for room
    BOOST_TEST(q.qsize() == static_cast<std::size_t>(n));
    constexpr int taken = 6;
    for (int i = 0; i < taken; ++i) {
        BOOST_REQUIRE_NO_THROW(q.get(true, 5s));
        std::this_thread::sleep_for(100ms);   // let the feeder refill the slot just freed
    }
    const bool exact = eventually([&] { return q.qsize() == static_cast<std::size_t>(n - taken); }, 2s);
    BOOST_TEST(exact, "qsize() == " << q.qsize() << ", expected " << n - taken);
    for (int i = taken; i < n; ++i) BOOST_REQUIRE_NO_THROW(q.get(true, 5s));
    BOOST_TEST(q.qsize() == 0u);
    q.close();
    q.join_thread();
}

// ---- random sizes with backpressure ----------------------------------------------------------

namespace {

/// Producer side of the random-size tests: sizes 0..64 KiB from seed, contents pattern_string.
std::vector<std::size_t> random_sizes(std::uint64_t seed, int n) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<std::size_t> size(0, 64 * 1024);
    std::vector<std::size_t> out;
    for (int i = 0; i < n; ++i) out.push_back(i == 0 ? 0 : i == 1 ? 64 * 1024 : size(rng));
    return out;
}

void random_sizes_through(Queue<std::string>& q, std::uint64_t seed, int n) {
    const auto sizes = random_sizes(seed, n);
    auto child = queue_child([&]() -> int {
        for (int i = 0; i < n; ++i) {
            try {
                q.put(pattern_string(sizes[i], seed + static_cast<std::uint64_t>(i)), true, 10s);
            } catch (const shmq::full_error&) {
                return child_put_failed;
            }
        }
        return child_ok;
    });
    std::mt19937 pause(static_cast<unsigned>(seed));
    int bad = 0;
    for (int i = 0; i < n && bad < 5; ++i) {
        // A slow consumer now and then, so the producer meets a full ring (backpressure).
        if (pause() % 8 == 0) std::this_thread::sleep_for(2ms);
        std::string s;
        try {
            s = q.get(true, 10s);
        } catch (const shmq::empty_error&) {
            BOOST_ERROR("timed out waiting for message " << i);
            break;
        }
        if (s.size() != sizes[i] || !matches_pattern(s, seed + static_cast<std::uint64_t>(i))) {
            ++bad;
            BOOST_ERROR("message " << i << ": " << s.size() << " bytes, expected " << sizes[i]
                                   << (s.size() == sizes[i] ? " (contents differ)" : ""));
        }
    }
    BOOST_TEST(child.wait(30s) == child_ok);
    BOOST_TEST(q.empty());
}

} // namespace

BOOST_AUTO_TEST_CASE(random_sizes_through_a_64k_ring_bounded) {
    const std::uint64_t seed = test_seed();
    BOOST_TEST_MESSAGE("SHMQ_TEST_SEED=" << seed);
    Queue<std::string> q(4, shmq::options{.capacity = 65536});
    random_sizes_through(q, seed, 300);
}

BOOST_AUTO_TEST_CASE(random_sizes_through_a_64k_ring_unbounded) {
    const std::uint64_t seed = test_seed();
    BOOST_TEST_MESSAGE("SHMQ_TEST_SEED=" << seed);
    Queue<std::string> q(0, shmq::options{.capacity = 65536});
    random_sizes_through(q, seed, 300);
}

// ---- types -----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(structs_doubles_and_serialized_types) {
    Queue<tagged> raw;
    raw.put(tagged{3, 4});
    const tagged t = raw.get(true, 1s);
    BOOST_TEST(t.producer == 3u);
    BOOST_TEST(t.seq == 4u);

    Queue<double> d;
    d.put(-0.5);
    BOOST_TEST(d.get(true, 1s) == -0.5);

    Queue<fragile> f;
    f.put(fragile{5, std::string(100'000, 'z')});
    const fragile got = f.get(true, 1s);
    BOOST_TEST(got.value == 5);
    BOOST_TEST(got.text == std::string(100'000, 'z'));
}

BOOST_AUTO_TEST_CASE(moved_queue_keeps_working) {
    Queue<int> a;
    a.put(1);
    Queue<int> b(std::move(a));
    b.put(2);
    Queue<int> c;
    c = std::move(b);
    BOOST_TEST(c.get(true, 1s) == 1);
    BOOST_TEST(c.get(true, 1s) == 2);
}

BOOST_AUTO_TEST_CASE(threads_of_one_process_share_a_queue) {
    // MPMC within a process: 4 producer threads, 4 consumer threads, every item exactly once and
    // FIFO per producer thread.
    constexpr int producers = 4, per_producer = 5000;
    Queue<tagged> q(0, shmq::options{.capacity = 8192});
    std::vector<std::vector<std::uint32_t>> seen(producers);
    std::mutex seen_m;
    std::atomic<int> order_errors{0}, timeouts{0};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p)
        threads.emplace_back([&, p] {
            for (int i = 0; i < per_producer; ++i)
                q.put(tagged{static_cast<std::uint32_t>(p), static_cast<std::uint32_t>(i)});
        });
    std::atomic<int> remaining{producers * per_producer};
    for (int c = 0; c < 4; ++c)
        threads.emplace_back([&] {
            std::vector<std::int64_t> last(producers, -1);
            std::vector<std::vector<std::uint32_t>> mine(producers);
            while (remaining.fetch_sub(1) > 0) {
                try {
                    const tagged t = q.get(true, 10s);
                    if (t.producer >= producers || static_cast<std::int64_t>(t.seq) <= last[t.producer])
                        ++order_errors;
                    else {
                        last[t.producer] = t.seq;
                        mine[t.producer].push_back(t.seq);
                    }
                } catch (const shmq::empty_error&) {
                    ++timeouts;
                    break;
                }
            }
            std::lock_guard<std::mutex> lock(seen_m);
            for (int p = 0; p < producers; ++p)
                seen[p].insert(seen[p].end(), mine[p].begin(), mine[p].end());
        });
    for (auto& t : threads) t.join();
    BOOST_TEST(order_errors.load() == 0);
    BOOST_TEST(timeouts.load() == 0);
    for (int p = 0; p < producers; ++p) {
        std::sort(seen[p].begin(), seen[p].end());
        std::vector<std::uint32_t> expect(per_producer);
        for (int i = 0; i < per_producer; ++i) expect[i] = static_cast<std::uint32_t>(i);
        BOOST_TEST((seen[p] == expect), "producer " << p << ": " << seen[p].size() << " distinct items");
    }
    BOOST_TEST(q.empty());
}
