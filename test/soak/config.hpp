// SPDX-License-Identifier: BSL-1.0
// shmq-soak — command line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace shmq_soak {

struct config {
    double seconds = 60;               // the chaos phases together
    unsigned producers = 3;
    unsigned consumers = 2;
    std::uint64_t seed = 0;            // 0: from the clock (printed, so a run can be repeated)
    std::size_t capacity = 64 * 1024;  // ring bytes: small, so streaming and wrapping are common
    double chaos_interval_ms = 100;    // mean time between chaos actions
    double phase_max_s = 60;           // long runs rotate through the phases again and again
    bool wrap = false;                 // the 2^36-byte Pipe phase (also when seconds >= 600)
    std::uint64_t wrap_bytes = (std::uint64_t{1} << 36) + (std::uint64_t{1} << 31);
    std::string json;                  // --json FILE
    std::string only;                  // --only SUBSTR: phases whose label contains it
};

/// Parses argv; prints usage and exits 0 on --help, 2 on a bad command line.
config parse_command_line(int argc, char** argv);

} // namespace shmq_soak
