// SPDX-License-Identifier: BSL-1.0
// The operations of Lock and RLock on their shared state, shared with Condition (whose lock is
// an RLock) and Value/Array (whose lock is a Lock).
#pragma once

#include "deadline.hpp"
#include "sync/object_layout.hpp"

#include <atomic>
#include <cstdint>

namespace shmq::detail {

/// Acquires until the deadline; records whether the mutex was taken over from a dead holder.
/// `foreign` as robust_mutex::lock. False on timeout. Never throws.
bool lock_acquire(lock_state& s, const deadline& until, const std::atomic<std::uint32_t>* foreign) noexcept;
/// False when it was not locked.
bool lock_release(lock_state& s) noexcept;
bool lock_owner_died(const lock_state& s) noexcept;

/// The calling thread: gettid(), cached per thread and refreshed in a forked child.
std::uint64_t thread_id() noexcept;
bool rlock_owned(const rlock_state& s) noexcept;
bool rlock_acquire(rlock_state& s, const deadline& until, const std::atomic<std::uint32_t>* foreign) noexcept;
/// Throws value_error when the calling thread does not hold it.
void rlock_release(rlock_state& s);
/// Releases every level held by the calling thread and returns how many (Condition::wait).
/// \pre rlock_owned(s).
std::uint32_t rlock_release_all(rlock_state& s) noexcept;
/// Re-acquires (no deadline) at `count` levels; returns whether it was taken over from a dead holder.
bool rlock_restore(rlock_state& s, std::uint32_t count, const std::atomic<std::uint32_t>* foreign) noexcept;
bool rlock_owner_died(const rlock_state& s) noexcept;

} // namespace shmq::detail
