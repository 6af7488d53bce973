// SPDX-License-Identifier: BSL-1.0
// shmq-bench — the physical limit of a large message: how fast one core copies it. Every
// transport here copies a message at least once (shmq, pipes and sockets twice: into the
// ring or kernel, and out), so a bandwidth is read against memcpy's on the same machine.
#pragma once

#include <cstddef>

namespace shmq_bench {

struct copy_limit {
    std::size_t size = 0;
    double hot_bytes_per_s = 0;    ///< the same source and destination again and again (in cache)
    double cold_bytes_per_s = 0;   ///< walking 512 MiB of sources and destinations (from memory)
};

/// memcpy of `size` bytes in this process, hot and cold, for about `seconds` each.
copy_limit measure_copy(std::size_t size, double seconds);

} // namespace shmq_bench
