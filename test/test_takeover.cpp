// SPDX-License-Identifier: BSL-1.0
// Taking over what a dead process held, whatever way the survivors wait (issue 7, A.4, A.5, A.8):
//  * A.4 a reader lease held by a consumer SIGKILLed inside get() is taken over by survivors that
//    only poll with get_nowait(), by an untimed get() in a process that receives SIGALRM at
//    100 Hz (handler installed with and without SA_RESTART), and by a timed get() without using
//    up its timeout;
//  * A.5 a timed get() that has started a streamed message while its writer is alive and sending
//    must not leave another thread's blocking get() hanging, and every message arrives whole,
//    exactly once;
//  * A.8 the pieces left by a writer killed mid-stream are not "ready": poll(0) is false, a Queue
//    is empty(), wait() does not report the connection, and the next whole message is recv'd.
// Every blocking call is bounded: consumers that could hang run in forked children that the
// parent kills after a bound.
#define BOOST_TEST_MODULE takeover
#include <boost/test/unit_test.hpp>

#include <shmq/shmq.hpp>

#include "test_fixtures.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/time.h>

using namespace std::chrono_literals;
using namespace shmq::test;


namespace {

shmq::options small_ring(std::size_t cap) {
    shmq::options o;
    o.capacity = cap;
    return o;
}

/// Leaves q's reader lease with a dead process: a child blocks in get() on the empty queue (it
/// holds the reader lease while it waits for data) and is SIGKILLed there.
template <class Q> void kill_reader_inside_get(Q& q) {
    scoped_child consumer([&] {
        q.get();
        return 1;   // nothing was put: get() must not return
    });
    std::this_thread::sleep_for(300ms);
    BOOST_REQUIRE_MESSAGE(!consumer.exited(), "the consumer left get() on an empty queue");
    consumer.kill();
    BOOST_REQUIRE_EQUAL(consumer.wait(5s), -SIGKILL);
}

void noop_handler(int) {}

/// In a child: SIGALRM every 5 ms (200 Hz: every liveness slice is interrupted), handled by a no-op handler installed with `flags`.
void start_ticks(int flags) {
    struct sigaction sa {};
    sa.sa_handler = noop_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = flags;
    ::sigaction(SIGALRM, &sa, nullptr);
    itimerval it{};
    it.it_interval.tv_usec = 5'000;
    it.it_value.tv_usec = 5'000;
    ::setitimer(ITIMER_REAL, &it, nullptr);
}

void stop_ticks() {
    itimerval it{};
    ::setitimer(ITIMER_REAL, &it, nullptr);
}

} // namespace

// A.4 (a): a zero-deadline lock must take over too.
BOOST_AUTO_TEST_CASE(get_nowait_takes_over_dead_reader, *boost::unit_test::timeout(60))
{
    shmq::Queue<int> q;
    kill_reader_inside_get(q);
    q.put(42);
    BOOST_CHECK_EQUAL(q.qsize(), 1u);
    std::optional<int> got;
    stopwatch sw;
    while (!got && sw.seconds() < 2.0) {
        try {
            got = q.get_nowait();
        } catch (const shmq::empty_error&) {
            std::this_thread::sleep_for(5ms);
        }
    }
    BOOST_CHECK_MESSAGE(got.has_value(), "get_nowait() gave empty_error for 2 s while qsize() == "
                                             << q.qsize() << ": the dead reader's lease was never taken over");
    if (got) BOOST_CHECK_EQUAL(*got, 42);
}

// A.4 (b): an untimed get() behind a dead lease holder returns although a signal interrupts every
// sleep (5 ms ticks, well inside the 20 ms liveness slice); with and without SA_RESTART.
BOOST_AUTO_TEST_CASE(untimed_get_under_signal_storm, *boost::unit_test::timeout(60))
{
    for (int flags : {SA_RESTART, 0}) {
        BOOST_TEST_CONTEXT((flags ? "SA_RESTART" : "no SA_RESTART")) {
            shmq::Queue<int> q;
            kill_reader_inside_get(q);
            q.put(7);
            scoped_child getter([&] {
                start_ticks(flags);
                stopwatch sw;
                int v = q.get();
                stop_ticks();
                SHMQ_CHILD_CHECK(v == 7, 2);
                SHMQ_CHILD_CHECK(sw.seconds() < 0.5, 3);
                return 0;
            });
            const int rc = getter.wait(5s);
            BOOST_CHECK_MESSAGE(rc == 0, "get() behind a dead holder under 200 Hz SIGALRM: "
                                             << (rc == child_timed_out ? "still blocked after 5 s"
                                                                       : "exit " + std::to_string(rc)));
        }
    }
}

// A.4 (b): a timed get(5 s) behind a dead holder, with an item there, must not wait its timeout
// out when signals keep interrupting its sleeps.
BOOST_AUTO_TEST_CASE(timed_get_under_signal_storm, *boost::unit_test::timeout(60))
{
    shmq::Queue<int> q;
    kill_reader_inside_get(q);
    q.put(9);
    scoped_child getter([&] {
        start_ticks(SA_RESTART);
        stopwatch sw;
        int v = -1;
        try {
            v = q.get(true, 5s);
        } catch (const shmq::empty_error&) {
            stop_ticks();
            return 4;   // whole timeout used up, item never reached
        }
        stop_ticks();
        SHMQ_CHILD_CHECK(v == 9, 2);
        SHMQ_CHILD_CHECK(sw.seconds() < 2.0, 3);
        return 0;
    });
    const int rc = getter.wait(10s);
    BOOST_CHECK_MESSAGE(rc == 0, "timed get behind a dead holder under SIGALRM: exit " << rc
                                     << (rc == 4 ? " (empty_error after the whole 5 s)" : ""));
}

// A.4: a plain timed get() (no signals) behind a dead holder takes over well inside its timeout.
BOOST_AUTO_TEST_CASE(timed_get_takes_over_dead_reader, *boost::unit_test::timeout(60))
{
    shmq::Queue<int> q;
    kill_reader_inside_get(q);
    q.put(11);
    int v = -1;
    double s = timed([&] { v = q.get(true, 5s); });
    BOOST_CHECK_EQUAL(v, 11);
    BOOST_CHECK_LT(s, 1.0);
}

// A.5: thread 1 makes timed get(50 ms) calls while a live writer streams a message four times the
// ring, slowly (20 ms per piece); thread 2 starts a blocking get() meanwhile. Both messages
// arrive whole and exactly once, and nobody hangs.
BOOST_AUTO_TEST_CASE(timed_get_mid_stream_and_blocking_get, *boost::unit_test::timeout(90))
{
    constexpr std::size_t cap = 16 * 1024;
    shmq::Queue<std::string> q(10, small_ring(cap));
    const std::string big = to_string(make_pattern(4 * cap, 77));
    const std::string small = "the second message";
    scoped_child writer([&] {
        q.put(big, true, 30s);
        q.put(small, true, 30s);
        return 0;
    });
    // Stop the writer mid-stream (alive, lease held, ring full) while the consumers start, so the
    // 50 ms get times out in the middle of the message; let it go on after 300 ms.
    stopwatch wsw;
    while (q.empty() && wsw.seconds() < 5) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(50ms);
    writer.kill(SIGSTOP);
    scoped_child consumers([&] {
        std::mutex m;
        std::vector<std::string> got;
        std::atomic<bool> t1_done{false};
        std::thread t1([&] {
            stopwatch sw;
            while (sw.seconds() < 20) {
                try {
                    std::string s = q.get(true, 50ms);
                    std::lock_guard g(m);
                    got.push_back(std::move(s));
                    break;
                } catch (const shmq::empty_error&) {
                }
            }
            t1_done = true;
        });
        std::this_thread::sleep_for(75ms);   // thread 1 is in its first or second timed get
        std::thread t2([&] {
            std::string s = q.get();
            std::lock_guard g(m);
            got.push_back(std::move(s));
        });
        t1.join();
        t2.join();
        SHMQ_CHILD_CHECK(got.size() == 2, 2);
        SHMQ_CHILD_CHECK(std::count(got.begin(), got.end(), big) == 1, 3);
        SHMQ_CHILD_CHECK(std::count(got.begin(), got.end(), small) == 1, 4);
        SHMQ_CHILD_CHECK(q.empty(), 5);
        return 0;
    });
    // Started after the fork: a child forked while this thread ran would inherit a dead thread
    // (TSan rejects that).
    std::thread pacer([&] {
        std::this_thread::sleep_for(300ms);
        writer.kill(SIGCONT);
    });
    const int rc = consumers.wait(30s);
    BOOST_CHECK_MESSAGE(rc == 0, "consumers: " << (rc == child_timed_out ? "a get() hung (killed after 30 s)"
                                                                          : "exit " + std::to_string(rc))
                                               << " (2: not two messages, 3: big not once/whole, 4: small not once)");
    pacer.join();
    BOOST_CHECK_EQUAL(writer.wait(30s), 0);
}

// A.8, Pipe: a writer killed mid-stream leaves orphan pieces; they are not a message.
BOOST_AUTO_TEST_CASE(orphan_pieces_are_not_ready_pipe, *boost::unit_test::timeout(60))
{
    constexpr std::size_t cap = 16 * 1024;
    auto [rx, tx] = shmq::Pipe(false, small_ring(cap));
    scoped_child writer([&] {
        rx.close();
        tx.send_bytes(make_pattern(4 * cap, 5));   // nobody reads: blocks after a few pieces
        return 1;
    });
    BOOST_REQUIRE(rx.poll(5s));   // its first pieces are in the ring
    std::this_thread::sleep_for(100ms);
    writer.kill();
    BOOST_REQUIRE_EQUAL(writer.wait(5s), -SIGKILL);
    std::this_thread::sleep_for(50ms);

    BOOST_CHECK_MESSAGE(!rx.poll(0s), "poll(0) reports the dead writer's orphan pieces as a message");
    BOOST_CHECK_MESSAGE(!rx.poll(100ms), "poll(0.1 s) reports the dead writer's orphan pieces as a message");
    BOOST_CHECK_MESSAGE(shmq::wait({&rx}, 100ms).empty(), "wait() reports the dead writer's orphan pieces");
    // The ring may be full of orphan pieces: send from another thread while this one reads.
    std::thread sender([&] { tx.send_bytes(to_bytes("after")); });
    BOOST_CHECK(rx.poll(5s));
    BOOST_CHECK_EQUAL(to_string(rx.recv_bytes()), "after");
    sender.join();
    BOOST_CHECK(!rx.poll(100ms));
}

// A.8, Queue: empty() is true, qsize() 0, get times out, and the next item comes through.
BOOST_AUTO_TEST_CASE(orphan_pieces_are_not_ready_queue, *boost::unit_test::timeout(60))
{
    constexpr std::size_t cap = 16 * 1024;
    shmq::Queue<std::string> q(10, small_ring(cap));
    scoped_child writer([&] {
        q.put(to_string(make_pattern(4 * cap, 6)));
        return 1;
    });
    stopwatch sw;
    while (q.empty() && sw.seconds() < 5) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(100ms);
    writer.kill();
    BOOST_REQUIRE_EQUAL(writer.wait(5s), -SIGKILL);
    std::this_thread::sleep_for(50ms);

    BOOST_CHECK_MESSAGE(q.empty(), "empty() is false with only a dead writer's orphan pieces in the ring");
    BOOST_CHECK_EQUAL(q.qsize(), 0u);
    BOOST_CHECK_THROW(q.get(true, 200ms), shmq::empty_error);
    std::thread putter([&] { q.put("after", true, 10s); });
    BOOST_CHECK_EQUAL(q.get(true, 10s), "after");
    putter.join();
    BOOST_CHECK(q.empty());
}

// A.5 across processes: a timed get() that times out in the middle of a streamed message must
// not leave that message (and the reader lease) with its process, stalling consumers in every
// other process while it idles.
BOOST_AUTO_TEST_CASE(timed_get_mid_stream_does_not_stall_other_processes, *boost::unit_test::timeout(90))
{
    constexpr std::size_t cap = 16 * 1024;
    shmq::Queue<std::string> q(10, small_ring(cap));
    const std::string big = to_string(make_pattern(4 * cap, 78));
    const std::string small = "after the big one";
    scoped_child writer([&] {
        q.put(big, true, 30s);
        q.put(small, true, 30s);
        return 0;
    });
    stopwatch wsw;
    while (q.empty() && wsw.seconds() < 5) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(50ms);
    writer.kill(SIGSTOP);   // alive, lease held, mid-stream
    shared_array<std::atomic<int>> p1(1);   // what the first consumer got: 0 nothing, 1 big, 2 small, 3 other
    scoped_child first([&] {
        try {
            std::string s = q.get(true, 50ms);
            p1[0] = s == big ? 1 : s == small ? 2 : 3;
        } catch (const shmq::empty_error&) {
        }
        ::pause();   // stays alive and idle
        return 0;
    });
    std::this_thread::sleep_for(150ms);   // its get has timed out by now (if it parks)
    writer.kill(SIGCONT);
    std::vector<std::string> got;
    try {
        while (got.size() + (p1[0] != 0) < 2) got.push_back(q.get(true, 3s));
    } catch (const shmq::empty_error&) {
    }
    if (p1[0] == 1) got.push_back(big);
    if (p1[0] == 2) got.push_back(small);
    BOOST_CHECK_MESSAGE(p1[0] != 3, "the first consumer got a torn message");
    BOOST_CHECK_MESSAGE(std::count(got.begin(), got.end(), big) == 1,
                        "the streamed message arrived " << std::count(got.begin(), got.end(), big)
                                                         << " times (stuck with an idle process that timed out?)");
    BOOST_CHECK_MESSAGE(std::count(got.begin(), got.end(), small) == 1,
                        "the next message arrived " << std::count(got.begin(), got.end(), small) << " times");
    first.kill();
    first.wait(5s);
    writer.kill();
    writer.wait(5s);
}
