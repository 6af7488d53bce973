// SPDX-License-Identifier: BSL-1.0
// The biased writer lease (lib/bias.hpp, doc/design.md §5): a writer alone keeps the lease and
// writes without locked instructions, and whoever else needs it takes it away. Each case tries to
// break a guarantee through it:
//  * a biased writer's messages all arrive, whole, in order, exactly once;
//  * a second writer process takes the bias away (it is revoked, not waited out), and both
//    writers' messages arrive, each writer's in order;
//  * a holder killed inside a message (between its mark and its publication) publishes nothing,
//    and the next writer takes the lease over;
//  * an idle holder that lives on does not keep another writer waiting;
//  * a reader that goes to sleep while the writer is biased is woken by each message;
//  * a second thread on the holder's handle ends the bias for good, and nothing is lost;
//  * a forked child writing through an inherited biased handle does not write beside its parent;
//  * where membarrier fails (test_hook::refuse_membarrier, as in a sandbox that refuses it after
//    the writer registered): a reader sleeps beside a biased writer in short blind slices and
//    misses nothing, through recv, poll and both wait()s; a second writer waits for the holder to
//    give its bias up or die (the timeout, while the holder idles, is the designed behaviour).
// Children report through exit codes, and every wait is bounded.
#define BOOST_TEST_MODULE bias
#include <boost/test/unit_test.hpp>

#include <shmq/connection.hpp>
#include <shmq/queue.hpp>
#include <shmq/wait.hpp>

#include "test_fixtures.hpp"
#include "test_hook.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

namespace utf = boost::unit_test;
using namespace std::chrono_literals;
using namespace shmq::test;
using shmq::Connection;
using shmq::Pipe;
namespace sd = shmq::detail;

namespace {

/// Counters and flags every process of a test sees: an anonymous shared page.
struct shared_counts {
    std::atomic<std::uint64_t> granted, inside, revoking, revoked, multi, membarriers, given_up;
    std::atomic<std::uint64_t> kill_at;      // kill self at this "inside" count (0: never)
    std::atomic<std::uint64_t> sent;         // messages a writer completed
    std::atomic<std::uint32_t> stop;         // a writer that sends "until told" stops
    std::atomic<std::uint32_t> b_started;    // another_writer_takes_the_bias_away: B's first is in
    // a_holder_stopped_before_its_mark_finds_its_bias_gone: who is who, and the steps.
    std::atomic<std::int32_t> holder_pid, stop_at, holder_stopped, other_inside;
    // Reaches in a process whose membarrier is refused (test_hook::refuse_membarrier).
    std::atomic<std::uint64_t> refused_membarriers, refused_inside, refused_revoked;
    // The steps of the cases where membarrier fails.
    std::atomic<std::uint32_t> ready, go, b_timed_out;
};

shared_counts* counts = nullptr;

void count_hook(const char* point) {
    if (!std::strcmp(point, "channel.bias.granted")) counts->granted.fetch_add(1);
    else if (!std::strcmp(point, "channel.bias.inside")) {
        if (sd::test_hook::membarrier_refused()) counts->refused_inside.fetch_add(1);
        const std::uint64_t n = counts->inside.fetch_add(1) + 1;
        if (counts->kill_at.load() != 0 && n == counts->kill_at.load()) ::raise(SIGKILL);
    } else if (!std::strcmp(point, "bias.revoking")) counts->revoking.fetch_add(1);
    else if (!std::strcmp(point, "bias.revoked")) {
        counts->revoked.fetch_add(1);
        if (sd::test_hook::membarrier_refused()) counts->refused_revoked.fetch_add(1);
    }
    else if (!std::strcmp(point, "channel.bias.multi")) counts->multi.fetch_add(1);
    else if (!std::strcmp(point, "bias.membarrier")) {
        counts->membarriers.fetch_add(1);
        if (sd::test_hook::membarrier_refused()) counts->refused_membarriers.fetch_add(1);
    }
    else if (!std::strcmp(point, "channel.bias.given_up")) counts->given_up.fetch_add(1);
    if (counts->stop_at.load() == 0) return;
    const bool holder = ::getpid() == counts->holder_pid.load();
    if (holder && !std::strcmp(point, "channel.bias.checked") &&
        counts->inside.load() + 1 == static_cast<std::uint64_t>(counts->stop_at.load())) {
        // Stopped after finding its bias and before its mark, until the other writer has taken
        // the lease and is inside its own message; then on, while that one still is.
        counts->holder_stopped.store(1);
        for (int i = 0; i < 5000 && !counts->other_inside.load(); ++i) ::usleep(1000);
        ::usleep(20000);
    } else if (!holder && !std::strcmp(point, "channel.write.copied") && counts->holder_stopped.load() &&
               !counts->other_inside.load()) {
        counts->other_inside.store(1);
        ::usleep(100000);   // inside its message, holding the lease
    }
}

/// Installs the counting hook over a fresh shared page for the test's scope.
struct counted {
    counted() {
        void* p = ::mmap(nullptr, sizeof(shared_counts), PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        BOOST_REQUIRE(p != MAP_FAILED);
        counts = new (p) shared_counts{};
        sd::test_hook::install(count_hook);
    }
    ~counted() {
        sd::test_hook::install(nullptr);
        ::munmap(counts, sizeof(shared_counts));
        counts = nullptr;
    }
};

/// A 64-byte message tagged with the writer's id and its sequence number, the rest a pattern
/// of both, so that a torn or mixed message shows.
std::vector<std::byte> tagged(std::uint32_t id, std::uint32_t seq, std::size_t size = 64) {
    std::vector<std::byte> m(size);
    std::memcpy(m.data(), &id, 4);
    std::memcpy(m.data() + 4, &seq, 4);
    for (std::size_t i = 8; i < size; ++i) m[i] = static_cast<std::byte>((id * 131 + seq + i) & 0xff);
    return m;
}

/// Checks one received message; returns its writer id and sets seq, or returns ~0u if torn.
std::uint32_t untag(std::span<const std::byte> m, std::uint32_t& seq) {
    if (m.size() < 8) return ~0u;
    std::uint32_t id;
    std::memcpy(&id, m.data(), 4);
    std::memcpy(&seq, m.data() + 4, 4);
    for (std::size_t i = 8; i < m.size(); ++i)
        if (m[i] != static_cast<std::byte>((id * 131 + seq + i) & 0xff)) return ~0u;
    return id;
}

/// Each writer's next sequence number, across reads: a message is good when it is whole and the
/// next of its writer (and, given `from`, of that writer).
struct tagged_order {
    explicit tagged_order(std::uint32_t ids) : next(ids, 0) {}
    bool take(std::span<const std::byte> m, std::uint32_t from = ~0u) {
        std::uint32_t seq = 0;
        const std::uint32_t id = untag(m, seq);
        if (id >= next.size() || seq != next[id] || (from != ~0u && id != from)) {
            BOOST_TEST_MESSAGE("after " << taken << " good: writer " << id << " seq " << seq);
            return false;
        }
        ++next[id];
        ++taken;
        return true;
    }
    /// Receives one message from r (waiting at most `bound`) and takes it; false if none came.
    bool recv(Connection& r, std::chrono::milliseconds bound, std::uint32_t from = ~0u) {
        if (!r.poll(bound)) {
            BOOST_TEST_MESSAGE("no message within the bound after " << taken << " good");
            return false;
        }
        const std::size_t n = r.recv_bytes_into(buf);
        return take(std::span<const std::byte>(buf.data(), n), from);
    }
    std::vector<std::uint32_t> next;
    std::size_t taken = 0;
    std::vector<std::byte> buf = std::vector<std::byte>(8192);
};

/// Reads `count` more messages into `order`, each read bounded; returns how many arrived as they
/// should (== count when all is well).
std::size_t read_more(Connection& r, tagged_order& order, std::size_t count,
                      std::chrono::milliseconds bound = 10s, std::uint32_t from = ~0u) {
    for (std::size_t got = 0; got < count; ++got)
        if (!order.recv(r, bound, from)) return got;
    return count;
}

/// Reads `total` messages from writers 0..ids-1 (each writer's in order, from 0), each read
/// bounded; returns how many arrived as they should (== total when all is well).
std::size_t read_tagged(Connection& r, std::size_t total, std::uint32_t ids,
                        std::chrono::milliseconds bound = 10s) {
    tagged_order order(ids);
    return read_more(r, order, total, bound);
}

/// Waits at most `bound` for `done()`; false if it never became true.
template <class Done> bool eventually(Done done, std::chrono::milliseconds bound = 20s) {
    const auto until = clk::now() + bound;
    while (!done()) {
        if (clk::now() >= until) return false;
        std::this_thread::sleep_for(200us);
    }
    return true;
}

/// membarrier_all() fails in this process for the scope (test_hook::refuse_membarrier).
struct refusing_membarrier {
    refusing_membarrier() noexcept { sd::test_hook::refuse_membarrier(true); }
    ~refusing_membarrier() { sd::test_hook::refuse_membarrier(false); }
    refusing_membarrier(const refusing_membarrier&) = delete;
    refusing_membarrier& operator=(const refusing_membarrier&) = delete;
};

/// A writer child, once biased by its messages alone (`grants` grants: one per channel): its
/// membarrier fails from now on if `refuse`; it says it is ready, and idles, biased, until told
/// to go on. Returns 0 then, 2 if it was not biased, 3 if never told (its exit code).
int biased_and_idle_until_go(std::uint64_t grants, bool refuse) {
    if (counts->granted.load() < grants) return 2;
    if (refuse) sd::test_hook::refuse_membarrier(true);
    counts->ready.store(1);
    for (int k = 0; k < 30000 && !counts->go.load(); ++k) std::this_thread::sleep_for(1ms);
    return counts->go.load() ? 0 : 3;
}

/// The test's side of biased_and_idle_until_go: waits until the writer is ready, or fails with
/// its exit code.
void wait_until_ready(scoped_child& writer) {
    BOOST_REQUIRE(eventually([&] { return counts->ready.load() || writer.exited(); }));
    if (!counts->ready.load()) BOOST_FAIL("the writer ended early, exit code " << writer.wait(1s));
}

/// How many membarriers a reader that cannot fence tries, at least, while it waits 300 ms beside
/// an idle biased writer. Each blind sleep lasts at most bias_blind_sleep (200 µs) and each wake
/// seals again, so ~1000 is what an idle machine gives; 30 still holds when a loaded one wakes
/// the reader 10 ms late each time, and a reader that slept whole slices (20 ms) stays below 16.
constexpr std::uint64_t blind_wakes_in_300ms = 30;
/// And at most: one look per blind slice is 1500 in 300 ms; twice that allows for the reader's
/// own first and last looks and for wait()'s confirming poll of each ready object.
constexpr std::uint64_t blind_wakes_at_most_in_300ms = 3000;

} // namespace

BOOST_AUTO_TEST_SUITE(bias)

// Threads only (CI runs this file under ThreadSanitizer, which cannot follow the forking cases
// below): a writer thread biased, a second writer thread on the same handle that takes the bias
// away, and a reader thread that sleeps now and then beside the biased writer.
BOOST_AUTO_TEST_CASE(threads_of_one_process_share_a_biased_handle, *utf::timeout(120)) {
    counted c;
    auto [r, w] = Pipe(false);
    constexpr std::uint32_t n = 20000;
    std::atomic<bool> go{false};
    std::thread t1([&, &w = w] {
        for (std::uint32_t i = 0; i < n; ++i) {
            w.send_bytes(tagged(0, i));
            if (i == n / 2) go.store(true);
            if (i % 2000 == 0) std::this_thread::sleep_for(1ms);   // the reader sleeps
        }
    });
    std::thread t2([&, &w = w] {
        while (!go.load()) std::this_thread::yield();
        for (std::uint32_t i = 0; i < n; ++i) w.send_bytes(tagged(1, i));
    });
    std::size_t got = 0;
    std::thread reader([&, &r = r] { got = read_tagged(r, 2 * n, 2); });
    t1.join();
    t2.join();
    reader.join();
    BOOST_TEST(got == 2 * n);
    BOOST_TEST(counts->granted.load() >= 1u);
    BOOST_TEST(counts->multi.load() >= 1u);
}

#ifndef __SANITIZE_THREAD__

BOOST_AUTO_TEST_CASE(a_lone_writer_is_biased_and_every_message_arrives, *utf::timeout(60)) {
    counted c;
    auto [r, w] = Pipe(false);
    constexpr std::uint32_t n = 20000;
    scoped_child writer([&, &w = w, &r = r] {
        r.close();
        for (std::uint32_t i = 0; i < n; ++i) w.send_bytes(tagged(0, i));
        return 0;
    });
    w.close();
    BOOST_TEST(read_tagged(r, n, 1) == n);
    BOOST_TEST(writer.wait(20s) == 0);
    BOOST_TEST(counts->granted.load() >= 1u);
    // Some messages went without the lease. Not "most": a reader that sleeps now and then takes
    // the bias away each time (seal), and under the sanitizer it sleeps often.
    BOOST_TEST(counts->inside.load() >= 1u);
    BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
}

BOOST_AUTO_TEST_CASE(another_writer_takes_the_bias_away, *utf::timeout(60)) {
    counted c;
    auto [r, w] = Pipe(false);
    constexpr std::uint32_t n_b = 5000;
    // A writes 400 messages alone (nobody reads yet, so no reader sleeps and seals it: it is
    // biased after 256) and waits, biased and idle, for B's first message, which must take the
    // bias away; then both write until B has written all of its messages, and only then
    // does this process read.
    scoped_child a([&, &w = w, &r = r] {
        r.close();
        std::uint32_t i = 0;
        while (i < 400) w.send_bytes(tagged(0, i++));
        counts->sent.store(i);
        for (int k = 0; k < 10000 && !counts->b_started.load(); ++k) std::this_thread::sleep_for(1ms);
        while (!counts->stop.load()) w.send_bytes(tagged(0, i++));
        // B is done: A writes alone again and is biased again, after B moved tail. Its copy of
        // tail (channel::bias_tail_) must come from this grant, not from its first bias.
        const std::uint64_t before = counts->granted.load();
        for (int k = 0; k < 1000; ++k) w.send_bytes(tagged(0, i++));
        counts->sent.store(i);
        if (counts->granted.load() <= before) return 2;
        return counts->granted.load() >= 1 ? 0 : 1;
    });
    scoped_child b([&, &w = w, &r = r] {
        r.close();
        watchdog dog(30);
        while (counts->sent.load() == 0) std::this_thread::sleep_for(1ms);
        for (std::uint32_t i = 0; i < n_b; ++i) {
            w.send_bytes(tagged(1, i));
            if (i == 0) counts->b_started.store(1);   // A may go on
        }
        counts->stop.store(1);
        return 0;
    });
    w.close();
    while (counts->b_started.load() == 0) std::this_thread::sleep_for(1ms);
    // Read until both are done: A's count is known only at the end.
    std::vector<std::uint32_t> next(2, 0);
    std::vector<std::byte> buf(256);
    std::size_t bad = 0;
    for (;;) {
        if (!r.poll(10s)) { ++bad; break; }
        std::size_t len;
        try {
            len = r.recv_bytes_into(buf);
        } catch (const shmq::eof_error&) {
            break;
        }
        std::uint32_t seq = 0;
        const std::uint32_t id = untag(std::span<const std::byte>(buf.data(), len), seq);
        if (id > 1 || seq != next[id]) { ++bad; break; }
        ++next[id];
    }
    BOOST_TEST(a.wait(20s) == 0);
    BOOST_TEST(b.wait(20s) == 0);
    BOOST_TEST(bad == 0u);
    BOOST_TEST(next[1] == n_b);
    BOOST_TEST(next[0] == counts->sent.load());
    BOOST_TEST(counts->revoking.load() >= 1u);   // B took A's bias away
}

BOOST_AUTO_TEST_CASE(a_holder_killed_inside_a_message_is_taken_over, *utf::timeout(60)) {
    counted c;
    auto [r, w] = Pipe(false);
    // Well past the grant (256 plain messages): killed inside its 1000th biased message, after
    // its mark and before its publication.
    counts->kill_at.store(1000);
    scoped_child a([&, &w = w] {
        for (std::uint32_t i = 0; i < 100000; ++i) {
            w.send_bytes(tagged(0, i));
            counts->sent.store(i + 1);
        }
        return 0;   // not reached: killed by its hook
    });
    // Read concurrently so that A never waits for room.
    std::vector<std::uint32_t> next(2, 0);
    std::vector<std::byte> buf(256);
    bool ok = true;
    auto take = [&](std::uint32_t want_id) {
        std::size_t len = r.recv_bytes_into(buf);
        std::uint32_t seq = 0;
        const std::uint32_t id = untag(std::span<const std::byte>(buf.data(), len), seq);
        if (id > 1 || seq != next[id] || (want_id != ~0u && id != want_id)) ok = false;
        else ++next[id];
    };
    while (!a.exited() && ok)
        if (r.poll(100ms)) take(~0u);
    BOOST_TEST(a.wait(5s) == -SIGKILL);
    counts->kill_at.store(0);
    while (ok && r.poll(0s)) take(0);
    // Everything A completed arrived, and its message in flight did not.
    BOOST_TEST(ok);
    BOOST_TEST(next[0] == counts->sent.load());
    // The lease word still says A holds a bias with its mark up: the next writer (this process)
    // must take it over (A is dead), bounded by the test's timeout.
    w.send_bytes(tagged(1, 0));
    BOOST_TEST(r.poll(5s));
    take(1);
    BOOST_TEST(ok);
    BOOST_TEST(next[1] == 1u);
    BOOST_TEST(counts->revoked.load() >= 1u);
}

BOOST_AUTO_TEST_CASE(a_holder_stopped_before_its_mark_finds_its_bias_gone, *utf::timeout(60)) {
    counted c;
    auto [r, w] = Pipe(false);
    constexpr std::uint32_t n = 2000;
    counts->stop_at.store(1000);   // A's 1000th biased message
    scoped_child a([&, &w = w, &r = r] {
        r.close();
        counts->holder_pid.store(::getpid());
        for (std::uint32_t i = 0; i < n; ++i) w.send_bytes(tagged(0, i));
        return 0;
    });
    // B: once A is stopped, one message, which takes A's bias away and stops inside itself
    // (the hook above) while A goes on: A must find its bias gone and wait for the lease.
    scoped_child b([&, &w = w, &r = r] {
        r.close();
        watchdog dog(30);
        while (!counts->holder_stopped.load()) std::this_thread::sleep_for(1ms);
        w.send_bytes(tagged(1, 0));
        return 0;
    });
    w.close();
    // Read only afterwards (all of it fits the ring): a reader that slept meanwhile would seal
    // A's bias, and A would not be biased at its 1000th message.
    BOOST_TEST(a.wait(20s) == 0);
    BOOST_TEST(b.wait(20s) == 0);
    BOOST_TEST(read_tagged(r, n + 1, 2) == n + 1);
    BOOST_TEST(counts->other_inside.load() == 1);
    BOOST_TEST(counts->revoking.load() >= 1u);
}

BOOST_AUTO_TEST_CASE(an_idle_holder_does_not_keep_another_writer_waiting, *utf::timeout(60)) {
    counted c;
    auto [r, w] = Pipe(false);
    constexpr std::uint32_t n = 2000;
    // Nobody reads while A writes, so no reader sleeps and seals the bias meanwhile.
    scoped_child a([&, &w = w] {
        for (std::uint32_t i = 0; i < n; ++i) w.send_bytes(tagged(0, i));
        counts->sent.store(n);
        // Alive and idle, still biased, until told.
        for (int i = 0; i < 30000 && !counts->stop.load(); ++i) std::this_thread::sleep_for(1ms);
        return counts->stop.load() ? 0 : 1;
    });
    while (counts->sent.load() == 0 && !a.exited()) std::this_thread::sleep_for(1ms);
    BOOST_TEST(counts->granted.load() >= 1u);
    BOOST_TEST(!a.exited());
    w.send_bytes(tagged(1, 0));   // revokes the idle bias: no waiting for A
    BOOST_TEST(read_tagged(r, n, 1) == n);
    std::vector<std::byte> buf(256);
    BOOST_TEST(r.poll(5s));
    std::uint32_t seq = 0;
    BOOST_TEST(untag(std::span<const std::byte>(buf.data(), r.recv_bytes_into(buf)), seq) == 1u);
    BOOST_TEST(!a.exited());   // it was alive all along
    counts->stop.store(1);
    BOOST_TEST(a.wait(10s) == 0);
    BOOST_TEST(counts->revoking.load() >= 1u);
    BOOST_TEST(counts->revoked.load() >= 1u);   // by this process, not given up by A
}

BOOST_AUTO_TEST_CASE(a_sleeping_reader_is_woken_by_a_biased_writer, *utf::timeout(120)) {
    counted c;
    auto [r, w] = Pipe(false);
    // Bursts long enough to earn the bias, then single messages with pauses long enough for the
    // reader to go to sleep (its spin lasts 50 µs) while the writer is biased.
    constexpr std::uint32_t bursts = 20, burst = 600, singles = 5;
    scoped_child a([&, &w = w, &r = r] {
        r.close();
        std::uint32_t i = 0;
        for (std::uint32_t b = 0; b < bursts; ++b) {
            for (std::uint32_t k = 0; k < burst; ++k) w.send_bytes(tagged(0, i++));
            for (std::uint32_t k = 0; k < singles; ++k) {
                std::this_thread::sleep_for(2ms);
                w.send_bytes(tagged(0, i++));
            }
        }
        return 0;
    });
    w.close();
    const std::uint32_t total = bursts * (burst + singles);
    BOOST_TEST(read_tagged(r, total, 1, 5s) == total);
    BOOST_TEST(a.wait(20s) == 0);
    BOOST_TEST(counts->granted.load() >= 1u);
    // The reader slept beside a biased writer and sealed it (membarrier) at least once.
    BOOST_TEST(counts->membarriers.load() >= 1u);
}

BOOST_AUTO_TEST_CASE(a_second_thread_on_the_handle_ends_the_bias, *utf::timeout(60)) {
    counted c;
    auto [r, w] = Pipe(false);
    constexpr std::uint32_t n = 20000;
    scoped_child a([&, &w = w, &r = r] {
        r.close();
        std::atomic<bool> go{false};
        std::thread t1([&] {
            for (std::uint32_t i = 0; i < n; ++i) {
                w.send_bytes(tagged(0, i));
                if (i == n / 4) go.store(true);   // biased by now
            }
        });
        std::thread t2([&] {
            while (!go.load()) std::this_thread::yield();
            for (std::uint32_t i = 0; i < n; ++i) w.send_bytes(tagged(1, i));
        });
        t1.join();
        t2.join();
        return 0;
    });
    w.close();
    BOOST_TEST(read_tagged(r, 2 * n, 2) == 2 * n);
    BOOST_TEST(a.wait(20s) == 0);
    BOOST_TEST(counts->granted.load() >= 1u);
    BOOST_TEST(counts->multi.load() >= 1u);
}

BOOST_AUTO_TEST_CASE(a_forked_child_does_not_write_beside_its_biased_parent, *utf::timeout(60)) {
    counted c;
    auto [r, w] = Pipe(false);
    constexpr std::uint32_t n = 20000;
    // The reader is a child; this process is the biased writer and forks a second writer that
    // inherits its handle (and the handle's belief that it holds a bias).
    scoped_child reader([&, &w = w, &r = r] {
        w.close();
        return read_tagged(r, 2 * n, 2) == 2 * n ? 0 : 1;
    });
    r.close();
    for (std::uint32_t i = 0; i < n / 2; ++i) w.send_bytes(tagged(0, i));
    BOOST_TEST(counts->granted.load() >= 1u);
    scoped_child writer([&, &w = w] {
        for (std::uint32_t i = 0; i < n; ++i) w.send_bytes(tagged(1, i));
        return 0;
    });
    for (std::uint32_t i = n / 2; i < n; ++i) w.send_bytes(tagged(0, i));
    BOOST_TEST(writer.wait(20s) == 0);
    BOOST_TEST(reader.wait(20s) == 0);
}

// Membarrier fails in both processes (test_hook::refuse_membarrier), as for a reader in a sandbox
// that refuses the call beside a writer that registered: the reader's seal() fails, so it sleeps
// in blind slices (bias_blind_sleep) beside the biased writer and must still miss nothing.
BOOST_AUTO_TEST_CASE(a_reader_that_cannot_fence_sleeps_blind_and_misses_nothing, *utf::timeout(120)) {
    counted c;
    auto [r, w] = Pipe(false);
    // 300 messages alone (nobody reads, so nothing seals it: biased after 256), then bursts with
    // gaps long enough for the reader to go to sleep; each burst of 100 after the reader's seal
    // makes the writer biased again two bursts later (256 plain messages in a row).
    constexpr std::uint32_t first = 300, bursts = 30, burst = 100;
    scoped_child a([&, &w = w, &r = r] {
        r.close();
        std::uint32_t i = 0;
        while (i < first) w.send_bytes(tagged(0, i++));
        if (const int e = biased_and_idle_until_go(1, true)) return e;
        for (std::uint32_t b = 0; b < bursts; ++b) {
            std::this_thread::sleep_for(3ms);   // the reader goes to sleep
            for (std::uint32_t k = 0; k < burst; ++k) w.send_bytes(tagged(0, i++));
        }
        return 0;
    });
    w.close();
    wait_until_ready(a);
    refusing_membarrier refused;
    tagged_order order(1);
    BOOST_TEST(read_more(r, order, first) == first);
    // The writer is biased and idle and the ring empty: the reader's seal fails at each sleep,
    // so it sleeps in blind slices, each followed by another seal, and reports nothing.
    const std::uint64_t before = counts->refused_membarriers.load();
    stopwatch sw;
    BOOST_TEST(!r.poll(300ms));
    const std::uint64_t blind = counts->refused_membarriers.load() - before;
    BOOST_TEST_MESSAGE(blind << " failed seals in " << sw.millis() << " ms beside an idle bias");
    BOOST_TEST(blind >= blind_wakes_in_300ms);
    counts->go.store(1);
    BOOST_TEST(read_more(r, order, bursts * burst, 5s) == bursts * burst);
    BOOST_TEST(a.wait(20s) == 0);
    BOOST_CHECK_THROW(r.recv_bytes(), shmq::eof_error);
    // Biased again between the reader's seals, and writing biased while nobody could fence it.
    BOOST_TEST(counts->granted.load() >= 2u);
    BOOST_TEST(counts->refused_inside.load() >= 1u);
    BOOST_TEST(counts->refused_membarriers.load() > before + blind);   // seals during the bursts
}

namespace {

/// How a_waiting_reader_sees_every_message waits.
enum class waiting { poll, wait_connections, wait_objects };
const char* name_of(waiting how) {
    switch (how) {
    case waiting::poll: return "Connection::poll";
    case waiting::wait_connections: return "wait(Connection*...)";
    case waiting::wait_objects: return "wait(waitable...)";
    }
    return "?";
}

/// One writer child biased on two Pipes; this process waits on them `how`, with its membarrier
/// working or `refused`, and must see every message of each, whole and in order.
void a_waiting_reader_sees_every_message(waiting how, bool refused) {
    counted c;
    auto [r0, w0] = Pipe(false);
    auto [r1, w1] = Pipe(false);
    Connection* rs[2] = {&r0, &r1};
    // 300 messages alone on each (biased after 256), then bursts into one Pipe and the other in
    // turn, with gaps in which the reader goes to sleep.
    constexpr std::uint32_t first = 300, bursts = 24, burst = 60;
    scoped_child a([&] {
        r0.close();
        r1.close();
        Connection* ws[2] = {&w0, &w1};
        std::uint32_t next[2] = {0, 0};
        for (std::uint32_t k = 0; k < 2; ++k)
            while (next[k] < first) ws[k]->send_bytes(tagged(k, next[k]++));
        if (const int e = biased_and_idle_until_go(2, refused)) return e;   // biased on both
        for (std::uint32_t b = 0; b < bursts; ++b) {
            std::this_thread::sleep_for(3ms);
            const std::uint32_t k = b % 2;
            for (std::uint32_t i = 0; i < burst; ++i) ws[k]->send_bytes(tagged(k, next[k]++));
        }
        return 0;
    });
    w0.close();
    w1.close();
    wait_until_ready(a);
    std::optional<refusing_membarrier> refusal;
    if (refused) refusal.emplace();
    tagged_order order(2);
    for (std::uint32_t k = 0; k < 2; ++k) BOOST_TEST(read_more(*rs[k], order, first, 10s, k) == first);

    // Waits on the Pipes that have messages to come; returns the ready ones' indices.
    const std::uint32_t total = first + bursts / 2 * burst;   // per Pipe
    auto wait_ready = [&](std::chrono::milliseconds bound) {
        std::vector<std::uint32_t> ready;
        if (how == waiting::wait_connections) {
            std::vector<Connection*> cs;
            for (std::uint32_t k = 0; k < 2; ++k)
                if (order.next[k] < total) cs.push_back(rs[k]);
            for (Connection* c : shmq::wait(std::span<Connection* const>(cs), bound))
                ready.push_back(c == rs[0] ? 0 : 1);
        } else {
            std::vector<shmq::waitable> ws;
            for (std::uint32_t k = 0; k < 2; ++k)
                if (order.next[k] < total) ws.emplace_back(*rs[k]);
            for (const shmq::waitable& x : shmq::wait(std::span<const shmq::waitable>(ws), bound))
                ready.push_back(x.is(r0) ? 0 : 1);
        }
        return ready;
    };

    // The writer is biased on both and idle: a wait with nothing to come seals its biases.
    const std::uint64_t before = counts->membarriers.load();
    const std::uint64_t before_refused = counts->refused_membarriers.load();
    stopwatch sw;
    const bool none = how == waiting::poll ? !r0.poll(300ms) : wait_ready(300ms).empty();
    const double ms = sw.millis();
    const std::uint64_t seals = counts->membarriers.load() - before;
    BOOST_TEST_MESSAGE(name_of(how) << (refused ? ", refused: " : ": ") << seals << " seals in " << ms
                                    << " ms beside an idle bias");
    BOOST_TEST(none);
    BOOST_TEST(ms >= 290.0);   // nothing came: no early return (a poller's spurious wake is not one)
    BOOST_TEST(seals >= 1u);
    BOOST_TEST(counts->refused_membarriers.load() - before_refused == (refused ? seals : 0));
    // A reader that cannot fence must look again at least every blind slice, sealing each Pipe
    // it waits on each time: poll and wait(Connection*...) sleep in blind slices, and the
    // poller behind wait(waitable...) sets its timer to the same period. No more often than
    // that either: the poller once said readable at once instead, and an idle bias then kept
    // wait() spinning (14,000-34,000 seals in these 300 ms).
    if (refused) {
        BOOST_TEST(seals / (how == waiting::poll ? 1 : 2) >= blind_wakes_in_300ms);
        BOOST_TEST(seals / (how == waiting::poll ? 1 : 2) <= blind_wakes_at_most_in_300ms);
    }

    counts->go.store(1);
    if (how == waiting::poll) {
        // The bursts' order is known: wait on the Pipe the next one comes through.
        for (std::uint32_t j = 0; j < bursts * burst; ++j) {
            const std::uint32_t k = j / burst % 2;
            if (!order.recv(*rs[k], 5s, k)) break;
        }
    } else {
        while (order.next[0] < total || order.next[1] < total) {
            const auto ready = wait_ready(5s);
            if (ready.empty()) {
                BOOST_ERROR("nothing ready within 5 s after " << order.taken << " messages");
                break;
            }
            bool ok = true;
            for (std::uint32_t k : ready) ok = order.recv(*rs[k], 0ms, k) && ok;
            if (!ok) break;
        }
    }
    BOOST_TEST(order.next[0] == total);
    BOOST_TEST(order.next[1] == total);
    BOOST_TEST(a.wait(20s) == 0);
    BOOST_TEST(counts->granted.load() >= 2u);
}

} // namespace

// The waits that are not a recv: Connection::poll with a timeout and both forms of shmq::wait
// (the second through fileno()'s poller), beside a biased writer, with membarrier working.
BOOST_AUTO_TEST_CASE(a_waiting_reader_is_woken_by_biased_writers, *utf::timeout(120)) {
    for (waiting how : {waiting::poll, waiting::wait_connections, waiting::wait_objects})
        BOOST_TEST_CONTEXT(name_of(how)) { a_waiting_reader_sees_every_message(how, false); }
}

// As above, with membarrier failing in both processes: the waits sleep blind (the poller on a
// timer of the same period) and still see every message, without spinning.
BOOST_AUTO_TEST_CASE(a_waiting_reader_that_cannot_fence_misses_nothing, *utf::timeout(120)) {
    for (waiting how : {waiting::poll, waiting::wait_connections, waiting::wait_objects})
        BOOST_TEST_CONTEXT(name_of(how)) { a_waiting_reader_sees_every_message(how, true); }
}

// A poller that cannot fence and cannot get a timer either (its process at the fd limit) turns
// its fileno() readable at once, a spurious wake-up, rather than let an event loop sleep without
// a look (wait() confirms readiness, so it loops instead of returning). The reader is the child (it exhausts its descriptors and refuses membarrier);
// this process is the biased writer, idle until the child has waited, then sends one more.
BOOST_AUTO_TEST_CASE(a_poller_without_a_timer_says_readable_rather_than_sleep_blind, *utf::timeout(60)) {
    counted c;
    auto [r, w] = Pipe(false);
    constexpr std::uint32_t first = 300;
    enum : int { no_go = 10, missing = 11, bad = 12, not_exhausted = 13, slept = 14, last_missing = 15 };
    scoped_child reader([&, &r = r, &w = w]() -> int {
        w.close();
        for (int k = 0; k < 20000 && !counts->ready.load(); ++k) std::this_thread::sleep_for(1ms);
        if (!counts->ready.load()) return no_go;
        std::vector<std::byte> buf(8192);
        auto next_is = [&](std::uint32_t seq) -> int {
            if (!r.poll(5s)) return missing;
            const std::size_t n = r.recv_bytes_into(buf);
            const auto want = tagged(0, seq);
            return n == want.size() && std::equal(want.begin(), want.end(), buf.begin()) ? 0 : bad;
        };
        for (std::uint32_t i = 0; i < first; ++i)
            if (const int e = next_is(i)) return e;
        // The poller exists (membarrier still works here), then neither the call nor a new
        // descriptor is to be had; a look (poll) re-arms it.
        const int fd = r.fileno();
        sd::test_hook::refuse_membarrier(true);
        const rlimit old = exhaust_fds();
        if (!at_fd_limit()) return not_exhausted;
        if (r.poll(0ms)) return bad;   // nothing there yet
        pollfd p{fd, POLLIN, 0};
        const auto t0 = clk::now();
        const int n = ::poll(&p, 1, 2000);
        const bool early = n == 1 && clk::now() - t0 < 1s;
        ::setrlimit(RLIMIT_NOFILE, &old);
        if (!early) return slept;
        counts->go.store(1);
        if (next_is(first) != 0) return last_missing;
        return 0;
    });
    r.close();
    for (std::uint32_t i = 0; i < first; ++i) w.send_bytes(tagged(0, i));
    BOOST_REQUIRE(counts->granted.load() >= 1u);   // biased, and nobody read meanwhile
    counts->ready.store(1);
    BOOST_REQUIRE(eventually([&] { return counts->go.load() || reader.exited(); }));
    if (counts->go.load()) w.send_bytes(tagged(0, first));
    BOOST_TEST(reader.wait(20s) == 0);
}

namespace {

/// A writer B whose membarrier fails against a holder A biased and idle (a bounded Queue, so that
/// B's put has a timeout). Without the barrier B cannot tell whether A is inside a message, so its
/// revoker waits until A gives the bias up itself (A's next put sees the revoke bit) or dies
/// (bias.cpp, revoke(); doc/design.md §5): while A idles, B's put times out, by design. Then A
/// puts again (or, `kill_holder`, is killed) while B waits, and B's put must succeed. Nothing of
/// either writer may be lost or come twice (B's timed-out put included).
void a_writer_that_cannot_fence_waits_for_the_holder(bool kill_holder) {
    counted c;
    shmq::Queue<std::string> q(100000);
    constexpr std::uint32_t first = 300, more = 100, n_b = 500;
    auto put = [&](std::uint32_t id, std::uint32_t seq, std::chrono::milliseconds bound) {
        const auto m = tagged(id, seq);
        q.put(std::string(reinterpret_cast<const char*>(m.data()), m.size()), true, bound);
    };
    scoped_child a([&] {
        std::uint32_t i = 0;
        while (i < first) put(0, i++, 10s);   // nobody reads: biased after 256
        counts->sent.store(i);
        if (const int e = biased_and_idle_until_go(1, false)) return e;
        while (i < first + more) put(0, i++, 10s);
        counts->sent.store(i);
        return 0;
    });
    scoped_child b([&] {
        watchdog dog(60);
        sd::test_hook::refuse_membarrier(true);
        while (!counts->ready.load()) std::this_thread::sleep_for(1ms);
        stopwatch sw;
        try {
            put(1, 0, 200ms);
            return 4;   // took the lease from a live idle holder it could not fence
        } catch (const shmq::full_error&) {
        }
        if (sw.millis() < 190) return 5;   // it gave up before its timeout
        counts->b_timed_out.store(1);
        try {
            put(1, 0, 20s);   // the same message again: the timed-out one was not written
        } catch (const shmq::full_error&) {
            return 6;
        }
        for (std::uint32_t i = 1; i < n_b; ++i) put(1, i, 10s);
        return 0;
    });
    BOOST_REQUIRE(eventually([&] { return counts->b_timed_out.load() || b.exited() || a.exited(); }));
    if (!counts->b_timed_out.load())
        BOOST_FAIL("exit codes: A " << a.wait(1s) << ", B " << b.wait(1s));
    BOOST_TEST(!a.exited());   // idle and alive while B timed out
    BOOST_TEST(counts->refused_membarriers.load() >= 1u);   // B's revoker could not fence
    // B's second put is in its revoker (its second revoke), waiting for A.
    BOOST_REQUIRE(eventually([&] { return counts->revoking.load() >= 2 || b.exited(); }));
    std::this_thread::sleep_for(50ms);
    BOOST_TEST(!b.exited());   // still waiting: A neither wrote nor died
    if (kill_holder) {
        a.kill();
        BOOST_TEST(a.wait(10s) == -SIGKILL);
    } else {
        counts->go.store(1);
        BOOST_TEST(a.wait(20s) == 0);
    }
    BOOST_TEST(b.wait(30s) == 0);
    // Each writer's messages, whole, once and in order.
    const std::uint64_t n_a = counts->sent.load();
    BOOST_TEST(n_a == (kill_holder ? first : first + more));
    tagged_order order(2);
    for (std::uint64_t n = 0; n < n_a + n_b; ++n) {
        std::string m;
        try {
            m = q.get(true, 5s);
        } catch (const shmq::empty_error&) {
            BOOST_ERROR("no item within 5 s after " << n);
            break;
        }
        if (!order.take(std::span<const std::byte>(reinterpret_cast<const std::byte*>(m.data()), m.size())))
            break;
    }
    BOOST_TEST(order.next[0] == n_a);
    BOOST_TEST(order.next[1] == n_b);
    BOOST_CHECK_THROW(q.get(true, 100ms), shmq::empty_error);   // and nothing twice
    // B's revoker frees the word only when A is dead: it cannot tell whether a live A is inside
    // a message. (Later, A may revoke a bias B earned meanwhile: A can fence.)
    if (kill_holder) {
        BOOST_TEST(counts->refused_revoked.load() >= 1u);
    } else {
        BOOST_TEST(counts->given_up.load() >= 1u);   // A gave its bias up at its next put
        BOOST_TEST(counts->refused_revoked.load() == 0u);
    }
}

} // namespace

BOOST_AUTO_TEST_CASE(a_writer_that_cannot_fence_waits_for_the_holders_next_write, *utf::timeout(120)) {
    a_writer_that_cannot_fence_waits_for_the_holder(false);
}

BOOST_AUTO_TEST_CASE(a_writer_that_cannot_fence_takes_over_from_a_dead_holder, *utf::timeout(120)) {
    a_writer_that_cannot_fence_waits_for_the_holder(true);
}

#endif // __SANITIZE_THREAD__

BOOST_AUTO_TEST_SUITE_END()
