// SPDX-License-Identifier: BSL-1.0
// shmq::SimpleQueue<T>: put, get, empty, close (clauses S1-S6 of Python's SimpleQueue). put is
// synchronous and waits while the ring is full (no feeder); after close() put, get and empty throw
// closed_error.
//
// SimpleQueue::get has no timeout: the parent calls it only when an item is known to be there
// (and the cases that could still hang carry a Boost.Test timeout); children run under a watchdog.
#define BOOST_TEST_MODULE simple_queue
#include <boost/test/unit_test.hpp>

#include "queue_fixtures.hpp"

#include <shmq/simple_queue.hpp>
#include <shmq/serialization.hpp>   // types sent with Boost.Serialization

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using namespace shmq::test;
using shmq::SimpleQueue;
namespace utf = boost::unit_test;


static_assert(std::is_default_constructible_v<SimpleQueue<int>>, "an anonymous SimpleQueue");

BOOST_AUTO_TEST_CASE(put_get_empty, *utf::timeout(20)) {
    SimpleQueue<std::string> q;
    BOOST_TEST(q.empty());
    q.put("a");
    BOOST_TEST(!q.empty());   // S2: once put returns, empty() is false
    q.put("b");
    q.put("");
    BOOST_TEST(q.get() == "a");
    BOOST_TEST(q.get() == "b");
    BOOST_TEST(!q.empty());
    BOOST_TEST(q.get().empty());
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(close_then_put_get_empty_throw_closed_error) {
    // S5 (C++ rendering: closed_error): close() is idempotent, and afterwards put, get and empty
    // throw, whether or not the queue was used and even with an item waiting.
    SimpleQueue<int> unused;
    unused.close();
    unused.close();
    BOOST_CHECK_THROW(unused.empty(), shmq::closed_error);
    BOOST_CHECK_THROW(unused.put(1), shmq::closed_error);
    BOOST_CHECK_THROW(unused.get(), shmq::closed_error);

    SimpleQueue<int> used;
    used.put(1);
    used.close();
    BOOST_CHECK_THROW(used.empty(), shmq::closed_error);
    BOOST_CHECK_THROW(used.put(2), shmq::closed_error);
    BOOST_CHECK_THROW(used.get(), shmq::closed_error);   // closed first: the item stays
    used.close();
}

BOOST_AUTO_TEST_CASE(close_is_per_process) {
    SimpleQueue<int> q;
    auto child = queue_child([&]() -> int {
        q.close();
        try {
            q.put(1);
            return child_bad_value;
        } catch (const shmq::closed_error&) {
        }
        return child_ok;
    });
    BOOST_REQUIRE(child.wait(20s) == child_ok);
    q.put(2);
    BOOST_TEST(!q.empty());
    BOOST_TEST(q.get() == 2);
}

BOOST_AUTO_TEST_CASE(test_empty_port) {
    // TestSimpleQueue.test_empty: the child puts q.empty() twice (true, then false); the parent
    // then sees a non-empty queue, gets true and false, and the queue is empty again.
    SimpleQueue<bool> q;
    go_signal child_can_start;
    auto child = queue_child([&]() -> int {
        if (!child_can_start.wait(20s)) return child_no_go;
        q.put(q.empty());
        q.put(q.empty());
        return child_ok;
    });
    BOOST_TEST(q.empty());
    child_can_start.go();
    BOOST_REQUIRE(child.wait(20s) == child_ok);   // parent_can_continue
    BOOST_TEST(!q.empty());
    BOOST_TEST(q.get() == true);
    BOOST_TEST(q.get() == false);
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(put_blocks_while_the_ring_is_full, *utf::timeout(30)) {
    // S2: no feeder, so put waits for room; a child drains later, and then the put completes.
    SimpleQueue<std::string> q(shmq::options{.capacity = 4096});
    constexpr int n = 10;
    go_signal drain;
    auto child = queue_child([&]() -> int {
        if (!drain.wait(20s)) return child_no_go;
        for (int i = 0; i < n; ++i) {
            const std::string s = q.get();   // the watchdog bounds it
            SHMQ_CHILD_CHECK(matches_pattern(s, static_cast<std::uint64_t>(i)), child_bad_order);
        }
        return child_ok;
    });
    // Three 1 KiB items fill a 4 KiB ring; the fourth put must wait for the child.
    for (int i = 0; i < 3; ++i)
        BOOST_TEST(timed([&] { q.put(pattern_string(1024, static_cast<std::uint64_t>(i))); }) < at_once.count());
    std::thread release([&] {
        std::this_thread::sleep_for(300ms);
        drain.go();
    });
    const double t = timed([&] { q.put(pattern_string(1024, 3)); });
    BOOST_TEST(t >= 0.25);   // it waited for the drain
    BOOST_TEST(t < 10.0);
    for (int i = 4; i < n; ++i) q.put(pattern_string(1024, static_cast<std::uint64_t>(i)));
    release.join();
    BOOST_TEST(child.wait(20s) == child_ok);
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(message_larger_than_the_ring, *utf::timeout(30)) {
    // A put larger than the ring streams while a child reads: it completes and arrives whole.
    SimpleQueue<std::string> q(shmq::options{.capacity = 4096});
    auto child = queue_child([&]() -> int {
        const std::string s = q.get();
        SHMQ_CHILD_CHECK(s.size() == 5 * 4096 + 3, child_bad_value);
        SHMQ_CHILD_CHECK(matches_pattern(s, 55), child_bad_value);
        q.put("thanks");
        return child_ok;
    });
    q.put(pattern_string(5 * 4096 + 3, 55));
    BOOST_TEST(child.wait(20s) == child_ok);
    BOOST_TEST(!q.empty());
    BOOST_TEST(q.get() == "thanks");
}

BOOST_AUTO_TEST_CASE(codec_errors, *utf::timeout(20)) {
    // S2: serialization happens in the caller; an error propagates and nothing is sent. A failing
    // decode consumes that one item.
    SimpleQueue<fragile> q;
    BOOST_CHECK_THROW(q.put(fragile{fragile::encode_bomb, "bad"}), shmq::codec_error);
    BOOST_TEST(q.empty());
    q.put(fragile{fragile::decode_bomb, "poison"});
    q.put(fragile{3, "fine"});
    BOOST_CHECK_THROW(q.get(), shmq::codec_error);
    BOOST_TEST(!q.empty());
    const fragile f = q.get();
    BOOST_TEST(f.value == 3);
    BOOST_TEST(f.text == "fine");
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(two_producers_two_consumers_exactly_once) {
    // S6: FIFO per producer and exactly-once delivery across consumer processes.
    constexpr std::uint32_t per_producer = 5000, stop = 0xffffffffu;
    SimpleQueue<tagged> q(shmq::options{.capacity = 8192});
    shared_array<std::atomic<std::uint32_t>> seen(2 * per_producer);
    std::vector<scoped_child> kids;
    for (int c = 0; c < 2; ++c)
        kids.push_back(queue_child([&]() -> int {
            std::int64_t last[2] = {-1, -1};
            for (;;) {
                const tagged t = q.get();
                if (t.producer == stop) return child_ok;
                SHMQ_CHILD_CHECK(t.producer < 2 && t.seq < per_producer, child_bad_value);
                SHMQ_CHILD_CHECK(static_cast<std::int64_t>(t.seq) > last[t.producer], child_bad_order);
                last[t.producer] = t.seq;
                seen[t.producer * per_producer + t.seq].fetch_add(1);
            }
        }, 40));
    std::vector<scoped_child> makers;
    for (std::uint32_t p = 0; p < 2; ++p)
        makers.push_back(queue_child([&, p]() -> int {
            for (std::uint32_t i = 0; i < per_producer; ++i) q.put(tagged{p, i});
            return child_ok;
        }, 40));
    for (auto& m : makers) BOOST_TEST(m.wait(30s) == child_ok);
    q.put(tagged{stop, 0});
    q.put(tagged{stop, 0});
    for (auto& c : kids) BOOST_TEST(c.wait(30s) == child_ok);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < seen.size(); ++i) wrong += seen[i].load() != 1;
    BOOST_TEST(wrong == 0u, wrong << " items not delivered exactly once");
    BOOST_TEST(q.empty());
}
