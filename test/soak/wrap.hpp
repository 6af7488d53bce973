// SPDX-License-Identifier: BSL-1.0
// shmq-soak — the wrap phase: more than 2^36 bytes (64 GiB) through one Pipe in 8-16 MiB
// messages, while a second reader holds a handle that received one message at the start and then
// idles until all of it has passed. Issue 7 A.1: positions are cached per handle and compared
// modulo 2^36, so that reader's next poll/recv on the empty pipe may see an old message again,
// and the writer's next message may be lost. Every message is checked (length, and a stamp of
// its sequence in every 4 KiB) and marked in a bitmap, as in the chaos phases.
#pragma once

#include "config.hpp"

#include <cstdint>
#include <string>

namespace shmq_soak {

struct wrap_result {
    double seconds = 0;
    std::uint64_t sent = 0, received = 0, bytes = 0;
    std::uint64_t duplicated = 0, torn = 0, lost = 0;
    std::uint64_t ready_on_empty = 0;   // the idle reader's poll said "ready" on an empty pipe
    std::uint64_t hangs = 0, errors = 0;
    bool completed = false;             // all bytes went through before the deadline
    std::string first_problem;
};

wrap_result run_wrap_phase(const config& cfg);

} // namespace shmq_soak
