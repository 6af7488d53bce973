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
//  * a forked child writing through an inherited biased handle does not write beside its parent.
// Children report through exit codes, and every wait is bounded.
#define BOOST_TEST_MODULE bias
#include <boost/test/unit_test.hpp>

#include <shmq/connection.hpp>

#include "test_fixtures.hpp"
#include "test_hook.hpp"

#include <atomic>
#include <cstdint>
#include <cstring>
#include <span>
#include <thread>
#include <vector>

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
};

shared_counts* counts = nullptr;

void count_hook(const char* point) {
    if (!std::strcmp(point, "channel.bias.granted")) counts->granted.fetch_add(1);
    else if (!std::strcmp(point, "channel.bias.inside")) {
        const std::uint64_t n = counts->inside.fetch_add(1) + 1;
        if (counts->kill_at.load() != 0 && n == counts->kill_at.load()) ::raise(SIGKILL);
    } else if (!std::strcmp(point, "bias.revoking")) counts->revoking.fetch_add(1);
    else if (!std::strcmp(point, "bias.revoked")) counts->revoked.fetch_add(1);
    else if (!std::strcmp(point, "channel.bias.multi")) counts->multi.fetch_add(1);
    else if (!std::strcmp(point, "bias.membarrier")) counts->membarriers.fetch_add(1);
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

/// Reads `total` messages from writers 0..ids-1 (each writer's in order, from 0), each read
/// bounded; returns how many arrived as they should (== total when all is well).
std::size_t read_tagged(Connection& r, std::size_t total, std::uint32_t ids,
                        std::chrono::seconds bound = 10s) {
    std::vector<std::uint32_t> next(ids, 0);
    std::vector<std::byte> buf(8192);
    for (std::size_t got = 0; got < total; ++got) {
        if (!r.poll(bound)) {
            BOOST_TEST_MESSAGE("no message within the bound after " << got);
            return got;
        }
        const std::size_t n = r.recv_bytes_into(buf);
        std::uint32_t seq = 0;
        const std::uint32_t id = untag(std::span<const std::byte>(buf.data(), n), seq);
        if (id >= ids || seq != next[id]) {
            BOOST_TEST_MESSAGE("message " << got << ": writer " << id << " seq " << seq);
            return got;
        }
        ++next[id];
    }
    return total;
}

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
        counts->sent.store(i);
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

#endif // __SANITIZE_THREAD__

BOOST_AUTO_TEST_SUITE_END()
