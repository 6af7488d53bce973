// SPDX-License-Identifier: BSL-1.0
// shmq-bench — what every part of the runner shares: scenarios, results, clocks and statistics.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <sched.h>

namespace shmq_bench {

using clock = std::chrono::steady_clock;   // CLOCK_MONOTONIC: one clock for every process

inline std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now().time_since_epoch()).count();
}

/// One step of a bare ring's spin (the SPSC ring transport, the loan section's bare ring): a CPU
/// pause, and every 128th step a sched_yield, so that on an oversubscribed machine the peer gets
/// to run. It never sleeps.
inline void spin_relax(unsigned& spins) noexcept {
    if ((++spins & 127) == 0) {
        ::sched_yield();
    } else {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        asm volatile("yield" ::: "memory");
#endif
    }
}

/// What a message carries. `bytes` has the scenario's size; the others have a fixed shape.
enum class payload {
    bytes,    ///< raw bytes: send_bytes, write(2), std::string, ...
    pod,      ///< a 64-byte trivially copyable struct (codec's raw path)
    record,   ///< a struct with two strings (Boost.Serialization; a tuple pickled in Python)
};

const char* to_string(payload p) noexcept;

enum class mode { throughput, latency };

/// One row of the suite: a transport, a payload, a size and a process layout.
struct scenario {
    std::string transport;     ///< the transport's name, as transport::name() gives it
    payload kind = payload::bytes;
    std::size_t size = 64;     ///< message bytes (nominal for pod and record: 64)
    int pairs = 1;             ///< `pairs` producers and `pairs` consumers (1, 2, 4)
    mode what = mode::throughput;

    /// A stable, greppable name, e.g. "throughput shmq Pipe bytes 64B 1->1". --filter matches it.
    std::string id() const;
};

std::string size_label(std::size_t bytes);          // "64 B", "1 KiB", "16 MiB"
std::string size_tag(std::size_t bytes);            // "64B", "1KiB", "16MiB" (for ids)

enum class status { ok, timeout, error, skipped };
const char* to_string(status s) noexcept;

/// One repetition of one scenario.
struct run_result {
    status state = status::ok;
    std::string note;             ///< why it is not ok, or a remark (e.g. which socket type)
    double others = -1;           ///< cores used by other programs during the run (-1: unknown)
    // throughput
    std::uint64_t messages = 0;
    double seconds = 0;
    double msgs_per_s = 0;
    double bytes_per_s = 0;
    // latency (nanoseconds per round trip)
    std::uint64_t samples = 0;
    double p50 = 0, p99 = 0, p999 = 0;
};

/// Median and spread over repetitions of one figure.
struct spread {
    double median = 0, min = 0, max = 0;
};

/// Round trips in a log-linear histogram (as HdrHistogram keeps them): exact below 64 ns, then
/// 64 buckets per power of two, so every percentile is within 1/64 (1.6 %) of the truth, in
/// constant memory (30 KiB) however many round trips a run takes.
namespace latency_histogram {
inline constexpr int sub_bits = 6;
inline constexpr std::size_t sub = std::size_t{1} << sub_bits;
inline constexpr std::size_t buckets = sub + (64 - sub_bits) * sub;

inline std::size_t bucket_of(std::uint64_t v) noexcept {
    if (v < sub) return static_cast<std::size_t>(v);
    const int e = 63 - __builtin_clzll(v);   // >= sub_bits
    const std::size_t s = static_cast<std::size_t>(v >> (e - sub_bits)) & (sub - 1);
    return sub + static_cast<std::size_t>(e - sub_bits) * sub + s;
}

/// The middle of bucket b.
inline double value_of(std::size_t b) noexcept {
    if (b < sub) return static_cast<double>(b);
    const int shift = static_cast<int>((b - sub) / sub);   // e - sub_bits
    const double lo = static_cast<double>(sub + (b - sub) % sub) * static_cast<double>(std::uint64_t{1} << shift);
    return lo + static_cast<double>(std::uint64_t{1} << shift) / 2;
}

/// The q-quantile (0..1) of `total` values counted in h[buckets].
inline double quantile(const std::uint64_t* h, std::uint64_t total, double q) noexcept {
    if (total == 0) return 0;
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total));
    if (rank >= total) rank = total - 1;
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < buckets; ++b) {
        seen += h[b];
        if (seen > rank) return value_of(b);
    }
    return value_of(buckets - 1);
}
} // namespace latency_histogram

inline double percentile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::size_t k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
}

inline spread spread_of(const std::vector<double>& v) {
    spread s;
    if (v.empty()) return s;
    s.median = percentile(v, 0.5);
    s.min = *std::min_element(v.begin(), v.end());
    s.max = *std::max_element(v.begin(), v.end());
    return s;
}

/// Every repetition of one scenario, and where it came from.
struct scenario_result {
    scenario sc;
    std::vector<run_result> runs;
    status state = status::ok;    ///< ok if at least one run is ok
    std::string note;

    std::vector<double> figures(double run_result::*field) const {
        std::vector<double> v;
        for (const auto& r : runs)
            if (r.state == status::ok) v.push_back(r.*field);
        return v;
    }
    spread of(double run_result::*field) const { return spread_of(figures(field)); }
    /// Once every repetition ran: ok if one of them is; otherwise the most telling state
    /// (timeout or error over skipped) with its note.
    void settle() {
        if (std::any_of(runs.begin(), runs.end(), [](const run_result& x) { return x.state == status::ok; }))
            return;
        state = status::skipped;
        for (const auto& x : runs) {
            note = x.note;
            if (x.state == status::timeout || x.state == status::error) {
                state = x.state;
                break;
            }
        }
    }
};

/// Pins the calling process to one CPU (cpu < 0: leaves it where it is). Throws
/// std::runtime_error naming the CPU and errno when the kernel refuses. Every section of the
/// runner pins through this (harness.cpp).
void pin_to(int cpu);

} // namespace shmq_bench
