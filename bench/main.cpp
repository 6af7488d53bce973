// SPDX-License-Identifier: BSL-1.0
// shmq-bench — how much faster shmq is than what you would use instead, on this machine.
//
//   shmq-bench                      the default suite, then LARGE ITEMS and the loans, then
//                                   issue 12's targets (about 3 minutes on 2 cores)
//   shmq-bench --quick              a smaller, shorter suite (under 40 s), no sections
//   shmq-bench --large              only LARGE ITEMS
//   shmq-bench --json out.json --plot out.png --filter "64B 1->1" --repeat 5
//
// The suite is a table of scenarios (transport x payload x size x process layout, plus a 64 B
// round trip per transport). Repetitions are interleaved (every scenario once, then again), so
// a machine that changes speed for a few seconds touches one repetition of many scenarios rather
// than every repetition of one; each figure is the median of the repetitions. Progress goes to
// stderr, the report to stdout. Exit status: 0 when every scenario that ran produced a figure,
// 1 when some timed out or failed, 2 on a bad command line.
#include "common.hpp"
#include "harness.hpp"
#include "large.hpp"
#include "loan.hpp"
#include "report.hpp"
#include "transport.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include <sched.h>
#include <unistd.h>

namespace shmq_bench {
int memory_check();   // memory.cpp
int pool_bench(int repeat, bool quick, const std::string& python);   // pool.cpp
int sync_check(int repeat);   // sync.cpp
int wake_check(int repeat);   // wake.cpp
int nats_bench(bool quick);   // nats.cpp
namespace {

constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

struct options {
    bool quick = false;
    int repeat = 3;
    double duration = 0;   // 0 = the suite's default
    std::vector<std::string> filters;
    std::string json, plot;
    std::string python = "python3";
    std::string python_script;
    bool no_python = false;
    bool list = false;
    bool pin = true;   // producer and consumer on different CPUs, as servers run (--no-pin: the scheduler places them)
    bool memory = false;
    bool pool = false;
    bool sync = false;
    bool wake = false;
    bool loan = false;
    bool nats = false;
    bool large = false;        // only the LARGE ITEMS section
    bool with_large = false;   // LARGE ITEMS even with --quick or --filter
    bool with_loan = false;    // the loan section even with --quick or --filter
};

void usage(std::ostream& o) {
    o << "usage: shmq-bench [options]\n"
         "Compares shmq with pipe(2), a UNIX socketpair, boost::interprocess::message_queue,\n"
         "Python's multiprocessing and a lock-free SPSC ring (the ceiling), in forked processes.\n\n"
         "After the suite, a plain run (no --quick, no --filter) also runs two sections and ends\n"
         "with issue 12's targets, each met, missed or \"not measured in this run\" with the reason:\n"
         "  LARGE ITEMS         Queue<std::string> of 1 MiB and 64 MiB items, get() / get_into(),\n"
         "                      bounded and unbounded, against a Pipe (items/s, GB/s)\n"
         "  LOANS               the --loan table below\n\n"
         "  --quick             smaller suite, 0.1 s runs (under 40 s in all); no sections\n"
         "  --repeat N          repetitions per scenario; figures are their median (default 3)\n"
         "  --filter SUBSTR     only scenarios whose id contains SUBSTR (case-insensitive; may be\n"
         "                      repeated: any match). Ids look like\n"
         "                      \"throughput shmq Pipe bytes 64B 1->1\", \"latency pipe(2) bytes 64B 1->1\"\n"
         "  --json FILE         write every figure, every repetition, ratios and targets as JSON\n"
         "  --plot FILE.png     draw throughput vs size and round-trip bars with gnuplot\n"
         "                      (the script is kept as FILE.gp)\n"
         "  --duration S        seconds per run (default 0.3; 0.1 with --quick)\n"
         "  --pin               (the default) pin each process to one CPU: producer and consumer\n"
         "                      (pinger and ponger) of a pair on different CPUs, round robin over\n"
         "                      the CPUs this process may use. Without it the scheduler may put\n"
         "                      both on one CPU or two, and figures jump between the two states\n"
         "  --no-pin            let the scheduler place the processes\n"
         "  --list              print the scenario ids and exit\n"
         "  --python PATH       the Python interpreter (default python3 on PATH)\n"
         "  --python-script P   python_baseline.py (default: found beside the sources)\n"
         "  --no-python         skip the Python baselines\n"
         "  --memory            instead of the suite: resident memory over 10 M messages, and\n"
         "                      the shared memory one queue costs\n"
         "  --pool              instead of the suite: Pool.map of x + 1 over 1 M ints (100 k with\n"
         "                      --quick), chunksize 1 and 1000: shmq Pool, a fork + pipe(2) pool and\n"
         "                      Python's multiprocessing.Pool, in tasks/s\n"
         "  --sync              instead of the suite: Lock acquire/release (uncontended, 2 processes)\n"
         "                      and Event wake latency against Boost, pthread and pipe baselines\n"
         "  --wake              instead of the suite: wake latency of a process asleep in epoll_wait\n"
         "                      on a Connection's fileno(), against an OS pipe and a blocking recv\n"
         "  --large             instead of the suite: only LARGE ITEMS (and the targets it feeds)\n"
         "  --with-large        run LARGE ITEMS even with --quick or --filter\n"
         "  --with-loan         run the loan section even with --quick or --filter\n"
         "  --loan              instead of the suite: zero-copy Connection::loan/recv_view against\n"
         "                      send_bytes/recv_bytes_into, and Queue<std::string>::loan/get_view\n"
         "                      against put/get_into, 64 KiB and 1 MiB, with work on both sides\n"
         "  --nats              instead of the suite: Queue<std::string> in shared memory against NATS\n"
         "                      JetStream on loopback (a nats-server of its own), 64 B and 64 KiB:\n"
         "                      throughput and round trip\n"
         "  --help              this text\n";
}

bool parse(int argc, char** argv, options& o) {
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&](const char* what) -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(std::string(what) + " needs a value");
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            usage(std::cout);
            std::exit(0);
        } else if (a == "--quick") {
            o.quick = true;
        } else if (a == "--repeat") {
            o.repeat = std::stoi(value("--repeat"));
            if (o.repeat < 1) throw std::invalid_argument("--repeat must be at least 1");
        } else if (a == "--filter") {
            o.filters.push_back(value("--filter"));
        } else if (a == "--json") {
            o.json = value("--json");
        } else if (a == "--plot") {
            o.plot = value("--plot");
        } else if (a == "--duration") {
            o.duration = std::stod(value("--duration"));
            if (!(o.duration > 0 && o.duration <= 60)) throw std::invalid_argument("--duration must be in (0, 60]");
        } else if (a == "--pin") {
            o.pin = true;
        } else if (a == "--no-pin") {
            o.pin = false;
        } else if (a == "--list") {
            o.list = true;
        } else if (a == "--python") {
            o.python = value("--python");
        } else if (a == "--python-script") {
            o.python_script = value("--python-script");
        } else if (a == "--no-python") {
            o.no_python = true;
        } else if (a == "--memory") {
            o.memory = true;
        } else if (a == "--pool") {
            o.pool = true;
        } else if (a == "--sync") {
            o.sync = true;
        } else if (a == "--wake") {
            o.wake = true;
        } else if (a == "--loan") {
            o.loan = true;
        } else if (a == "--nats") {
            o.nats = true;
        } else if (a == "--large") {
            o.large = true;
        } else if (a == "--with-large") {
            o.with_large = true;
        } else if (a == "--with-loan") {
            o.with_loan = true;
        } else {
            throw std::invalid_argument("unknown option " + a);
        }
    }
    return true;
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

bool selected(const scenario& sc, const std::vector<std::string>& filters) {
    if (filters.empty()) return true;
    const std::string id = lower(sc.id());
    return std::any_of(filters.begin(), filters.end(),
                       [&](const std::string& f) { return id.find(lower(f)) != std::string::npos; });
}

/// The suite: which scenario runs for which transport. Transports are in report order.
std::vector<scenario> make_suite(bool quick, const std::vector<std::unique_ptr<transport>>& ts) {
    const std::vector<std::size_t> sizes =
        quick ? std::vector<std::size_t>{64, 1 * KiB, 1 * MiB}
              : std::vector<std::size_t>{8, 64, 1 * KiB, 64 * KiB, 1 * MiB, 16 * MiB};
    const std::vector<int> many = quick ? std::vector<int>{4} : std::vector<int>{2, 4};
    const std::vector<std::size_t> many_sizes =
        quick ? std::vector<std::size_t>{64} : std::vector<std::size_t>{64, 64 * KiB};

    std::vector<scenario> v;
    auto add = [&](const transport& t, payload k, std::size_t size, int pairs, mode m) {
        if (!t.unsupported(k, size, m).empty()) return;
        // Each Python run costs an interpreter start (0.2-0.4 s on a busy machine): --quick keeps
        // only the Python figures the targets use, 64 B 1->1, the record and the round trip.
        if (quick && t.external() && m == mode::throughput && (size != 64 || pairs != 1)) return;
        v.push_back({t.name(), k, size, pairs, m});
    };
    for (std::size_t size : sizes)
        for (const auto& t : ts) add(*t, payload::bytes, size, 1, mode::throughput);
    for (int n : many)
        for (std::size_t size : many_sizes)
            for (const auto& t : ts) add(*t, payload::bytes, size, n, mode::throughput);
    for (payload k : {payload::pod, payload::record})
        for (const auto& t : ts)
            if (t->what() == transport::role::shmq || t->external()) add(*t, k, 64, 1, mode::throughput);
    // Round trips: 64 B for every transport; larger messages (full suite) for the compiled ones,
    // so the figures against cpp-ipc cover every size, not only the small-message path.
    const std::vector<std::size_t> trip_sizes =
        quick ? std::vector<std::size_t>{64} : std::vector<std::size_t>{64, 1 * KiB, 64 * KiB, 1 * MiB};
    for (std::size_t size : trip_sizes)
        for (const auto& t : ts)
            if (size == 64 || !t->external()) add(*t, payload::bytes, size, 1, mode::latency);
    return v;
}

std::string find_script(const std::string& given) {
    if (!given.empty()) return ::access(given.c_str(), R_OK) == 0 ? given : "";
    if (const char* env = std::getenv("SHMQ_BENCH_PYTHON_SCRIPT"); env && ::access(env, R_OK) == 0) return env;
    std::vector<std::string> candidates = {"bench/python_baseline.py", "python_baseline.py"};
#ifdef SHMQ_BENCH_SOURCE_DIR
    // Set by bench/Jamfile (an unquoted path: stringified here, as b2 cannot quote a define).
#define SHMQ_BENCH_STR2(x) #x
#define SHMQ_BENCH_STR(x) SHMQ_BENCH_STR2(x)
    candidates.push_back(SHMQ_BENCH_STR(SHMQ_BENCH_SOURCE_DIR) "/python_baseline.py");
#endif
    // Beside the executable, and up its directories (an in-tree build: <repo>/bin/.../shmq-bench).
    char exe[4096];
    ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        std::string dir(exe, static_cast<std::size_t>(n));
        while (!dir.empty()) {
            dir.erase(dir.find_last_of('/') == std::string::npos ? 0 : dir.find_last_of('/'));
            candidates.push_back(dir + "/python_baseline.py");
            candidates.push_back(dir + "/bench/python_baseline.py");
        }
    }
    for (const auto& c : candidates)
        if (::access(c.c_str(), R_OK) == 0) return c;
    return {};
}

std::string figure(const scenario& sc, const run_result& r) {
    if (r.state != status::ok) return std::string(to_string(r.state)) + (r.note.empty() ? "" : ": " + r.note);
    char buf[128];
    if (sc.what == mode::latency)
        std::snprintf(buf, sizeof buf, "p50 %.2f us  p99 %.2f us  (%llu round trips)", r.p50 / 1e3, r.p99 / 1e3,
                      static_cast<unsigned long long>(r.samples));
    else
        std::snprintf(buf, sizeof buf, "%.3f M msg/s  %.3f GB/s", r.msgs_per_s / 1e6, r.bytes_per_s / 1e9);
    std::string s = buf;
    if (r.others > 0.2) {
        std::snprintf(buf, sizeof buf, "  [other programs used %.1f cores]", r.others);
        s += buf;
    }
    return s;
}

int run(int argc, char** argv) {
    options opt;
    try {
        parse(argc, argv, opt);
    } catch (const std::exception& e) {
        std::cerr << "shmq-bench: " << e.what() << "\n\n";
        usage(std::cerr);
        return 2;
    }
    if (opt.memory) return memory_check();
    if (opt.pool) return pool_bench(opt.repeat, opt.quick, opt.no_python ? std::string() : opt.python);
    if (opt.sync) return sync_check(opt.repeat);
    if (opt.wake) return wake_check(opt.repeat);
    if (opt.loan) return loan_bench(opt.repeat, opt.quick);
    // After the suite, the default run measures LARGE ITEMS and the loans too, so every figure of
    // issue 12's targets comes from one run. --quick and --filter ask for a short run (CI's smoke
    // is --quick): there the sections run only when asked for.
    const bool only_large = opt.large;
    const bool plain = !opt.quick && opt.filters.empty();
    const bool with_large = only_large || opt.with_large || plain;
    const bool with_loan = !only_large && (opt.with_loan || plain);
    if (opt.nats) return nats_bench(opt.quick);

    std::vector<std::unique_ptr<transport>> ts;
    ts.push_back(make_pipe_transport());
    ts.push_back(make_socketpair_transport());
    ts.push_back(make_message_queue_transport());
    if (!opt.no_python)
        for (auto& t : make_python_transports()) ts.push_back(std::move(t));
    ts.push_back(make_spsc_transport());
    ts.push_back(make_spsc_transport(true));
    if (auto t = make_cpp_ipc_transport()) ts.push_back(std::move(t));
    for (auto& t : make_shmq_transports()) ts.push_back(std::move(t));

    std::vector<scenario> suite;
    if (!only_large)
        for (const auto& sc : make_suite(opt.quick, ts))
            if (selected(sc, opt.filters)) suite.push_back(sc);
    if (opt.list) {
        for (const auto& sc : suite) std::cout << sc.id() << "\n";
        return 0;
    }
    if (suite.empty() && !only_large) {
        std::cerr << "shmq-bench: no scenario matches the filter (see --list)\n";
        return 2;
    }

    run_settings rs;
    rs.duration_s = opt.duration > 0 ? opt.duration : (opt.quick ? 0.1 : 0.3);
    rs.timeout_s = 20;
    if (!opt.no_python) {
        rs.python = find_in_path(opt.python);
        rs.python_script = find_script(opt.python_script);
        if (rs.python.empty())
            std::cerr << "shmq-bench: " << opt.python << " not found: the Python baselines are skipped\n";
        else if (rs.python_script.empty())
            std::cerr << "shmq-bench: python_baseline.py not found (use --python-script): the Python "
                         "baselines are skipped\n";
    }
    if (opt.pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        if (::sched_getaffinity(0, sizeof set, &set) == 0)
            for (int c = 0; c < CPU_SETSIZE; ++c)
                if (CPU_ISSET(c, &set)) rs.cpus.push_back(c);
        if (rs.cpus.size() < 2) std::cerr << "shmq-bench: --pin: fewer than 2 CPUs; pairs share one\n";
    }
    install_signal_handlers();

    std::map<std::string, transport*> by_name;
    report_input in;
    for (const auto& t : ts) {
        by_name[t->name()] = t.get();
        in.roles[t->name()] = t->what();
        in.shared[t->name()] = t->shared();
    }
    in.machine = probe_machine(rs.python);
    in.repeat = opt.repeat;
    in.duration_s = rs.duration_s;
    in.quick = opt.quick;
    in.pinned = opt.pin;
    in.cpus = rs.cpus;
    in.suite = !only_large;
    in.filters = opt.filters;
    for (const auto& sc : suite) in.results.push_back({sc, {}, status::ok, {}});

    if (!only_large)
        std::cerr << "shmq-bench: " << suite.size() << " scenarios x " << opt.repeat << " repetitions, "
                  << rs.duration_s << " s per run, on " << in.machine.cpu << " (" << in.machine.cores
                  << " cores)\n";
    in.machine.busy_before = busy_cores(0.5);
    if (in.machine.busy_before > 0.2)
        std::cerr << "shmq-bench: warning: " << in.machine.busy_before << " of " << in.machine.cores
                  << " cores are busy with other programs; the figures will show it\n";
    {
        // The copy limit first, while no transport runs: one memcpy per size, hot and cold.
        std::set<std::size_t> sizes;
        for (const auto& sc : suite)
            if (sc.kind == payload::bytes && sc.what == mode::throughput && sc.size >= 1024) sizes.insert(sc.size);
        for (std::size_t n : sizes) in.copies.push_back(measure_copy(n, opt.quick ? 0.05 : 0.2));
    }
    const auto started = clock::now();
    for (int rep = 0; rep < opt.repeat; ++rep) {
        for (std::size_t i = 0; i < suite.size(); ++i) {
            auto& res = in.results[i];
            const auto& sc = res.sc;
            std::cerr << "[" << rep + 1 << "/" << opt.repeat << " " << i + 1 << "/" << suite.size() << "] "
                      << sc.id() << " ... " << std::flush;
            run_result r;
            // A scenario that hung once is not given the chance to cost its timeout again.
            bool hung = std::any_of(res.runs.begin(), res.runs.end(),
                                    [](const run_result& x) { return x.state == status::timeout; });
            if (hung) {
                r.state = status::skipped;
                r.note = "an earlier repetition timed out";
            } else {
                r = run_once(*by_name.at(sc.transport), sc, rs);
            }
            std::cerr << figure(sc, r) << "\n";
            res.runs.push_back(std::move(r));
        }
    }
    if (with_large) {
        std::cerr << "shmq-bench: LARGE ITEMS, 8 rows x " << opt.repeat << " repetitions\n";
        // Generous: a run moves 1 GiB, a second or two even on a busy machine.
        in.large = large_bench(opt.repeat, opt.quick, rs.cpus, 60);
    }
    in.elapsed_s = std::chrono::duration<double>(clock::now() - started).count();
    in.machine.busy_after = busy_cores(0.5);

    int failed = 0;
    auto count_failure = [&failed](scenario_result& res) {
        res.settle();
        if (res.state == status::timeout || res.state == status::error) ++failed;
    };
    for (auto& res : in.results) count_failure(res);
    if (in.large)
        for (auto& row : in.large->rows) count_failure(row.r);
    for (auto& res : in.results)
        if (res.state == status::ok && res.note.empty())
            for (const auto& x : res.runs)
                if (x.state == status::ok && !x.note.empty()) res.note = x.note;

    print_report(std::cout, in);
    if (with_loan) {
        // loan.cpp prints its own table as it goes; the figures also come back for the targets.
        std::cout << "\nLOANS  (the same as shmq-bench --loan)\n" << std::flush;
        std::cerr << "shmq-bench: loans, 4 runs x " << opt.repeat << " repetitions\n";
        loan_figures lf;
        if (loan_bench(opt.repeat, opt.quick, &lf) != 0) ++failed;
        in.loan = std::move(lf);
    }
    print_issue12_targets(std::cout, in);
    std::cout.flush();

    if (!opt.json.empty()) {
        try {
            write_json(opt.json, in);
            std::cerr << "shmq-bench: wrote " << opt.json << "\n";
        } catch (const std::exception& e) {
            std::cerr << "shmq-bench: " << e.what() << "\n";
            failed = std::max(failed, 1);
        }
    }
    if (!opt.plot.empty()) {
        std::string why;
        if (write_plot(opt.plot, in, why)) std::cerr << "shmq-bench: drew " << opt.plot << "\n";
        else std::cerr << "shmq-bench: no chart: " << why << "\n";
    }
    if (failed) {
        std::cerr << "shmq-bench: " << failed << " scenario(s) produced no figure (timeout or error)\n";
        return 1;
    }
    std::cerr << "shmq-bench: every scenario that ran produced a figure (" << in.elapsed_s << " s)\n";
    return 0;
}

} // namespace
} // namespace shmq_bench

int main(int argc, char** argv) { return shmq_bench::run(argc, argv); }
