// SPDX-License-Identifier: BSL-1.0
// shmq-bench — what a run prints and writes: the machine, the tables, shmq's ratios to each
// baseline and to the ceiling, the issue's targets, the JSON file and the gnuplot chart.
#pragma once

#include "common.hpp"
#include "copy_limit.hpp"
#include "large.hpp"
#include "loan.hpp"
#include "transport.hpp"

#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace shmq_bench {

struct machine_info {
    std::string cpu;          ///< model name from /proc/cpuinfo
    unsigned cores = 0;       ///< online CPUs
    unsigned usable = 0;      ///< CPUs this process may run on (affinity)
    std::string kernel;       ///< uname: sysname release machine
    std::string compiler;     ///< __VERSION__
    std::string boost;        ///< BOOST_LIB_VERSION, as 1.81
    std::string python;       ///< python3 --version, or "absent"
    double busy_before = -1;  ///< cores busy with other programs just before the run (-1: unknown)
    double busy_after = -1;   ///< ... and just after it
};

/// How many cores were busy (not idle) over the next `seconds`, from /proc/stat; -1 if unknown.
/// Called while the runner itself is idle, it measures the other programs on the machine.
double busy_cores(double seconds);

machine_info probe_machine(const std::string& python);

/// The full path of an executable found on $PATH (or `name` itself if it has a slash), or "".
std::string find_in_path(const std::string& name);

struct report_input {
    machine_info machine;
    int repeat = 3;
    double duration_s = 0;
    bool quick = false;
    bool pinned = false;
    std::vector<int> cpus;   // the CPUs processes were pinned to, round robin (empty: not pinned)
    double elapsed_s = 0;
    std::vector<copy_limit> copies;   ///< memcpy at the sizes of the bytes scenarios, hot and cold
    std::vector<scenario_result> results;
    std::map<std::string, transport::role> roles;   ///< transport name -> role
    std::map<std::string, bool> shared;             ///< transport name -> one channel for N->N
    bool suite = true;                   ///< false: only a section ran (--large)
    std::vector<std::string> filters;    ///< --filter as given (a missing target says so)
    std::optional<large_report> large;   ///< LARGE ITEMS, when it ran
    std::optional<loan_figures> loan;    ///< the loan section, when it ran
};

/// The human-readable report: the machine, the suite's tables, ratios and issue 4's targets,
/// then LARGE ITEMS when it ran.
void print_report(std::ostream& out, const report_input& in);
/// Issue 12's targets, one row each: measured and met or missed, or why this run has no figure
/// for it. Printed last, once every section (the loan section prints itself) has run.
void print_issue12_targets(std::ostream& out, const report_input& in);
/// Every figure, every repetition, the ratios and the targets. Throws on I/O failure.
void write_json(const std::string& path, const report_input& in);
/// Throughput vs size (1->1, bytes) and round-trip bars, via gnuplot. Writes the script beside
/// the PNG (FILE.gp). Returns false, with the reason in `why`, when no chart was drawn.
bool write_plot(const std::string& png, const report_input& in, std::string& why);

} // namespace shmq_bench
