// SPDX-License-Identifier: BSL-1.0
// queue_core: the handle under Queue, SimpleQueue and JoinableQueue. It picks the backend once, by
// the name (queue_impl.hpp), and forwards every call to it.
#include <shmq/detail/queue_core.hpp>

#include "nats/url.hpp"
#include "queue_impl.hpp"

namespace shmq::detail {

queue_core::queue_core(std::shared_ptr<queue_impl> impl) noexcept : impl_(std::move(impl)) {}

queue_core::queue_core(queue_flavor flavor, std::int64_t maxsize, const options& opts,
                       std::uint64_t fp)
    : impl_(shm_queue_anonymous(flavor, maxsize, opts, fp)) {}

queue_core queue_core::create(queue_flavor flavor, std::string_view name, std::int64_t maxsize,
                              const options& opts, std::uint64_t fp) {
    if (is_nats_url(name)) return queue_core(nats_queue_create(flavor, name, maxsize, opts, fp));
    return queue_core(shm_queue_create(flavor, name, maxsize, opts, fp));
}

queue_core queue_core::open(queue_flavor flavor, std::string_view name, std::uint64_t fp,
                            const options& opts) {
    if (is_nats_url(name)) return queue_core(nats_queue_open(flavor, name, fp));
    return queue_core(shm_queue_open(flavor, name, fp, opts));
}

bool queue_core::remove(std::string_view name) noexcept {
    return is_nats_url(name) ? nats_queue_remove(name) : shm_queue_remove(name);
}

bool queue_core::remove_if_named_here() const noexcept {
    return impl_ && impl_->remove_if_named_here();
}

queue_core::queue_core(queue_core&&) noexcept = default;

queue_core& queue_core::operator=(queue_core&& other) noexcept {
    if (this != &other) {
        queue_core old(std::move(other));
        std::swap(impl_, old.impl_);   // `old` now closes and flushes what this handle held
    }
    return *this;
}

queue_core::~queue_core() {
    if (!impl_) return;
    impl_->close();
    impl_->finish();
}

void queue_core::check_open() const {
    if (!impl_) throw closed_error("shmq: queue is closed");
    impl_->check_open();
}

void queue_core::put(std::span<const std::byte> item, bool block, const timeout_t& timeout) {
    if (!impl_) throw closed_error("shmq: queue is closed");
    impl_->put(item, block, timeout);
}

void queue_core::get(message_sink& sink, bool block, const timeout_t& timeout) {
    if (!impl_) throw closed_error("shmq: queue is closed");
    impl_->get(sink, block, timeout);
}

int queue_core::fileno() {
    check_open();
    return impl_->fileno();
}

bool queue_core::poll_ready() {
    check_open();
    return impl_->poll_ready();
}

std::size_t queue_core::qsize() const { return impl_ ? impl_->qsize() : 0; }
bool queue_core::empty() const { return !impl_ || impl_->empty(); }
bool queue_core::full() const { return impl_ && impl_->full(); }
std::int64_t queue_core::maxsize() const noexcept { return impl_ ? impl_->maxsize() : 0; }

void queue_core::close() noexcept {
    if (impl_) impl_->close();
}

bool queue_core::closed() const noexcept { return !impl_ || impl_->closed(); }

void queue_core::join_thread() {
    if (!closed()) throw value_error("shmq: join_thread() before close()");
    if (impl_) impl_->join_thread();
}

void queue_core::cancel_join_thread() noexcept {
    if (impl_) impl_->cancel_join_thread();
}

void queue_core::task_done() {
    if (!impl_) throw closed_error("shmq: queue is closed");
    impl_->task_done();
}

bool queue_core::join(const timeout_t& timeout) {
    if (!impl_) throw closed_error("shmq: queue is closed");
    return impl_->join(timeout);
}

queue_loan queue_core::loan(std::size_t n, bool block, const timeout_t& timeout) {
    if (!impl_) throw closed_error("shmq: queue is closed");
    std::uint64_t ticket = 0;
    const std::span<std::byte> bytes = impl_->loan(n, block, timeout, &ticket);
    return queue_loan(impl_, bytes, ticket);
}

queue_view queue_core::get_view(bool block, const timeout_t& timeout) {
    if (!impl_) throw closed_error("shmq: queue is closed");
    queue_view v;
    bool lent = false;
    v.bytes_ = impl_->view(block, timeout, v.own_, &lent, &v.ticket_);
    if (lent) v.impl_ = impl_;
    return v;
}

std::size_t queue_core::max_loan() const {
    if (!impl_) throw closed_error("shmq: queue is closed");
    return impl_->max_loan();
}

std::uint64_t queue_core::lost_to_dead_consumers() const noexcept {
    return impl_ ? impl_->lost_to_dead_consumers() : 0;
}

} // namespace shmq::detail
