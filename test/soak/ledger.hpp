// SPDX-License-Identifier: BSL-1.0
// shmq-soak — the accounting shared by the runner and its children: one ledger per phase, mapped
// MAP_SHARED|MAP_ANONYMOUS by the runner before it forks anyone, so every child (first ones and
// respawns) writes into the same pages and the runner reads them after the children are gone.
//
// Who writes what is said on each field. The runner only reads producer and consumer fields
// after the writer is dead or has exited (waitpid), so what it reads is final.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shmq_soak {

/// One incarnation of a producer (a fresh fork gets a fresh slot, so its sequence restarts at 0
/// and its losses are counted apart from its predecessor's).
struct producer_slot {
    std::atomic<std::uint64_t> acked{0};      // producer: number of puts/sends that returned
    std::atomic<std::uint32_t> in_put{0};     // producer: 1 while inside put/send of seq == acked
    std::atomic<std::uint32_t> used{0};       // runner: 1 once handed to a fork
    std::atomic<std::uint32_t> producer{0};   // runner: which producer position
    std::atomic<std::uint32_t> killed{0};     // runner: 1 when it ended by our SIGKILL
};

/// One worker position (producer i or consumer j), whatever its current incarnation.
struct worker_record {
    std::atomic<std::int64_t> heartbeat_ns{0};  // worker: steady_clock ns of its last sign of life
    std::atomic<std::uint32_t> in_get{0};       // consumer: 1 from entering get/recv until what it
                                                // returned is recorded (a kill then may cost one)
    std::atomic<std::uint32_t> state{0};        // worker: what it is doing (worker_state), for
                                                // the hang report
};

enum worker_state : std::uint32_t { ws_start, ws_put, ws_get, ws_task_done, ws_flush, ws_idle,
                                    ws_exit };
const char* state_name(std::uint32_t s) noexcept;

/// Counters every consumer adds to (relaxed: read by the runner only after they are gone).
struct consumer_totals {
    std::atomic<std::uint64_t> received{0};     // whole messages recorded
    std::atomic<std::uint64_t> bytes{0};        // their bytes
    std::atomic<std::uint64_t> duplicated{0};   // (slot, seq) already set in the bitmap
    std::atomic<std::uint64_t> torn{0};         // bad header, length or checksum
    std::atomic<std::uint64_t> unsent{0};       // seq beyond what its producer was putting
    std::atomic<std::uint64_t> errors{0};       // unexpected exceptions, any worker
    std::atomic<std::uint32_t> error_text_taken{0};   // first erring worker wins the text below
    char error_text[240]{};                           // written once by that worker
};

/// Runner -> children.
struct phase_flags {
    std::atomic<std::uint32_t> stop_producing{0};   // runner: producers finish and exit
    std::atomic<std::uint32_t> drain{0};            // runner: consumers exit once empty
};

class ledger {
public:
    static constexpr std::uint32_t max_slots = 512;
    static constexpr std::uint64_t max_seq = std::uint64_t{1} << 20;   // per incarnation; then
                                                                        // the producer retires
    static constexpr std::uint32_t max_workers = 64;

    ledger();                        // maps; throws std::system_error
    ~ledger();                       // unmaps
    ledger(const ledger&) = delete;
    ledger& operator=(const ledger&) = delete;

    producer_slot& slot(std::uint32_t i) noexcept { return shared_->slots[i]; }
    worker_record& worker(std::uint32_t i) noexcept { return shared_->workers[i]; }
    consumer_totals& totals() noexcept { return shared_->totals; }
    phase_flags& flags() noexcept { return shared_->flags; }

    /// Marks (slot, seq) received; false when it already was (a duplicate). Atomic across
    /// processes: two consumers that get the same message cannot both see "first".
    bool mark(std::uint32_t slot, std::uint64_t seq) noexcept;
    bool received(std::uint32_t slot, std::uint64_t seq) const noexcept;

    /// Records the first unexpected error's text (async-signal-unsafe: call in normal flow).
    void note_error(const char* who, const char* what) noexcept;

private:
    struct shared {
        phase_flags flags;
        consumer_totals totals;
        producer_slot slots[max_slots];
        worker_record workers[max_workers];
    };
    static constexpr std::size_t words_per_slot = max_seq / 64;
    shared* shared_ = nullptr;
    std::atomic<std::uint64_t>* bits_ = nullptr;   // max_slots * words_per_slot; consumers write
    std::size_t bytes_ = 0;
};

} // namespace shmq_soak
