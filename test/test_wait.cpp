// SPDX-License-Identifier: BSL-1.0
// shmq::wait: readiness of several connections at once (clauses W1-W3; CPython's
// TestWait.test_wait, test_wait_timeout and test_neg_timeout ported).
//
// Children report by exit code under a watchdog; every wait in the parent has a timeout.
#define BOOST_TEST_MODULE wait
#include <boost/test/unit_test.hpp>

#include "test_fixtures.hpp"

#include <shmq/wait.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using namespace shmq::test;
namespace utf = boost::unit_test;

BOOST_AUTO_TEST_CASE(nothing_ready_times_out_after_the_timeout, *utf::timeout(20))
{
    auto [a, a_peer] = shmq::Pipe();
    auto [b, b_peer] = shmq::Pipe();
    stopwatch sw;
    auto r = shmq::wait({&a, &b}, 300ms);
    const double took = sw.seconds();
    BOOST_TEST(r.empty());
    BOOST_TEST(took >= 0.2);
    BOOST_TEST(took < 1.5);
}

BOOST_AUTO_TEST_CASE(zero_and_negative_timeouts_do_not_wait, *utf::timeout(20))
{
    auto [a, a_peer] = shmq::Pipe();
    for (auto t : {0.0, -1.0}) {
        stopwatch sw;
        BOOST_TEST(shmq::wait({&a}, std::chrono::duration<double>(t)).empty());
        BOOST_TEST(sw.seconds() < 0.1);
    }
    BOOST_TEST(shmq::wait(std::span<shmq::Connection* const>{}, 0s).empty());
}

BOOST_AUTO_TEST_CASE(returns_the_ready_ones_in_order_and_consumes_nothing, *utf::timeout(20))
{
    auto [a, a_peer] = shmq::Pipe();
    auto [b, b_peer] = shmq::Pipe();
    auto [c, c_peer] = shmq::Pipe();
    c_peer.send_bytes(to_bytes("to c"));
    a_peer.send_bytes(to_bytes("to a"));
    auto r = shmq::wait({&a, &b, &c}, 1s);
    BOOST_TEST((r == std::vector<shmq::Connection*>{&a, &c}));
    // Nothing consumed: the same answer again, then the messages are still there.
    BOOST_TEST((shmq::wait({&a, &b, &c}, 0s) == std::vector<shmq::Connection*>{&a, &c}));
    BOOST_TEST(to_string(a.recv_bytes()) == "to a");
    BOOST_TEST(to_string(c.recv_bytes()) == "to c");
    BOOST_TEST(shmq::wait({&a, &b, &c}, 0s).empty());
}

BOOST_AUTO_TEST_CASE(eof_counts_as_ready, *utf::timeout(20))
{
    auto [a, a_peer] = shmq::Pipe(false);
    auto [b, b_peer] = shmq::Pipe(false);
    b_peer.close();
    auto r = shmq::wait({&a, &b}, 1s);
    BOOST_TEST((r == std::vector<shmq::Connection*>{&b}));
    BOOST_CHECK_THROW(b.recv_bytes(), shmq::eof_error);
}

BOOST_AUTO_TEST_CASE(wakes_when_a_child_sends_later, *utf::timeout(30))
{
    auto [a, a_peer] = shmq::Pipe(false);
    auto [b, b_peer] = shmq::Pipe(false);
    scoped_child child([&]() -> int {
        watchdog wd(10);
        a.close();
        b.close();
        a_peer.close();
        std::this_thread::sleep_for(200ms);
        b_peer.send_bytes(to_bytes("late"));
        std::this_thread::sleep_for(2s);   // keep the end open: readiness must come from data
        return 0;
    });
    a_peer.close();   // the child holds no copy of a's writer either: a becomes EOF-ready
    b_peer.close();
    // a is at EOF at once; wait for b specifically.
    stopwatch sw;
    std::vector<shmq::Connection*> r;
    while (sw.seconds() < 5) {
        r = shmq::wait({&b}, 5s);
        if (!r.empty()) break;
    }
    BOOST_TEST((r == std::vector<shmq::Connection*>{&b}));
    BOOST_TEST(sw.seconds() >= 0.1);
    BOOST_TEST(to_string(b.recv_bytes()) == "late");
    BOOST_TEST(child.wait(10s) == 0);
}

BOOST_AUTO_TEST_CASE(many_children_every_message_collected, *utf::timeout(60))
{
    // CPython's TestWait.test_wait: 4 children each send 10 (i, pid) messages and close; the
    // parent loops wait/recv and drops a reader at EOF, and must collect every message.
    constexpr int children = 4, per = 10;
    struct tagged { int k, i; };
    std::vector<shmq::Connection> readers, writers;
    for (int k = 0; k < children; ++k) {
        auto [r, w] = shmq::Pipe(false);
        readers.push_back(std::move(r));
        writers.push_back(std::move(w));
    }
    std::vector<scoped_child> kids;
    for (int k = 0; k < children; ++k) {
        kids.emplace_back([&, k]() -> int {
            watchdog wd(20);
            for (auto& other : readers) other.close();
            for (int j = 0; j < children; ++j)
                if (j != k) writers[static_cast<std::size_t>(j)].close();
            auto& w = writers[static_cast<std::size_t>(k)];
            for (int i = 0; i < per; ++i) {
                w.send(tagged{k, i});
                std::this_thread::sleep_for(std::chrono::milliseconds(5 * k));
            }
            return 0;
        });
    }
    for (auto& w : writers) w.close();   // only the children hold the writers now
    std::map<int, std::vector<int>> got;
    std::vector<shmq::Connection*> live;
    for (auto& r : readers) live.push_back(&r);
    stopwatch sw;
    while (!live.empty() && sw.seconds() < 30) {
        for (shmq::Connection* c : shmq::wait(live, 5s)) {
            try {
                auto m = c->recv<tagged>();
                got[m.k].push_back(m.i);
            } catch (const shmq::eof_error&) {
                live.erase(std::find(live.begin(), live.end(), c));
            }
        }
    }
    BOOST_TEST(live.empty());
    for (int k = 0; k < children; ++k) {
        std::vector<int> want(per);
        for (int i = 0; i < per; ++i) want[static_cast<std::size_t>(i)] = i;
        BOOST_TEST(got[k] == want);
    }
    for (auto& kid : kids) BOOST_TEST(kid.wait(10s) == 0);
}

BOOST_AUTO_TEST_CASE(a_killed_peer_makes_its_connection_ready, *utf::timeout(30))
{
    auto [r, w] = shmq::Pipe(false);
    scoped_child child([&]() -> int {
        r.close();
        for (;;) ::pause();
    });
    w.close();
    BOOST_TEST(shmq::wait({&r}, 0s).empty());   // the child still holds the writer
    child.kill();
    BOOST_TEST(wait_exited_no_reap(child.pid(), 5s));   // a zombie counts as gone
    stopwatch sw;
    auto ready = shmq::wait({&r}, 5s);
    BOOST_TEST(ready.size() == 1u);
    BOOST_TEST(sw.seconds() < 0.5);
    BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
    BOOST_TEST(child.wait(5s) == -SIGKILL);
}

BOOST_AUTO_TEST_CASE(bad_lists_are_refused, *utf::timeout(20))
{
    auto [a, a_peer] = shmq::Pipe();
    auto [r, w] = shmq::Pipe(false);
    shmq::Connection closed;
    BOOST_CHECK_THROW(shmq::wait({&a, &closed}, 0s), shmq::closed_error);
    BOOST_CHECK_THROW(shmq::wait({&w}, 0s), shmq::value_error);
    BOOST_CHECK_THROW(shmq::wait({&a, &a}, 0s), shmq::value_error);
    BOOST_CHECK_THROW(shmq::wait({&a, nullptr}, 0s), shmq::value_error);
}
