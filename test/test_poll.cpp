// SPDX-License-Identifier: BSL-1.0
// Pollable handles (issue 11): Connection::fileno() and Queue::fileno() under epoll, wait() on
// connections, queues, sentinels and sockets at once, and send_handle/recv_handle.
//
// "Readable exactly when a get would not block" is checked both ways with epoll_wait(0) after
// each step. Every other wait is bounded (epoll_wait timeouts, wait() timeouts); forked
// children report by exit code and end with _exit (fork_child); named queues are removed by
// shm_remover even when a check fails.
#define BOOST_TEST_MODULE poll
#include <boost/test/unit_test.hpp>

#include "test_fixtures.hpp"
#include "test_hook.hpp"

#include <shmq/shmq.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace std::chrono_literals;
using namespace shmq::test;
namespace utf = boost::unit_test;

namespace {

/// An epoll set watching one descriptor for EPOLLIN (level-triggered, as epoll users expect).
class epoll_on {
public:
    explicit epoll_on(int fd) : ep_(::epoll_create1(EPOLL_CLOEXEC)) {
        BOOST_REQUIRE(ep_ >= 0);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        BOOST_REQUIRE(::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) == 0);
    }
    ~epoll_on() { ::close(ep_); }
    epoll_on(const epoll_on&) = delete;
    epoll_on& operator=(const epoll_on&) = delete;
    /// Whether the descriptor is readable within `ms` (0: right now).
    bool readable(int ms = 0) const {
        epoll_event ev{};
        int n;
        do n = ::epoll_wait(ep_, &ev, 1, ms);
        while (n < 0 && errno == EINTR);
        return n == 1;
    }

private:
    int ep_;
};

/// Same check without our epoll wrapper, for children (no Boost.Test there).
bool readable_within(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    int n;
    do n = ::poll(&p, 1, ms);
    while (n < 0 && errno == EINTR);
    return n == 1;
}

/// A pipe for the parent to tell a child "go" (one byte) without any shmq object.
struct go_pipe {
    int r = -1, w = -1;
    go_pipe() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
        r = fds[0];
        w = fds[1];
    }
    ~go_pipe() {
        if (r >= 0) ::close(r);
        if (w >= 0) ::close(w);
    }
    void go() const { [[maybe_unused]] auto n = ::write(w, "g", 1); }
    bool wait_go(int ms = 10000) const {
        if (!readable_within(r, ms)) return false;
        char c;
        return ::read(r, &c, 1) == 1;
    }
};

std::vector<std::byte> bytes_of(std::string_view s) { return to_bytes(s); }

} // namespace

// ---- Connection::fileno ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(pipe_fileno_is_readable_exactly_when_recv_would_not_block, *utf::timeout(30))
{
    auto [rx, tx] = shmq::Pipe(false);
    const int fd = rx.fileno();
    BOOST_TEST(fd >= 0);
    BOOST_TEST(rx.fileno() == fd);   // the same descriptor each time
    epoll_on ep(fd);
    BOOST_TEST(!ep.readable());
    BOOST_TEST(!ep.readable(50));

    tx.send_bytes(bytes_of("one"));
    BOOST_TEST(ep.readable(2000));
    BOOST_TEST(ep.readable());   // level-triggered: still readable while the message waits
    BOOST_TEST(ep.readable());
    BOOST_TEST(rx.poll());
    BOOST_TEST(ep.readable());   // poll() consumes nothing
    BOOST_TEST(to_string(rx.recv_bytes()) == "one");
    BOOST_TEST(!ep.readable());  // taken: a recv would block now

    tx.send_bytes(bytes_of("two"));
    tx.send_bytes(bytes_of("three"));
    BOOST_TEST(ep.readable(2000));
    BOOST_TEST(to_string(rx.recv_bytes()) == "two");
    BOOST_TEST(ep.readable());   // one more is there
    BOOST_TEST(to_string(rx.recv_bytes()) == "three");
    BOOST_TEST(!ep.readable());

    // A message larger than the ring: readable at its first piece, as poll() is.
    auto [rx2, tx2] = shmq::Pipe(false, shmq::options{.capacity = 4096});
    epoll_on ep2(rx2.fileno());
    std::vector<std::byte> big = make_pattern(100000, 7);
    std::thread sender([&] { tx2.send_bytes(big); });
    BOOST_TEST(ep2.readable(5000));
    BOOST_TEST(matches_pattern(rx2.recv_bytes(), 7));
    sender.join();
    // The sender's last wake-up may land after the recv re-armed: a spurious readiness, which
    // the next call clears.
    BOOST_TEST(!rx2.poll());
    BOOST_TEST(!ep2.readable());
}

BOOST_AUTO_TEST_CASE(pipe_fileno_wakes_for_a_writer_in_another_process, *utf::timeout(30))
{
    auto [rx, tx] = shmq::Pipe(false);
    epoll_on ep(rx.fileno());
    go_pipe go, started;
    constexpr int count = 2000;
    scoped_child writer([&] {
        rx.close();
        started.go();
        if (!go.wait_go()) return 2;
        for (int i = 0; i < count; ++i) {
            tx.send(i);
            if (i % 97 == 0) std::this_thread::sleep_for(1ms);   // let the reader run dry
        }
        return 0;
    });
    tx.close();
    BOOST_TEST(started.wait_go());
    // Closing a copy of the writer end wakes pollers so they re-check EOF, and so does a new
    // holder (the child): spurious wake-ups, which the next call into the connection clears (as
    // a loop's poll() after a wake-up does).
    BOOST_TEST(ep.readable(0));
    BOOST_TEST(!rx.poll());
    BOOST_TEST(!ep.readable(50));
    go.go();
    // Every wait must end in readiness: a missed wake-up shows as a 5 s timeout here.
    int next = 0, missed = 0;
    while (next < count) {
        if (!ep.readable(5000)) {
            ++missed;
            break;
        }
        while (next < count && rx.poll()) {
            const int v = rx.recv<int>();
            if (v != next) break;
            ++next;
        }
    }
    BOOST_TEST(missed == 0);
    BOOST_TEST(next == count);
    BOOST_TEST(writer.wait(10s) == 0);
    // The writer has gone: EOF is something to report.
    BOOST_TEST(ep.readable(2000));
    BOOST_CHECK_THROW(rx.recv_bytes(), shmq::eof_error);
}

BOOST_AUTO_TEST_CASE(pipe_fileno_is_readable_at_eof, *utf::timeout(30))
{
    auto [rx, tx] = shmq::Pipe(false);
    epoll_on ep(rx.fileno());
    BOOST_TEST(!ep.readable());
    tx.send_bytes(bytes_of("last"));
    tx.close();
    BOOST_TEST(ep.readable(2000));
    BOOST_TEST(to_string(rx.recv_bytes()) == "last");
    BOOST_TEST(ep.readable());   // EOF stays to report
    BOOST_CHECK_THROW(rx.recv_bytes(), shmq::eof_error);
    BOOST_TEST(ep.readable());
}

BOOST_AUTO_TEST_CASE(pipe_fileno_is_readable_when_the_peer_is_killed, *utf::timeout(30))
{
    for (bool duplex : {false, true}) {
        auto [rx, tx] = shmq::Pipe(duplex);
        go_pipe started;
        scoped_child peer([&] {
            rx.close();
            started.go();
            for (;;) ::pause();   // holds tx until SIGKILLed
            return 0;
        });
        tx.close();   // the child is now the only writer
        epoll_on ep(rx.fileno());
        BOOST_TEST(started.wait_go());
        // Clears the wake-ups of that close and of the child's arrival as a holder (spurious,
        // see Connection::fileno()).
        BOOST_TEST(!rx.poll());
        BOOST_TEST(!ep.readable(100));
        stopwatch sw;
        peer.kill();
        const bool woke = ep.readable(5000);
        const double took = sw.seconds();
        BOOST_TEST(woke);
        BOOST_TEST_MESSAGE("duplex=" << duplex << ": readable " << took * 1000 << " ms after SIGKILL");
        BOOST_TEST(took < 1.0);   // a pidfd: at once (not a liveness period later)
        BOOST_TEST(peer.wait(5s) == -SIGKILL);
        stopwatch sw2;
        BOOST_CHECK_THROW(rx.recv_bytes(), shmq::eof_error);
        BOOST_TEST(sw2.seconds() < 0.5);   // the recv after the wake-up reports at once
    }
}

BOOST_AUTO_TEST_CASE(pipe_fileno_watches_a_forked_copy_of_the_writer, *utf::timeout(30))
{
    // The writer forks a grandchild that keeps the end, then dies: not EOF while the grandchild
    // lives (a spurious wake-up is allowed, recv must not report EOF); EOF once it dies too.
    auto [rx, tx] = shmq::Pipe(false);
    shared_array<std::atomic<int>> grandchild(1);
    go_pipe go;
    scoped_child writer([&] {
        rx.close();
        const pid_t g = fork_child([&] {
            if (!go.wait_go(20000)) return 2;
            tx.send_bytes(bytes_of("from the grandchild"));
            return 0;
        });
        grandchild[0] = g;
        return 0;
    });
    tx.close();
    epoll_on ep(rx.fileno());
    BOOST_TEST(writer.wait(10s) == 0);
    BOOST_TEST(!rx.poll(200ms));   // the grandchild holds the end
    BOOST_TEST(!ep.readable(200));
    go.go();
    BOOST_TEST(ep.readable(5000));
    BOOST_TEST(to_string(rx.recv_bytes()) == "from the grandchild");
    BOOST_TEST(ep.readable(5000));   // the grandchild ended: EOF
    BOOST_CHECK_THROW(rx.recv_bytes(), shmq::eof_error);
    // The grandchild is not ours to reap (its parent exited): it was reparented.
}

BOOST_AUTO_TEST_CASE(fileno_rules, *utf::timeout(30))
{
    auto [rx, tx] = shmq::Pipe(false);
    BOOST_CHECK_THROW(tx.fileno(), shmq::value_error);   // write-only
    const int fd = rx.fileno();
    rx.close();
    BOOST_CHECK_THROW(rx.fileno(), shmq::closed_error);
    // Closing the connection closed its descriptor.
    BOOST_TEST((::fcntl(fd, F_GETFD) == -1 && errno == EBADF));

    // At most 7 pollers per direction; an 8th gets a clear error, and a slot freed by a close
    // is taken again.
    auto [r, w] = shmq::Pipe(false);
    std::vector<pid_t> kids;
    go_pipe stop;
    shared_array<std::atomic<int>> started(1);
    for (int i = 0; i < 7; ++i)
        kids.push_back(fork_child([&, i] {
            (void)i;
            w.close();
            (void)r.fileno();
            started[0].fetch_add(1);
            return stop.wait_go(20000) ? 0 : 2;
        }));
    stopwatch sw;
    while (started[0].load() < 7 && sw.seconds() < 10) std::this_thread::sleep_for(1ms);
    BOOST_TEST(started[0].load() == 7);
    BOOST_CHECK_THROW(r.fileno(), shmq::error);
    ::kill(kids.back(), SIGKILL);   // a dead poller's slot is reclaimed
    BOOST_TEST(wait_child(kids.back(), 5s) == -SIGKILL);
    kids.pop_back();
    int fd2 = -1;
    BOOST_CHECK_NO_THROW(fd2 = r.fileno());
    BOOST_TEST(fd2 >= 0);
    for (std::size_t i = 0; i < kids.size(); ++i) stop.go();
    for (pid_t k : kids) BOOST_TEST(wait_child(k, 10s) == 0);
}

BOOST_AUTO_TEST_CASE(a_forked_child_gets_its_own_descriptor, *utf::timeout(30))
{
    auto [rx, tx] = shmq::Pipe(false);
    const int parent_fd = rx.fileno();
    go_pipe armed, go;
    scoped_child child([&] {
        // The parent's descriptors are not the child's: closed at fork, so the parent's socket
        // does not outlive the parent in its children.
        SHMQ_CHILD_CHECK(::fcntl(parent_fd, F_GETFD) == -1 && errno == EBADF, 9);
        const int fd = rx.fileno();
        SHMQ_CHILD_CHECK(fd >= 0, 2);
        SHMQ_CHILD_CHECK(!readable_within(fd, 0), 3);
        armed.go();
        if (!go.wait_go()) return 4;
        SHMQ_CHILD_CHECK(readable_within(fd, 5000), 5);
        SHMQ_CHILD_CHECK(rx.recv<int>() == 42, 6);
        SHMQ_CHILD_CHECK(!readable_within(fd, 0), 7);
        return 0;
    });
    epoll_on ep(parent_fd);
    BOOST_TEST(armed.wait_go());
    tx.send(42);
    BOOST_TEST(ep.readable(2000));   // the parent is woken too
    go.go();
    BOOST_TEST(child.wait(10s) == 0);
    // The child took it: the parent's descriptor stays readable (spurious) until its next call
    // into the connection re-arms it.
    BOOST_TEST(!rx.poll());
    BOOST_TEST(!ep.readable(0));
}

BOOST_AUTO_TEST_CASE(a_view_released_re_arms_the_descriptor, *utf::timeout(30))
{
    auto [rx, tx] = shmq::Pipe(false);
    epoll_on ep(rx.fileno());
    tx.send_bytes(bytes_of("in place"));
    BOOST_TEST(ep.readable(2000));
    {
        auto v = rx.recv_view();
        BOOST_TEST(to_string(v.bytes()) == "in place");
        BOOST_TEST(ep.readable());   // not consumed until release
    }
    BOOST_TEST(!ep.readable());      // released: gone, and the descriptor knows
}

BOOST_AUTO_TEST_CASE(listener_connections_poll_across_unrelated_processes, *utf::timeout(60))
{
    // The client is forked before the listener exists and connects by name, as another program
    // would. Its connection's fileno() in the server wakes for its messages and for its death;
    // send_handle has no descriptor socket between unrelated processes and says so.
    const std::string name = unique_name("pollsrv");
    shm_remover cleanup(name);
    go_pipe listening, go;
    scoped_child client([&] {
        if (!listening.wait_go()) return 2;
        shmq::Connection c = shmq::Client(name, 10s);
        if (!go.wait_go()) return 3;
        c.send(std::string("hello"));
        for (;;) ::pause();   // killed by the server
        return 0;
    });
    shmq::Listener l(name);
    listening.go();
    shmq::Connection c = l.accept(10s);
    epoll_on ep(c.fileno());
    BOOST_TEST(!c.poll());
    BOOST_TEST(!ep.readable(100));
    go.go();
    BOOST_TEST(ep.readable(5000));
    BOOST_TEST(c.recv<std::string>() == "hello");
    BOOST_TEST(!ep.readable());
    BOOST_CHECK_THROW(c.send_handle(0), shmq::value_error);
    client.kill();
    BOOST_TEST(ep.readable(5000));
    BOOST_CHECK_THROW(c.recv<std::string>(), shmq::eof_error);
    BOOST_TEST(client.wait(5s) == -SIGKILL);
}

// ---- Queue::fileno ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(queue_fileno_is_readable_exactly_when_get_would_not_block, *utf::timeout(30))
{
    shmq::Queue<int> q;
    epoll_on ep(q.fileno());
    BOOST_TEST(!ep.readable(50));
    q.put(1);
    BOOST_TEST(ep.readable(2000));
    BOOST_TEST(ep.readable());
    q.put(2);
    BOOST_TEST(q.get() == 1);
    BOOST_TEST(ep.readable());
    BOOST_TEST(q.get() == 2);
    BOOST_TEST(!ep.readable());
    BOOST_CHECK_THROW(q.get_nowait(), shmq::empty_error);
    BOOST_TEST(!ep.readable());

    // An item put by a forked child.
    go_pipe go, started;
    scoped_child producer([&] {
        started.go();
        if (!go.wait_go()) return 2;
        q.put(7);
        return 0;
    });
    BOOST_TEST(started.wait_go());
    // A new holder (the child) wakes pollers once, so they watch it: spurious, cleared by the
    // next call into the queue (get_nowait, empty(), or wait()).
    BOOST_TEST(ep.readable(0));
    BOOST_TEST(q.empty());
    BOOST_TEST(!ep.readable(50));
    go.go();
    BOOST_TEST(ep.readable(5000));
    BOOST_TEST(q.get(true, 1s) == 7);
    BOOST_TEST(!ep.readable());
    BOOST_TEST(producer.wait(10s) == 0);

    // SimpleQueue and JoinableQueue have it too.
    shmq::SimpleQueue<std::string> sq;
    epoll_on eps(sq.fileno());
    BOOST_TEST(!eps.readable());
    sq.put("s");
    BOOST_TEST(eps.readable(2000));
    BOOST_TEST(sq.get() == "s");
    BOOST_TEST(!eps.readable());
    shmq::JoinableQueue<int> jq;
    epoll_on epj(jq.fileno());
    jq.put(3);
    BOOST_TEST(epj.readable(2000));
    BOOST_TEST(jq.get() == 3);
    jq.task_done();
    BOOST_TEST(!epj.readable());

    q.close();
    BOOST_CHECK_THROW(q.fileno(), shmq::closed_error);
}

BOOST_AUTO_TEST_CASE(queue_fileno_with_an_unbounded_backlog, *utf::timeout(30))
{
    // Items that wait in the feeder's backlog wake the poller when the feeder publishes them.
    shmq::Queue<std::string> q(0, shmq::options{.capacity = 4096});
    epoll_on ep(q.fileno());
    const std::string item(1000, 'x');
    for (int i = 0; i < 50; ++i) q.put(item);   // far more than the ring holds
    int got = 0;
    while (got < 50) {
        if (!ep.readable(5000)) break;
        while (!q.empty()) {
            BOOST_TEST(q.get(true, 1s) == item);
            ++got;
        }
    }
    BOOST_TEST(got == 50);
    BOOST_TEST(!ep.readable());
}

BOOST_AUTO_TEST_CASE(named_queue_fileno_across_unrelated_processes, *utf::timeout(60))
{
    // The children are forked before the queue exists, so they share no shmq object with the
    // parent: each opens the queue by name, as an unrelated program would.
    const std::string name = unique_name("poll");
    shm_remover cleanup(name);
    go_pipe created, go;

    // 1. The parent polls; an unrelated producer puts.
    go_pipe opened1;
    scoped_child producer([&] {
        if (!created.wait_go()) return 2;
        auto q = shmq::Queue<int>::open(name);
        opened1.go();
        if (!go.wait_go()) return 3;
        for (int i = 0; i < 100; ++i) q.put(i);
        return 0;
    });
    auto q = shmq::Queue<int>::create(name);
    epoll_on ep(q.fileno());
    created.go();
    BOOST_TEST(opened1.wait_go());
    BOOST_TEST(shmq::wait({q}, 0s).empty());   // clears the producer's arrival (spurious)
    BOOST_TEST(!ep.readable(100));
    go.go();
    int next = 0;
    while (next < 100 && ep.readable(5000))
        while (!q.empty()) BOOST_TEST(q.get(true, 1s) == next++);
    BOOST_TEST(next == 100);
    BOOST_TEST(!ep.readable());
    BOOST_TEST(producer.wait(10s) == 0);

    // 2. An unrelated consumer polls; the parent puts. It reports each step by exit code.
    go_pipe opened, go2;
    shared_array<std::atomic<int>> seen(1);
    scoped_child consumer([&] {
        auto q2 = shmq::Queue<int>::open(name);
        const int fd = q2.fileno();
        SHMQ_CHILD_CHECK(!readable_within(fd, 0), 2);
        opened.go();
        for (int i = 0; i < 10; ++i) {
            SHMQ_CHILD_CHECK(readable_within(fd, 5000), 3);
            SHMQ_CHILD_CHECK(q2.get(true, 1s) == 1000 + i, 4);
            seen[0] = i + 1;
        }
        SHMQ_CHILD_CHECK(!readable_within(fd, 0), 5);
        return 0;
    });
    BOOST_TEST(opened.wait_go());
    for (int i = 0; i < 10; ++i) {
        q.put(1000 + i);
        stopwatch sw;
        while (seen[0].load() <= i && sw.seconds() < 5) std::this_thread::sleep_for(100us);
    }
    BOOST_TEST(consumer.wait(10s) == 0);
    BOOST_TEST(seen[0].load() == 10);
}

BOOST_AUTO_TEST_CASE(a_dead_pollers_slot_costs_nothing_and_is_reclaimed, *utf::timeout(30))
{
    // A poller killed while armed leaves its key and the sleeper bit: the next put pokes an
    // address nobody holds, clears the key, and the queue goes on.
    const std::string name = unique_name("pollgone");
    shm_remover cleanup(name);
    auto q = shmq::Queue<int>::create(name);
    go_pipe armed;
    scoped_child poller([&] {
        auto q2 = shmq::Queue<int>::open(name);
        (void)q2.fileno();
        armed.go();
        for (;;) ::pause();
        return 0;
    });
    BOOST_TEST(armed.wait_go());
    poller.kill();
    BOOST_TEST(poller.wait(5s) == -SIGKILL);
    for (int i = 0; i < 10; ++i) q.put(i);
    for (int i = 0; i < 10; ++i) BOOST_TEST(q.get(true, 1s) == i);
    epoll_on ep(q.fileno());
    q.put(5);
    BOOST_TEST(ep.readable(2000));
}

#ifndef NDEBUG   // test hooks are compiled out of release builds
BOOST_AUTO_TEST_CASE(a_writer_killed_between_publishing_and_poking_still_wakes_the_poller,
                     *utf::timeout(60))
{
    // The writer dies with the message published and its lease held, before the notify that
    // would poke: the pidfd of that writer (a holder of the queue, or of the Pipe's writer end)
    // must wake the poller, and the message must be there.
    shmq::Queue<int> q;
    auto [rx, tx] = shmq::Pipe(false);
    epoll_on epq(q.fileno());
    epoll_on epp(rx.fileno());
    go_pipe go, started;
    // A child that writes once through `write` and is killed right after publishing.
    auto dying_writer = [&](std::function<void()> write) {
        return scoped_child([&, write] {
            rx.close();
            started.go();
            if (!go.wait_go()) return 2;
            shmq::detail::test_hook::install([](const char* point) {
                if (std::strcmp(point, "channel.write.published") == 0) ::raise(SIGKILL);
            });
            write();   // dies in here
            return 3;
        });
    };
    scoped_child writer = dying_writer([&] { q.put(5); });
    scoped_child pipe_writer = dying_writer([&] { tx.send(6); });
    tx.close();
    BOOST_TEST(started.wait_go());
    BOOST_TEST(started.wait_go());
    BOOST_TEST(!rx.poll());   // clears the wake-ups of that close and of the children's arrival
    BOOST_TEST(shmq::wait({q}, 0s).empty());
    BOOST_TEST(!epq.readable(50));
    BOOST_TEST(!epp.readable(0));
    go.go();
    go.go();
    BOOST_TEST(writer.wait(10s) == -SIGKILL);
    BOOST_TEST(pipe_writer.wait(10s) == -SIGKILL);
    BOOST_TEST(epq.readable(2000));
    BOOST_TEST(q.get(true, 1s) == 5);
    BOOST_TEST(!epq.readable());
    BOOST_TEST(epp.readable(2000));
    BOOST_TEST(rx.recv<int>() == 6);
    BOOST_TEST(epp.readable());   // and EOF: the only writer is dead
    BOOST_CHECK_THROW(rx.recv<int>(), shmq::eof_error);
}
#endif

// ---- wait() on everything --------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(wait_mixes_a_socket_a_queue_a_connection_and_a_sentinel, *utf::timeout(60))
{
    int sv[2];
    BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    struct closer {
        int* fds;
        ~closer() { ::close(fds[0]), ::close(fds[1]); }
    } close_sv{sv};
    shmq::Queue<int> q;
    auto [rx, tx] = shmq::Pipe(false);
    go_pipe end_child;
    shmq::Process p([&] { (void)end_child.wait_go(20000); });
    p.start();

    const int sock = sv[0];
    auto wait_all = [&](auto timeout) { return shmq::wait({sock, q, rx, p}, timeout); };
    BOOST_TEST(wait_all(0s).empty());
    stopwatch sw;
    BOOST_TEST(wait_all(200ms).empty());
    BOOST_TEST(sw.seconds() >= 0.15);

    // Each becomes ready in turn; wait names exactly the ready ones, in the order given.
    BOOST_REQUIRE(::write(sv[1], "x", 1) == 1);
    auto r = wait_all(5s);
    BOOST_REQUIRE(r.size() == 1u);
    BOOST_TEST(r[0].fd() == sock);
    BOOST_TEST((r[0].what() == shmq::waitable::kind::descriptor));
    char c;
    BOOST_REQUIRE(::read(sock, &c, 1) == 1);

    q.put(9);
    r = wait_all(5s);
    BOOST_REQUIRE(r.size() == 1u);
    BOOST_TEST(r[0].is(q));
    BOOST_TEST(q.get() == 9);

    tx.send(10);
    r = wait_all(5s);
    BOOST_REQUIRE(r.size() == 1u);
    BOOST_TEST(r[0].is(rx));
    BOOST_TEST(rx.recv<int>() == 10);

    end_child.go();
    r = wait_all(10s);
    BOOST_REQUIRE(r.size() == 1u);
    BOOST_TEST(r[0].is(p));
    p.join();

    // Several at once (the sentinel stays ready), in the order given; nothing consumed.
    q.put(1);
    tx.send(2);
    r = wait_all(5s);
    BOOST_REQUIRE(r.size() == 3u);
    BOOST_TEST(r[0].is(q));
    BOOST_TEST(r[1].is(rx));
    BOOST_TEST(r[2].is(p));
    BOOST_TEST(shmq::wait({sock, q, rx, p}, 0s).size() == 3u);
    BOOST_TEST(q.get() == 1);
    BOOST_TEST(rx.recv<int>() == 2);

    // EOF counts as ready for a connection.
    tx.close();
    r = shmq::wait({sock, rx}, 5s);
    BOOST_REQUIRE(r.size() == 1u);
    BOOST_TEST(r[0].is(rx));

    // The old form still works, and bad arguments are refused.
    auto [a, b] = shmq::Pipe();
    b.send(1);
    BOOST_TEST((shmq::wait({&a}, 1s) == std::vector<shmq::Connection*>{&a}));
    BOOST_CHECK_THROW(shmq::wait({q, q}, 0s), shmq::value_error);
    BOOST_CHECK_THROW(shmq::wait({-1}, 0s), shmq::value_error);
    auto [r2, w2] = shmq::Pipe(false);
    BOOST_CHECK_THROW(shmq::wait({w2}, 0s), shmq::value_error);
    r2.close();
    BOOST_CHECK_THROW(shmq::wait({r2}, 0s), shmq::closed_error);
}

BOOST_AUTO_TEST_CASE(wait_sees_a_killed_peer_at_once, *utf::timeout(30))
{
    auto [rx, tx] = shmq::Pipe(false);
    scoped_child peer([&] {
        rx.close();
        for (;;) ::pause();
        return 0;
    });
    tx.close();
    shmq::Queue<int> q;
    BOOST_TEST(shmq::wait({q, rx}, 100ms).empty());
    peer.kill();
    stopwatch sw;
    auto r = shmq::wait({q, rx}, 5s);
    BOOST_REQUIRE(r.size() == 1u);
    BOOST_TEST(r[0].is(rx));
    BOOST_TEST(sw.seconds() < 1.0);
    BOOST_CHECK_THROW(rx.recv_bytes(), shmq::eof_error);
}

// ---- send_handle / recv_handle ---------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_dispatcher_hands_an_accepted_socket_to_a_worker, *utf::timeout(60))
{
    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BOOST_REQUIRE(listener >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;   // an ephemeral port
    BOOST_REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    BOOST_REQUIRE(::listen(listener, 4) == 0);
    socklen_t len = sizeof addr;
    BOOST_REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);

    auto [to_worker, from_dispatcher] = shmq::Pipe();
    scoped_child worker([&] {
        to_worker.close();
        ::close(listener);
        for (int n = 0; n < 2; ++n) {
            SHMQ_CHILD_CHECK(from_dispatcher.poll(10s), 2);
            const int s = from_dispatcher.recv_handle();
            SHMQ_CHILD_CHECK(s >= 0, 3);
            SHMQ_CHILD_CHECK((::fcntl(s, F_GETFD) & FD_CLOEXEC) != 0, 4);
            SHMQ_CHILD_CHECK(readable_within(s, 10000), 5);
            char buf[64] = {};
            const ssize_t got = ::read(s, buf, sizeof buf - 1);
            SHMQ_CHILD_CHECK(got > 0, 6);
            const std::string answer = "worker " + std::to_string(::getpid()) + " got " + buf;
            SHMQ_CHILD_CHECK(::write(s, answer.data(), answer.size()) == static_cast<ssize_t>(answer.size()), 7);
            ::close(s);
            from_dispatcher.send(std::string("done"));
        }
        return 0;
    });
    from_dispatcher.close();

    for (int n = 0; n < 2; ++n) {
        const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        BOOST_REQUIRE(client >= 0);
        BOOST_REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        BOOST_REQUIRE(readable_within(listener, 5000));
        const int accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        BOOST_REQUIRE(accepted >= 0);
        to_worker.send_handle(accepted);
        ::close(accepted);   // the worker has its own now
        const std::string request = "request " + std::to_string(n);
        BOOST_REQUIRE(::write(client, request.data(), request.size()) == static_cast<ssize_t>(request.size()));
        std::string answer;
        char buf[128];
        while (readable_within(client, 10000)) {
            const ssize_t got = ::read(client, buf, sizeof buf);
            if (got <= 0) break;   // the worker closed: the only copy left was its own
            answer.append(buf, static_cast<std::size_t>(got));
        }
        BOOST_TEST(answer == "worker " + std::to_string(worker.pid()) + " got " + request);
        ::close(client);
        BOOST_TEST(to_worker.poll(10s));
        BOOST_TEST(to_worker.recv<std::string>() == "done");
    }
    BOOST_TEST(worker.wait(10s) == 0);
    ::close(listener);
}

BOOST_AUTO_TEST_CASE(send_handle_rules, *utf::timeout(30))
{
    auto [rx, tx] = shmq::Pipe(false);
    BOOST_CHECK_THROW(rx.send_handle(0), shmq::value_error);   // read-only
    BOOST_CHECK_THROW(tx.recv_handle(), shmq::value_error);    // write-only
    BOOST_CHECK_THROW(tx.send_handle(-1), shmq::value_error);
    BOOST_CHECK_THROW(tx.send_handle(1 << 20), shmq::error);   // not an open descriptor

    // A handle is a message like others: poll, fileno and wait see it, in order with the rest.
    epoll_on ep(rx.fileno());
    int pfd[2];
    BOOST_REQUIRE(::pipe(pfd) == 0);
    tx.send(1);
    tx.send_handle(pfd[1]);
    ::close(pfd[1]);
    tx.send(2);
    BOOST_TEST(ep.readable(2000));
    BOOST_TEST(rx.recv<int>() == 1);
    BOOST_TEST(ep.readable());
    const int w = rx.recv_handle();
    BOOST_REQUIRE(w >= 0);
    BOOST_TEST(::write(w, "z", 1) == 1);   // the same pipe
    char c = 0;
    BOOST_TEST(::read(pfd[0], &c, 1) == 1);
    BOOST_TEST(c == 'z');
    ::close(w);
    ::close(pfd[0]);
    // Not a handle: a long message stays, a short one is consumed; both say so.
    BOOST_CHECK_THROW(rx.recv_handle(), shmq::value_error);   // the int 2 (short: consumed)
    tx.send(std::string(100, 'x'));
    BOOST_CHECK_THROW(rx.recv_handle(), shmq::value_error);   // stays unread
    BOOST_TEST(rx.recv<std::string>() == std::string(100, 'x'));
    BOOST_TEST(!ep.readable());

    // Every reader gone: broken pipe, as send does.
    rx.close();
    BOOST_CHECK_THROW(tx.send_handle(0), shmq::broken_pipe_error);
}
