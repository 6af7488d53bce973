// SPDX-License-Identifier: BSL-1.0
// shmq — the compiled half of message_sink.hpp: the page-size advice for large receive buffers.
#include <shmq/detail/message_sink.hpp>

#include <sys/mman.h>

#include <cstdint>

namespace shmq::detail {

void advise_large_buffer(void* p, std::size_t n) noexcept {
    constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
    if (n < (std::size_t{4} << 20)) return;
    // Measured (a 16 MiB and a 64 MiB Queue::get() 1→1 on a 2-vCPU VM): 2.2× and 7.7× more items
    // per second with the advice. A lying length costs at most one 2 MiB page beyond the bytes
    // that arrive (pages are still only allocated when touched). Memory the caller already has
    // mapped keeps its pages: the advice only changes how untouched ones are backed.
    const auto begin = (reinterpret_cast<std::uintptr_t>(p) + huge - 1) & ~(huge - 1);
    const auto end = (reinterpret_cast<std::uintptr_t>(p) + n) & ~(huge - 1);
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

} // namespace shmq::detail
