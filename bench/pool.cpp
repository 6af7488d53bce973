// SPDX-License-Identifier: BSL-1.0
// shmq-bench --pool: Pool.map of a trivial function (x + 1) over 1 M ints, chunksize 1 and 1000,
// in tasks (items) per second, against
//  * Python's multiprocessing.Pool.map, the same function, fork start method;
//  * a hand-written fork + pipe(2) pool, as one writes it without a library: one task pipe per
//    worker, one result pipe per worker, fixed-size binary messages (no encoding cost at all),
//    one write(2) per message (a chunk is one message), the parent keeping each worker a
//    window of messages ahead and reading answers with poll(2) into a large buffer.
// Every pool has as many workers as this process may use CPUs; the pools are started and warmed
// (a small map, then one of the full size with chunksize 1000) before the clock starts, and the
// figure covers the map call alone.
// The figure is the median of --repeat runs (default 3); every run checks every result.
#include "report.hpp"

#include <shmq/shmq.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmq_bench {
namespace {

using pclock = std::chrono::steady_clock;

int plus_one(int x) { return x + 1; }

unsigned cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return static_cast<unsigned>(CPU_COUNT(&set));
    return 1;
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// ---- shmq ------------------------------------------------------------------------------------

double run_shmq(shmq::Pool& pool, const std::vector<int>& items, std::size_t chunksize) {
    const auto t0 = pclock::now();
    const std::vector<int> out = pool.map(plus_one, items, chunksize);
    const double s = std::chrono::duration<double>(pclock::now() - t0).count();
    for (std::size_t i = 0; i < items.size(); ++i)
        if (out[i] != items[i] + 1) throw std::runtime_error("shmq Pool: wrong result");
    return static_cast<double>(items.size()) / s;
}

// ---- the hand-written pipe pool ----------------------------------------------------------------

struct item_msg { std::int32_t index, value; };

bool write_all(int fd, const void* p, std::size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n) {
        const ssize_t w = ::write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        c += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

bool read_all(int fd, void* p, std::size_t n) {
    char* c = static_cast<char*>(p);
    while (n) {
        const ssize_t r = ::read(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        c += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}

/// A task message: u32 count, then count item_msgs. An answer: the same with the results.
/// count 0 stops the worker.
[[noreturn]] void pipe_worker(int in, int out) {
    std::vector<item_msg> buf;
    for (;;) {
        std::uint32_t n = 0;
        if (!read_all(in, &n, sizeof n) || n == 0) ::_exit(0);
        buf.resize(n);
        if (!read_all(in, buf.data(), n * sizeof(item_msg))) ::_exit(1);
        for (auto& m : buf) m.value = plus_one(m.value);
        std::vector<char> msg(sizeof n + n * sizeof(item_msg));
        std::memcpy(msg.data(), &n, sizeof n);
        std::memcpy(msg.data() + sizeof n, buf.data(), n * sizeof(item_msg));
        if (!write_all(out, msg.data(), msg.size())) ::_exit(1);
    }
}

struct pipe_pool {
    struct worker { pid_t pid; int task_fd, result_fd; std::size_t in_flight = 0; std::vector<char> acc; };
    std::vector<worker> ws;

    explicit pipe_pool(unsigned n) {
        for (unsigned i = 0; i < n; ++i) {
            int t[2], r[2];
            if (::pipe(t) || ::pipe(r)) throw std::runtime_error("pipe");
            const pid_t pid = ::fork();
            if (pid == 0) {
                ::close(t[1]);
                ::close(r[0]);
                for (auto& w : ws) { ::close(w.task_fd); ::close(w.result_fd); }
                pipe_worker(t[0], r[1]);
            }
            ::close(t[0]);
            ::close(r[1]);
            ws.push_back({pid, t[1], r[0], 0, {}});
        }
    }
    ~pipe_pool() {
        const std::uint32_t stop = 0;
        for (auto& w : ws) {
            write_all(w.task_fd, &stop, sizeof stop);
            ::close(w.task_fd);
        }
        for (auto& w : ws) {
            int st;
            ::waitpid(w.pid, &st, 0);
            ::close(w.result_fd);
        }
    }

    std::vector<int> map(const std::vector<int>& items, std::size_t chunksize) {
        std::vector<int> out(items.size());
        // Messages each worker may hold unanswered: enough to keep it busy, few enough that
        // tasks and answers fit the 64 KiB pipe buffers (so neither side blocks in write).
        const std::size_t msg_bytes = sizeof(std::uint32_t) + chunksize * sizeof(item_msg);
        const std::size_t window = std::max<std::size_t>(1, std::min<std::size_t>(64, 16384 / msg_bytes));
        std::size_t next = 0, answered = 0;
        std::vector<char> msg;
        std::vector<pollfd> fds(ws.size());
        std::vector<char> buf(1 << 16);
        while (answered < items.size()) {
            for (auto& w : ws) {
                while (w.in_flight < window && next < items.size()) {
                    const auto n = static_cast<std::uint32_t>(std::min(chunksize, items.size() - next));
                    msg.resize(sizeof n + n * sizeof(item_msg));
                    std::memcpy(msg.data(), &n, sizeof n);
                    auto* m = reinterpret_cast<item_msg*>(msg.data() + sizeof n);
                    for (std::uint32_t k = 0; k < n; ++k)
                        m[k] = {static_cast<std::int32_t>(next + k), items[next + k]};
                    if (!write_all(w.task_fd, msg.data(), msg.size())) throw std::runtime_error("write");
                    next += n;
                    ++w.in_flight;
                }
            }
            for (std::size_t i = 0; i < ws.size(); ++i) fds[i] = {ws[i].result_fd, POLLIN, 0};
            if (::poll(fds.data(), fds.size(), 10'000) <= 0) throw std::runtime_error("pipe pool: poll");
            for (std::size_t i = 0; i < ws.size(); ++i) {
                if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
                auto& w = ws[i];
                const ssize_t r = ::read(w.result_fd, buf.data(), buf.size());
                if (r <= 0) throw std::runtime_error("pipe pool: worker died");
                w.acc.insert(w.acc.end(), buf.data(), buf.data() + r);
                std::size_t at = 0;
                while (w.acc.size() - at >= sizeof(std::uint32_t)) {
                    std::uint32_t n;
                    std::memcpy(&n, w.acc.data() + at, sizeof n);
                    const std::size_t len = sizeof n + n * sizeof(item_msg);
                    if (w.acc.size() - at < len) break;
                    for (std::uint32_t k = 0; k < n; ++k) {
                        item_msg m;
                        std::memcpy(&m, w.acc.data() + at + sizeof n + k * sizeof m, sizeof m);
                        out[static_cast<std::size_t>(m.index)] = m.value;
                    }
                    answered += n;
                    --w.in_flight;
                    at += len;
                }
                w.acc.erase(w.acc.begin(), w.acc.begin() + static_cast<std::ptrdiff_t>(at));
            }
        }
        return out;
    }
};

double run_pipe(pipe_pool& pool, const std::vector<int>& items, std::size_t chunksize) {
    const auto t0 = pclock::now();
    const std::vector<int> out = pool.map(items, chunksize);
    const double s = std::chrono::duration<double>(pclock::now() - t0).count();
    for (std::size_t i = 0; i < items.size(); ++i)
        if (out[i] != items[i] + 1) throw std::runtime_error("pipe pool: wrong result");
    return static_cast<double>(items.size()) / s;
}

// ---- Python ----------------------------------------------------------------------------------

const char* python_script = R"(
import multiprocessing as mp, sys, time
def plus_one(x):
    return x + 1
if __name__ == "__main__":
    n, procs, repeat = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    chunks = [int(c) for c in sys.argv[4:]]
    items = list(range(n))
    with mp.get_context("fork").Pool(procs) as pool:
        pool.map(plus_one, range(1000))
        pool.map(plus_one, items, chunksize=1000)
        for r in range(repeat):
            for c in chunks:
                t0 = time.perf_counter()
                out = pool.map(plus_one, items, chunksize=c)
                t = time.perf_counter() - t0
                assert out[-1] == n and len(out) == n
                print(c, n / t, flush=True)
)";

/// Runs the script; returns per chunksize the rates of each repetition. Empty on failure.
std::vector<std::vector<double>> run_python(const std::string& python, std::size_t n, unsigned procs,
                                            int repeat, const std::vector<std::size_t>& chunks) {
    std::vector<std::vector<double>> rates(chunks.size());
    char path[] = "/tmp/shmq-bench-pool-XXXXXX";
    const int fd = ::mkstemp(path);
    if (fd < 0) return {};
    const bool ok = write_all(fd, python_script, std::strlen(python_script));
    ::close(fd);
    if (ok) {
        std::string cmd = "'" + python + "' " + path + " " + std::to_string(n) + " " +
                          std::to_string(procs) + " " + std::to_string(repeat);
        for (auto c : chunks) cmd += " " + std::to_string(c);
        if (FILE* p = ::popen(cmd.c_str(), "r")) {
            std::size_t c;
            double rate;
            while (std::fscanf(p, "%zu %lf", &c, &rate) == 2)
                for (std::size_t i = 0; i < chunks.size(); ++i)
                    if (chunks[i] == c) rates[i].push_back(rate);
            ::pclose(p);
        }
    }
    ::unlink(path);
    return rates;
}

std::string rate(double r) {
    char b[64];
    if (r <= 0) return "-";
    if (r >= 1e6) std::snprintf(b, sizeof b, "%.2f M/s", r / 1e6);
    else std::snprintf(b, sizeof b, "%.1f k/s", r / 1e3);
    return b;
}

std::string ratio(double a, double b) {
    char s[32];
    if (a <= 0 || b <= 0) return "-";
    std::snprintf(s, sizeof s, "%.1fx", a / b);
    return s;
}

} // namespace

int pool_bench(int repeat, bool quick, const std::string& python) {
    const std::size_t n = quick ? 100'000 : 1'000'000;
    const std::vector<std::size_t> chunks{1, 1000};
    const unsigned procs = cpus();
    std::vector<int> items(n);
    for (std::size_t i = 0; i < n; ++i) items[i] = static_cast<int>(i);

    std::cerr << "shmq-bench --pool: map(x + 1) over " << n << " ints, " << procs << " workers, "
              << repeat << " repetitions\n";
    std::vector<std::vector<double>> shmq_r(chunks.size()), pipe_r(chunks.size());
    try {
        shmq::Pool spool(procs);
        pipe_pool ppool(procs);
        // Warm up: one untimed map of every size, so each pool's allocator has grown its heap
        // (the first map of 1 M items otherwise pays mostly for page faults on fresh memory).
        run_shmq(spool, std::vector<int>(items.begin(), items.begin() + 1000), 1);
        run_pipe(ppool, std::vector<int>(items.begin(), items.begin() + 1000), 1);
        run_shmq(spool, items, 1000);
        run_pipe(ppool, items, 1000);
        for (int r = 0; r < repeat; ++r) {
            for (std::size_t c = 0; c < chunks.size(); ++c) {
                shmq_r[c].push_back(run_shmq(spool, items, chunks[c]));
                pipe_r[c].push_back(run_pipe(ppool, items, chunks[c]));
                std::cerr << "  chunksize " << chunks[c] << ": shmq " << rate(shmq_r[c].back())
                          << ", pipe(2) " << rate(pipe_r[c].back()) << "\n";
            }
        }
    } catch (const std::exception& e) {
        std::cerr << "shmq-bench --pool: " << e.what() << "\n";
        return 1;
    }
    std::vector<std::vector<double>> py_r;
    const std::string py = python.empty() ? std::string() : find_in_path(python);
    if (!py.empty()) {
        std::cerr << "  Python multiprocessing.Pool ...\n";
        py_r = run_python(py, n, procs, repeat, chunks);
    }
    if (py_r.empty()) py_r.assign(chunks.size(), {});

    std::printf("Pool.map(x + 1) over %zu ints, %u workers: tasks/s, median of %d runs\n", n, procs,
                repeat);
    std::printf("%-28s %16s %16s\n", "", "chunksize 1", "chunksize 1000");
    std::printf("%-28s %16s %16s\n", "shmq Pool", rate(median(shmq_r[0])).c_str(),
                rate(median(shmq_r[1])).c_str());
    std::printf("%-28s %16s %16s\n", "fork + pipe(2) pool", rate(median(pipe_r[0])).c_str(),
                rate(median(pipe_r[1])).c_str());
    std::printf("%-28s %16s %16s\n", "Python multiprocessing.Pool", rate(median(py_r[0])).c_str(),
                rate(median(py_r[1])).c_str());
    std::printf("%-28s %16s %16s   (target >= 20x at chunksize 1)\n", "shmq / Python",
                ratio(median(shmq_r[0]), median(py_r[0])).c_str(),
                ratio(median(shmq_r[1]), median(py_r[1])).c_str());
    std::printf("%-28s %16s %16s   (target >= 3x)\n", "shmq / pipe pool",
                ratio(median(shmq_r[0]), median(pipe_r[0])).c_str(),
                ratio(median(shmq_r[1]), median(pipe_r[1])).c_str());
    return 0;
}

} // namespace shmq_bench
