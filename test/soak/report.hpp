// SPDX-License-Identifier: BSL-1.0
// shmq-soak — the totals over every phase, printed one figure a line and optionally as JSON.
#pragma once

#include "phase.hpp"
#include "wrap.hpp"

#include <optional>
#include <string>
#include <vector>

namespace shmq_soak {

struct run_report {
    std::uint64_t seed = 0;
    double seconds = 0;
    std::vector<phase_result> phases;
    std::optional<wrap_result> wrap;
};

/// Prints the figures and the verdict; returns the violations ("" when none).
std::string print_report(const run_report& r);
void write_json(const run_report& r, const std::string& path, const std::string& violations);

} // namespace shmq_soak
