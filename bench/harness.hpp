// SPDX-License-Identifier: BSL-1.0
// shmq-bench — runs one repetition of one scenario in forked processes, with every wait bounded.
//
// Throughput: N consumer processes and N producer processes are forked; each gets ready (buffers
// allocated and touched), then all start together on one signal. The parent sleeps for the run's
// duration, raises the stop flag, and waits. Each consumer notes when its end marker arrived;
// the figure is (messages received by all consumers) / (last consumer's end - start), i.e. it is
// timed on the consumer side, so messages still buffered when producers stop are counted only
// once they are delivered.
// Latency: one pinger and one ponger; the pinger counts every round trip in a histogram in
// shared memory (latency_histogram: percentiles within 1.6 %).
// A child that does not finish within the timeout is killed (the result says "timeout"); a
// child that fails says why in shared memory (the result says "error: ...").
#pragma once

#include "common.hpp"
#include "transport.hpp"

#include <string>
#include <vector>

namespace shmq_bench {

struct run_settings {
    double duration_s = 0.3;        ///< how long producers (or the pinger) run
    double timeout_s = 20;          ///< extra time after that before children are killed
    std::string python;             ///< python3 to run, empty = none found
    std::string python_script;      ///< bench/python_baseline.py
    std::vector<int> cpus;          ///< --pin: child k runs on cpus[k % size] (empty = anywhere)
};

/// Cores used by other programs during a run: /proc/stat's busy time over the run, minus the
/// CPU time of the run's own processes, divided by the elapsed time. Near 0 on an idle machine.
class other_load {
public:
    other_load();   ///< starts the window
    /// children_cpu_s: CPU seconds of the run's reaped children. Returns -1 when unknown.
    double finish(double children_cpu_s) const;

private:
    double busy0_, self0_;
    clock::time_point t0_;
};

/// Runs one repetition of sc on t. Never throws: failures come back in the result.
run_result run_once(transport& t, const scenario& sc, const run_settings& s);

/// Installs SIGINT/SIGTERM handlers that kill the children of the current run, remove named
/// shared memory registered below, and exit. Ignores SIGPIPE (transports see EPIPE instead).
void install_signal_handlers();
/// Names of POSIX shared memory objects to unlink if the runner is interrupted.
void register_shm_name(const std::string& name);
void unregister_shm_name(const std::string& name);
/// A child process group to kill if the runner is interrupted (0 = none).
void set_foreign_group(int pgid) noexcept;

} // namespace shmq_bench
