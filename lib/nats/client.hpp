// SPDX-License-Identifier: BSL-1.0
// shmq — one connection to a NATS engine (with its JetStream context), as the NATS queue and the
// CLI need it: bounded connect, reconnection, and a process-unique inbox.
//
// Fork: the C client (libnats) is not fork-aware. Its connection threads do not exist in a
// forked child, and it seeds the generator of its inbox names once per process, so a child that
// connects anew would still draw the same reply subjects as its parent and its siblings (they
// then receive each other's messages). Hence:
//   * a connection is used only by the process that opened it (client::pid); a child opens its
//     own and never touches, closes or destroys its parent's (that would join threads the child
//     does not have): the parent's stays allocated in the child, a bounded leak per fork;
//   * every connection gets an inbox prefix of its own (pid, time and randomness), so the reply
//     subjects of any two connections differ whatever the generator draws.
#pragma once

#include "url.hpp"

#include <shmq/errors.hpp>

#include <chrono>
#include <cstdint>
#include <string>

#include <nats/nats.h>

namespace shmq::detail {

class nats_client {
public:
    /// Connects to the URL's servers, trying each for at most `limit`. Throws error naming the
    /// URL (without credentials) when none answers.
    nats_client(const nats_url& url, std::chrono::duration<double> limit);
    /// Closes the connection when this process opened it; a forked child leaves it alone.
    ~nats_client();
    nats_client(const nats_client&) = delete;
    nats_client& operator=(const nats_client&) = delete;

    natsConnection* nc() const noexcept { return nc_; }
    jsCtx* js() const noexcept { return js_; }
    std::uint32_t pid() const noexcept { return pid_; }
    /// Largest message the server accepts (its max_payload).
    std::int64_t max_payload() const noexcept;

private:
    std::uint32_t pid_;
    natsOptions* opts_ = nullptr;
    natsConnection* nc_ = nullptr;
    jsCtx* js_ = nullptr;
    std::string inbox_;
};

/// "status text: last error text", for messages.
std::string nats_error_text(natsStatus s);

/// jsOptions whose Wait is `ms` (at least 1).
jsOptions js_wait(std::int64_t ms) noexcept;

/// Milliseconds from a duration, at least 1.
std::int64_t to_ms(std::chrono::duration<double> d) noexcept;

} // namespace shmq::detail
