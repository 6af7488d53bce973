// Who is alive. Death must be detected without the dead process's help (DESIGN §3): a process is
// identified by its pid plus its start time (so a recycled pid is not mistaken for the old
// process), and a zombie counts as dead, because it holds nothing any more.
#pragma once

#include <atomic>
#include <cstdint>
#include <sys/types.h>

namespace shmq::detail {

struct process_identity {
    std::uint32_t pid = 0;
    std::uint64_t start = 0;   // start time in clock ticks since boot (/proc/<pid>/stat field 22)
};

/// This process's identity. Cached; the cache is refreshed in a forked child (atfork).
const process_identity& self() noexcept;
/// The cache behind self_pid(); 0 until first loaded. Written by refresh_self() only.
extern constinit std::atomic<std::uint32_t> cached_pid;
std::uint32_t load_self_pid() noexcept;
/// This process's pid, cached (getpid() is a system call; lock owners need it on every lock).
inline std::uint32_t self_pid() noexcept {
    std::uint32_t pid = cached_pid.load(std::memory_order_relaxed);
    return pid ? pid : load_self_pid();
}
/// Refreshes the cache; called in the child right after fork.
void refresh_self() noexcept;

/// The identity of a running process; false when it is gone or a zombie.
bool identity_of(std::uint32_t pid, process_identity& out) noexcept;

/// True while the process runs. start == 0 skips the start-time check (pid only).
/// Reads /proc/<pid>/stat (~10 µs): call it on slow paths only.
bool is_alive(std::uint32_t pid, std::uint64_t start = 0) noexcept;

} // namespace shmq::detail
