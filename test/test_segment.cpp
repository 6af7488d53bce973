// SPDX-License-Identifier: BSL-1.0
// Segments in hostile and exhausted environments (issue 7, A.6 and A.11): a full /dev/shm, a
// segment truncated while mapped, objects planted by another user or behind a symlink, a feeder
// thread that meets a corrupt ring or cannot start, and mappings that fail.
//
// Anything that could crash (SIGBUS, SIGABRT) runs in a forked child that reports by exit code
// under a watchdog; every name is removed by an shm_remover; tests that need root (a private
// mount namespace, chown) skip with a message when they cannot run.
#define BOOST_TEST_MODULE segment
#include <boost/test/unit_test.hpp>

#include "queue_fixtures.hpp"

#include <shmq/queue.hpp>
#include <shmq/simple_queue.hpp>

#include "layout.hpp"   // private: channel positions the corruption test overwrites
#include "ring.hpp"

#include <cstddef>
#include <cstring>
#include <string>
#include <thread>
#include <typeinfo>

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace std::chrono_literals;
using namespace shmq::test;
using shmq::Queue;

namespace {

// Exit codes of this file's children (1..199).
enum : int {
    code_no_error = 30,        // the call that had to fail succeeded
    code_wrong_type = 31,      // it failed with an exception that is not the expected one
    code_setup = 32,           // the child could not set the scene up (skip, not a failure)
    code_not_shmq = 33,        // a non-shmq exception escaped
};

bool is_root() { return ::geteuid() == 0; }

/// The size of a file, or -1.
off_t file_size(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

/// Truncates /dev/shm/shmq.<name> behind shmq's back.
bool truncate_shm(const std::string& name, off_t size) {
    return ::truncate(shm_path(name).c_str(), size) == 0;
}

/// Runs f and classifies what it threw: 0 for an E, code_no_error when nothing was thrown,
/// code_wrong_type for another shmq::error, code_not_shmq for anything else.
template <class E, class F> int expect_throw(F&& f) {
    try {
        f();
    } catch (const E&) {
        return 0;
    } catch (const std::runtime_error& e) {
        // Only a shmq::error that is not an E reaches here as one (E may be shmq::error itself).
        if (!dynamic_cast<const shmq::error*>(&e)) {
            std::fprintf(stderr, "child %d: non-shmq exception (%s): %s\n", (int)::getpid(),
                         typeid(e).name(), e.what());
            return code_not_shmq;
        }
        std::fprintf(stderr, "child %d: wrong shmq error (%s): %s\n", (int)::getpid(),
                     typeid(e).name(), e.what());
        return code_wrong_type;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "child %d: non-shmq exception (%s): %s\n", (int)::getpid(),
                     typeid(e).name(), e.what());
        return code_not_shmq;
    } catch (...) {
        return code_not_shmq;
    }
    return code_no_error;
}

/// Caps this process's address space at its current size plus `headroom` bytes.
bool limit_address_space(std::size_t headroom) {
    long pages = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld", &pages) != 1) pages = 0;
        std::fclose(f);
    }
    if (pages <= 0) return false;
    rlimit rl{};
    rl.rlim_cur = rl.rlim_max = static_cast<rlim_t>(pages) * ::sysconf(_SC_PAGESIZE) + headroom;
    return ::setrlimit(RLIMIT_AS, &rl) == 0;
}

} // namespace

// ---- /dev/shm full ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(full_dev_shm_is_an_error_at_create_not_sigbus_later) {
    if (!is_root()) {
        BOOST_TEST_MESSAGE("skipped: needs root for a private mount namespace");
        return;
    }
    auto child = queue_child([]() -> int {
        if (::unshare(CLONE_NEWNS) != 0) return code_setup;
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return code_setup;
        if (::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=2m") != 0) return code_setup;
        // The tmpfs and everything in it vanish with this child's mount namespace.
        const std::string big = unique_name("segfull");
        shmq::options o;
        o.capacity = 8u << 20;
        int r = expect_throw<shmq::error>([&] {
            auto q = Queue<std::string>::create(big, 0, o);
            // Old behaviour: the pages are only found missing when touched.
            const std::string item(60000, 'x');
            for (int i = 0; i < 200; ++i) q.put_nowait(item);
        });
        if (r) return r;
        if (!shm_entries(big).empty()) return 40;   // a failed create leaves no name behind

        // Fill the tmpfs with a file, then even a small queue cannot be created.
        int fd = ::open("/dev/shm/filler", O_CREAT | O_WRONLY, 0600);
        if (fd < 0) return code_setup;
        std::vector<char> chunk(65536, 'f');
        while (::write(fd, chunk.data(), chunk.size()) > 0) {}
        ::close(fd);
        const std::string small = unique_name("segfull");
        r = expect_throw<shmq::error>([&] {
            shmq::options s;
            s.capacity = 4096;
            auto q = Queue<int>::create(small, 0, s);
            for (int i = 0; i < 100; ++i) q.put_nowait(i);
        });
        if (r) return 50 + r - code_no_error;
        return 0;
    });
    const int code = child.wait(30s);
    if (code == code_setup) {
        BOOST_TEST_MESSAGE("skipped: unshare/mount failed (no CAP_SYS_ADMIN?)");
        return;
    }
    BOOST_TEST(code == 0);
}

// ---- truncation ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(open_of_a_truncated_segment_is_broken_error) {
    const auto name = unique_name("segtrunc");
    shm_remover cleanup(name);
    shmq::options o;
    o.capacity = 64 * 1024;
    auto q = Queue<int>::create(name, 0, o);
    q.put(1);
    q.cancel_join_thread();
    // A child does the rest: this process's own mapping of the segment would fault too.
    auto child = queue_child([name]() -> int {
        if (!truncate_shm(name, 8192)) return code_setup;
        return expect_throw<shmq::broken_error>([&] { Queue<int>::open(name); });
    });
    BOOST_TEST(child.wait(20s) == 0);
}

BOOST_AUTO_TEST_CASE(truncated_while_mapped_gives_broken_error_not_sigbus) {
    const auto name = unique_name("segtrunc");
    shm_remover cleanup(name);
    shmq::options o;
    o.capacity = 64 * 1024;
    {
        auto q = Queue<int>::create(name, 0, o);
        for (int i = 0; i < 10; ++i) q.put(i);
    }
    auto child = queue_child([name]() -> int {
        auto q = Queue<int>::open(name);
        if (q.get(true, 1s) != 0) return 41;
        if (!truncate_shm(name, 4096)) return code_setup;
        if (int r = expect_throw<shmq::broken_error>([&] { q.get(true, 1s); })) return r;
        if (int r = expect_throw<shmq::broken_error>([&] { q.put(7); })) return 60 + r - code_no_error;
        if (int r = expect_throw<shmq::broken_error>([&] { (void)q.qsize(); })) return 70 + r - code_no_error;
        q.cancel_join_thread();
        return 0;
    });
    BOOST_TEST(child.wait(20s) == 0);
}

BOOST_AUTO_TEST_CASE(consumer_blocked_in_get_survives_truncation) {
    const auto name = unique_name("segtrunc");
    shm_remover cleanup(name);
    shmq::options o;
    o.capacity = 64 * 1024;
    { auto q = Queue<int>::create(name, 0, o); }
    go_signal go;
    auto child = queue_child([name, &go]() -> int {
        auto q = Queue<int>::open(name);
        go.go();
        // Blocked on the empty queue when the segment shrinks under it; bounded by the timeout.
        return expect_throw<shmq::broken_error>([&] { q.get(true, 10s); });
    });
    BOOST_REQUIRE(go.wait(10s));
    std::this_thread::sleep_for(200ms);
    BOOST_REQUIRE(truncate_shm(name, 0));
    BOOST_TEST(child.wait(20s) == 0);
}

// ---- planted objects -------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(open_refuses_a_segment_writable_by_others) {
    const auto name = unique_name("segplant");
    shm_remover cleanup(name);
    { auto q = Queue<int>::create(name); }
    BOOST_REQUIRE(::chmod(shm_path(name).c_str(), 0666) == 0);
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::permission_error);
    // Group-writable counts as writable by others.
    BOOST_REQUIRE(::chmod(shm_path(name).c_str(), 0620) == 0);
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::permission_error);
    // The caller may opt in.
    shmq::options trust;
    trust.trust_foreign = true;
    BOOST_CHECK_NO_THROW(Queue<int>::open(name, trust));
    // Readable by others is not a reason to refuse.
    BOOST_REQUIRE(::chmod(shm_path(name).c_str(), 0644) == 0);
    BOOST_CHECK_NO_THROW(Queue<int>::open(name));
}

BOOST_AUTO_TEST_CASE(open_refuses_a_segment_planted_by_another_user) {
    if (!is_root()) {
        BOOST_TEST_MESSAGE("skipped: needs root to chown a segment to another user");
        return;
    }
    const auto name = unique_name("segplant");
    shm_remover cleanup(name);
    { auto q = Queue<int>::create(name); }
    BOOST_REQUIRE(::chown(shm_path(name).c_str(), 65534, 65534) == 0);
    BOOST_REQUIRE(::chmod(shm_path(name).c_str(), 0666) == 0);
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::permission_error);
    // Owned by another user even with a private mode.
    BOOST_REQUIRE(::chmod(shm_path(name).c_str(), 0600) == 0);
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::permission_error);
    // Opted in, the planted queue opens and works (root may open another user's 0600 file).
    shmq::options trust;
    trust.trust_foreign = true;
    auto q = Queue<int>::open(name, trust);
    q.put(5);
    BOOST_TEST(q.get(true, 1s) == 5);
}

BOOST_AUTO_TEST_CASE(symlink_at_the_name_is_refused_on_create_and_open) {
    const auto target = unique_name("segplant");
    const auto name = unique_name("segplant");
    shm_remover cleanup(target);
    cleanup.add(name);
    { auto q = Queue<int>::create(target); }
    BOOST_REQUIRE(::symlink(("shmq." + target).c_str(), shm_path(name).c_str()) == 0);
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::permission_error);
    shmq::options trust;
    trust.trust_foreign = true;
    BOOST_CHECK_THROW(Queue<int>::open(name, trust), shmq::permission_error);
    BOOST_CHECK_THROW(Queue<int>::create(name), shmq::exists_error);
    struct stat st {};
    BOOST_TEST(::lstat(shm_path(name).c_str(), &st) == 0);   // the symlink is left alone
    BOOST_TEST(S_ISLNK(st.st_mode));
}

// ---- feeder errors ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(feeder_on_a_corrupt_ring_reports_broken_error_not_abort) {
    const auto name = unique_name("segfeed");
    shm_remover cleanup(name);
    auto child = scoped_child([name]() -> int {
        watchdog dog(20);
        shmq::options o;
        o.capacity = 4096;
        auto q = Queue<std::string>::create(name, 0, o);
        const std::string item(1000, 'i');
        for (int i = 0; i < 20; ++i) q.put(item);   // no reader: the ring fills, the rest waits
        // Corrupt the positions through a second mapping: head ahead of tail.
        int fd = ::open(shm_path(name).c_str(), O_RDWR);
        if (fd < 0) return code_setup;
        const off_t size = file_size(shm_path(name));
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ::close(fd);
        if (p == MAP_FAILED) return code_setup;
        auto* base = static_cast<std::byte*>(p);
        // The channel state follows header, registry and queue state, each 64-aligned.
        auto align = [](std::size_t v) { return (v + 63) & ~std::size_t{63}; };
        const std::size_t reg = align(sizeof(shmq::detail::segment_header));
        const std::size_t qs = align(reg + sizeof(shmq::detail::registry_state));
        const std::size_t chs = align(qs + sizeof(shmq::detail::queue_state));
        auto* ch = reinterpret_cast<shmq::detail::channel_state*>(base + chs);
        const auto tail = ch->tail.load();
        ch->head.store(shmq::detail::ring::advance(tail, 1024, 0));
        ::munmap(p, size);
        std::this_thread::sleep_for(300ms);   // the feeder meets it within a slice
        if (int r = expect_throw<shmq::broken_error>([&] { q.put(item); })) return r;
        if (int r = expect_throw<shmq::broken_error>([&] { (void)q.qsize(); })) return 60 + r - code_no_error;
        q.close();
        if (int r = expect_throw<shmq::broken_error>([&] { q.join_thread(); })) return 70 + r - code_no_error;
        return 0;
    });
    BOOST_TEST(child.wait(30s) == 0);
}

BOOST_AUTO_TEST_CASE(feeder_thread_start_failure_is_a_shmq_error) {
    auto child = scoped_child([]() -> int {
        watchdog dog(20);
        shmq::options o;
        o.capacity = 4096;
        Queue<std::string> q(0, o);
        const std::string item(1000, 'i');
        q.put(item);
        // A new thread needs an 8 MiB stack: with 2 MiB of headroom it cannot get one.
        if (!limit_address_space(2u << 20)) return code_setup;
        int r = expect_throw<shmq::error>([&] {
            for (int i = 0; i < 20; ++i) q.put(item);
        });
        q.cancel_join_thread();
        return r;
    });
    BOOST_TEST(child.wait(30s) == 0);
}

// ---- mapping failures ------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(mapping_failure_is_a_shmq_error) {
    const auto name = unique_name("segmap");
    shm_remover cleanup(name);
    shmq::options o;
    o.capacity = 64u << 20;
    { auto q = Queue<int>::create(name, 0, o); }
    auto child = scoped_child([name, o]() -> int {
        watchdog dog(20);
        if (!limit_address_space(16u << 20)) return code_setup;
        if (int r = expect_throw<shmq::error>([&] { Queue<int>::open(name); })) return r;
        const auto other = unique_name("segmap");
        int r = expect_throw<shmq::error>([&] { Queue<int>::create(other, 0, o); });
        remove_shm_entries(other);
        if (r) return 60 + r - code_no_error;
        if (int r2 = expect_throw<shmq::error>([&] { Queue<int> q(0, o); })) return 70 + r2 - code_no_error;
        return 0;
    });
    BOOST_TEST(child.wait(30s) == 0);
}
