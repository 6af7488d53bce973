// SPDX-License-Identifier: BSL-1.0
// shmq — wait(): block until one of several connections has something to receive, like Python's
// multiprocessing.connection.wait. A dispatcher waits on its workers' pipes with one call.
#pragma once

#include <shmq/export.hpp>

#include <shmq/connection.hpp>
#include <shmq/options.hpp>

#include <initializer_list>
#include <span>
#include <vector>

namespace shmq {

/// Waits until at least one of `conns` is ready — a message (or its first piece) is waiting, or
/// every peer has closed or died so recv would throw eof_error — or until the timeout passes
/// (nullopt: forever; <= 0: just look). Returns the ready ones in the order given (empty on
/// timeout); consumes nothing. A peer's death makes its connection ready within ~20-40 ms.
/// Throws closed_error (a closed connection in the list), value_error (a write-only one, a null
/// pointer, or one listed twice).
SHMQ_API std::vector<Connection*> wait(std::span<Connection* const> conns, timeout_t timeout = std::nullopt);

inline std::vector<Connection*> wait(std::initializer_list<Connection*> conns,
                                     timeout_t timeout = std::nullopt) {
    return wait(std::span<Connection* const>(conns.begin(), conns.size()), timeout);
}

} // namespace shmq
