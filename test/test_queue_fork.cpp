// SPDX-License-Identifier: BSL-1.0
// shmq::Queue<T> across fork: CPython's test_fork and test_process ported, many producer and
// consumer processes (exactly once, FIFO per producer), fork while the parent has a backlog or
// while another of its threads is inside put(), and shmq::Process children that flush their
// backlog before exit (or not, after cancel_join_thread()). Clauses Q9, Q10, Q15-Q17 of
// Python's Queue contract; README: unbounded puts never block, fork-safe; doc/design.md §6, §11.
//
// Children report by exit code (or through a result queue) under a watchdog; every get has a
// timeout; a case with an unbounded call (join_thread) carries a Boost.Test timeout.
#define BOOST_TEST_MODULE queue_fork
#include <boost/test/unit_test.hpp>

#include "queue_fixtures.hpp"
#include "sanitizer_limits.hpp"

#include <shmq/process.hpp>
#include <shmq/queue.hpp>
#include <shmq/serialization.hpp>   // types sent with Boost.Serialization

#include <boost/serialization/vector.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

// Lets BOOST_TEST print exit codes when a comparison fails (Boost's documented customisation).
namespace boost::test_tools::tt_detail {
template <> struct print_log_value<std::optional<int>> {
    void operator()(std::ostream& os, const std::optional<int>& v) {
        if (v) os << *v; else os << "nullopt";
    }
};
} // namespace boost::test_tools::tt_detail

using namespace std::chrono_literals;
using namespace shmq::test;
using shmq::Process;
using shmq::Queue;
namespace utf = boost::unit_test;

namespace {

const shmq::options small_ring{.capacity = 4096};

/// Kills and reaps a Process the test leaves running (after a failed check).
struct process_guard {
    Process& p;
    ~process_guard() {
        try {
            if (p.pid() != 0 && p.is_alive()) {
                p.kill();
                p.join(10s);
            }
        } catch (...) {
        }
    }
};

/// First thing in a shmq::Process target: Boost.Test's signal handlers out, a watchdog in.
void child_setup(unsigned watchdog_seconds = 30) {
    shmq::test::detail::reset_signals_in_child();
    ::alarm(watchdog_seconds);
}

template <class Pred> bool eventually(Pred pred, seconds_d limit = 5s) {
    const auto give_up = clk::now() + std::chrono::duration_cast<clk::duration>(limit);
    while (clk::now() < give_up) {
        if (pred()) return true;
        std::this_thread::sleep_for(1ms);
    }
    return pred();
}

} // namespace

// ---- CPython ports ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(test_fork_port) {
    // _TestQueue.test_fork: the parent puts 0-9, a child forked afterwards puts 10-19; the parent
    // gets exactly 0-19, then Empty.
    Queue<int> q;
    for (int i = 0; i < 10; ++i) q.put(i);
    Process p([&] {
        child_setup();
        for (int i = 10; i < 20; ++i) q.put(i);
    });
    p.start();
    process_guard guard{p};
    for (int i = 0; i < 20; ++i) BOOST_TEST(q.get(true, 10s) == i);
    BOOST_CHECK_THROW(q.get(false), shmq::empty_error);
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
}

BOOST_AUTO_TEST_CASE(test_process_port_bounded_put_blocks_across_processes) {
    // _TestProcess.test_process uses Queue(1): the child's puts block until the parent gets.
    Queue<int> q(1);
    Process p([&] {
        child_setup();
        for (int i = 0; i < 3; ++i) q.put(i, true, 10s);
    });
    p.start();
    process_guard guard{p};
    BOOST_TEST(eventually([&] { return q.full(); }));
    std::this_thread::sleep_for(200ms);
    BOOST_TEST(q.qsize() == 1u);   // the child is blocked on its second put
    BOOST_TEST(p.is_alive());
    for (int i = 0; i < 3; ++i) BOOST_TEST(q.get(true, 10s) == i);
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(queue_inherited_by_a_grandchild) {
    // TestStdinBadfiledescriptor.test_queue_in_process: a grandchild's get(block=False) raises
    // Empty; and the grandchild can put for the grandparent.
    Queue<int> q;
    auto child = queue_child([&]() -> int {
        auto grandchild = queue_child([&]() -> int {
            try {
                (void)q.get(false);
                return child_bad_value;
            } catch (const shmq::empty_error&) {
            }
            for (int i = 0; i < 5; ++i) q.put(100 + i);
            return child_ok;
        });
        return grandchild.wait(20s);
    });
    BOOST_TEST(child.wait(25s) == child_ok);
    for (int i = 0; i < 5; ++i) BOOST_TEST(q.get(true, 5s) == 100 + i);
}

// ---- many producers, many consumers ----------------------------------------------------------

BOOST_AUTO_TEST_CASE(four_producers_four_consumers_exactly_once_fifo_per_producer) {
    // Issue #3: 4 producer processes x 10 000 items, 4 consumer processes. Each consumer checks
    // that every producer's sequence numbers increase and reports what it got through a result
    // queue; the parent checks that the union is every item exactly once.
    constexpr std::uint32_t producers = 4, consumers = 4, per_producer = 10'000;
    constexpr std::uint32_t stop = 0xffffffffu;
    Queue<tagged> q(0, shmq::options{.capacity = 16384});
    Queue<std::vector<std::uint32_t>> results;   // {consumer, producer, seq...}

    std::vector<scoped_child> kids;
    for (std::uint32_t c = 0; c < consumers; ++c)
        kids.push_back(queue_child([&, c]() -> int {
            std::vector<std::vector<std::uint32_t>> got(producers);
            for (;;) {
                tagged t;
                try {
                    t = q.get(true, 20s);
                } catch (const shmq::empty_error&) {
                    return child_timed_out_get;
                }
                if (t.producer == stop) break;
                SHMQ_CHILD_CHECK(t.producer < producers, child_bad_value);
                auto& seqs = got[t.producer];
                SHMQ_CHILD_CHECK(seqs.empty() || t.seq > seqs.back(), child_bad_order);
                seqs.push_back(t.seq);
            }
            for (std::uint32_t p = 0; p < producers; ++p) {
                std::vector<std::uint32_t> msg{c, p};
                msg.insert(msg.end(), got[p].begin(), got[p].end());
                results.put(msg);
            }
            return child_ok;
        }, 50));
    std::vector<scoped_child> makers;
    for (std::uint32_t p = 0; p < producers; ++p)
        makers.push_back(queue_child([&, p]() -> int {
            for (std::uint32_t i = 0; i < per_producer; ++i) q.put(tagged{p, i});
            return child_ok;
        }, 50));

    for (auto& m : makers) BOOST_TEST(m.wait(40s) == child_ok);
    for (std::uint32_t c = 0; c < consumers; ++c) q.put(tagged{stop, 0});

    std::map<std::uint32_t, std::vector<std::uint32_t>> all;   // producer -> every seq seen
    std::set<std::pair<std::uint32_t, std::uint32_t>> reports;
    for (std::uint32_t r = 0; r < consumers * producers; ++r) {
        std::vector<std::uint32_t> msg;
        try {
            msg = results.get(true, 40s);
        } catch (const shmq::empty_error&) {
            BOOST_ERROR("timed out waiting for consumer report " << r);
            break;
        }
        BOOST_REQUIRE(msg.size() >= 2);
        BOOST_TEST(reports.insert({msg[0], msg[1]}).second, "duplicate report");
        auto& seqs = all[msg[1]];
        seqs.insert(seqs.end(), msg.begin() + 2, msg.end());
    }
    for (auto& c : kids) BOOST_TEST(c.wait(40s) == child_ok);

    BOOST_TEST(reports.size() == std::size_t{consumers * producers});
    for (std::uint32_t p = 0; p < producers; ++p) {
        auto& seqs = all[p];
        std::sort(seqs.begin(), seqs.end());
        const bool exactly_once =
            seqs.size() == per_producer &&
            std::adjacent_find(seqs.begin(), seqs.end()) == seqs.end() &&
            seqs.front() == 0 && seqs.back() == per_producer - 1;
        BOOST_TEST(exactly_once, "producer " << p << ": " << seqs.size() << " items");
    }
    BOOST_TEST(q.empty());
    BOOST_TEST(results.empty());
}

// ---- fork and the feeder ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(child_forked_during_a_backlog_starts_with_none, *utf::timeout(40)) {
    // Q17: items buffered in the parent are not duplicated into a child forked meanwhile: the
    // child's qsize() does not count them, its exit flush does not write them again, and the
    // parent's items arrive exactly once and in order (the child's own item too).
    constexpr int n = 50;
    Queue<std::string> q(0, small_ring);
    for (int i = 0; i < n; ++i) q.put(pattern_string(1024, static_cast<std::uint64_t>(i)));
    BOOST_REQUIRE(q.qsize() == static_cast<std::size_t>(n));   // 3 in the ring, the rest pending
    std::this_thread::sleep_for(50ms);                          // the feeder is waiting for room

    auto child = queue_child([&]() -> int {
        const std::size_t seen = q.qsize();
        SHMQ_CHILD_CHECK(seen <= 4, child_bad_count);   // the ring's items only
        q.put("from the child");                          // ring full: the child's own backlog
        return child_ok;                                  // queue_child flushes it
    });

    std::vector<std::string> got;
    int from_child = 0;
    while (static_cast<int>(got.size()) < n || from_child == 0) {
        std::string s;
        try {
            s = q.get(true, 10s);
        } catch (const shmq::empty_error&) {
            BOOST_ERROR("timed out after " << got.size() << " parent items, " << from_child
                                           << " child items");
            break;
        }
        if (s == "from the child") ++from_child;
        else got.push_back(std::move(s));
    }
    BOOST_TEST(child.wait(20s) == child_ok);
    BOOST_CHECK_THROW(q.get(true, 300ms), shmq::empty_error);   // nothing twice
    BOOST_TEST(from_child == 1);
    BOOST_REQUIRE(got.size() == static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
        BOOST_TEST(matches_pattern(got[i], static_cast<std::uint64_t>(i)), "item " << i);
    q.close();
    q.join_thread();
}

namespace {

/// An item of the fork-during-put test: from the putting thread (kind 0, value = its sequence
/// number) or a child's marker (kind 1, value = the sequence number it took, or -1).
struct fork_item {
    std::int32_t kind;
    std::int32_t child;
    std::int64_t value;
};

} // namespace

// Not under ASan (sanitizer_limits.hpp, asan_fork_unsafe_allocator): its children hung in the
// runtime's allocator, never in shmq. The debug build runs it.
BOOST_AUTO_TEST_CASE(child_forked_while_another_thread_is_inside_put,
                     *utf::timeout(50) * utf::precondition(not_under_asan{asan_fork_unsafe_allocator})) {
    // README (fork-safe) / issue #3 item 4: children forked while a parent thread loops in put()
    // (and the parent's feeder runs: the small ring overflows into the backlog) can get and put
    // through the inherited queue. Every item of the thread arrives exactly once (at the parent, or
    // at the child that took it), the parent sees them in order, and every child's marker arrives
    // once.
    constexpr int children = 12;
    Queue<fork_item> q(0, small_ring);
    std::atomic<bool> stop{false};
    std::atomic<std::int64_t> produced{0};
    std::thread putter([&] {
        for (std::int64_t i = 0; !stop.load(); ++i) {
            q.put(fork_item{0, -1, i});
            produced.store(i + 1);
            if (i % 64 == 63) std::this_thread::sleep_for(200us);
        }
    });

    std::vector<std::int64_t> parent_got;   // the thread's values, in arrival order
    std::vector<std::int64_t> taken;        // the thread's values children took
    std::vector<int> markers(children, 0);
    int out_of_order = 0;
    auto receive = [&](const fork_item& x) {
        if (x.kind == 0) {
            if (!parent_got.empty() && x.value <= parent_got.back()) ++out_of_order;
            parent_got.push_back(x.value);
        } else if (x.kind == 1 && x.child >= 0 && x.child < children) {
            ++markers[x.child];
            if (x.value >= 0) taken.push_back(x.value);
        } else {
            BOOST_ERROR("garbage item kind " << x.kind << " child " << x.child);
        }
    };

    std::vector<int> codes;
    for (int k = 0; k < children; ++k) {
        BOOST_REQUIRE(eventually([&] { return produced.load() > 100 * (k + 1); }));
        auto child = queue_child([&q, k]() -> int {
            fork_item x;
            try {
                x = q.get(true, 5s);
            } catch (const shmq::empty_error&) {
                return child_timed_out_get;
            }
            if (x.kind == 1) q.put(x);   // another child's marker: hand it back
            q.put(fork_item{1, k, x.kind == 0 ? x.value : -1});
            return child_ok;
        }, 20);
        // Drain while the child runs, so neither the thread's backlog nor the child's exit flush
        // waits on a full ring.
        const auto give_up = clk::now() + 20s;
        while (!child.exited() && clk::now() < give_up) {
            try {
                receive(q.get(true, 5ms));
            } catch (const shmq::empty_error&) {
            }
        }
        codes.push_back(child.wait(5s));
    }
    stop.store(true);
    putter.join();
    const std::int64_t total = produced.load();
    const auto give_up = clk::now() + 20s;
    while (static_cast<std::int64_t>(parent_got.size() + taken.size()) < total &&
           clk::now() < give_up) {
        try {
            receive(q.get(true, 1s));
        } catch (const shmq::empty_error&) {
        }
    }
    BOOST_CHECK_THROW(q.get(true, 200ms), shmq::empty_error);

    for (int k = 0; k < children; ++k) {
        BOOST_TEST(codes[k] == child_ok, "child " << k << " exit code " << codes[k]);
        BOOST_TEST(markers[k] == 1, "child " << k << " marker seen " << markers[k] << " times");
    }
    BOOST_TEST(out_of_order == 0);
    std::vector<std::int64_t> everything = parent_got;
    everything.insert(everything.end(), taken.begin(), taken.end());
    std::sort(everything.begin(), everything.end());
    const bool exactly_once = static_cast<std::int64_t>(everything.size()) == total &&
                              std::adjacent_find(everything.begin(), everything.end()) ==
                                  everything.end() &&
                              (total == 0 || (everything.front() == 0 && everything.back() == total - 1));
    BOOST_TEST(exactly_once, everything.size() << " items received of " << total << " put");
    q.close();
    q.join_thread();
}

// ---- Process children and the exit flush -----------------------------------------------------

BOOST_AUTO_TEST_CASE(process_child_flushes_its_backlog_before_exit, *utf::timeout(40)) {
    // Q16 / README (unbounded puts never block): a child puts more than the ring holds and its
    // target returns; the child stays alive until its backlog is in the ring, and the parent gets
    // every item.
    constexpr int n = 100;
    Queue<std::string> q(0, small_ring);
    shared_array<std::atomic<int>> target_returned(1);
    Process p([&] {
        child_setup();
        for (int i = 0; i < n; ++i) q.put(pattern_string(1024, static_cast<std::uint64_t>(i)));
        target_returned[0].store(1);
    });
    p.start();
    process_guard guard{p};
    BOOST_REQUIRE(eventually([&] { return target_returned[0].load() == 1; }, 10s));
    std::this_thread::sleep_for(200ms);
    BOOST_TEST(p.is_alive());   // still flushing: nobody has read yet
    for (int i = 0; i < n; ++i) {
        std::string s;
        try {
            s = q.get(true, 10s);
        } catch (const shmq::empty_error&) {
            BOOST_ERROR("timed out waiting for item " << i);
            break;
        }
        BOOST_TEST(matches_pattern(s, static_cast<std::uint64_t>(i)), "item " << i);
    }
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
    BOOST_CHECK_THROW(q.get(true, 100ms), shmq::empty_error);
}

BOOST_AUTO_TEST_CASE(process_child_with_cancel_join_thread_exits_promptly) {
    // Q15: after cancel_join_thread() the child exits without waiting for a reader; what reached
    // the ring arrives whole and in order, the rest is lost, and no get hangs on a partial item.
    constexpr int n = 100;
    Queue<std::string> q(0, small_ring);
    Process p([&] {
        child_setup();
        for (int i = 0; i < n; ++i) q.put(pattern_string(1024, static_cast<std::uint64_t>(i)));
        q.cancel_join_thread();
    });
    p.start();
    process_guard guard{p};
    BOOST_TEST(p.join(5s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
    int got = 0;
    for (;;) {
        std::string s;
        try {
            s = q.get(true, 200ms);
        } catch (const shmq::empty_error&) {
            break;
        }
        BOOST_TEST(matches_pattern(s, static_cast<std::uint64_t>(got)), "item " << got);
        if (++got > n) break;
    }
    BOOST_TEST(got >= 1);   // the first items went straight into the ring
    BOOST_TEST(got < n);    // the backlog was dropped
}

BOOST_AUTO_TEST_CASE(process_child_large_item_flushed_before_exit, *utf::timeout(40)) {
    // One item four times the ring, put by a child whose target returns at once: the exit flush
    // streams all of it to a reader that comes later.
    constexpr std::size_t ring = 4096;
    Queue<std::string> q(0, shmq::options{.capacity = ring});
    Process p([&] {
        child_setup();
        q.put(pattern_string(4 * ring, 77));
    });
    p.start();
    process_guard guard{p};
    std::this_thread::sleep_for(200ms);
    BOOST_TEST(p.is_alive());
    const std::string s = q.get(true, 10s);
    BOOST_TEST(s.size() == 4 * ring);
    BOOST_TEST(matches_pattern(s, 77));
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
}

namespace {

/// Makes this process use the queue's locks once, as any real program has by the time it forks
/// (shmq caches the caller's pid on first use; a fork must not let a child inherit it).
template <class Q, class V> void prime(Q& q, const V& v) {
    q.put(v);
    (void)q.get(true, 5s);
}

/// In a child (so that a hang fails the case rather than the suite): get(true, timeout) on q
/// must throw empty_error within timeout + 1 s. Returns the child's exit code.
template <class Q> int child_get_times_out(Q& q, seconds_d timeout) {
    auto reader = queue_child([&]() -> int {
        stopwatch sw;
        try {
            (void)q.get(true, timeout);
            return child_bad_value;   // a torn or abandoned item was delivered
        } catch (const shmq::empty_error&) {
        }
        return sw.seconds() < timeout.count() + 1.0 ? child_ok : child_timed_out_get;
    }, static_cast<unsigned>(timeout.count() + 4));
    return reader.wait(timeout + 8s);
}

} // namespace

BOOST_AUTO_TEST_CASE(child_cancelled_mid_stream_leaves_no_partial_item) {
    // Q15 [verified in Python: the parent's get(timeout=0.2) then hung on a truncated frame]: a
    // child cancels the flush and exits while its feeder is streaming an item four times the ring
    // that nobody reads. A timed get must not hang or return a torn item, and the queue keeps
    // working.
    constexpr std::size_t ring = 4096;
    Queue<std::string> q(0, shmq::options{.capacity = ring});
    prime(q, std::string("prime"));
    Process p([&] {
        child_setup();
        q.put(pattern_string(4 * ring, 6));
        std::this_thread::sleep_for(100ms);   // the feeder has filled the ring and waits
        q.cancel_join_thread();
    });
    p.start();
    process_guard guard{p};
    BOOST_TEST(p.join(5s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
    // The first pieces are in the ring, but their writer is gone: they are no message, so the
    // queue is empty (issue 7 A.8: ready means a whole message or a live stream).
    BOOST_TEST(q.empty());
    BOOST_TEST(child_get_times_out(q, 300ms) == child_ok);
    q.put("after");
    std::string s;
    BOOST_CHECK_NO_THROW(s = q.get(true, 3s));
    BOOST_TEST(s == "after");
    q.cancel_join_thread();   // if "after" is still stuck in our backlog, do not wait for it
}

BOOST_AUTO_TEST_CASE(child_forked_after_close_can_use_the_queue) {
    // Q13/Q17: close() is this process's declaration; Python resets the flag in a forked child
    // (Queue._after_fork -> _reset: _closed = False), and the README says a child may use every
    // queue it inherited.
    Queue<int> q;
    q.close();
    auto child = queue_child([&]() -> int {
        try {
            q.put(1);
            (void)q.get(true, 5s);
        } catch (const shmq::closed_error&) {
            return child_wrong_error;
        }
        q.put(2);
        return child_ok;
    });
    BOOST_TEST(child.wait(20s) == child_ok, "(" << child_wrong_error << ": closed_error in the child)");
    BOOST_TEST(q.qsize() == 1u);
}

BOOST_AUTO_TEST_CASE(cancel_join_thread_is_per_process, *utf::timeout(40)) {
    // Q15/Q17: cancel_join_thread() is this process's choice (Python resets _joincancelled in a
    // forked child): a child of a cancelling parent still flushes its own backlog at exit.
    constexpr int n = 20;
    Queue<std::string> q(0, small_ring);
    q.cancel_join_thread();
    Process p([&] {
        child_setup();
        for (int i = 0; i < n; ++i) q.put(pattern_string(1024, static_cast<std::uint64_t>(i)));
    });
    p.start();
    process_guard guard{p};
    int got = 0;
    for (; got < n; ++got) {
        std::string s;
        try {
            s = q.get(true, 3s);
        } catch (const shmq::empty_error&) {
            break;
        }
        BOOST_TEST(matches_pattern(s, static_cast<std::uint64_t>(got)), "item " << got);
    }
    BOOST_TEST(got == n, "got " << got << " of " << n << " items");
    BOOST_TEST(p.join(10s));
    BOOST_TEST(p.exitcode() == std::optional<int>(0));
}

// ---- a participant dies (README: death is survivable) -----------------------------------------

BOOST_AUTO_TEST_CASE(consumer_killed_while_blocked_in_get) {
    // Q19 is implementation-defined in Python (the lock stays taken); the README (death is
    // survivable) asks that survivors neither hang nor lose anything: a consumer killed while it
    // waits in get() (holding the reader lease) does not stop the next get.
    Queue<int> q;
    prime(q, 0);
    auto consumer = queue_child([&]() -> int {
        try {
            (void)q.get(true, 20s);
        } catch (...) {
        }
        return child_bad_value;
    });
    std::this_thread::sleep_for(200ms);   // it is waiting inside get()
    consumer.kill();
    BOOST_TEST(consumer.wait(5s) == -SIGKILL);
    q.put(1);
    q.put(2);
    int a = 0, b = 0;
    BOOST_CHECK_NO_THROW(a = q.get(true, 2s));
    BOOST_CHECK_NO_THROW(b = q.get(true, 2s));
    BOOST_TEST(a == 1);
    BOOST_TEST(b == 2);
}

BOOST_AUTO_TEST_CASE(process_child_killed_while_blocked_in_get) {
    // The same with a shmq::Process child.
    Queue<int> q;
    prime(q, 0);
    Process p([&] {
        child_setup();
        try {
            (void)q.get(true, 20s);
        } catch (...) {
        }
    });
    p.start();
    process_guard guard{p};
    std::this_thread::sleep_for(200ms);
    p.kill();
    BOOST_TEST(p.join(5s));
    BOOST_TEST(p.exitcode() == std::optional<int>(-SIGKILL));
    q.put(1);
    int a = 0;
    BOOST_CHECK_NO_THROW(a = q.get(true, 2s));
    BOOST_TEST(a == 1);
}

BOOST_AUTO_TEST_CASE(writer_killed_mid_message_costs_only_that_message) {
    // A producer killed while streaming an item larger than the ring (a bounded queue: the put
    // streams in the caller): no consumer sees a torn item, a timed get returns on time, and the
    // next producer's item arrives.
    constexpr std::size_t ring = 4096;
    Queue<std::string> q(10, shmq::options{.capacity = ring});
    prime(q, std::string("prime"));
    auto writer = queue_child([&]() -> int {
        q.put(pattern_string(4 * ring, 8), true, 20s);
        return child_ok;
    });
    BOOST_REQUIRE(eventually([&] { return !q.empty(); }));
    std::this_thread::sleep_for(100ms);   // first pieces in, the writer waits for room
    writer.kill();
    BOOST_TEST(writer.wait(5s) == -SIGKILL);
    BOOST_TEST(child_get_times_out(q, 500ms) == child_ok);
    BOOST_CHECK_NO_THROW(q.put("next", true, 2s));   // takes over the dead writer's lease
    std::string s;
    BOOST_CHECK_NO_THROW(s = q.get(true, 2s));
    BOOST_TEST(s == "next");
}

BOOST_AUTO_TEST_CASE(reader_killed_mid_message_costs_only_that_message) {
    // A consumer killed half-way through an item larger than the ring: that item is lost, the
    // writer finishes it, and the next item reaches the next consumer whole.
    constexpr std::size_t ring = 4096;
    Queue<std::string> q(10, shmq::options{.capacity = ring});
    prime(q, std::string("prime"));
    auto writer = queue_child([&]() -> int {
        q.put(pattern_string(4 * ring, 10), true, 20s);
        q.put("next", true, 20s);
        return child_ok;
    });
    BOOST_REQUIRE(eventually([&] { return !q.empty(); }));
    std::this_thread::sleep_for(100ms);
    BOOST_REQUIRE(::kill(writer.pid(), SIGSTOP) == 0);   // the reader will run dry mid-item
    auto reader = queue_child([&]() -> int {
        try {
            (void)q.get(true, 20s);
        } catch (...) {
        }
        return child_bad_value;
    });
    std::this_thread::sleep_for(300ms);   // it has taken the first pieces and waits for more
    reader.kill();
    BOOST_TEST(reader.wait(5s) == -SIGKILL);
    BOOST_REQUIRE(::kill(writer.pid(), SIGCONT) == 0);
    std::string s;
    BOOST_CHECK_NO_THROW(s = q.get(true, 3s));
    BOOST_TEST(s == "next");
    BOOST_TEST(writer.wait(5s) == child_ok);
    BOOST_TEST(q.empty());
}
