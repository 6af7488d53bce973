// SPDX-License-Identifier: BSL-1.0
// Zero-copy Queue/SimpleQueue loans (loan / commit) and views (get_view / release): what they
// deliver across fork, maxsize, per-producer order behind a feeder backlog, streamed items, the
// errors, and what a process killed while holding one leaves behind (a writer killed mid-loan
// publishes nothing; a reader killed holding a view loses only that item).
#define BOOST_TEST_MODULE queue_loan
#include <boost/test/unit_test.hpp>

#include "queue_fixtures.hpp"
#include "nats_server.hpp"

#include <shmq/joinable_queue.hpp>
#include <shmq/queue.hpp>
#include <shmq/simple_queue.hpp>

#include "test_hook.hpp"

#include <array>
#include <csignal>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using namespace shmq::test;

namespace {

shmq::options ring(std::size_t bytes) {
    shmq::options o;
    o.capacity = bytes;
    return o;
}

// A trivially copyable item, sent raw.
struct reading {
    std::uint64_t seq;
    double value;
    std::array<char, 40> label;
};
static_assert(shmq::detail::lends_value_v<reading>);
static_assert(shmq::detail::lends_bytes_v<std::string>);
static_assert(!shmq::detail::lends_value_v<std::string>);

reading make_reading(std::uint64_t seq) {
    reading r{};
    r.seq = seq;
    r.value = static_cast<double>(seq) * 0.5;
    std::snprintf(r.label.data(), r.label.size(), "reading %llu", static_cast<unsigned long long>(seq));
    return r;
}

bool same(const reading& a, const reading& b) {
    return a.seq == b.seq && a.value == b.value && a.label == b.label;
}

// Puts a string of n pattern bytes through a loan.
template <class Q> void loan_put(Q& q, std::size_t n, std::uint64_t seed) {
    auto l = q.loan(n);
    fill_pattern(l.bytes(), seed);
    l.commit();
}

std::string text(std::span<const std::byte> b) { return to_string(b); }

} // namespace

BOOST_AUTO_TEST_CASE(bytes_round_trip_across_fork) {
    shmq::Queue<std::string> to_child(0, ring(1 << 20));
    shmq::Queue<std::vector<std::byte>> to_parent(0, ring(1 << 20));
    auto child = queue_child([&]() -> int {
        for (std::uint64_t i = 0; i < 50; ++i) {
            auto v = to_child.get_view(true, 10s);
            SHMQ_CHILD_CHECK(v.bytes().size() == 1000 + i * 997, child_bad_value);
            SHMQ_CHILD_CHECK(matches_pattern(v.bytes(), i), child_bad_value);
            // Answer through a loan of the same size, from the bytes still in place.
            auto l = to_parent.loan(v.bytes().size(), true, 10s);
            std::memcpy(l.bytes().data(), v.bytes().data(), v.bytes().size());
            v.release();
            l.commit();
        }
        return child_ok;
    });
    for (std::uint64_t i = 0; i < 50; ++i) loan_put(to_child, 1000 + i * 997, i);
    for (std::uint64_t i = 0; i < 50; ++i) {
        const std::vector<std::byte> got = to_parent.get(true, 10s);
        BOOST_TEST_REQUIRE(got.size() == 1000 + i * 997);
        BOOST_TEST_REQUIRE(matches_pattern(got, i));
    }
    BOOST_TEST(child.wait(20s) == child_ok);
}

BOOST_AUTO_TEST_CASE(pod_round_trip_across_fork) {
    shmq::Queue<reading> q(0, ring(64 << 10));
    shmq::SimpleQueue<reading> back(ring(64 << 10));
    auto child = queue_child([&]() -> int {
        for (std::uint64_t i = 0; i < 200; ++i) {
            auto v = q.get_view(true, 10s);
            SHMQ_CHILD_CHECK(reinterpret_cast<std::uintptr_t>(&v.value()) % alignof(reading) == 0,
                             child_bad_value);
            SHMQ_CHILD_CHECK(same(v.value(), make_reading(i)), child_bad_value);
            auto l = back.loan();
            l.value() = v.value();
            l.value().seq += 1000;
            l.commit();
        }
        return child_ok;
    });
    for (std::uint64_t i = 0; i < 200; ++i) {
        if (i % 2) {
            q.put(make_reading(i));   // put and loan mix: the same bytes in the ring
        } else {
            auto l = q.loan(true, 10s);
            l.value() = make_reading(i);
            l.commit();
            BOOST_CHECK_THROW(l.value(), shmq::value_error);   // committed: nothing on loan
        }
    }
    for (std::uint64_t i = 0; i < 200; ++i) {
        auto v = back.get_view();
        reading want = make_reading(i);
        want.seq += 1000;
        BOOST_TEST_REQUIRE(same(v.value(), want));
    }
    BOOST_TEST(child.wait(20s) == child_ok);
}

BOOST_AUTO_TEST_CASE(commit_of_a_smaller_size_and_the_limits) {
    shmq::Queue<std::string> q(0, ring(64 << 10));
    auto l = q.loan(1000);
    BOOST_TEST(l.bytes().size() == 1000u);
    BOOST_TEST(reinterpret_cast<std::uintptr_t>(l.bytes().data()) % 8 == 0u);
    fill_pattern(l.bytes(), 3);
    BOOST_CHECK_THROW(l.commit(1001), shmq::value_error);   // more than on loan; still lent
    l.commit(600);
    BOOST_TEST(l.bytes().empty());
    BOOST_CHECK_THROW(l.commit(1), shmq::value_error);      // nothing on loan any more
    const std::string got = q.get(true, 1s);
    BOOST_TEST(got.size() == 600u);
    BOOST_TEST(matches_pattern(got, 3));

    // max_loan: half the 64 KiB ring less a record header; one more byte names the limit.
    const std::size_t max = q.max_loan();
    BOOST_TEST(max == (32u << 10) - 8);
    try {
        (void)q.loan(max + 1);
        BOOST_FAIL("a loan beyond max_loan() succeeded");
    } catch (const shmq::value_error& e) {
        BOOST_TEST(std::string(e.what()).find(std::to_string(max)) != std::string::npos);
    }
    BOOST_CHECK_THROW((void)q.loan(-1), shmq::value_error);
    {
        auto big = q.loan(max);
        fill_pattern(big.bytes(), 4);
        big.commit();
    }
    BOOST_TEST(matches_pattern(q.get(true, 1s), 4));
    auto empty = q.loan(0);
    empty.commit();
    BOOST_TEST(q.get(true, 1s).empty());

    shmq::SimpleQueue<std::string> s(ring(64 << 10));
    BOOST_TEST(s.max_loan() == max);
    BOOST_CHECK_THROW((void)s.loan(max + 1), shmq::value_error);
}

BOOST_AUTO_TEST_CASE(an_uncommitted_loan_publishes_nothing) {
    shmq::Queue<std::string> q(0, ring(64 << 10));
    {
        auto l = q.loan(500);
        fill_pattern(l.bytes(), 1);
        auto moved = std::move(l);   // the move keeps one loan
        BOOST_TEST(l.bytes().empty());
        BOOST_TEST(moved.bytes().size() == 500u);
    }
    BOOST_TEST(q.qsize() == 0u);
    BOOST_CHECK_THROW((void)q.get(true, 0.1s), shmq::empty_error);
    q.put("after");   // the writer lease was given back
    BOOST_TEST(q.get(true, 1s) == "after");

    shmq::SimpleQueue<reading> s(ring(64 << 10));
    { auto l = s.loan(); l.value() = make_reading(1); }
    BOOST_TEST(s.empty());
    s.put(make_reading(2));
    BOOST_TEST(same(s.get_view().value(), make_reading(2)));
}

BOOST_AUTO_TEST_CASE(a_view_consumes_on_release_and_is_move_only) {
    shmq::SimpleQueue<std::string> q(ring(64 << 10));
    q.put("one");
    q.put("two");
    {
        auto v = q.get_view();
        BOOST_TEST(text(v.bytes()) == "one");
        auto moved = std::move(v);
        BOOST_TEST(v.bytes().empty());
        BOOST_TEST(text(moved.bytes()) == "one");
        moved.release();
        BOOST_TEST(moved.bytes().empty());
        moved.release();   // idempotent
    }
    {
        auto v = q.get_view();   // a view destroyed unreleased consumes its item too
        BOOST_TEST(text(v.bytes()) == "two");
    }
    BOOST_TEST(q.empty());
}

// A raw item of the wrong size is refused like a failing decode: codec_error, and that item is
// consumed. Such an item cannot be put through Queue<reading>; the test puts its bytes through
// the queue's core, as a buggy or hostile process with the queue's name could.
struct reading_queue : shmq::Queue<reading> {
    reading_queue() : shmq::Queue<reading>(shmq::detail::queue_flavor::queue, 0, ring(64 << 10)) {}
    void put_bytes(std::span<const std::byte> b) { core_.put(b, true, std::nullopt); }
};

BOOST_AUTO_TEST_CASE(a_raw_view_of_the_wrong_size_is_a_codec_error) {
    reading_queue q;
    q.put_bytes(to_bytes("short"));
    q.put(make_reading(5));
    BOOST_CHECK_THROW((void)q.get_view(true, 1s), shmq::codec_error);
    auto v = q.get_view(true, 1s);   // the short item was consumed
    BOOST_TEST(same(v.value(), make_reading(5)));
    v.release();
    BOOST_CHECK_THROW(v.value(), shmq::value_error);   // released
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(maxsize_bounds_loans) {
    shmq::Queue<std::string> q(2, ring(64 << 10));
    q.put("a");
    loan_put(q, 10, 1);
    BOOST_TEST(q.full());
    stopwatch sw;
    BOOST_CHECK_THROW((void)q.loan(10, true, 0.3s), shmq::full_error);
    BOOST_TEST(sw.seconds() >= 0.3 - clock_res.count());
    BOOST_TEST(sw.seconds() < 0.3 + late.count());
    stopwatch at_once_sw;
    BOOST_CHECK_THROW((void)q.loan(10, false), shmq::full_error);
    BOOST_TEST(at_once_sw.seconds() < at_once.count());
    // A held view still counts: its slot is free only once it is released.
    {
        auto v = q.get_view(true, 1s);
        BOOST_TEST(text(v.bytes()) == "a");
    }
    loan_put(q, 20, 2);   // a slot is free again
    BOOST_TEST(q.qsize() == 2u);
    BOOST_TEST(matches_pattern(q.get(true, 1s), 1));
    BOOST_TEST(matches_pattern(q.get(true, 1s), 2));

    // A loan waiting for a slot goes on when a consumer frees one.
    q.put("x");
    q.put("y");
    auto child = queue_child([&]() -> int {
        std::this_thread::sleep_for(200ms);
        SHMQ_CHILD_CHECK(q.get(true, 5s) == "x", child_bad_value);
        return child_ok;
    });
    {
        auto l = q.loan(3, true, 10s);
        std::memcpy(l.bytes().data(), "zzz", 3);
        l.commit();
    }
    BOOST_TEST(child.wait(10s) == child_ok);
    BOOST_TEST(q.get(true, 1s) == "y");
    BOOST_TEST(q.get(true, 1s) == "zzz");
}

// Per-producer FIFO with a backlog: C does not fit the ring, so it and D wait in this process's
// backlog; a loan would fit at once, but must come after them.
BOOST_AUTO_TEST_CASE(a_loan_comes_after_this_processs_backlog) {
    shmq::Queue<std::string> q(0, ring(64 << 10));
    go_signal go;
    auto child = queue_child([&]() -> int {
        SHMQ_CHILD_CHECK(go.wait(10s), child_no_go);
        const char* want[] = {"A", "B", "C", "D", "loaned"};
        for (std::uint64_t i = 0; i < 5; ++i) {
            auto v = q.get_view(true, 10s);
            const std::string s = text(v.bytes());
            SHMQ_CHILD_CHECK(s.substr(0, s.find('|')) == want[i], child_bad_order);
        }
        return child_ok;
    });
    const std::string pad(30'000, '.');
    q.put("A|" + pad);
    q.put("B|" + pad);   // both fit: the ring is nearly full
    q.put("C|" + pad);   // does not fit: backlog
    q.put("D");          // behind C
    BOOST_TEST(q.qsize() == 4u);
    // Nobody reads yet: the backlog cannot drain, so the loan times out rather than overtake it.
    BOOST_CHECK_THROW((void)q.loan(6, true, 0.2s), shmq::full_error);
    go.go();
    {
        auto l = q.loan(6, true, 10s);
        std::memcpy(l.bytes().data(), "loaned", 6);
        l.commit();
    }
    BOOST_TEST(child.wait(20s) == child_ok);
    BOOST_TEST(q.empty());
}

// An item larger than max_loan(), put with put(), travels in pieces: get_view assembles it.
BOOST_AUTO_TEST_CASE(a_streamed_item_reaches_get_view_whole) {
    // Bounded, so the child's put streams the item itself (no feeder thread in the child: a
    // thread left unjoined at _exit is a ThreadSanitizer report).
    shmq::Queue<std::string> q(10, ring(64 << 10));
    auto child = queue_child([&]() -> int {
        q.put(pattern_string(300'000, 8), true, 10s);
        q.put("small");
        return child_ok;
    });
    {
        auto v = q.get_view(true, 10s);
        BOOST_TEST(v.bytes().size() == 300'000u);
        BOOST_TEST(matches_pattern(v.bytes(), 8));
        auto moved = std::move(v);   // its own buffer moves with it
        BOOST_TEST(matches_pattern(moved.bytes(), 8));
    }
    {
        auto v = q.get_view(true, 10s);
        BOOST_TEST(text(v.bytes()) == "small");
    }
    BOOST_TEST(child.wait(20s) == child_ok);
}

BOOST_AUTO_TEST_CASE(closed_handles_refuse_loans_and_views) {
    shmq::Queue<std::string> q;
    q.close();
    BOOST_CHECK_THROW((void)q.loan(10), shmq::closed_error);
    BOOST_CHECK_THROW((void)q.loan(q.max_loan() + 1), shmq::closed_error);
    BOOST_CHECK_THROW((void)q.get_view(false), shmq::closed_error);
    shmq::SimpleQueue<reading> s;
    s.close();
    BOOST_CHECK_THROW((void)s.loan(), shmq::closed_error);
    BOOST_CHECK_THROW((void)s.get_view(), shmq::closed_error);
    BOOST_CHECK_THROW((void)s.max_loan(), shmq::closed_error);
}

BOOST_AUTO_TEST_CASE(get_view_times_out_with_empty_error) {
    shmq::Queue<std::string> q;
    stopwatch sw;
    BOOST_CHECK_THROW((void)q.get_view(true, 0.2s), shmq::empty_error);
    BOOST_TEST(sw.seconds() >= 0.2 - clock_res.count());
    BOOST_CHECK_THROW((void)q.get_view(false), shmq::empty_error);
}

// Two threads loaning through one handle take turns: every item arrives whole.
BOOST_AUTO_TEST_CASE(threads_of_one_handle_take_turns) {
    shmq::Queue<std::string> q(0, ring(64 << 10));
    constexpr std::uint64_t per_thread = 2000;
    auto producer = [&](std::uint64_t base) {
        for (std::uint64_t i = 0; i < per_thread; ++i) {
            auto l = q.loan(100 + i % 300, true, 10s);
            fill_pattern(l.bytes(), base + i);
            l.commit();
        }
    };
    // Each thread's items arrive in its order: the consumer expects the next of one or the other.
    bool whole = true;
    std::thread consumer([&] {
        std::uint64_t next[2] = {0, 0};
        for (std::uint64_t k = 0; k < 2 * per_thread && whole; ++k) {
            auto v = q.get_view(true, 10s);
            bool found = false;
            for (int t = 0; t < 2 && !found; ++t) {
                const std::uint64_t i = next[t];
                if (i < per_thread && v.bytes().size() == 100 + i % 300 &&
                    matches_pattern(v.bytes(), (t ? 1u << 20 : 0u) + i)) {
                    ++next[t];
                    found = true;
                }
            }
            whole = found;
        }
    });
    std::thread a(producer, 0), b(producer, 1u << 20);
    a.join();
    b.join();
    consumer.join();
    BOOST_TEST(whole);
    BOOST_TEST(q.empty());
}

#ifndef NDEBUG
// A writer killed after filling its loan and writing the record header, before it publishes:
// nothing arrives, and the queue goes on (the next putter takes the dead writer's lease over).
BOOST_AUTO_TEST_CASE(a_writer_killed_mid_loan_publishes_nothing) {
    shmq::Queue<std::string> q(0, ring(64 << 10));
    q.put("before");
    auto child = queue_child([&]() -> int {
        kill_point = "channel.loan.filled";
        shmq::detail::test_hook::install(kill_at_point);
        loan_put(q, 4000, 5);
        return 1;   // not reached
    });
    BOOST_TEST(child.wait(10s) == -SIGKILL);
    BOOST_TEST(q.get(true, 1s) == "before");
    BOOST_CHECK_THROW((void)q.get(true, 0.2s), shmq::empty_error);
    q.put("after");   // takes over the dead child's writer lease
    BOOST_TEST(q.get(true, 2s) == "after");
    loan_put(q, 100, 6);
    BOOST_TEST(matches_pattern(q.get(true, 2s), 6));
}

// A reader killed holding a view: that item is gone, the next one arrives, the queue goes on.
BOOST_AUTO_TEST_CASE(a_reader_killed_holding_a_view_loses_only_that_item) {
    shmq::Queue<std::string> q(0, ring(64 << 10));
    q.put("poison");
    q.put("next");
    auto child = queue_child([&]() -> int {
        auto v = q.get_view(true, 5s);
        if (text(v.bytes()) != "poison") return child_bad_value;
        ::raise(SIGKILL);   // dies holding the view
        return 1;
    });
    BOOST_TEST(child.wait(10s) == -SIGKILL);
    BOOST_TEST(q.get(true, 2s) == "next");
    BOOST_CHECK_THROW((void)q.get(true, 0.1s), shmq::empty_error);
    loan_put(q, 100, 9);
    auto v = q.get_view(true, 2s);
    BOOST_TEST(matches_pattern(v.bytes(), 9));
}

// The same for a raw T and a SimpleQueue, killed as the view is lent (the mark is set, the
// view not yet returned).
BOOST_AUTO_TEST_CASE(a_simple_queue_reader_killed_as_it_lends_loses_only_that_item) {
    shmq::SimpleQueue<reading> q(ring(64 << 10));
    q.put(make_reading(1));
    q.put(make_reading(2));
    auto child = queue_child([&]() -> int {
        kill_point = "channel.view.lent";
        shmq::detail::test_hook::install(kill_at_point);
        auto v = q.get_view();
        return 1;
    });
    BOOST_TEST(child.wait(10s) == -SIGKILL);
    BOOST_TEST(same(q.get(), make_reading(2)));
    BOOST_TEST(q.empty());
}
#endif

// A nats:// queue has no ring to lend: value_error (closed first).
BOOST_AUTO_TEST_CASE(a_nats_queue_refuses_loans_and_views) {
    nats_server srv;
    const std::string url = srv.url("loan" + std::to_string(::getpid()));
    auto q = shmq::Queue<std::string>::create(url);
    BOOST_CHECK_THROW((void)q.loan(10), shmq::value_error);
    BOOST_CHECK_THROW((void)q.get_view(false), shmq::value_error);
    BOOST_CHECK_THROW((void)q.max_loan(), shmq::value_error);
    q.close();
    BOOST_CHECK_THROW((void)q.loan(10), shmq::closed_error);
    shmq::Queue<std::string>::remove(url);
}
