// SPDX-License-Identifier: BSL-1.0
// shmq-bench — forked children, the start barrier, the stop flag and bounded waits.
#include "harness.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sched.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmq_bench {

// ---- interruption: what the signal handler must clean up -------------------------------------
//
// Plain arrays and atomics only: the handler may run at any point of the parent.
namespace {

constexpr int max_tracked = 64;
std::array<std::atomic<pid_t>, max_tracked> g_children{};
std::atomic<pid_t> g_foreign_group{0};
constexpr int max_names = 8;
char g_names[max_names][160];
std::atomic<bool> g_name_used[max_names];

void track_child(pid_t pid) noexcept {
    for (auto& slot : g_children) {
        pid_t expected = 0;
        if (slot.compare_exchange_strong(expected, pid)) return;
    }
}
void untrack_child(pid_t pid) noexcept {
    for (auto& slot : g_children) {
        pid_t expected = pid;
        if (slot.compare_exchange_strong(expected, 0)) return;
    }
}

extern "C" void on_interrupt(int sig) {
    for (auto& slot : g_children)
        if (pid_t p = slot.load(); p > 0) ::kill(p, SIGKILL);
    if (pid_t g = g_foreign_group.load(); g > 0) ::kill(-g, SIGKILL);
    for (int i = 0; i < max_names; ++i)
        if (g_name_used[i].load()) ::shm_unlink(g_names[i]);
    static const char msg[] = "\nshmq-bench: interrupted; children killed, shared memory removed\n";
    ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(128 + sig);
}

} // namespace

void install_signal_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGHUP, &sa, nullptr);
    // Transports must see EPIPE as an error, not die silently.
    ::signal(SIGPIPE, SIG_IGN);
}

void register_shm_name(const std::string& name) {
    std::string posix = name.starts_with('/') ? name : "/" + name;
    for (int i = 0; i < max_names; ++i) {
        if (!g_name_used[i].load()) {
            std::snprintf(g_names[i], sizeof g_names[i], "%s", posix.c_str());
            g_name_used[i].store(true);
            return;
        }
    }
}

void unregister_shm_name(const std::string& name) {
    std::string posix = name.starts_with('/') ? name : "/" + name;
    for (int i = 0; i < max_names; ++i)
        if (g_name_used[i].load() && posix == g_names[i]) g_name_used[i].store(false);
}

void set_foreign_group(int pgid) noexcept { g_foreign_group.store(pgid); }

// ---- the shared area and the children --------------------------------------------------------
namespace {

constexpr int max_children = 16;

double cpu_seconds(const rusage& ru) {
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

} // namespace

void pin_to(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (::sched_setaffinity(0, sizeof set, &set) != 0)
        throw std::runtime_error("cannot pin to CPU " + std::to_string(cpu) + ": " + std::strerror(errno));
}

namespace {


struct child_slot {
    std::uint64_t count;      // messages sent / received / samples taken
    std::int64_t end_ns;      // consumer: when its end marker arrived
    char error[232];          // why the child failed (empty = it did not)
};

// Written by the parent (stop) and by each child (its own slot); read by the parent after the
// children are reaped (waitpid orders those writes before the reads).
struct shared_area {
    alignas(64) std::atomic<std::uint32_t> stop;
    alignas(64) child_slot slots[max_children];
    alignas(64) std::uint64_t histogram[latency_histogram::buckets];   // the pinger's round trips
};

class mapping {
public:
    mapping() : size_(sizeof(shared_area)) {
        void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::runtime_error(std::string("mmap: ") + std::strerror(errno));
        area_ = new (p) shared_area{};
    }
    ~mapping() { ::munmap(area_, size_); }
    mapping(const mapping&) = delete;
    mapping& operator=(const mapping&) = delete;
    shared_area* operator->() const noexcept { return area_; }

private:
    std::size_t size_;
    shared_area* area_;
};

class fd_pair {
public:
    fd_pair() {
        if (::pipe2(fd_, O_CLOEXEC) != 0)
            throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    }
    ~fd_pair() { close_read(); close_write(); }
    fd_pair(const fd_pair&) = delete;
    fd_pair& operator=(const fd_pair&) = delete;
    int read_end() const noexcept { return fd_[0]; }
    int write_end() const noexcept { return fd_[1]; }
    void close_read() noexcept { if (fd_[0] >= 0) ::close(fd_[0]); fd_[0] = -1; }
    void close_write() noexcept { if (fd_[1] >= 0) ::close(fd_[1]); fd_[1] = -1; }

private:
    int fd_[2];
};

class fork_context final : public child_context {
public:
    fork_context(const std::atomic<std::uint32_t>* stop, int ready_fd, int go_fd)
        : child_context(stop), ready_fd_(ready_fd), go_fd_(go_fd) {}

    void wait_for_start() override {
        char c = 1;
        if (::write(ready_fd_, &c, 1) != 1) throw std::runtime_error("cannot signal ready");
        pollfd p{go_fd_, POLLIN, 0};
        int r;
        do r = ::poll(&p, 1, 60'000);
        while (r < 0 && errno == EINTR);
        if (r <= 0 || ::read(go_fd_, &c, 1) != 1)
            throw std::runtime_error("no start signal from the parent within 60 s");
    }

private:
    int ready_fd_, go_fd_;
};

/// The forked children of one run. The destructor kills and reaps whatever is left, so no
/// return path (or exception) leaves a process behind.
class children {
public:
    children(shared_area* area, fd_pair& ready, fd_pair& go)
        : area_(area), ready_(ready), go_(go) {}
    ~children() { kill_all(); }
    children(const children&) = delete;
    children& operator=(const children&) = delete;

    /// cpu >= 0: the child runs only on that CPU (--pin).
    void spawn(int slot, int cpu, const std::function<std::uint64_t(child_context&)>& body) {
        std::fflush(nullptr);
        const pid_t parent = ::getpid();
        pid_t pid = ::fork();
        if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
        if (pid == 0) {
            ::signal(SIGINT, SIG_DFL);
            ::signal(SIGTERM, SIG_DFL);
            ::signal(SIGHUP, SIG_DFL);
            // If the runner dies, so do its children, instead of spinning or blocking forever.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(9);
            child_slot& me = area_->slots[slot];
            int rc = 0;
            try {
                pin_to(cpu);
                fork_context cx(&area_->stop, ready_.write_end(), go_.read_end());
                cx.histogram = area_->histogram;
                cx.latency_budget_ns = latency_budget_ns_;
                me.count = body(cx);
            } catch (const std::exception& e) {
                std::snprintf(me.error, sizeof me.error, "%s", e.what());
                rc = 2;
            } catch (...) {
                std::snprintf(me.error, sizeof me.error, "unknown exception");
                rc = 2;
            }
            // _exit: no atexit handlers, no flush of stdio buffers copied from the parent.
            ::_exit(rc);
        }
        track_child(pid);
        procs_.push_back({pid, slot, false, 0});
    }

    /// Reaps whatever has ended. Returns false if some child ended with a failure.
    bool reap() {
        bool fine = true;
        for (auto& p : procs_) {
            if (p.done) continue;
            int st = 0;
            rusage ru{};
            pid_t r = ::wait4(p.pid, &st, WNOHANG, &ru);
            if (r == p.pid) cpu_s_ += cpu_seconds(ru);
            if (r == p.pid) {
                p.done = true;
                p.status = st;
                untrack_child(p.pid);
            }
            if (p.done && !(WIFEXITED(p.status) && WEXITSTATUS(p.status) == 0)) fine = false;
        }
        return fine;
    }
    bool all_done() const {
        return std::all_of(procs_.begin(), procs_.end(), [](const proc& p) { return p.done; });
    }
    void kill_all() noexcept {
        for (auto& p : procs_) {
            if (p.done) continue;
            ::kill(p.pid, SIGKILL);
            int st = 0;
            rusage ru{};
            while (::wait4(p.pid, &st, 0, &ru) < 0 && errno == EINTR) {}
            cpu_s_ += cpu_seconds(ru);
            p.done = true;
            p.status = st;
            p.killed = true;
            untrack_child(p.pid);
        }
    }
    /// Why the run failed, from the first failed child.
    std::string failure() const {
        for (const auto& p : procs_) {
            if (!p.done || p.killed) continue;
            if (WIFEXITED(p.status) && WEXITSTATUS(p.status) == 0) continue;
            const char* err = area_->slots[p.slot].error;
            if (err[0]) return err;
            if (WIFSIGNALED(p.status))
                return "child killed by signal " + std::to_string(WTERMSIG(p.status)) + " (" +
                       strsignal(WTERMSIG(p.status)) + ")";
            return "child exited with status " + std::to_string(WEXITSTATUS(p.status));
        }
        return "a child failed";
    }
    std::size_t size() const noexcept { return procs_.size(); }
    /// CPU seconds used by the children reaped so far.
    double cpu_seconds_used() const noexcept { return cpu_s_; }

    std::int64_t latency_budget_ns_ = 0;

private:
    struct proc {
        pid_t pid;
        int slot;
        bool done;
        int status;
        bool killed = false;
    };
    shared_area* area_;
    fd_pair& ready_;
    fd_pair& go_;
    std::vector<proc> procs_;
    double cpu_s_ = 0;
};

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

int cpu_for(const run_settings& s, int k) {
    return s.cpus.empty() ? -1 : s.cpus[static_cast<std::size_t>(k) % s.cpus.size()];
}

run_result fail(status st, std::string note) {
    run_result r;
    r.state = st;
    r.note = std::move(note);
    return r;
}

/// Closes the transport when the run ends, however it ends.
struct closer {
    transport& t;
    ~closer() { t.close(); }
};

run_result run_local(transport& t, const scenario& sc, const run_settings& s) {
    const bool latency = sc.what == mode::latency;
    const int pairs = latency ? 1 : sc.pairs;
    if (2 * pairs > max_children) return fail(status::error, "too many processes");

    other_load load;
    mapping area;
    channel_params cp;
    cp.kind = sc.kind;
    cp.size = sc.size;
    cp.channels = latency ? 2 : (t.shared() ? 1 : pairs);
    cp.latency = latency;
    try {
        t.open(cp);
    } catch (const std::exception& e) {
        t.close();
        return fail(status::error, std::string("open: ") + e.what());
    }
    closer close_at_end{t};

    fd_pair ready, go;
    children kids(area.operator->(), ready, go);
    kids.latency_budget_ns_ = static_cast<std::int64_t>(s.duration_s * 1e9);
    try {
        if (latency) {
            kids.spawn(1, cpu_for(s, 1), [&](child_context& cx) { t.pong(0, 1, cx); return std::uint64_t{0}; });
            kids.spawn(0, cpu_for(s, 0), [&](child_context& cx) { return std::uint64_t(t.ping(0, 1, cx)); });
        } else {
            for (int i = 0; i < pairs; ++i) {
                const int ch = t.shared() ? 0 : i;
                // Consumer i and producer i on neighbouring CPUs of the --pin list.
                kids.spawn(i, cpu_for(s, 2 * i), [&t, &area, ch, i](child_context& cx) {
                    std::uint64_t n = t.consume(ch, cx);
                    area->slots[i].end_ns = now_ns();
                    return n;
                });
            }
            for (int i = 0; i < pairs; ++i) {
                const int ch = t.shared() ? 0 : i;
                kids.spawn(pairs + i, cpu_for(s, 2 * i + 1), [&t, ch](child_context& cx) { return t.produce(ch, cx); });
            }
        }
    } catch (const std::exception& e) {
        return fail(status::error, e.what());
    }
    // The parent keeps only its ends, so a read of `ready` sees EOF once every child is gone.
    ready.close_write();
    go.close_read();

    // Start barrier: every child has its buffers ready. Bounded, and a child failing first ends it.
    const std::size_t n = kids.size();
    std::size_t got = 0;
    const auto ready_deadline = clock::now() + std::chrono::seconds(30);
    while (got < n) {
        if (!kids.reap()) return fail(status::error, kids.failure());
        if (clock::now() > ready_deadline) return fail(status::timeout, "children not ready within 30 s");
        pollfd p{ready.read_end(), POLLIN, 0};
        if (::poll(&p, 1, 10) > 0) {
            char buf[max_children];
            ssize_t r = ::read(ready.read_end(), buf, n - got);
            if (r > 0) got += static_cast<std::size_t>(r);
        }
    }

    const std::int64_t t0 = now_ns();
    {
        std::vector<char> go_bytes(n, 1);
        if (::write(go.write_end(), go_bytes.data(), n) != static_cast<ssize_t>(n))
            return fail(status::error, "cannot send the start signal");
    }
    const auto dur = std::chrono::nanoseconds(static_cast<std::int64_t>(s.duration_s * 1e9));
    const auto started = clock::now();
    if (!latency) {
        // Sleep through the run, looking for failures now and then (10 ms apart: the parent must
        // not steal much of the two cores the children are using).
        while (clock::now() - started < dur) {
            sleep_ms(10);
            if (!kids.reap()) return fail(status::error, kids.failure());
        }
        area->stop.store(1, std::memory_order_release);
    }
    const auto deadline = started + (latency ? dur : std::chrono::nanoseconds(0)) +
                          std::chrono::milliseconds(static_cast<std::int64_t>(s.timeout_s * 1000));
    while (!kids.all_done()) {
        if (!kids.reap()) return fail(status::error, kids.failure());
        if (clock::now() > deadline) {
            kids.kill_all();
            char buf[64];
            std::snprintf(buf, sizeof buf, "no end within %.0f s; children killed", s.timeout_s);
            return fail(status::timeout, buf);
        }
        sleep_ms(2);
    }
    if (!kids.reap()) return fail(status::error, kids.failure());

    run_result r;
    r.others = load.finish(kids.cpu_seconds_used());
    if (latency) {
        const std::uint64_t k = area->slots[0].count;
        if (k == 0) return fail(status::error, "no round trip measured");
        r.samples = k;
        r.p50 = latency_histogram::quantile(area->histogram, k, 0.50);
        r.p99 = latency_histogram::quantile(area->histogram, k, 0.99);
        r.p999 = latency_histogram::quantile(area->histogram, k, 0.999);
        return r;
    }
    std::int64_t end = t0;
    for (int i = 0; i < pairs; ++i) {
        r.messages += area->slots[i].count;
        end = std::max(end, area->slots[i].end_ns);
    }
    std::uint64_t sent = 0;
    for (int i = 0; i < pairs; ++i) sent += area->slots[pairs + i].count;
    if (sent != r.messages)
        return fail(status::error, "producers sent " + std::to_string(sent) + " messages, consumers got " +
                                       std::to_string(r.messages));
    r.seconds = static_cast<double>(end - t0) / 1e9;
    if (r.messages == 0 || r.seconds <= 0) return fail(status::error, "no message delivered");
    r.msgs_per_s = static_cast<double>(r.messages) / r.seconds;
    r.bytes_per_s = r.msgs_per_s * static_cast<double>(sc.size);
    return r;
}

} // namespace

namespace {

/// Busy jiffies of all CPUs (everything but idle and iowait), or -1.
double busy_jiffies() {
    std::FILE* f = std::fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[8] = {};
    int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                        &v[4], &v[5], &v[6], &v[7]);
    std::fclose(f);
    if (n != 8) return -1;
    return static_cast<double>(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
}

double self_cpu_seconds() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return cpu_seconds(ru);
}

} // namespace

other_load::other_load() : busy0_(busy_jiffies()), self0_(self_cpu_seconds()), t0_(clock::now()) {}

double other_load::finish(double children_cpu_s) const {
    const double busy1 = busy_jiffies();
    const double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
    const double elapsed = std::chrono::duration<double>(clock::now() - t0_).count();
    if (busy0_ < 0 || busy1 < 0 || hz <= 0 || elapsed <= 0) return -1;
    const double ours = children_cpu_s + (self_cpu_seconds() - self0_);
    // /proc/stat counts in ticks (10 ms): a short run can come out a little below zero.
    return std::max(0.0, ((busy1 - busy0_) / hz - ours) / elapsed);
}

run_result run_once(transport& t, const scenario& sc, const run_settings& s) {
    if (auto why = t.unsupported(sc.kind, sc.size, sc.what); !why.empty())
        return fail(status::skipped, why);
    try {
        run_result r = t.external() ? t.run_external(sc, s) : run_local(t, sc, s);
        if (r.note.empty()) r.note = t.remark(sc.kind, sc.size, sc.what);
        return r;
    } catch (const std::exception& e) {
        return fail(status::error, e.what());
    }
}

} // namespace shmq_bench
