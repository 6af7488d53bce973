// SPDX-License-Identifier: BSL-1.0
// shmq-bench --sync: shmq's Lock and Event against what a C++ program would use instead.
//
//  * Lock, uncontended: acquire + release in one process, ns per pair, against
//    boost::interprocess::interprocess_mutex and a POSIX robust process-shared pthread_mutex,
//    each in shared memory.
//  * Lock, contended: two processes lock, bump a shared counter and unlock as fast as they can
//    for the run's duration; acquisitions per second and hand-offs per second (acquisitions
//    whose previous holder was the other process).
//  * Event set -> wake latency: a waiter in another process blocks in Event::wait; the setter
//    reads steady_clock and sets; the waiter reads steady_clock when wait returns. Against a
//    pipe: write one byte -> the reader's poll() returns. Two cases: the waiter already asleep
//    (the setter waits 200 µs after the waiter announced itself: the futex sleep every blocking
//    design pays), and the waiter just arrived (set at once: shmq's waiter is still in its short
//    spin, a pipe reader still enters the kernel).
// Every figure is the median of --repeat runs (default 3), shown with min..max. Children are
// forked, watched by alarm(30) and reaped.
#include <shmq/shmq.hpp>

#include <boost/interprocess/sync/interprocess_mutex.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmq_bench {
namespace {

using clk = std::chrono::steady_clock;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now().time_since_epoch()).count();
}

/// Shared anonymous memory for one T, constructed in place; shared with children forked later.
template <class T> T* shared_new() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap");
    return new (p) T();
}
template <class T> void shared_delete(T* p) {
    p->~T();
    ::munmap(p, sizeof(T));
}

/// Forks body; the child _exits with its result.
pid_t spawn(const std::function<int()>& body) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork");
    if (pid == 0) {
        ::alarm(30);
        int rc = 1;
        try {
            rc = body();
        } catch (...) {
        }
        ::_exit(rc);
    }
    return pid;
}

bool reap(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// ---- the locks under test --------------------------------------------------------------------

struct robust_pthread_mutex {
    pthread_mutex_t m;
    robust_pthread_mutex() {
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
        pthread_mutex_init(&m, &a);
        pthread_mutexattr_destroy(&a);
    }
    ~robust_pthread_mutex() { pthread_mutex_destroy(&m); }
    void lock() {
        if (pthread_mutex_lock(&m) == EOWNERDEAD) pthread_mutex_consistent(&m);
    }
    void unlock() { pthread_mutex_unlock(&m); }
};

/// One lock of each kind behind the same two calls.
struct lock_under_test {
    const char* name;
    std::function<void()> lock, unlock;
};

struct lock_set {
    shmq::Lock shmq_lock;
    boost::interprocess::interprocess_mutex* boost_mutex = shared_new<boost::interprocess::interprocess_mutex>();
    robust_pthread_mutex* pthread_mutex = shared_new<robust_pthread_mutex>();
    ~lock_set() {
        shared_delete(boost_mutex);
        shared_delete(pthread_mutex);
    }
};

// The loops are templates on the lock type so each is a direct call, not a std::function.
template <class Lockable> double uncontended_ns(Lockable& l, long n) {
    const auto t0 = clk::now();
    for (long i = 0; i < n; ++i) {
        l.lock();
        l.unlock();
    }
    return std::chrono::duration<double, std::nano>(clk::now() - t0).count() / static_cast<double>(n);
}

struct contended_state {
    std::atomic<int> ready{0};
    std::atomic<int> go{0};
    std::atomic<int> stop{0};
    long count = 0;       // under the lock
    int last = -1;        // under the lock: who held it last
    long handoffs = 0;    // under the lock
};

struct contended_result {
    double acquisitions_per_s = 0, handoffs_per_s = 0;
};

template <class Lockable> contended_result contended(Lockable& l, double seconds) {
    auto* st = shared_new<contended_state>();
    auto body = [&](int me) {
        return [&, me] {
            st->ready.fetch_add(1);
            while (!st->go.load()) {}
            while (!st->stop.load(std::memory_order_relaxed)) {
                l.lock();
                ++st->count;
                if (st->last != me) {
                    if (st->last >= 0) ++st->handoffs;
                    st->last = me;
                }
                l.unlock();
            }
            return 0;
        };
    };
    const pid_t a = spawn(body(0)), b = spawn(body(1));
    while (st->ready.load() < 2) std::this_thread::yield();
    const auto t0 = clk::now();
    st->go = 1;
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    st->stop = 1;
    reap(a);
    reap(b);
    const double dt = std::chrono::duration<double>(clk::now() - t0).count();
    contended_result r{static_cast<double>(st->count) / dt, static_cast<double>(st->handoffs) / dt};
    shared_delete(st);
    return r;
}

// ---- wake latency ----------------------------------------------------------------------------

struct wake_state {
    std::atomic<int> armed{0};         // the waiter is about to block (round number)
    std::atomic<std::int64_t> set_at{0};
    std::atomic<int> done{0};
    std::int64_t samples[4096];
};

/// Latencies (ns) of `rounds` wake-ups. arm(): waiter side, blocks until woken; fire(): setter.
template <class Wait, class Fire, class Reset>
std::vector<double> wake_latencies(int rounds, std::chrono::microseconds gap, Wait wait, Fire fire, Reset reset) {
    auto* st = shared_new<wake_state>();
    const pid_t waiter = spawn([&] {
        for (int r = 1; r <= rounds; ++r) {
            st->armed.store(r);
            wait();
            st->samples[r - 1] = now_ns() - st->set_at.load();
            reset();
            st->done.store(r);
        }
        return 0;
    });
    for (int r = 1; r <= rounds; ++r) {
        while (st->armed.load() != r) {}
        if (gap.count() > 0) {
            const auto until = clk::now() + gap;
            while (clk::now() < until) {}   // busy: a sleep would add its own wake-up to the setter
        }
        st->set_at.store(now_ns());
        fire();
        while (st->done.load() != r) {}
    }
    reap(waiter);
    std::vector<double> out(st->samples, st->samples + rounds);
    shared_delete(st);
    return out;
}

double percentile(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

// ---- report ----------------------------------------------------------------------------------

struct figure {
    std::vector<double> runs;
    void add(double x) { runs.push_back(x); }
    double median() const {
        auto v = runs;
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    }
    double min() const { return *std::min_element(runs.begin(), runs.end()); }
    double max() const { return *std::max_element(runs.begin(), runs.end()); }
};

void row(const char* what, const char* who, const figure& f, const char* unit, const char* fmt = "%10.1f") {
    std::printf("  %-34s %-34s ", what, who);
    std::printf(fmt, f.median());
    std::printf(" %-10s (", unit);
    std::printf(fmt, f.min());
    std::printf(" ..");
    std::printf(fmt, f.max());
    std::printf(")\n");
}

std::string loadavg() {
    std::ifstream f("/proc/loadavg");
    std::string s;
    std::getline(f, s);
    return s;
}

} // namespace

int sync_check(int repeat) {
    ::signal(SIGPIPE, SIG_IGN);
    std::printf("shmq-bench --sync: %ld CPUs, load average %s, %d runs per figure (median, min .. max)\n\n",
                ::sysconf(_SC_NPROCESSORS_ONLN), loadavg().c_str(), repeat);
    lock_set locks;
    constexpr long n_uncontended = 5'000'000;
    constexpr double contended_s = 0.5;
    constexpr int rounds = 2000;

    figure un[3], ca[3], ch[3];
    figure ev_sleep50, ev_sleep99, ev_spin50, ev_spin99, pipe_sleep50, pipe_sleep99, pipe_spin50, pipe_spin99;
    for (int r = 0; r < repeat; ++r) {
        std::fprintf(stderr, "run %d/%d\n", r + 1, repeat);
        un[0].add(uncontended_ns(locks.shmq_lock, n_uncontended));
        un[1].add(uncontended_ns(*locks.boost_mutex, n_uncontended));
        un[2].add(uncontended_ns(*locks.pthread_mutex, n_uncontended));
        auto c0 = contended(locks.shmq_lock, contended_s);
        auto c1 = contended(*locks.boost_mutex, contended_s);
        auto c2 = contended(*locks.pthread_mutex, contended_s);
        ca[0].add(c0.acquisitions_per_s / 1e6); ch[0].add(c0.handoffs_per_s / 1e3);
        ca[1].add(c1.acquisitions_per_s / 1e6); ch[1].add(c1.handoffs_per_s / 1e3);
        ca[2].add(c2.acquisitions_per_s / 1e6); ch[2].add(c2.handoffs_per_s / 1e3);

        shmq::Event ev;
        for (auto gap : {std::chrono::microseconds(200), std::chrono::microseconds(0)}) {
            auto lat = wake_latencies(
                rounds, gap, [&] { ev.wait(std::chrono::seconds(10)); }, [&] { ev.set(); },
                [&] { ev.clear(); });
            (gap.count() ? ev_sleep50 : ev_spin50).add(percentile(lat, 0.5) / 1e3);
            (gap.count() ? ev_sleep99 : ev_spin99).add(percentile(lat, 0.99) / 1e3);
            int fds[2];
            if (::pipe(fds) != 0) throw std::runtime_error("pipe");
            auto plat = wake_latencies(
                rounds, gap,
                [&] {
                    pollfd p{fds[0], POLLIN, 0};
                    ::poll(&p, 1, 10'000);
                    char c;
                    (void)!::read(fds[0], &c, 1);
                },
                [&] {
                    const char c = 1;
                    (void)!::write(fds[1], &c, 1);
                },
                [] {});
            ::close(fds[0]);
            ::close(fds[1]);
            (gap.count() ? pipe_sleep50 : pipe_spin50).add(percentile(plat, 0.5) / 1e3);
            (gap.count() ? pipe_sleep99 : pipe_spin99).add(percentile(plat, 0.99) / 1e3);
        }
    }

    const char* names[3] = {"shmq::Lock", "boost interprocess_mutex", "pthread_mutex (robust, pshared)"};
    std::printf("LOCK, UNCONTENDED (acquire + release, one process)\n");
    for (int i = 0; i < 3; ++i) row("acquire+release", names[i], un[i], "ns");
    std::printf("\nLOCK, CONTENDED (2 processes, lock / ++counter / unlock, %.1f s)\n", contended_s);
    for (int i = 0; i < 3; ++i) row("acquisitions", names[i], ca[i], "M/s", "%10.2f");
    for (int i = 0; i < 3; ++i) row("hand-offs to the other process", names[i], ch[i], "k/s");
    std::printf("\nWAKE LATENCY (set in one process -> wait returns in another, %d wake-ups per run)\n", rounds);
    row("waiter asleep (200 us), p50", "shmq::Event", ev_sleep50, "us", "%10.2f");
    row("waiter asleep (200 us), p50", "pipe write -> poll", pipe_sleep50, "us", "%10.2f");
    row("waiter asleep (200 us), p99", "shmq::Event", ev_sleep99, "us", "%10.2f");
    row("waiter asleep (200 us), p99", "pipe write -> poll", pipe_sleep99, "us", "%10.2f");
    row("waiter just arrived, p50", "shmq::Event", ev_spin50, "us", "%10.2f");
    row("waiter just arrived, p50", "pipe write -> poll", pipe_spin50, "us", "%10.2f");
    row("waiter just arrived, p99", "shmq::Event", ev_spin99, "us", "%10.2f");
    row("waiter just arrived, p99", "pipe write -> poll", pipe_spin99, "us", "%10.2f");
    return 0;
}

} // namespace shmq_bench
