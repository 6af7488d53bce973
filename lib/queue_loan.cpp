// SPDX-License-Identifier: BSL-1.0
// The byte-level loan and view handles of Queue and SimpleQueue (include/shmq/detail/
// queue_loan.hpp). They only hand the commit or release back to the queue's backend
// (queue_impl.hpp), which owns the lease, the ring position and the per-handle turn.
#include <shmq/detail/queue_loan.hpp>

#include "channel.hpp"
#include "queue_impl.hpp"

#include <utility>

namespace shmq::detail {

queue_loan::queue_loan(std::shared_ptr<queue_impl> impl, std::span<std::byte> bytes,
                       std::uint64_t ticket) noexcept
    : impl_(std::move(impl)), bytes_(bytes), ticket_(ticket) {}

queue_loan::queue_loan(queue_loan&& other) noexcept
    : impl_(std::move(other.impl_)), bytes_(std::exchange(other.bytes_, {})),
      ticket_(other.ticket_) {}

queue_loan& queue_loan::operator=(queue_loan&& other) noexcept {
    if (this != &other) {
        if (impl_) impl_->abandon_loan(ticket_);
        impl_ = std::move(other.impl_);
        bytes_ = std::exchange(other.bytes_, {});
        ticket_ = other.ticket_;
    }
    return *this;
}

queue_loan::~queue_loan() {
    if (impl_) impl_->abandon_loan(ticket_);
}

void queue_loan::commit(std::size_t size) {
    channel::check_commit(impl_ != nullptr, size, bytes_.size());
    std::exchange(impl_, nullptr)->commit_loan(ticket_, size);
    bytes_ = {};
}

queue_view::queue_view(queue_view&& other) noexcept
    : impl_(std::move(other.impl_)),
      bytes_(std::exchange(other.bytes_, {})),
      own_(std::move(other.own_)),
      ticket_(other.ticket_) {}

queue_view& queue_view::operator=(queue_view&& other) noexcept {
    if (this != &other) {
        release();
        impl_ = std::move(other.impl_);
        bytes_ = std::exchange(other.bytes_, {});
        own_ = std::move(other.own_);   // a vector's move keeps its buffer: bytes_ stays valid
        ticket_ = other.ticket_;
    }
    return *this;
}

void queue_view::release() noexcept {
    if (impl_) std::exchange(impl_, nullptr)->release_view(ticket_);
    bytes_ = {};
    own_.clear();
}

} // namespace shmq::detail
