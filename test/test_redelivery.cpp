// SPDX-License-Identifier: BSL-1.0
// JoinableQueue with options::redeliver (issue 7 A.10): at-least-once delivery. An item stays in
// the ring until task_done; a consumer that dies first has its items delivered again to another
// consumer, so the work is not lost and join() still returns.
#define BOOST_TEST_MODULE redelivery
#include <boost/test/unit_test.hpp>

#include "test_fixtures.hpp"

#include <shmq/shmq.hpp>

#include <csignal>
#include <map>
#include <string>

using namespace shmq::test;

namespace {

shmq::options retained(std::size_t cap = 4096) {
    shmq::options o;
    o.capacity = cap;
    o.redeliver = true;
    return o;
}

} // namespace

BOOST_AUTO_TEST_CASE(plain_flow_wraps_the_ring_many_times, *boost::unit_test::timeout(60)) {
    // 20 000 items through a 4 KiB ring with task_done right after each get: release keeps up
    // with head, nothing is delivered twice, join() returns.
    shmq::JoinableQueue<int> q(0, retained());
    scoped_child producer([&] {
        for (int i = 0; i < 20000; ++i) q.put(i);
        q.close();
        q.join_thread();
        return 0;
    });
    for (int i = 0; i < 20000; ++i) {
        int v = -1;
        BOOST_REQUIRE_NO_THROW(v = q.get(true, 10s));
        BOOST_REQUIRE_EQUAL(v, i);
        q.task_done();
    }
    BOOST_TEST(q.join(2s));
    BOOST_TEST(producer.wait(10s) == 0);
}

BOOST_AUTO_TEST_CASE(items_in_progress_keep_their_room, *boost::unit_test::timeout(60)) {
    // Items got but not done still occupy the ring: a bounded put waits; task_done frees room.
    shmq::JoinableQueue<std::string> q(0, retained());
    const std::string item(1300, 'x');   // three records of 1308 bytes fit in 4 KiB, four do not
    for (int i = 0; i < 3; ++i) q.put(item, true, 1s);
    for (int i = 0; i < 3; ++i) BOOST_TEST(q.get(true, 1s) == item);
    scoped_child writer([&] {
        try {
            q.put(item, true, 0.3s);   // the feeder holds it: put itself never blocks
        } catch (const shmq::error&) {
            return 2;
        }
        q.close();
        q.join_thread();   // waits until it is in the ring: only after a task_done
        return 0;
    });
    std::this_thread::sleep_for(300ms);
    BOOST_TEST(q.empty(), "the fourth item found room while three were in progress");
    q.task_done();
    std::string s;
    BOOST_CHECK_NO_THROW(s = q.get(true, 5s));
    BOOST_TEST(s == item);
    BOOST_TEST(writer.wait(10s) == 0);
    for (int i = 0; i < 3; ++i) q.task_done();
    BOOST_TEST(q.join(2s));
}

BOOST_AUTO_TEST_CASE(item_of_a_killed_consumer_is_delivered_again, *boost::unit_test::timeout(60)) {
    shmq::JoinableQueue<std::string> q(0, retained());
    for (int i = 0; i < 10; ++i) q.put("item " + std::to_string(i));
    // A consumer takes the first two items, finishes one, and is killed with the other.
    scoped_child consumer([&] {
        const auto a = q.get(true, 5s);
        const auto b = q.get(true, 5s);
        if (a != "item 0" || b != "item 1") return 2;
        q.task_done();
        ::pause();
        return 0;
    });
    stopwatch sw;
    while (q.qsize() > 8 && sw.seconds() < 5) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(50ms);
    consumer.kill();
    BOOST_REQUIRE_EQUAL(consumer.wait(5s), -SIGKILL);

    std::map<std::string, int> got;
    try {
        for (;;) {
            got[q.get(true, 2s)]++;
            q.task_done();
        }
    } catch (const shmq::empty_error&) {
    }
    // item 0 was done by the dead consumer; item 1 comes again; 2..9 once each.
    BOOST_TEST(got.count("item 0") == 0u);
    BOOST_TEST(got["item 1"] == 1);
    for (int i = 2; i < 10; ++i) BOOST_TEST(got["item " + std::to_string(i)] == 1);
    BOOST_TEST(q.join(2s), "join() waits for an item nobody holds");
    BOOST_TEST(q.lost_to_dead_consumers() == 0u);
}

BOOST_AUTO_TEST_CASE(consumers_killed_at_random_lose_nothing, *boost::unit_test::timeout(120)) {
    // Four consumers, killed and replaced at random while 2 000 items flow; every item is done
    // at least once and join() returns.
    constexpr int n = 2000;
    shmq::JoinableQueue<int> q(0, retained(16 * 1024));
    auto done = shared_array<std::atomic<int>>(n);
    auto consumer = [&] {
        for (;;) {
            int v;
            try {
                v = q.get(true, 10s);
            } catch (const shmq::empty_error&) {
                return 0;
            }
            if (v < 0) return 0;
            if (v >= n) return 3;
            done[v].fetch_add(1);
            q.task_done();
        }
    };
    std::vector<std::unique_ptr<scoped_child>> consumers;
    for (int i = 0; i < 4; ++i) consumers.push_back(std::make_unique<scoped_child>(consumer));
    std::mt19937 rng(static_cast<unsigned>(test_seed()));
    for (int i = 0; i < n; ++i) {
        q.put(i);
        if (rng() % 100 == 0) {
            auto& c = consumers[rng() % consumers.size()];
            c->kill();
            c->wait(5s);
            c = std::make_unique<scoped_child>(consumer);
        }
    }
    BOOST_TEST(q.join(30s), "join() did not return: an item of a killed consumer was lost");
    for (std::size_t i = 0; i < consumers.size(); ++i) q.put(-1);
    for (auto& c : consumers) BOOST_TEST(c->wait(15s) == 0);
    int missing = 0;
    for (int i = 0; i < n; ++i) missing += done[i].load() == 0;
    BOOST_TEST(missing == 0);
    BOOST_TEST(q.lost_to_dead_consumers() == 0u);
}

BOOST_AUTO_TEST_CASE(refused_where_it_cannot_hold, *boost::unit_test::timeout(30)) {
    BOOST_CHECK_THROW(shmq::Queue<int>(0, retained()), shmq::value_error);
    shmq::JoinableQueue<std::string> q(0, retained());
    BOOST_CHECK_THROW(q.put(std::string(3000, 'x')), shmq::value_error);   // > half of 4 KiB
    q.put("fits");
    BOOST_TEST(q.get(true, 1s) == "fits");
    q.task_done();
    BOOST_TEST(q.join(1s));
}
