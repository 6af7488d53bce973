// SPDX-License-Identifier: BSL-1.0
// detail::robust_mutex in isolation (issue 7, B.2; A.2, A.4): lock / try_lock / unlock across
// processes, takeover of a dead owner (with `recovered`), by a blocking lock and by callers that
// only ever try_lock; a live owner is never taken over, not even by a locker at its fd limit
// (where /proc cannot be read).
#define BOOST_TEST_MODULE robust_mutex
#include <boost/test/unit_test.hpp>

#include "sync/robust_mutex.hpp"
#include "test_fixtures.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>

#include <optional>

using namespace std::chrono_literals;
using namespace shmq::test;
namespace sd = shmq::detail;
using result = sd::robust_mutex::result;

namespace {

sd::deadline in(std::chrono::duration<double> d) { return sd::deadline(shmq::timeout_t(d)); }

int code(result r) { return r == result::acquired ? 1 : r == result::recovered ? 2 : 3; }

/// A child that takes the lock and dies holding it. Returns once it is dead and reaped.
void die_holding(sd::robust_mutex& m) {
    scoped_child owner([&] { return code(m.lock(in(1s))) == 1 ? 0 : 9; });   // _exit: no unlock
    BOOST_REQUIRE_EQUAL(owner.wait(5s), 0);
}

} // namespace

BOOST_AUTO_TEST_CASE(lock_try_lock_unlock_across_processes, *boost::unit_test::timeout(30))
{
    shared_array<sd::robust_mutex> m(1);
    BOOST_CHECK(m[0].try_lock() == result::acquired);
    BOOST_CHECK_EQUAL(scoped_child([&] { return code(m[0].try_lock()); }).wait(5s), 3);
    BOOST_CHECK_EQUAL(scoped_child([&] { return code(m[0].lock(in(100ms))); }).wait(5s), 3);
    m[0].unlock();
    BOOST_CHECK_EQUAL(scoped_child([&] {
                          int c = code(m[0].try_lock());
                          m[0].unlock();
                          return c;
                      }).wait(5s),
                      1);
    // A blocked locker gets the lock as soon as the owner unlocks.
    BOOST_CHECK(m[0].lock(in(1s)) == result::acquired);
    scoped_child waiter([&] {
        stopwatch sw;
        int c = code(m[0].lock(in(5s)));
        m[0].unlock();
        return c == 1 && sw.seconds() > 0.15 && sw.seconds() < 2 ? 0 : 10 + c;
    });
    std::this_thread::sleep_for(200ms);
    m[0].unlock();
    BOOST_CHECK_EQUAL(waiter.wait(10s), 0);
    BOOST_CHECK(m[0].try_lock() == result::acquired);
    m[0].unlock();
}

// The uncontended fast path (try_lock_fast, inline) writes the owner word from the identity cache
// that self() reads without a call. A forked child must write its own identity there, never the
// parent's it inherited with the cache: forked from the main thread and from another thread, with
// the parent's cache already loaded. The parent then sees the child's pid as the owner and, once
// the child died holding the lock, takes it over.
BOOST_AUTO_TEST_CASE(fast_path_owner_is_the_forked_childs_own_identity, *boost::unit_test::timeout(30))
{
    shared_array<sd::robust_mutex> m(1);
    BOOST_REQUIRE(m[0].try_lock_fast());   // loads this process's identity into the cache
    const std::uint64_t parent_word = m[0].owner();
    BOOST_TEST(sd::robust_mutex::pid_of(parent_word) == static_cast<std::uint32_t>(::getpid()));
    BOOST_TEST(parent_word == sd::robust_mutex::self_word());
    m[0].unlock();

    for (const bool from_thread : {false, true}) {
        BOOST_TEST_CONTEXT("forked from " << (from_thread ? "another thread" : "the main thread")) {
            // The child takes the lock with the fast path and dies holding it (_exit: no unlock).
            auto body = [&] {
                if (!m[0].try_lock_fast()) return 3;
                const std::uint64_t w = m[0].owner();
                if (sd::robust_mutex::pid_of(w) != static_cast<std::uint32_t>(::getpid())) return 4;
                if (w == parent_word || w != sd::robust_mutex::self_word()) return 5;
                return 0;
            };
            std::optional<scoped_child> child;
            if (from_thread)
                std::thread([&] { child.emplace(body); }).join();
            else
                child.emplace(body);
            const pid_t pid = child->pid();
            BOOST_REQUIRE_EQUAL(child->wait(5s), 0);
            BOOST_TEST(sd::robust_mutex::pid_of(m[0].owner()) == static_cast<std::uint32_t>(pid));
            BOOST_CHECK(m[0].lock(in(5s)) == result::recovered);
            BOOST_TEST(m[0].owner() == parent_word);   // the parent's own word again
            m[0].unlock();
        }
    }
}

BOOST_AUTO_TEST_CASE(blocking_lock_takes_over_dead_owner, *boost::unit_test::timeout(30))
{
    shared_array<sd::robust_mutex> m(1);
    die_holding(m[0]);
    result r = result::timed_out;
    const double s = timed([&] { r = m[0].lock(in(3s)); });
    BOOST_CHECK(r == result::recovered);
    BOOST_CHECK_LT(s, 1.0);
    m[0].unlock();
    BOOST_CHECK(m[0].try_lock() == result::acquired);   // recovered once, then normal
    m[0].unlock();
}

BOOST_AUTO_TEST_CASE(dead_owner_while_others_sleep, *boost::unit_test::timeout(30))
{
    // The owner dies while a waiter already sleeps on the lock.
    shared_array<sd::robust_mutex> m(1);
    shared_array<std::atomic<int>> go(1);
    scoped_child owner([&] {
        if (m[0].lock(in(1s)) != result::acquired) return 9;
        while (go[0] == 0) std::this_thread::sleep_for(1ms);
        return 0;   // dies holding it
    });
    std::this_thread::sleep_for(100ms);
    scoped_child waiter([&] { return code(m[0].lock(in(5s))); });
    std::this_thread::sleep_for(100ms);
    go[0] = 1;
    BOOST_CHECK_EQUAL(owner.wait(5s), 0);
    BOOST_CHECK_EQUAL(waiter.wait(10s), 2);
}

// A.4 (a): callers that never sleep on the lock (get_nowait, put_nowait, poll(0)) still take a
// dead owner's lock over after watching it for a while.
BOOST_AUTO_TEST_CASE(try_lock_loop_takes_over_dead_owner, *boost::unit_test::timeout(30))
{
    shared_array<sd::robust_mutex> m(1);
    die_holding(m[0]);
    result r = result::timed_out;
    stopwatch sw;
    while (sw.seconds() < 2 && (r = m[0].try_lock()) == result::timed_out) std::this_thread::sleep_for(2ms);
    BOOST_CHECK_MESSAGE(r == result::recovered, "try_lock() never took over a dead owner in 2 s");
    if (r != result::timed_out) m[0].unlock();
}

// A live owner is never taken over, however long it holds the lock.
BOOST_AUTO_TEST_CASE(live_owner_is_never_taken_over, *boost::unit_test::timeout(30))
{
    shared_array<sd::robust_mutex> m(1);
    BOOST_REQUIRE(m[0].lock(in(1s)) == result::acquired);
    BOOST_CHECK_EQUAL(scoped_child([&] { return code(m[0].lock(in(500ms))); }).wait(5s), 3);
    m[0].unlock();
}

// A.2: a locker at its fd limit cannot read /proc: the owner's state is unknown, not dead.
BOOST_AUTO_TEST_CASE(locker_at_fd_limit_never_takes_over_live_owner, *boost::unit_test::timeout(30))
{
    shared_array<sd::robust_mutex> m(1);
    BOOST_REQUIRE(m[0].lock(in(1s)) == result::acquired);
    const int rc = scoped_child([&] {
                       exhaust_fds();
                       return code(m[0].lock(in(500ms)));
                   }).wait(5s);
    BOOST_CHECK_MESSAGE(rc == 3, "a locker at EMFILE got the lock of a live owner (exit " << rc << ", 2 = recovered)");
    m[0].unlock();
}
