// SPDX-License-Identifier: BSL-1.0
// Zero-copy Connection::loan / commit and recv_view / release: what they deliver, around every
// wrap of the ring, and what a process killed while holding one leaves behind (a writer killed
// mid-loan publishes nothing; a reader killed holding a view loses only that message).
#define BOOST_TEST_MODULE loan
#include <boost/test/unit_test.hpp>

#include "test_fixtures.hpp"

#include <shmq/connection.hpp>

#include "layout.hpp"
#include "test_hook.hpp"

#include <atomic>
#include <csignal>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using namespace shmq::test;
using shmq::Connection;

namespace {

shmq::options ring(std::size_t bytes) {
    shmq::options o;
    o.capacity = bytes;
    return o;
}

// Sends `n` bytes of pattern `seed` through a loan.
void loan_send(Connection& c, std::size_t n, std::uint64_t seed) {
    Connection::Loan l = c.loan(n);
    fill_pattern(l.bytes(), seed);
    l.commit();
}

// Receives the next message (waiting at most 2 s for it) and checks it is `n` bytes of pattern
// `seed`.
void expect_patterned(Connection& r, std::size_t n, std::uint64_t seed) {
    BOOST_TEST_REQUIRE(r.poll(2s), "no message of pattern " << seed);
    const auto got = r.recv_bytes();
    BOOST_TEST(got.size() == n, "pattern " << seed);
    BOOST_TEST(matches_pattern(got, seed), "pattern " << seed);
}

// A thread that holds a 64-byte loan of pattern 21 (so the turn and the writer lease) from before
// this returns until 200 ms after `forked` is set, then commits it.
std::thread hold_a_loan_across_fork(Connection& w, std::atomic<bool>& forked) {
    std::atomic<bool> lent{false};
    std::thread holder([&w, &forked, &lent] {
        Connection::Loan l = w.loan(64);
        fill_pattern(l.bytes(), 21);
        lent = true;
        while (!forked) std::this_thread::sleep_for(1ms);
        std::this_thread::sleep_for(200ms);   // the child waits for the lease meanwhile
        l.commit();
    });
    while (!lent) std::this_thread::sleep_for(1ms);
    return holder;
}

} // namespace

BOOST_AUTO_TEST_CASE(loan_commit_delivers_the_committed_prefix) {
    auto [r, w] = shmq::Pipe(false, ring(64 << 10));
    Connection::Loan l = w.loan(1000);
    BOOST_TEST(l.bytes().size() == 1000u);
    BOOST_TEST(reinterpret_cast<std::uintptr_t>(l.bytes().data()) % 8 == 0u);
    fill_pattern(l.bytes(), 7);
    l.commit(600);
    BOOST_TEST(l.bytes().empty());
    BOOST_CHECK_THROW(l.commit(1), shmq::value_error);   // nothing on loan any more
    auto got = r.recv_bytes();
    BOOST_TEST(got.size() == 600u);
    BOOST_TEST(matches_pattern(got, 7));

    BOOST_TEST(w.max_loan() < (32u << 10));
    BOOST_TEST(w.max_loan() > (31u << 10));
    BOOST_CHECK_THROW(w.loan(w.max_loan() + 1), shmq::value_error);
    BOOST_CHECK_THROW(r.loan(10), shmq::value_error);   // read-only end
    BOOST_CHECK_THROW(w.recv_view(), shmq::value_error);
    Connection::Loan big = w.loan(w.max_loan());
    BOOST_CHECK_THROW(big.commit(w.max_loan() + 1), shmq::value_error);
    big.commit(0);   // an empty message
    BOOST_TEST(r.recv_bytes().empty());
}

BOOST_AUTO_TEST_CASE(an_abandoned_loan_publishes_nothing) {
    auto [r, w] = shmq::Pipe(false, ring(64 << 10));
    {
        Connection::Loan l = w.loan(500);
        fill_pattern(l.bytes(), 1);
        Connection::Loan moved = std::move(l);   // the move keeps one loan
        BOOST_TEST(l.bytes().empty());
    }
    BOOST_TEST(!r.poll(0.1s));
    w.send_bytes(to_bytes("after"));
    BOOST_TEST(to_string(r.recv_bytes()) == "after");
}

BOOST_AUTO_TEST_CASE(recv_view_reads_in_place_and_release_consumes) {
    auto [a, b] = shmq::Pipe(true, ring(1 << 20));
    a.send_bytes(make_pattern(3000, 1));
    loan_send(a, 200'000, 2);                 // loaned: one record, viewed in place
    a.send_bytes(make_pattern(300'000, 3));   // sent: in pieces, assembled by the view
    {
        Connection::View v = b.recv_view();
        BOOST_TEST(v.bytes().size() == 3000u);
        BOOST_TEST(matches_pattern(v.bytes(), 1));
        v.release();
        BOOST_TEST(v.bytes().empty());
        v.release();   // idempotent
    }
    {
        Connection::View v = b.recv_view();
        BOOST_TEST(v.bytes().size() == 200'000u);
        BOOST_TEST(matches_pattern(v.bytes(), 2));
        Connection::View moved = std::move(v);
        BOOST_TEST(matches_pattern(moved.bytes(), 2));
    }
    {
        Connection::View v = b.recv_view();
        BOOST_TEST(v.bytes().size() == 300'000u);
        BOOST_TEST(matches_pattern(v.bytes(), 3));
    }
    BOOST_TEST(!b.poll(0s));
    a.close();
    BOOST_CHECK_THROW(b.recv_view(), shmq::eof_error);
}

// Two threads loaning on one Connection, two threads viewing on the other: each takes its turn
// (the lent lease lives in the handle, and the process-wide lease cannot tell threads apart).
// Before the turns, the second loan's emplace unlocked the first thread's lease under it.
BOOST_AUTO_TEST_CASE(threads_of_one_connection_take_turns_for_loans_and_views) {
    auto [r, w] = shmq::Pipe(false, ring(64 << 10));
    constexpr std::uint64_t per_thread = 3000;
    auto producer = [&w = w](std::uint64_t base) {
        for (std::uint64_t i = 0; i < per_thread; ++i) {
            Connection::Loan l = w.loan(64 + i % 500);
            fill_pattern(l.bytes(), base + i);
            l.commit();
        }
    };
    std::atomic<std::uint64_t> got{0}, bad{0};
    auto consumer = [&r = r, &got, &bad] {
        while (got.load() < 2 * per_thread) {
            if (!r.poll(0.05s)) continue;
            Connection::View v;
            try {
                v = r.recv_view();   // the other consumer may have taken it: then wait
            } catch (const shmq::eof_error&) {
                break;   // all sent, all taken, writer closed
            }
            const std::size_t n = v.bytes().size();
            bool whole = false;
            for (std::uint64_t base : {std::uint64_t{0}, std::uint64_t{1} << 20})
                for (std::uint64_t i = (n - 64) % 500; i < per_thread && !whole; i += 500)
                    whole = matches_pattern(v.bytes(), base + i);
            if (!whole) bad.fetch_add(1);
            got.fetch_add(1);
        }
    };
    std::thread a(producer, 0), b(producer, 1u << 20);
    std::thread c(consumer), d(consumer);
    a.join();
    b.join();
    w.close();   // consumers that still poll see EOF instead of waiting
    c.join();
    d.join();
    BOOST_TEST(got.load() == 2 * per_thread);
    BOOST_TEST(bad.load() == 0u);
}

// Threads of one connection that wait for the turn (handle_turn.hpp) sleep until the holder gives
// it back: each holder keeps it 1 ms, so the others are asleep on it, and with three threads a
// woken one must pass the wake-up on. A lost wake-up would show as a wait of the turn's 1 s
// fallback; every wait here must end far sooner.
BOOST_AUTO_TEST_CASE(a_thread_waiting_for_the_turn_wakes_when_it_is_given_back) {
    auto [r, w] = shmq::Pipe(false, ring(1 << 20));
    constexpr int threads = 3, each = 30;
    std::atomic<std::int64_t> longest_ns{0};
    auto note = [&](std::chrono::steady_clock::time_point t0) {
        const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::steady_clock::now() - t0).count();
        for (std::int64_t m = longest_ns.load(); ns > m && !longest_ns.compare_exchange_weak(m, ns);) {
        }
    };
    auto loaner = [&, &w = w](int id) {
        for (int i = 0; i < each; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            Connection::Loan l = w.loan(64);
            note(t0);
            fill_pattern(l.bytes(), static_cast<std::uint64_t>(id * each + i));
            std::this_thread::sleep_for(1ms);
            l.commit();
        }
    };
    std::vector<std::thread> ts;
    for (int id = 0; id < threads; ++id) ts.emplace_back(loaner, id);
    for (auto& t : ts) t.join();
    BOOST_TEST(longest_ns.load() < 900'000'000, "longest wait for the loan turn " << longest_ns.load() << " ns");

    // Every loan is committed and the writer closed: each viewer takes messages until EOF, so a
    // lost message shows as a short count, not as a viewer blocked for ever.
    w.close();
    longest_ns = 0;
    std::atomic<int> seen{0};
    auto viewer = [&, &r = r] {
        for (;;) {
            const auto t0 = std::chrono::steady_clock::now();
            Connection::View v;
            try {
                v = r.recv_view();
            } catch (const shmq::eof_error&) {
                return;
            }
            note(t0);
            if (v.bytes().size() == 64) seen.fetch_add(1);
            std::this_thread::sleep_for(1ms);
        }
    };
    ts.clear();
    for (int id = 0; id < threads; ++id) ts.emplace_back(viewer);
    for (auto& t : ts) t.join();
    BOOST_TEST(seen.load() == threads * each);
    BOOST_TEST(longest_ns.load() < 900'000'000, "longest wait for the view turn " << longest_ns.load() << " ns");
}

// Loans and views of random sizes in a small ring: records land on every offset, across the end
// of the ring (with a pad in front) and, with the start position below the 36-bit wrap of the
// packed positions, across that wrap too.
BOOST_AUTO_TEST_CASE(loans_and_views_across_every_wrap) {
    for (std::uint64_t start : {std::uint64_t{0}, (std::uint64_t{1} << shmq::detail::position_byte_bits) - 4096}) {
#ifndef NDEBUG
        shmq::detail::test_hook::start_position(start);
#else
        if (start) continue;
#endif
        auto [r, w] = shmq::Pipe(false, ring(4096));
        shmq::detail::test_hook::start_position(0);
        std::mt19937_64 rng(start + 1);
        const std::size_t max = w.max_loan();
        for (std::uint64_t i = 0; i < 3000; ++i) {
            const std::size_t n = rng() % (max + 1);
            if (i % 3 == 0) w.send_bytes(make_pattern(n, i));
            else loan_send(w, n, i);
            Connection::View v = r.recv_view();
            BOOST_TEST_REQUIRE(v.bytes().size() == n);
            BOOST_TEST_REQUIRE(matches_pattern(v.bytes(), i));
        }
    }
}

#ifndef NDEBUG
// A writer killed after filling its loan and writing the record header, before it publishes:
// nothing arrives, and the next writer takes the dead writer's lease over.
BOOST_AUTO_TEST_CASE(a_writer_killed_mid_loan_publishes_nothing) {
    auto [r, w] = shmq::Pipe(false, ring(64 << 10));
    w.send_bytes(to_bytes("before"));
    scoped_child child([&] {
        kill_point = "channel.loan.filled";
        shmq::detail::test_hook::install(kill_at_point);
        loan_send(w, 4000, 5);
        return 1;   // not reached
    });
    BOOST_TEST(child.wait(10s) == -SIGKILL);
    BOOST_TEST(to_string(r.recv_bytes()) == "before");
    BOOST_TEST(!r.poll(0.2s));
    w.send_bytes(to_bytes("after"));   // takes over the dead child's writer lease
    BOOST_TEST(r.poll(2s));
    BOOST_TEST(to_string(r.recv_bytes()) == "after");
}

// A reader killed holding a view: that message is gone, the next one arrives, and the channel
// goes on.
BOOST_AUTO_TEST_CASE(a_reader_killed_holding_a_view_loses_only_that_message) {
    auto [r, w] = shmq::Pipe(false, ring(64 << 10));
    w.send_bytes(to_bytes("poison"));
    w.send_bytes(to_bytes("next"));
    scoped_child child([&] {
        Connection::View v = r.recv_view();
        if (to_string(v.bytes()) != "poison") return 2;
        ::raise(SIGKILL);   // dies holding the view
        return 1;
    });
    BOOST_TEST(child.wait(10s) == -SIGKILL);
    BOOST_TEST(r.poll(2s));
    BOOST_TEST(to_string(r.recv_bytes()) == "next");
    BOOST_TEST(!r.poll(0.1s));
    loan_send(w, 100, 9);
    Connection::View v = r.recv_view();
    BOOST_TEST(matches_pattern(v.bytes(), 9));
}

// Killed after the lease was taken and the mark set, before the view reached the caller: the
// same (the mark is what the next reader goes by).
BOOST_AUTO_TEST_CASE(a_reader_killed_as_it_lends_loses_only_that_message) {
    auto [r, w] = shmq::Pipe(false, ring(64 << 10));
    w.send_bytes(to_bytes("first"));
    w.send_bytes(to_bytes("second"));
    scoped_child child([&] {
        kill_point = "channel.view.lent";
        shmq::detail::test_hook::install(kill_at_point);
        Connection::View v = r.recv_view();
        return 1;
    });
    BOOST_TEST(child.wait(10s) == -SIGKILL);
    BOOST_TEST(to_string(r.recv_bytes()) == "second");
}
#endif

// A view released normally leaves no mark: a later takeover of the reader lease (a reader killed
// waiting) skips nothing.
BOOST_AUTO_TEST_CASE(a_released_view_is_not_skipped_again_after_a_takeover) {
    auto [r, w] = shmq::Pipe(false, ring(64 << 10));
    w.send_bytes(to_bytes("one"));
    { Connection::View v = r.recv_view(); }
    scoped_child child([&] {
        Connection::View v = r.recv_view();   // waits (holding the lease) until killed
        return 1;
    });
    std::this_thread::sleep_for(100ms);
    child.kill();
    w.send_bytes(to_bytes("two"));
    BOOST_TEST(r.poll(2s));
    BOOST_TEST(to_string(r.recv_bytes()) == "two");
}

// A child forked while its parent holds a loan inherits the object: destroying it there must not
// release or publish the parent's loan.
BOOST_AUTO_TEST_CASE(a_forked_child_leaves_its_parents_loan_alone) {
    auto [r, w] = shmq::Pipe(false, ring(64 << 10));
    Connection::Loan l = w.loan(64);
    fill_pattern(l.bytes(), 11);
    scoped_child child([&] {
        { Connection::Loan mine = std::move(l); }   // abandons in the child only
        return 0;
    });
    BOOST_TEST(child.wait(10s) == 0);
    BOOST_TEST(!r.poll(0.05s));   // not published by the child's abandon
    l.commit();
    auto got = r.recv_bytes();
    BOOST_TEST(got.size() == 64u);
    BOOST_TEST(matches_pattern(got, 11));
    w.send_bytes(to_bytes("still mine"));   // the lease was given back by the commit
    BOOST_TEST(to_string(r.recv_bytes()) == "still mine");
}

// A child forked while another thread of its parent holds a loan inherits the taken turn, and
// no thread of the child can ever give it back: the child's loans on that connection take the
// turn over (they used to wait for ever). The lease itself is still the parent's, held by a
// live process, so the child's loan waits for the parent's commit, then goes on.
BOOST_AUTO_TEST_CASE(a_child_forked_while_another_thread_holds_a_loan_can_loan) {
    auto [r, w] = shmq::Pipe(false, ring(64 << 10));
    std::atomic<bool> forked{false};
    std::thread holder = hold_a_loan_across_fork(w, forked);
    scoped_child child([&, &w = w] {
        loan_send(w, 100, 22);   // takes the turn over, then waits for the parent's lease
        return 0;
    });
    forked = true;
    holder.join();
    BOOST_TEST(child.wait(10s) == 0);   // without the takeover: killed after 10 s
    expect_patterned(r, 64, 21);
    expect_patterned(r, 100, 22);
}

// The same with a second parent thread asleep on the turn when the child is forked: the child
// inherits a turn word with the parent's pid and the waiters bit (handle_turn.hpp), must take it
// over all the same, and the parent's sleeper must still be woken when the holder commits.
BOOST_AUTO_TEST_CASE(a_child_forked_while_a_thread_sleeps_on_the_turn_can_loan) {
    auto [r, w] = shmq::Pipe(false, ring(64 << 10));
    std::atomic<bool> forked{false}, second_done{false};
    std::thread holder = hold_a_loan_across_fork(w, forked);
    std::thread sleeper([&, &w = w] {   // asleep on the turn until the holder commits
        loan_send(w, 80, 23);
        second_done = true;
    });
    std::this_thread::sleep_for(50ms);
    scoped_child child([&, &w = w] {
        loan_send(w, 100, 22);   // takes the turn over, then waits for the parent's lease
        return 0;
    });
    forked = true;
    holder.join();
    sleeper.join();
    BOOST_TEST(child.wait(10s) == 0);   // without the takeover: killed after 10 s
    BOOST_TEST(second_done.load());
    expect_patterned(r, 64, 21);
    // The child's message and the sleeper's race for the lease once the holder lets it go.
    std::set<std::pair<std::size_t, bool>> got;
    for (int i = 0; i < 2; ++i) {
        BOOST_TEST_REQUIRE(r.poll(2s));
        const auto m = r.recv_bytes();
        got.insert({m.size(), matches_pattern(m, m.size() == 100 ? 22 : 23)});
    }
    BOOST_TEST((got == std::set<std::pair<std::size_t, bool>>{{80, true}, {100, true}}));
}

// The forking thread's own loan: the child holds an inherited Loan object and loans again
// through the same connection before dropping it. The new loan takes the turn over; the old
// object, dropped afterwards, must then neither publish, nor abandon the child's loan, nor
// unlock anything.
BOOST_AUTO_TEST_CASE(an_inherited_loan_dropped_after_the_child_loaned_again_does_nothing) {
    auto [r, w] = shmq::Pipe(false, ring(64 << 10));
    Connection::Loan l = w.loan(64);
    fill_pattern(l.bytes(), 31);
    scoped_child child([&, &w = w] {
        Connection::Loan inherited = std::move(l);
        Connection::Loan mine = w.loan(100);   // waits for the parent's commit (the lease)
        fill_pattern(mine.bytes(), 32);
        { Connection::Loan gone = std::move(inherited); }   // the parent's: must do nothing
        mine.commit();
        w.send_bytes(to_bytes("after"));   // the lease was given back by the commit
        return 0;
    });
    std::this_thread::sleep_for(200ms);
    BOOST_TEST(!r.poll(0s));   // nothing published by the child while the parent holds the lease
    l.commit();
    BOOST_TEST(child.wait(10s) == 0);
    expect_patterned(r, 64, 31);
    expect_patterned(r, 100, 32);
    BOOST_TEST_REQUIRE(r.poll(2s));
    BOOST_TEST(to_string(r.recv_bytes()) == "after");
    w.send_bytes(to_bytes("parent again"));   // the parent's lease is free too
    BOOST_TEST(to_string(r.recv_bytes()) == "parent again");
}

// Views likewise: another thread of the parent holds a view when it forks; the child's
// recv_view takes the turn over and, once the parent releases (the reader lease), gets the next
// message.
BOOST_AUTO_TEST_CASE(a_child_forked_while_another_thread_holds_a_view_can_view) {
    auto [r, w] = shmq::Pipe(false, ring(64 << 10));
    w.send_bytes(to_bytes("one"));
    w.send_bytes(to_bytes("two"));
    std::atomic<bool> viewing{false}, forked{false};
    std::string seen;
    std::thread holder([&, &r = r] {
        Connection::View v = r.recv_view();
        seen = to_string(v.bytes());
        viewing = true;
        while (!forked) std::this_thread::sleep_for(1ms);
        std::this_thread::sleep_for(200ms);
        v.release();
    });
    while (!viewing) std::this_thread::sleep_for(1ms);
    scoped_child child([&, &r = r] {
        Connection::View v = r.recv_view();   // takes the turn over, waits for the reader lease
        return to_string(v.bytes()) == "two" ? 0 : 1;
    });
    forked = true;
    holder.join();
    BOOST_TEST(seen == "one");
    BOOST_TEST(child.wait(10s) == 0);   // without the takeover: killed after 10 s
    BOOST_TEST(!r.poll(0.05s));         // "two" was consumed by the child
}
