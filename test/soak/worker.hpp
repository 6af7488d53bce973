// SPDX-License-Identifier: BSL-1.0
// shmq-soak — what a forked child does: produce or consume until the runner says stop, writing
// everything it knows into the ledger. Both functions end the process with _exit.
#pragma once

#include "ledger.hpp"
#include "subject.hpp"

#include <cstdint>

namespace shmq_soak {

struct producer_args {
    std::uint32_t producer;     // position 0..N-1
    std::uint32_t worker;       // its worker_record
    std::uint32_t slot;         // its incarnation's producer_slot (fresh for every fork)
    std::uint64_t seed;         // --seed, mixed with the slot
    std::size_t capacity;       // ring bytes: large messages are sized against it
};

[[noreturn]] void producer_main(subject& s, ledger& l, const producer_args& a);
[[noreturn]] void consumer_main(subject& s, ledger& l, std::uint32_t worker);

/// Checks and records one delivery (consumers, and the runner's final drain).
void record(ledger& l, const bytes& msg) noexcept;

std::int64_t now_ns() noexcept;   // steady_clock

/// Exit codes of a child, for the runner.
inline constexpr int exit_ok = 0, exit_retired = 10, exit_error = 11;

} // namespace shmq_soak
