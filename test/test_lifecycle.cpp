// SPDX-License-Identifier: BSL-1.0
// Named-object lifecycle (issue 11, item 4): every handle of a named queue is a registered holder
// from the first instant (the creator too); create() with options::if_exists (fail, open,
// replace_stale) and open_or_create; replacing a stale object after a SIGKILLed creator, and
// refusing while a live process holds it; an opener racing a replacement or a gc is sent to the
// new object or told it is gone; gc (lifecycle::collect) removes orphans and only orphans.
#define BOOST_TEST_MODULE lifecycle
#include <boost/test/unit_test.hpp>

#include <shmq/shmq.hpp>

#include "lifecycle.hpp"
#include "registry.hpp"
#include "segment.hpp"
#include "test_fixtures.hpp"

#include <optional>

#include <fcntl.h>
#include <sys/mman.h>

using namespace std::chrono_literals;
using namespace shmq::test;
namespace sd = shmq::detail;
namespace lc = shmq::detail::lifecycle;

namespace {

sd::lifecycle::judgement judge(const std::string& name) {
    auto s = sd::segment::inspect(name);   // read-only, no wait: what `shmq stat` sees
    return lc::judge(*s);
}

} // namespace

namespace shmq::detail::lifecycle {
std::ostream& operator<<(std::ostream& os, gc_result r) { return os << to_string(r); }
} // namespace shmq::detail::lifecycle

namespace {

bool holds(const lc::judgement& j, pid_t pid, sd::liveness state) {
    for (const auto& h : j.holders)
        if (h.who.pid == static_cast<std::uint32_t>(pid) && h.state == state) return true;
    return false;
}

// A child that opens (or creates) and holds `name` until the parent closes `release`.
class live_holder {
public:
    template <class Open> explicit live_holder(Open open) {
        int ready[2], release[2];
        BOOST_REQUIRE_EQUAL(::pipe(ready), 0);
        BOOST_REQUIRE_EQUAL(::pipe(release), 0);
        child_.emplace([=] {
            ::close(ready[0]);
            ::close(release[1]);
            watchdog dog(20);
            auto handle = open();
            char c = 1;
            if (::write(ready[1], &c, 1) != 1) return 3;
            while (::read(release[0], &c, 1) > 0) {}   // until the parent closes its end
            return 0;
        });
        ::close(ready[1]);
        ::close(release[0]);
        release_ = release[1];
        char c = 0;
        BOOST_REQUIRE_EQUAL(::read(ready[0], &c, 1), 1);
        ::close(ready[0]);
    }
    ~live_holder() { finish(); }
    pid_t pid() const { return child_->pid(); }
    int finish() {
        if (release_ >= 0) ::close(std::exchange(release_, -1));
        return child_->wait(10s);
    }

private:
    std::optional<scoped_child> child_;
    int release_ = -1;
};

} // namespace

BOOST_AUTO_TEST_CASE(every_queue_handle_is_a_holder, *boost::unit_test::timeout(60))
{
    const auto qn = unique_name("lcq"), sn = unique_name("lcs"), jn = unique_name("lcj");
    shm_remover cleanup;
    cleanup.add(qn); cleanup.add(sn); cleanup.add(jn);
    // The creator is a holder as soon as create() returns (registered before `ready`).
    auto q = shmq::Queue<int>::create(qn);
    auto sq = shmq::SimpleQueue<int>::create(sn);
    auto jq = shmq::JoinableQueue<int>::create(jn);
    for (const auto& n : {qn, sn, jn}) {
        auto j = judge(n);
        BOOST_TEST(j.tracked);
        BOOST_TEST(j.alive == 1u);
        BOOST_TEST(holds(j, ::getpid(), sd::liveness::alive));
    }
    pid_t other_pid = 0;
    {
        // An unrelated opener (forked before it opens: it inherits no handle of these).
        live_holder other([&] { return shmq::SimpleQueue<int>::open(sn); });
        auto j = judge(sn);
        BOOST_TEST(j.alive == 2u);
        BOOST_TEST(holds(j, other.pid(), sd::liveness::alive));
        other_pid = other.pid();
        BOOST_TEST(other.finish() == 0);
    }
    BOOST_TEST(judge(sn).alive == 1u);   // it has ended: no longer counted alive
    // Killed while holding: listed, and marked dead.
    live_holder victim([&] { return shmq::Queue<int>::open(qn); });
    const pid_t vpid = victim.pid();
    ::kill(vpid, SIGKILL);
    BOOST_TEST(victim.finish() == -SIGKILL);
    auto j = judge(qn);
    BOOST_TEST(holds(j, vpid, sd::liveness::dead));
    // Forked children end with _exit, so `other` never closed the copies it inherited: it is
    // listed dead too (as it would be after a crash), next to the victim.
    BOOST_TEST(holds(j, other_pid, sd::liveness::dead));
    BOOST_TEST(j.dead == 2u);
    BOOST_TEST(j.alive == 1u);
    BOOST_TEST(!j.orphan());   // we still hold it
}

BOOST_AUTO_TEST_CASE(closing_the_last_handle_leaves_no_holder)
{
    const auto n = unique_name("lcclose");
    shm_remover cleanup(n);
    { auto q = shmq::Queue<int>::create(n); q.put(7); }
    auto j = judge(n);
    BOOST_TEST(j.holders.empty());
    BOOST_TEST(!j.orphan());   // persistent, not orphaned: it still holds an item for a next opener
    BOOST_TEST(shmq::Queue<int>::open(n).get(true, 1s) == 7);
}

BOOST_AUTO_TEST_CASE(replace_stale_after_a_sigkilled_creator, *boost::unit_test::timeout(60))
{
    const auto n = unique_name("lcrep");
    shm_remover cleanup(n);
    BOOST_REQUIRE_EQUAL(die_holding([&] {
        auto q = shmq::Queue<std::string>::create(n);
        q.put("old");
        return q;
    }), -SIGKILL);
    BOOST_CHECK_THROW(shmq::Queue<std::string>::create(n), shmq::exists_error);   // fail is the default
    BOOST_TEST(judge(n).orphan());
    auto q = shmq::Queue<std::string>::create(n, 0, shmq::options{.if_exists = shmq::if_exists::replace_stale});
    BOOST_TEST(q.empty());   // a new object: the old item went with the old one
    auto j = judge(n);
    BOOST_TEST(j.alive == 1u);
    BOOST_TEST(j.dead == 0u);
    BOOST_TEST(holds(j, ::getpid(), sd::liveness::alive));
    // Openers by name find the new one.
    q.put("new");
    BOOST_TEST(shmq::Queue<std::string>::open(n).get(true, 1s) == "new");
    // No temporary entry is left in /dev/shm.
    BOOST_TEST(shm_entries(n).size() == 1u);
}

BOOST_AUTO_TEST_CASE(replace_stale_refuses_a_live_holder, *boost::unit_test::timeout(60))
{
    const auto n = unique_name("lclive");
    shm_remover cleanup(n);
    live_holder owner([&] {
        auto q = shmq::JoinableQueue<int>::create(n);
        q.put(1);
        return q;
    });
    const shmq::options replace{.if_exists = shmq::if_exists::replace_stale};
    try {
        (void)shmq::JoinableQueue<int>::create(n, 0, replace);
        BOOST_FAIL("replaced an object a live process holds");
    } catch (const shmq::exists_error& e) {
        BOOST_TEST(std::string(e.what()).find(std::to_string(owner.pid())) != std::string::npos);
    }
    BOOST_TEST(shm_entries(n).size() == 1u);   // the failed attempt left no temporary entry
    // Its item is still there for a legitimate opener.
    BOOST_TEST(shmq::JoinableQueue<int>::open(n).qsize() == 1u);
    BOOST_TEST(owner.finish() == 0);
    // Closed normally: no live holder, so replace_stale replaces it (gc would not: see below).
    auto q = shmq::JoinableQueue<int>::create(n, 0, replace);
    BOOST_TEST(q.qsize() == 0u);
}

BOOST_AUTO_TEST_CASE(open_or_create_and_if_exists_open)
{
    const auto n = unique_name("lcooc");
    shm_remover cleanup(n);
    auto a = shmq::Queue<int>::open_or_create(n, 3);
    auto b = shmq::Queue<int>::open_or_create(n, 99);   // opens: the creator's maxsize stands
    a.put(5);
    BOOST_TEST(b.get(true, 1s) == 5);
    a.put(6); a.put(7); a.put(8);
    BOOST_TEST(b.full());   // the creator's maxsize of 3 stands
    (void)b.get(true, 1s); (void)b.get(true, 1s); (void)b.get(true, 1s);
    BOOST_CHECK_THROW(shmq::Queue<float>::open_or_create(n), shmq::type_error);
    BOOST_CHECK_THROW(shmq::SimpleQueue<int>::open_or_create(n), shmq::type_error);
    auto c = shmq::Queue<int>::create(n, 0, shmq::options{.if_exists = shmq::if_exists::open});
    BOOST_TEST(judge(n).alive == 1u);   // one process, one slot, three handles
    const auto sn = unique_name("lcoocs");
    cleanup.add(sn);
    auto s1 = shmq::SimpleQueue<std::string>::open_or_create(sn);
    auto s2 = shmq::SimpleQueue<std::string>::open_or_create(sn);
    s2.put("x");
    BOOST_TEST(s1.get() == "x");
}

BOOST_AUTO_TEST_CASE(sync_objects_refuse_if_exists)
{
    const auto n = unique_name("lclock");
    shm_remover cleanup(n);
    BOOST_CHECK_THROW(shmq::Lock::create(n, shmq::options{.if_exists = shmq::if_exists::open}),
                      shmq::value_error);
    BOOST_TEST(shm_entries(n).empty());
}

// The race the registry lock closes: a process that has mapped the old object but attaches only
// after it was retired is refused (retired_error, a not_found_error), and going back to the name
// finds the replacement.
BOOST_AUTO_TEST_CASE(an_opener_of_a_replaced_object_is_sent_to_the_new_one, *boost::unit_test::timeout(60))
{
    const auto n = unique_name("lcrace");
    shm_remover cleanup(n);
    BOOST_REQUIRE_EQUAL(die_holding([&] { auto q = shmq::Queue<int>::create(n); q.put(1); return q; }), -SIGKILL);
    // Mapped, not yet attached: the state of an opener between shm_open and attach.
    auto old = sd::segment::inspect(n, sd::inspect_mode{.read_only = false, .wait = true});
    auto q = shmq::Queue<int>::create(n, 0, shmq::options{.if_exists = shmq::if_exists::replace_stale});
    BOOST_TEST(old->header().retired.load() == 1u);
    BOOST_TEST(!old->named_here());
    BOOST_CHECK_THROW(sd::registry::attach(*old, sd::self(), {0, 0, 1, 0}), sd::retired_error);
    BOOST_CHECK_THROW(sd::registry::attach(*old, sd::self(), {0, 0, 1, 0}), shmq::not_found_error);
    q.put(2);
    BOOST_TEST(shmq::Queue<int>::open(n).get(true, 1s) == 2);
}

BOOST_AUTO_TEST_CASE(gc_removes_the_orphan_and_leaves_the_rest, *boost::unit_test::timeout(60))
{
    const auto orphan = unique_name("lcgco"), live = unique_name("lcgcl"),
               idle = unique_name("lcgci"), lock = unique_name("lcgck"), pipe_holder = unique_name("lcgch");
    shm_remover cleanup;
    for (const auto& n : {orphan, live, idle, lock, pipe_holder}) cleanup.add(n);
    BOOST_REQUIRE_EQUAL(die_holding([&] { auto q = shmq::JoinableQueue<int>::create(orphan); q.put(1); return q; }), -SIGKILL);
    live_holder holder([&] { return shmq::Queue<int>::create(live); });
    { auto q = shmq::Queue<int>::create(idle); q.put(1); }   // closed normally: persistent
    auto l = shmq::Lock::create(lock);
    auto mine = shmq::SimpleQueue<int>::create(pipe_holder);

    BOOST_TEST(lc::collect(orphan) == lc::gc_result::removed);
    BOOST_TEST(shm_entries(orphan).empty());
    BOOST_CHECK_THROW(shmq::JoinableQueue<int>::open(orphan), shmq::not_found_error);
    BOOST_TEST(lc::collect(orphan) == lc::gc_result::gone);

    sd::process_identity who;
    BOOST_TEST(lc::collect(live, &who) == lc::gc_result::held);
    BOOST_TEST(who.pid == static_cast<std::uint32_t>(holder.pid()));
    BOOST_TEST(lc::collect(idle) == lc::gc_result::unheld);
    BOOST_TEST(lc::collect(lock) == lc::gc_result::untracked);
    BOOST_TEST(lc::collect(pipe_holder) == lc::gc_result::held);
    for (const auto& n : {live, idle, lock, pipe_holder}) BOOST_TEST(shm_entries(n).size() == 1u);
    // The survivors still work.
    mine.put(3);
    BOOST_TEST(shmq::SimpleQueue<int>::open(pipe_holder).get() == 3);
    BOOST_TEST(shmq::Queue<int>::open(idle).get(true, 1s) == 1);
    BOOST_TEST(holder.finish() == 0);
}

// A creator killed between shm_open and `ready` leaves a file no one can open. gc and
// replace_stale leave it alone while its creator may still be at work (2 s), then remove it.
BOOST_AUTO_TEST_CASE(half_created_objects, *boost::unit_test::timeout(60))
{
    const auto a = unique_name("lchalfa"), b = unique_name("lchalfb");
    shm_remover cleanup;
    cleanup.add(a); cleanup.add(b);
    for (const auto& n : {a, b}) {
        const int fd = ::shm_open(("/shmq." + n).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
        BOOST_REQUIRE(fd >= 0);
        BOOST_REQUIRE_EQUAL(::ftruncate(fd, 4096), 0);   // all zero: `ready` never set
        ::close(fd);
    }
    BOOST_TEST(lc::collect(a) == lc::gc_result::young);
    BOOST_CHECK_THROW((void)sd::segment::inspect(a), sd::uninitialized_error);   // at once, no wait
    std::this_thread::sleep_for(2100ms);
    BOOST_TEST(lc::collect(a) == lc::gc_result::removed);
    BOOST_TEST(shm_entries(a).empty());
    auto q = shmq::Queue<int>::create(b, 0, shmq::options{.if_exists = shmq::if_exists::replace_stale});
    q.put(1);
    BOOST_TEST(shmq::Queue<int>::open(b).get(true, 1s) == 1);
}

// Another user's object is not ours to judge: replace_stale refuses it (as open() would) unless
// options::trust_foreign says otherwise. Needs root to give a segment away.
boost::test_tools::assertion_result running_as_root(boost::unit_test::test_unit_id) {
    boost::test_tools::assertion_result r(::geteuid() == 0);
    r.message() << "needs root to chown a segment to another user";
    return r;
}

BOOST_AUTO_TEST_CASE(replace_stale_respects_foreign_owners, *boost::unit_test::timeout(60) *
                                                                  boost::unit_test::precondition(running_as_root))
{
    const auto n = unique_name("lcforeign");
    shm_remover cleanup(n);
    { auto q = shmq::Queue<int>::create(n); }
    BOOST_REQUIRE_EQUAL(::chown(shm_path(n).c_str(), 65534, 65534), 0);
    BOOST_CHECK_THROW(shmq::Queue<int>::create(n, 0, shmq::options{.if_exists = shmq::if_exists::replace_stale}),
                      shmq::permission_error);
    BOOST_TEST(shm_entries(n).size() == 1u);
    auto q = shmq::Queue<int>::create(
        n, 0, shmq::options{.trust_foreign = true, .if_exists = shmq::if_exists::replace_stale});
    struct stat st {};
    BOOST_REQUIRE_EQUAL(::stat(shm_path(n).c_str(), &st), 0);
    BOOST_TEST(st.st_uid == ::geteuid());   // ours now
}
