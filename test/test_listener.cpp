// SPDX-License-Identifier: BSL-1.0
// Listener and Client (issue 11, item 4): request/response between unrelated processes (forked
// before anything exists, then opening by name only), EOF and broken pipe when either side dies,
// refusal instead of a hang when there is no listener or it dies, bounded accept and connect,
// and nothing left in /dev/shm once connections are accepted.
#define BOOST_TEST_MODULE listener
#include <boost/test/unit_test.hpp>

#include <shmq/shmq.hpp>

#include "test_fixtures.hpp"

#include <thread>

using namespace std::chrono_literals;
using namespace shmq::test;

namespace {

/// One byte through an OS pipe: "the other process got this far".
struct signal_pipe {
    int fds[2] = {-1, -1};
    signal_pipe() { BOOST_REQUIRE_EQUAL(::pipe(fds), 0); }
    ~signal_pipe() { ::close(fds[0]); ::close(fds[1]); }
    bool notify() const { char c = 1; return ::write(fds[1], &c, 1) == 1; }
    bool wait() const { char c = 0; return ::read(fds[0], &c, 1) == 1; }
};

} // namespace

BOOST_AUTO_TEST_CASE(request_response_between_unrelated_processes, *boost::unit_test::timeout(60))
{
    const auto name = unique_name("lsn");
    shm_remover cleanup(name);
    signal_pipe ready;
    constexpr int clients = 3;
    scoped_child server([&] {
        watchdog dog(30);
        shmq::Listener l(name);
        if (!ready.notify()) return 2;
        for (int i = 0; i < clients; ++i) {
            shmq::Connection c = l.accept(10s);
            const int x = c.recv<int>();
            c.send(x * 2);
            c.send(std::string("bye"));
        }
        return 0;
    });
    BOOST_REQUIRE(ready.wait());
    std::vector<scoped_child> cs;
    for (int i = 0; i < clients; ++i)
        cs.emplace_back([&, i] {
            watchdog dog(30);
            shmq::Connection c = shmq::Client(name, 10s);
            c.send(100 + i);
            SHMQ_CHILD_CHECK(c.recv<int>() == 2 * (100 + i), 3);
            SHMQ_CHILD_CHECK(c.recv<std::string>() == "bye", 4);
            // The server closed after its last send: EOF, not a hang.
            try {
                (void)c.recv<int>();
                return 5;
            } catch (const shmq::eof_error&) {
            }
            return 0;
        });
    for (auto& c : cs) BOOST_TEST(c.wait(30s) == 0);
    BOOST_TEST(server.wait(30s) == 0);
    // The listener's own name went with it (close() in its creator), and no connection's name
    // was left behind.
    BOOST_TEST(shm_entries(name).empty());
}

BOOST_AUTO_TEST_CASE(threads_of_one_process, *boost::unit_test::timeout(60))
{
    const auto name = unique_name("lsnt");
    shm_remover cleanup(name);
    shmq::Listener l(name);
    BOOST_TEST(l.address() == name);
    std::thread t([&] {
        shmq::Connection c = l.accept(10s);
        c.send_bytes(shmq::test::to_bytes("pong:" + shmq::test::to_string(c.recv_bytes())));
    });
    shmq::Connection c = shmq::Client(name, 10s);
    c.send_bytes(to_bytes("ping"));
    BOOST_TEST(shmq::test::to_string(c.recv_bytes()) == "pong:ping");
    t.join();
    BOOST_CHECK_THROW(c.recv_bytes(), shmq::eof_error);   // the accepted end went with the thread
    BOOST_TEST(shm_entries(name).size() == 1u);           // only the listener's backlog
    l.close();
    BOOST_TEST(l.closed());
    BOOST_TEST(shm_entries(name).empty());
    BOOST_CHECK_THROW(l.accept(0s), shmq::closed_error);
}

BOOST_AUTO_TEST_CASE(no_listener_is_refused)
{
    const auto name = unique_name("lsnnone");
    shm_remover cleanup(name);
    BOOST_CHECK_THROW(shmq::Client(name, 1s), shmq::not_found_error);
    auto q = shmq::Queue<int>::create(name);
    BOOST_CHECK_THROW(shmq::Client(name, 1s), shmq::type_error);   // not a listener
    BOOST_TEST(shm_entries(name).size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_dead_listener_is_refused_not_waited_for, *boost::unit_test::timeout(60))
{
    const auto name = unique_name("lsndead");
    shm_remover cleanup(name);
    signal_pipe ready;
    scoped_child server([&] {
        shmq::Listener l(name);
        if (!ready.notify()) return 2;
        ::pause();
        return 0;
    });
    BOOST_REQUIRE(ready.wait());
    server.kill();
    BOOST_TEST(server.wait(10s) == -SIGKILL);
    const auto t0 = clk::now();
    BOOST_CHECK_THROW(shmq::Client(name), shmq::not_found_error);   // no timeout: must not hang
    BOOST_TEST(seconds_since(t0) < 5.0);
    // A restarted server takes the stale name over.
    shmq::Listener again(name, shmq::options{.if_exists = shmq::if_exists::replace_stale});
    std::thread t([&] { shmq::Connection c = again.accept(10s); c.send(1); });
    BOOST_TEST(shmq::Client(name, 10s).recv<int>() == 1);
    t.join();
}

BOOST_AUTO_TEST_CASE(peer_death_is_eof_or_broken_pipe, *boost::unit_test::timeout(60))
{
    const auto name = unique_name("lsnpeer");
    shm_remover cleanup(name);
    shmq::Listener l(name);
    // A client that connects, sends one message and is killed.
    signal_pipe sent;
    scoped_child client([&] {
        shmq::Connection c = shmq::Client(name, 10s);
        c.send(7);
        if (!sent.notify()) return 2;
        ::pause();
        return 0;
    });
    shmq::Connection c = l.accept(10s);
    BOOST_REQUIRE(sent.wait());
    client.kill();
    BOOST_TEST(client.wait(10s) == -SIGKILL);
    BOOST_TEST(c.recv<int>() == 7);   // what it sent before dying is delivered
    const auto t0 = clk::now();
    BOOST_CHECK_THROW(c.recv<int>(), shmq::eof_error);
    BOOST_CHECK_THROW(c.send(1), shmq::broken_pipe_error);
    BOOST_TEST(seconds_since(t0) < 5.0);

    // The other way round: the server side dies while the client waits in recv.
    signal_pipe up;
    scoped_child server2([&] {
        shmq::Connection s = l.accept(10s);
        if (!up.notify()) return 2;
        ::pause();
        return 0;
    });
    shmq::Connection cc = shmq::Client(name, 10s);
    BOOST_REQUIRE(up.wait());
    std::thread killer([&] { std::this_thread::sleep_for(100ms); server2.kill(); });
    BOOST_CHECK_THROW(cc.recv<int>(), shmq::eof_error);
    killer.join();
    BOOST_TEST(server2.wait(10s) == -SIGKILL);
}

BOOST_AUTO_TEST_CASE(bounded_accept_and_connect, *boost::unit_test::timeout(60))
{
    const auto name = unique_name("lsnto");
    shm_remover cleanup(name);
    shmq::Listener l(name);
    auto t0 = clk::now();
    BOOST_CHECK_THROW(l.accept(100ms), shmq::timeout_error);
    BOOST_TEST(seconds_since(t0) < 5.0);
    // Nobody accepts: the client gives up, and leaves no connection name behind.
    t0 = clk::now();
    BOOST_CHECK_THROW(shmq::Client(name, 200ms), shmq::timeout_error);
    BOOST_TEST(seconds_since(t0) < 5.0);
    BOOST_TEST(shm_entries(name).size() == 1u);
    // Its request is still in the backlog; accept skips it (the name is gone) and times out.
    BOOST_CHECK_THROW(l.accept(200ms), shmq::timeout_error);
    BOOST_CHECK_THROW(shmq::Listener{name}, shmq::exists_error);
    BOOST_CHECK_THROW((shmq::Listener{name, {}, 0}), shmq::value_error);
}

BOOST_AUTO_TEST_CASE(a_forked_copy_closing_keeps_the_name, *boost::unit_test::timeout(60))
{
    const auto name = unique_name("lsnfork");
    shm_remover cleanup(name);
    shmq::Listener l(name);
    scoped_child child([&] {
        l.close();   // the child's copy: must not unlink its parent's name
        return 0;
    });
    BOOST_TEST(child.wait(10s) == 0);
    BOOST_TEST(shm_entries(name).size() == 1u);
    std::thread t([&] { shmq::Connection c = l.accept(10s); c.send(3); });
    BOOST_TEST(shmq::Client(name, 10s).recv<int>() == 3);
    t.join();
}

BOOST_AUTO_TEST_CASE(two_servers_share_one_name, *boost::unit_test::timeout(60))
{
    const auto name = unique_name("lsnshare");
    shm_remover cleanup(name);
    shmq::Listener first(name);
    signal_pipe ready;
    scoped_child second([&] {
        watchdog dog(30);
        shmq::Listener l(name, shmq::options{.if_exists = shmq::if_exists::open});
        if (!ready.notify()) return 2;
        shmq::Connection c = l.accept(10s);
        c.send(2);
        l.close();   // not the creator: the name stays
        return 0;
    });
    BOOST_REQUIRE(ready.wait());
    // Two clients; each of the two servers answers one (ours in a thread).
    std::thread t([&] { shmq::Connection c = first.accept(10s); c.send(1); });
    int sum = shmq::Client(name, 10s).recv<int>();
    sum += shmq::Client(name, 10s).recv<int>();
    t.join();
    BOOST_TEST(sum == 3);
    BOOST_TEST(second.wait(10s) == 0);
    BOOST_TEST(shm_entries(name).size() == 1u);
    first.close();
    BOOST_TEST(shm_entries(name).empty());
}
