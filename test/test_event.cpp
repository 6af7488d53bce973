// SPDX-License-Identifier: BSL-1.0
// detail::event in isolation (issue 7, A.7; B.2): no wake-up is lost under forced interleavings.
//
// The interface is prepare() / wait(ticket, limit) / finish() / notify():
//   waiter:   t = prepare(); if (!condition) wait(t, slice); finish();
//   notifier: make the condition true; notify();
// Waits use a 1 s slice and the tests require a wake in well under half of it, so a lost wake-up
// fails clearly rather than by timing noise. The hook points "event.prepared" (a waiter announced
// itself, before it re-checks its condition) and "event.notify" (a notifier made its condition
// true, before it looks for waiters) stop chosen threads exactly there.
#define BOOST_TEST_MODULE event
#include <boost/test/unit_test.hpp>

#include "sync/event.hpp"
#include "test_fixtures.hpp"
#include "test_hook.hpp"

#include <atomic>
#include <string_view>
#include <thread>

using namespace std::chrono_literals;
using namespace shmq::test;
namespace sd = shmq::detail;

namespace {

constexpr auto slice = std::chrono::seconds(1);
constexpr double prompt = 0.3;   // seconds: a wake-up later than this was lost

// A gate a thread can be stopped at: the hook blocks a thread that asked to stop at `point`
// until the test opens the gate.
thread_local const char* stop_at = nullptr;
std::atomic<int> arrived{0};
std::atomic<bool> open_gate{false};

void gate_hook(const char* point) {
    if (stop_at && std::string_view(point) == stop_at) {
        stop_at = nullptr;
        arrived.fetch_add(1);
        stopwatch sw;
        while (!open_gate.load() && sw.seconds() < 10) std::this_thread::sleep_for(100us);
    }
}

struct hook_scope {
    hook_scope() {
        arrived = 0;
        open_gate = false;
        sd::test_hook::install(gate_hook);
    }
    ~hook_scope() {
        open_gate = true;
        sd::test_hook::install(nullptr);
    }
};

bool wait_arrived(int n) {
    stopwatch sw;
    while (arrived.load() < n && sw.seconds() < 2) std::this_thread::sleep_for(100us);
    return arrived.load() >= n;
}

/// One waiter: returns how long after `notified_at` it woke with its condition true (or a large
/// value if it never saw it within 3 slices).
double waiter(sd::event& ev, std::atomic<bool>& cond, std::atomic<std::int64_t>& notified_at,
              const char* stop = nullptr) {
    stop_at = stop;
    stopwatch total;
    while (!cond.load() && total.seconds() < 3.5) {
        const std::uint32_t t = ev.prepare();
        if (!cond.load()) ev.wait(t, slice);
        ev.finish();
    }
    stop_at = nullptr;
    if (!cond.load()) return 99;
    const auto now = clk::now().time_since_epoch().count();
    return std::chrono::duration<double>(clk::duration(now - notified_at.load())).count();
}

void set_and_notify(sd::event& ev, std::atomic<bool>& cond, std::atomic<std::int64_t>& at) {
    at = clk::now().time_since_epoch().count();
    cond = true;
    ev.notify();
}

} // namespace

// A.7, the interleaving: sleeper S1 is asleep; waiter W2 has announced itself and is
// stopped before re-checking; a notify for S1 starts a new round; W2 then goes to sleep; a notify
// for W2 must wake it at once (the old `woken_` shortcut let W2 sleep a whole slice).
BOOST_AUTO_TEST_CASE(second_waiter_announced_during_a_round, *boost::unit_test::timeout(30))
{
    hook_scope hooks;
    sd::event ev;
    std::atomic<bool> c1{false}, c2{false};
    std::atomic<std::int64_t> n1{0}, n2{0};
    double d1 = 0, d2 = 0;
    std::thread s1([&] { d1 = waiter(ev, c1, n1); });
    std::this_thread::sleep_for(50ms);   // S1 asleep
    std::thread w2([&] { d2 = waiter(ev, c2, n2, "event.prepared"); });
    const bool stopped = wait_arrived(1);
    BOOST_CHECK_MESSAGE(stopped, "the waiter never reached the hook point \"event.prepared\"");
    set_and_notify(ev, c1, n1);           // the round for S1, while W2 is between announce and check
    std::this_thread::sleep_for(20ms);
    open_gate = true;                     // W2 re-checks (false) and sleeps
    std::this_thread::sleep_for(50ms);
    set_and_notify(ev, c2, n2);
    s1.join();
    w2.join();
    BOOST_CHECK_LT(d1, prompt);
    BOOST_CHECK_MESSAGE(d2 < prompt, "the second waiter woke " << d2 << " s after its notify (lost wake-up)");
}

// A notifier stopped between making its condition true and looking for waiters, while a waiter
// announces itself: the waiter must not sleep through it.
BOOST_AUTO_TEST_CASE(notify_stopped_before_looking_for_waiters, *boost::unit_test::timeout(30))
{
    hook_scope hooks;
    sd::event ev;
    std::atomic<bool> c{false};
    std::atomic<std::int64_t> n{0};
    std::thread notifier([&] {
        stop_at = "event.notify";
        set_and_notify(ev, c, n);
    });
    if (!wait_arrived(1)) {
        BOOST_ERROR("the notifier never reached the hook point \"event.notify\"");
        notifier.join();
        return;
    }
    double d = 0;
    std::thread w([&] { d = waiter(ev, c, n); });
    std::this_thread::sleep_for(50ms);
    open_gate = true;
    notifier.join();
    w.join();
    BOOST_CHECK_LT(d, prompt);
}

// Two waiters, each stopped after announcing itself; notifies for both land while they are
// stopped, then they re-check: neither may sleep.
BOOST_AUTO_TEST_CASE(both_waiters_stopped_then_notified, *boost::unit_test::timeout(30))
{
    hook_scope hooks;
    sd::event ev;
    std::atomic<bool> c1{false}, c2{false};
    std::atomic<std::int64_t> n1{0}, n2{0};
    double d1 = 0, d2 = 0;
    std::thread a([&] { d1 = waiter(ev, c1, n1, "event.prepared"); });
    std::thread b([&] { d2 = waiter(ev, c2, n2, "event.prepared"); });
    BOOST_CHECK_MESSAGE(wait_arrived(2), "the waiters never reached the hook point \"event.prepared\"");
    set_and_notify(ev, c1, n1);
    set_and_notify(ev, c2, n2);
    open_gate = true;
    a.join();
    b.join();
    BOOST_CHECK_LT(d1, prompt);
    BOOST_CHECK_LT(d2, prompt);
}

// Stress without hooks: two waiters and two notifiers, many rounds; every wake is prompt.
BOOST_AUTO_TEST_CASE(stress_no_lost_wakeup, *boost::unit_test::timeout(60))
{
    double worst = 0;
    for (int round = 0; round < 300; ++round) {
        sd::event ev;
        std::atomic<bool> c1{false}, c2{false};
        std::atomic<std::int64_t> n1{0}, n2{0};
        double d1 = 0, d2 = 0;
        std::thread a([&] { d1 = waiter(ev, c1, n1); });
        std::thread b([&] { d2 = waiter(ev, c2, n2); });
        std::thread x([&] { set_and_notify(ev, c1, n1); });
        std::this_thread::sleep_for(std::chrono::microseconds(round % 7 * 30));
        set_and_notify(ev, c2, n2);
        x.join();
        a.join();
        b.join();
        worst = std::max({worst, d1, d2});
        if (worst >= prompt) break;
    }
    BOOST_CHECK_MESSAGE(worst < prompt, "a waiter woke " << worst << " s after its notify (lost wake-up)");
}
