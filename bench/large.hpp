// SPDX-License-Identifier: BSL-1.0
// shmq-bench — LARGE ITEMS (large.cpp): Queue<std::string> with items of 1 MiB and 64 MiB, got
// with get() and with get_into(), bounded and unbounded, against a Pipe moving the same bytes.
// Run after the main suite by default, alone with --large. Issue 12 asks two ratios of it:
// 64 MiB get_into / Pipe and unbounded / bounded at 1 MiB.
#pragma once

#include "common.hpp"

#include <cstddef>
#include <vector>

namespace shmq_bench {

/// How the items travel. Every Queue row is Queue<std::string>; the Pipe row is the reference.
enum class large_api {
    pipe,                 ///< Pipe(false): send_bytes / recv_bytes_into a reused buffer
    queue_get,            ///< Queue(maxsize): put / get() (a new string per item)
    queue_get_into,       ///< Queue(maxsize): put / get_into(a reused string)
    unbounded_get_into,   ///< Queue(): put never blocks; get_into(a reused string)
};

struct large_row {
    large_api api;
    std::size_t items = 0;   ///< items per run
    scenario_result r;       ///< sc.transport is the row's label; runs carry msgs_per_s = items/s
};

struct large_report {
    int repeat = 0;
    std::vector<int> cpus;           ///< consumer on cpus[0], producer on cpus[1]; empty: not pinned
    std::size_t bytes_per_run = 0;   ///< every run moves about this much (items x size)
    std::vector<large_row> rows;     ///< size-major, in large_api order
};

/// Runs every row `repeat` times, interleaved (each row once, then again), each in a forked
/// producer and consumer with a bounded wait: a run that does not end within `timeout_s` is
/// killed and its row says timeout. Progress goes to stderr. Never throws.
large_report large_bench(int repeat, bool quick, const std::vector<int>& cpus, double timeout_s);

/// The median items/s of row `num` over row `den` at `size`; NaN when either has no figure.
double large_ratio(const large_report& r, std::size_t size, large_api num, large_api den);

} // namespace shmq_bench
