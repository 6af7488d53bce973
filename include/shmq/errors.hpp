// SPDX-License-Identifier: BSL-1.0
// shmq — the exception hierarchy. Every error the library reports is a shmq::error, so a caller
// can catch one type; the leaves mirror the Python exceptions named beside each one.
#pragma once

#include <shmq/export.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace shmq {

/// Root of every exception thrown by shmq.
class SHMQ_API error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// queue.Full: put_nowait / timed put on a full queue.
class SHMQ_API full_error : public error { public: using error::error; };
/// queue.Empty: get_nowait / timed get on an empty queue.
class SHMQ_API empty_error : public error { public: using error::error; };
/// Use of a handle after close() (Queue, SimpleQueue, Connection).
class SHMQ_API closed_error : public error { public: using error::error; };
/// EOFError: recv* when every peer end is closed and no data is left.
class SHMQ_API eof_error : public error { public: using error::error; };
/// BrokenPipeError: send* when every peer end is closed. shmq never raises SIGPIPE.
class SHMQ_API broken_pipe_error : public error { public: using error::error; };
/// recv_bytes(maxlength) met a longer message: the message is left unread and the
/// connection stays usable.
class SHMQ_API message_too_long_error : public error { public: using error::error; };
/// Bad argument: send_bytes offset/size, task_done() too often, join_thread() before close().
class SHMQ_API value_error : public error { public: using error::error; };
/// Encoding or decoding failed. A failed encode changes nothing; a failed decode consumes
/// exactly that one message.
class SHMQ_API codec_error : public error { public: using error::error; };
/// create() of a name that already exists.
class SHMQ_API exists_error : public error { public: using error::error; };
/// open() of a name that does not exist.
class SHMQ_API not_found_error : public error { public: using error::error; };
/// open() of a typed named object whose creator used a different T.
class SHMQ_API type_error : public error { public: using error::error; };
/// Shared state cannot be trusted: bad header, version mismatch, impossible sizes or offsets,
/// a segment truncated under its users, a feeder thread that met any of these.
class SHMQ_API broken_error : public error { public: using error::error; };
/// PermissionError: open() refused a named object someone else may have planted or rewritten (a
/// symbolic link at the name, not a regular file, owned by another user, or writable by group or
/// others; options::trust_foreign accepts the last two), or the system denied access (EACCES).
class SHMQ_API permission_error : public error { public: using error::error; };

/// multiprocessing.TimeoutError: AsyncResult::get(timeout) ran out while the task still runs.
class SHMQ_API timeout_error : public error { public: using error::error; };
/// A Pool task threw in its worker; what() holds the exception's type and its what(). The
/// worker lives on.
class SHMQ_API task_error : public error { public: using error::error; };
/// The Pool worker running the task died (a signal, _exit, a crash) before it answered.
class SHMQ_API worker_lost_error : public error { public: using error::error; };
/// threading.BrokenBarrierError: the Barrier was reset or aborted, a wait timed out, or a party
/// died while waiting.
class SHMQ_API broken_barrier_error : public error { public: using error::error; };
/// A lock's previous holder died inside its critical section. Reserved: shmq's locks
/// (<shmq/sync.hpp>) report that by previous_owner_died() after a successful acquire and never
/// throw this, so that lock() stays usable by std::lock_guard.
class SHMQ_API owner_died_error : public error { public: using error::error; };

/// multiprocessing.BufferTooShort: recv_bytes_into() got a message longer than the buffer.
/// The message was consumed; it travels in the exception.
class SHMQ_API buffer_too_short_error : public error {
public:
    explicit buffer_too_short_error(std::vector<std::byte> message)
        : error("shmq: buffer too short for message of " + std::to_string(message.size()) +
                " bytes"),
          message_(std::move(message)) {}
    /// The whole message that did not fit.
    const std::vector<std::byte>& message() const noexcept { return message_; }

private:
    std::vector<std::byte> message_;
};

} // namespace shmq
