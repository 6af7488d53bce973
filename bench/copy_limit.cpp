// SPDX-License-Identifier: BSL-1.0
#include "copy_limit.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <new>

namespace shmq_bench {
namespace {

using clock = std::chrono::steady_clock;

// Copies size-byte blocks from src to dst, `span` bytes of each walked block by block, until
// `seconds` pass; bytes per second.
double copy_rate(std::byte* src, std::byte* dst, std::size_t span, std::size_t size, double seconds) {
    const std::size_t blocks = std::max<std::size_t>(1, span / size);
    std::size_t i = 0, n = 0;
    const auto start = clock::now();
    const auto until = start + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
    auto now = start;
    do {
        for (int k = 0; k < 8; ++k) {
            std::memcpy(dst + i * size, src + i * size, size);
            // The compiler must not drop or merge the copies.
            asm volatile("" ::"r"(dst) : "memory");
            i = i + 1 == blocks ? 0 : i + 1;
            ++n;
        }
        now = clock::now();
    } while (now < until);
    return double(n) * double(size) / std::chrono::duration<double>(now - start).count();
}

struct region {
    explicit region(std::size_t n) : size(n) {
        void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
        data = static_cast<std::byte*>(p);
        std::memset(data, 1, n);
    }
    ~region() { ::munmap(data, size); }
    region(const region&) = delete;
    region& operator=(const region&) = delete;
    std::size_t size;
    std::byte* data;
};

} // namespace

copy_limit measure_copy(std::size_t size, double seconds) {
    // Cold: far larger than any last-level cache, so each block comes from memory.
    constexpr std::size_t cold_span = std::size_t{256} << 20;
    const std::size_t span = std::max(cold_span, size);
    region src(span), dst(span);
    copy_limit r;
    r.size = size;
    r.hot_bytes_per_s = copy_rate(src.data, dst.data, size, size, seconds);
    r.cold_bytes_per_s = copy_rate(src.data, dst.data, span, size, seconds);
    return r;
}

} // namespace shmq_bench
