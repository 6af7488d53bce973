// SPDX-License-Identifier: BSL-1.0
// Named Queue, SimpleQueue and JoinableQueue: create/open/remove for unrelated processes (README:
// Named objects, Guarantees; issue #3 item 3). A process that only knows the name opens the queue;
// create is exclusive; open checks the name, the kind, the T fingerprint and the header (a
// corrupted header or ring gives broken_error, never a wild read); remove leaves nothing in
// /dev/shm while attached handles keep working; options.mode is applied exactly; maxsize and the
// capacity survive open.
//
// Every name is unique (test_fixtures' unique_name with this file's prefix) and removed by an
// shm_remover, and a global fixture removes whatever this process's names left behind even when a
// case is cut short. Children report by exit code under a watchdog; every get has a timeout.
#define BOOST_TEST_MODULE named_queue
#include <boost/test/unit_test.hpp>

#include "queue_fixtures.hpp"

#include <shmq/joinable_queue.hpp>
#include <shmq/queue.hpp>
#include <shmq/simple_queue.hpp>

#include "layout.hpp"    // private: the header fields the corruption tests overwrite
#include "segment.hpp"   // private: maps a segment to corrupt its ring

#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace std::chrono_literals;
using namespace shmq::test;
using shmq::JoinableQueue;
using shmq::Queue;
using shmq::SimpleQueue;

namespace {

constexpr std::string_view prefix = "qnamed";

/// This process's name prefix ("qnamed-<pid>-"), so the global cleanup touches only our names.
std::string own_prefix() { return std::string(prefix) + "-" + std::to_string(::getpid()) + "-"; }

/// Removes every /dev/shm/shmq.<own_prefix>* entry when the module ends, even after a case was
/// cut short by a Boost.Test timeout (which skips the case's destructors).
struct remove_leftovers {
    remove_leftovers() = default;
    ~remove_leftovers() {
        const std::string start = "shmq." + own_prefix();
        std::vector<std::string> found;
        if (DIR* d = ::opendir("/dev/shm")) {
            while (dirent* e = ::readdir(d))
                if (std::string_view(e->d_name).substr(0, start.size()) == start) found.emplace_back(e->d_name);
            ::closedir(d);
        }
        for (const auto& n : found) ::shm_unlink(("/" + n).c_str());
    }
};

/// A fresh name, registered for removal.
std::string fresh(shm_remover& cleanup) { return cleanup.add(unique_name(prefix)); }

bool exists_in_dev_shm(const std::string& name) { return !shm_entries(name).empty(); }

/// Restores the umask on scope exit.
struct umask_guard {
    mode_t old;
    explicit umask_guard(mode_t m) : old(::umask(m)) {}
    ~umask_guard() { ::umask(old); }
};

/// The segment header of /dev/shm/shmq.<name>, mapped read-write, to corrupt it by hand.
class mapped_header {
public:
    explicit mapped_header(const std::string& name) {
        fd_ = ::shm_open(("/shmq." + name).c_str(), O_RDWR, 0);
        BOOST_REQUIRE_MESSAGE(fd_ >= 0, "shm_open: " << std::strerror(errno));
        void* p = ::mmap(nullptr, sizeof(shmq::detail::segment_header), PROT_READ | PROT_WRITE,
                         MAP_SHARED, fd_, 0);
        BOOST_REQUIRE(p != MAP_FAILED);
        h_ = static_cast<shmq::detail::segment_header*>(p);
    }
    ~mapped_header() {
        if (h_) ::munmap(h_, sizeof(shmq::detail::segment_header));
        if (fd_ >= 0) ::close(fd_);
    }
    shmq::detail::segment_header* operator->() const { return h_; }
    int fd() const { return fd_; }

private:
    int fd_ = -1;
    shmq::detail::segment_header* h_ = nullptr;
};

} // namespace

BOOST_TEST_GLOBAL_FIXTURE(remove_leftovers);

// ---- the contract every backend keeps (named_queue_contract.ipp) -----------------------------

// Not in an anonymous namespace: the contract cases (an included file) derive from it.
struct shm_names {
    shm_remover cleanup;
    std::string fresh() { return ::fresh(cleanup); }
    std::string missing() { return unique_name(prefix); }
};

BOOST_FIXTURE_TEST_SUITE(contract, shm_names)
#include "named_queue_contract.ipp"
BOOST_AUTO_TEST_SUITE_END()

// ---- what /dev/shm shows ----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_named_queue_is_in_dev_shm_until_removed) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    {
        auto q = Queue<std::string>::create(name);
        BOOST_TEST(exists_in_dev_shm(name));
    }
    BOOST_TEST(exists_in_dev_shm(name));   // outlives its handles
    const std::string missing = unique_name(prefix);
    BOOST_CHECK_THROW(Queue<int>::open(missing), shmq::not_found_error);
    BOOST_TEST(!exists_in_dev_shm(missing));   // open never creates
    BOOST_TEST(Queue<std::string>::remove(name));
    BOOST_TEST(!exists_in_dev_shm(name));
}

// ---- bad names -------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(bad_names_are_value_error) {
    const std::string too_long(201, 'n');
    const std::string with_nul("ab\0cd", 5);
    for (const std::string& bad : {std::string(), std::string("a/b"), std::string("/lead"),
                                   std::string("trail/"), too_long, with_nul}) {
        BOOST_TEST_CONTEXT("name '" << bad.substr(0, 20) << "' (" << bad.size() << " chars)") {
            BOOST_CHECK_THROW(Queue<int>::create(bad), shmq::value_error);
            BOOST_CHECK_THROW(Queue<int>::open(bad), shmq::value_error);
            BOOST_CHECK_THROW(SimpleQueue<int>::create(bad), shmq::value_error);
            BOOST_CHECK_THROW(SimpleQueue<int>::open(bad), shmq::value_error);
            BOOST_CHECK_THROW(JoinableQueue<int>::create(bad), shmq::value_error);
            BOOST_CHECK_THROW(JoinableQueue<int>::open(bad), shmq::value_error);
            bool removed = true;
            BOOST_CHECK_NO_THROW(removed = Queue<int>::remove(bad));
            BOOST_TEST(!removed);
        }
    }
}

BOOST_AUTO_TEST_CASE(a_name_of_200_characters_is_fine) {
    shm_remover cleanup;
    std::string name = unique_name(prefix);
    name.resize(200, 'x');
    cleanup.add(name);
    auto q = Queue<int>::create(name);
    q.put(200);
    BOOST_TEST(Queue<int>::open(name).get(true, 1s) == 200);
    BOOST_TEST(Queue<int>::remove(name));
}

// ---- remove ----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(remove_true_then_false_and_handles_keep_working) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    auto q = Queue<int>::create(name);
    auto other = Queue<int>::open(name);
    BOOST_TEST(exists_in_dev_shm(name));
    BOOST_TEST(Queue<int>::remove(name));
    BOOST_TEST(!exists_in_dev_shm(name));
    BOOST_TEST(shm_entries(name).empty());
    BOOST_TEST(!Queue<int>::remove(name));
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::not_found_error);
    q.put(1);
    BOOST_TEST(other.get(true, 1s) == 1);
    // The name is free again: a new create makes a new, empty queue.
    auto fresh_q = Queue<int>::create(name);
    BOOST_TEST(fresh_q.empty());
    q.put(2);
    BOOST_TEST(fresh_q.empty());
    BOOST_TEST(other.get(true, 1s) == 2);
    BOOST_TEST(SimpleQueue<int>::remove(name));   // remove does not care about T or kind
}

BOOST_AUTO_TEST_CASE(handles_in_other_processes_keep_working_after_remove) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    auto q = Queue<int>::create(name);
    go_signal removed;
    shared_array<std::atomic<int>> opened(1);
    auto child = queue_child([&]() -> int {
        auto mine = Queue<int>::open(name);
        opened[0].store(1);
        if (!removed.wait(20s)) return child_no_go;
        int v;
        try {
            v = mine.get(true, 10s);
        } catch (const shmq::empty_error&) {
            return child_timed_out_get;
        }
        mine.put(v + 1);
        return child_ok;
    });
    const auto give_up = clk::now() + 10s;   // let the child open before the name goes
    while (opened[0].load() == 0 && clk::now() < give_up) std::this_thread::sleep_for(1ms);
    BOOST_REQUIRE(opened[0].load() == 1);
    BOOST_TEST(Queue<int>::remove(name));
    q.put(41);
    removed.go();
    BOOST_TEST(child.wait(20s) == child_ok);
    BOOST_TEST(q.get(true, 5s) == 42);
    BOOST_TEST(!exists_in_dev_shm(name));
}

// ---- options survive -------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(mode_is_applied_exactly_regardless_of_umask) {
    shm_remover cleanup;
    umask_guard um(077);
    for (unsigned mode : {0640u, 0600u, 0666u, 0400u}) {
        const std::string name = fresh(cleanup);
        auto q = Queue<int>::create(name, 0, shmq::options{.mode = mode});
        struct stat st {};
        BOOST_REQUIRE(::stat(shm_path(name).c_str(), &st) == 0);
        BOOST_TEST((st.st_mode & 07777) == mode, std::oct << "mode 0" << mode << " gave 0" << (st.st_mode & 07777));
    }
    const std::string name = fresh(cleanup);
    auto q = SimpleQueue<int>::create(name);
    struct stat st {};
    BOOST_REQUIRE(::stat(shm_path(name).c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 07777) == 0600u);   // the default
}

BOOST_AUTO_TEST_CASE(capacity_survives_open_and_large_messages_cross) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    auto q = Queue<std::string>::create(name, 0, shmq::options{.capacity = 4096});
    auto child = queue_child([&]() -> int {
        auto mine = Queue<std::string>::open(name);
        std::string s;
        try {
            s = mine.get(true, 10s);
        } catch (const shmq::empty_error&) {
            return child_timed_out_get;
        }
        SHMQ_CHILD_CHECK(s.size() == 3 * 4096 && matches_pattern(s, 3), child_bad_value);
        return child_ok;
    });
    q.put(pattern_string(3 * 4096, 3));   // streamed through the 4 KiB ring
    BOOST_TEST(child.wait(20s) == child_ok);
}

// ---- corrupted segments ----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(corrupted_magic_is_broken_error) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    { auto q = Queue<int>::create(name); }
    {
        mapped_header h(name);
        h->magic ^= 0x1;
    }
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::broken_error);
    BOOST_TEST(Queue<int>::remove(name));   // a broken segment can still be removed
}

BOOST_AUTO_TEST_CASE(corrupted_version_is_broken_error) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    { auto q = Queue<int>::create(name); }
    {
        mapped_header h(name);
        h->version += 1;
    }
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::broken_error);
}

BOOST_AUTO_TEST_CASE(corrupted_capacity_is_broken_error) {
    shm_remover cleanup;
    for (std::uint64_t bad : {std::uint64_t{8192}, std::uint64_t{2048}, std::uint64_t{3000},
                              std::uint64_t{0}, std::uint64_t{1} << 40, ~std::uint64_t{0}}) {
        BOOST_TEST_CONTEXT("capacity " << bad) {
            const std::string name = fresh(cleanup);
            { auto q = Queue<int>::create(name, 0, shmq::options{.capacity = 4096}); }
            {
                mapped_header h(name);
                h->capacity = bad;
            }
            BOOST_CHECK_THROW(Queue<int>::open(name), shmq::broken_error);
        }
    }
}

BOOST_AUTO_TEST_CASE(other_corrupted_header_fields_are_broken_error) {
    shm_remover cleanup;
    auto corrupt = [&](auto&& poke) {
        const std::string name = fresh(cleanup);
        { auto q = Queue<int>::create(name, 3); }
        {
            mapped_header h(name);
            poke(h);
        }
        BOOST_CHECK_THROW(Queue<int>::open(name), shmq::broken_error);
    };
    corrupt([](mapped_header& h) { h->total_size += 4096; });
    corrupt([](mapped_header& h) { h->total_size = 1; });
    corrupt([](mapped_header& h) { h->channels = 0; });
    corrupt([](mapped_header& h) { h->channels = 1000; });
    corrupt([](mapped_header& h) { h->maxsize = -5; });
    corrupt([](mapped_header& h) { h->maxsize = INT64_MAX; });
}

BOOST_AUTO_TEST_CASE(truncated_segment_is_broken_error) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    { auto q = Queue<int>::create(name); }
    {
        mapped_header h(name);
        BOOST_REQUIRE(::ftruncate(h.fd(), 4096) == 0);   // the header stays, the rings go
    }
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::broken_error);
}

BOOST_AUTO_TEST_CASE(segment_its_creator_never_initialized_is_broken_error) {
    // A creator that died between shm_open and writing the header leaves an empty object:
    // open waits a little for it, then refuses (rather than hanging or reading garbage).
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    const int fd = ::shm_open(("/shmq." + name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    BOOST_REQUIRE(fd >= 0);
    ::close(fd);
    stopwatch sw;
    BOOST_CHECK_THROW(Queue<int>::open(name), shmq::broken_error);
    BOOST_TEST(sw.seconds() < 10.0);
}

BOOST_AUTO_TEST_CASE(corrupted_ring_positions_are_broken_error_on_get) {
    // doc/design.md §2-§3: every value read from shared memory is validated before it is used as a
    // size or an offset. A tail far ahead of head must give broken_error, not a read past the ring.
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    auto q = Queue<int>::create(name, 0, shmq::options{.capacity = 4096});
    q.put(1);
    {
        auto seg = shmq::detail::segment::open_named(name, shmq::detail::segment_kind::queue,
                                                     shmq::detail::type_fingerprint<int>());
        auto& ch = seg->channel(0);
        ch.tail.store(ch.head.load() + (std::uint64_t{1} << 20));   // 1 MiB "published" in 4 KiB
    }
    BOOST_CHECK_THROW(q.get(true, 1s), shmq::broken_error);
}

BOOST_AUTO_TEST_CASE(corrupted_record_header_is_broken_error_on_get) {
    shm_remover cleanup;
    const std::string name = fresh(cleanup);
    auto q = Queue<int>::create(name, 0, shmq::options{.capacity = 4096});
    q.put(1);
    {
        auto seg = shmq::detail::segment::open_named(name, shmq::detail::segment_kind::queue,
                                                     shmq::detail::type_fingerprint<int>());
        std::uint32_t huge = 1u << 30;   // the record's payload size: far beyond the ring
        std::memcpy(seg->ring(0), &huge, sizeof huge);
    }
    BOOST_CHECK_THROW(q.get(true, 1s), shmq::broken_error);
}
