// Queue, SimpleQueue and JoinableQueue over one channel (one ring) in one segment.
//
//  * maxsize bounds the number of items in the ring (the channel's message bound), as Python's
//    semaphore does; puts on a bounded queue wait for a free slot up to their timeout.
//  * Unbounded Queue/JoinableQueue puts never block: see feeder.hpp. SimpleQueue has no feeder:
//    its put waits for room, as Python's does.
//  * JoinableQueue counts unfinished items in shared memory; put counts an item before it
//    becomes visible (so a fast consumer's task_done never finds zero) and uncounts it if the
//    put fails.
#include <shmq/detail/queue_core.hpp>

#include "channel.hpp"
#include "feeder.hpp"
#include "liveness.hpp"
#include "segment.hpp"
#include "sync/wait_loop.hpp"

#include <optional>

namespace shmq::detail {
namespace {

// The message count of a ring position has 28 bits; keep maxsize well inside it.
constexpr std::int64_t maxsize_limit = (std::int64_t{1} << 27) - 1;

segment_params params_for(queue_flavor flavor, std::int64_t maxsize, const options& opts,
                          std::uint64_t fp) {
    if (maxsize > maxsize_limit)
        throw value_error("shmq: maxsize " + std::to_string(maxsize) + " exceeds the limit of " +
                          std::to_string(maxsize_limit) + " (use maxsize <= 0 for unbounded)");
    segment_params p;
    p.kind = static_cast<segment_kind>(flavor);
    p.channels = 1;
    p.capacity = opts.capacity;
    p.type_fingerprint = fp;
    p.maxsize = flavor == queue_flavor::simple ? 0 : std::max<std::int64_t>(maxsize, 0);
    return p;
}


} // namespace

class queue_impl : public std::enable_shared_from_this<queue_impl> {
public:
    queue_impl(std::shared_ptr<segment> seg, queue_flavor flavor)
        : seg_(std::move(seg)),
          flavor_(flavor),
          maxsize_(seg_->header().maxsize),
          ch_(seg_, 0, false) {
        if (maxsize_ < 0 || maxsize_ > maxsize_limit)
            throw broken_error("shmq: corrupt queue header (maxsize)");
        if (flavor_ != queue_flavor::simple && maxsize_ == 0)
            feeder_.emplace(ch_, 0, seg_->name().empty() ? std::string("shmq: queue")
                                                         : "shmq: queue '" + seg_->name() + "'");
    }

    std::shared_ptr<segment> seg_;
    queue_flavor flavor_;
    std::int64_t maxsize_;
    channel ch_;
    std::optional<feeder> feeder_;   // unbounded Queue and JoinableQueue only
    // The pid that closed this handle. A child forked afterwards may use the queue it inherited
    // (Python resets _closed after fork), so "closed" means closed by this very process.
    std::atomic<std::uint32_t> closed_by_{0};
    bool closed() const noexcept { return closed_by_.load(std::memory_order_acquire) == self_pid(); }
};

queue_core::queue_core(std::shared_ptr<queue_impl> impl) noexcept : impl_(std::move(impl)) {}

queue_core::queue_core(queue_flavor flavor, std::int64_t maxsize, const options& opts,
                       std::uint64_t fp)
    : impl_(std::make_shared<queue_impl>(
          segment::create_anonymous(params_for(flavor, maxsize, opts, fp)), flavor)) {}

queue_core queue_core::create(queue_flavor flavor, std::string_view name, std::int64_t maxsize,
                              const options& opts, std::uint64_t fp) {
    auto seg = segment::create_named(name, params_for(flavor, maxsize, opts, fp), opts.mode);
    return queue_core(std::make_shared<queue_impl>(std::move(seg), flavor));
}

queue_core queue_core::open(queue_flavor flavor, std::string_view name, std::uint64_t fp,
                            const options& opts) {
    auto seg = segment::open_named(name, static_cast<segment_kind>(flavor), fp, opts.trust_foreign);
    return queue_core(std::make_shared<queue_impl>(std::move(seg), flavor));
}

bool queue_core::remove(std::string_view name) noexcept { return segment::remove(name); }

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
    close();
    // Like Python's finalizer: the backlog reaches shared memory before the handle goes, unless
    // cancel_join_thread() said otherwise.
    if (impl_->feeder_) impl_->feeder_->stop();
}

void queue_core::check_open() const {
    if (!impl_ || impl_->closed()) throw closed_error("shmq: queue is closed");
}

void queue_core::put(std::span<const std::byte> item, bool block, const timeout_t& timeout) {
    check_open();
    queue_impl& q = *impl_;
    const bool joinable = q.flavor_ == queue_flavor::joinable;
    auto& unfinished = q.seg_->queue().unfinished;
    if (joinable) unfinished.fetch_add(1, std::memory_order_acq_rel);
    try {
        if (q.feeder_) {
            q.feeder_->put(item, impl_);
            q.seg_->check_lost();   // written into a truncated segment's stand-in: not delivered
            return;
        }
        deadline until = q.flavor_ == queue_flavor::simple ? deadline() : deadline::from(block, timeout);
        const io_status st = q.ch_.write(item, until, static_cast<std::uint64_t>(q.maxsize_));
        q.seg_->check_lost();
        if (st != io_status::ok) throw full_error("shmq: queue is full");
    } catch (...) {
        if (joinable && unfinished.fetch_sub(1, std::memory_order_acq_rel) == 1)
            q.seg_->queue().all_done.notify();
        throw;
    }
}

void queue_core::get(message_sink& sink, bool block, const timeout_t& timeout) {
    check_open();
    queue_impl& q = *impl_;
    deadline until = q.flavor_ == queue_flavor::simple ? deadline() : deadline::from(block, timeout);
    const io_status st = q.ch_.read(sink, until);
    q.seg_->check_lost();   // what was read may come from a truncated segment's stand-in
    if (st != io_status::ok) throw empty_error("shmq: queue is empty");
}

std::size_t queue_core::qsize() const {
    if (!impl_) return 0;
    std::size_t n = static_cast<std::size_t>(impl_->ch_.size());
    // Like Python, qsize counts items this process has put but not yet flushed.
    if (impl_->feeder_) {
        impl_->feeder_->check();   // the feeder thread failed: its backlog is gone
        n += impl_->feeder_->pending();
    }
    impl_->seg_->check_lost();
    return n;
}

bool queue_core::empty() const {
    if (!impl_) return true;
    return impl_->ch_.empty();
}

bool queue_core::full() const {
    return impl_ && impl_->maxsize_ > 0 &&
           impl_->ch_.size() >= static_cast<std::uint64_t>(impl_->maxsize_);
}

std::int64_t queue_core::maxsize() const noexcept { return impl_ ? impl_->maxsize_ : 0; }

void queue_core::close() noexcept {
    if (!impl_) return;
    impl_->closed_by_.store(self_pid(), std::memory_order_release);
    // A message parked by a timed-out get can no longer be resumed through this handle.
    impl_->ch_.drop_parked();
}

bool queue_core::closed() const noexcept { return !impl_ || impl_->closed(); }

void queue_core::join_thread() {
    if (!closed()) throw value_error("shmq: join_thread() before close()");
    if (impl_ && impl_->feeder_) {
        impl_->feeder_->stop();
        impl_->feeder_->check();
    }
}

void queue_core::cancel_join_thread() noexcept {
    if (impl_ && impl_->feeder_) impl_->feeder_->cancel();
}

void queue_core::task_done() {
    if (!impl_) throw closed_error("shmq: queue is closed");
    auto& qs = impl_->seg_->queue();
    std::int64_t v = qs.unfinished.load(std::memory_order_acquire);
    do {
        if (v <= 0) throw value_error("shmq: task_done() called too many times");
    } while (!qs.unfinished.compare_exchange_weak(v, v - 1, std::memory_order_acq_rel));
    if (v == 1) qs.all_done.notify();
}

bool queue_core::join(const timeout_t& timeout) {
    if (!impl_) throw closed_error("shmq: queue is closed");
    auto& qs = impl_->seg_->queue();
    using R = std::optional<bool>;
    return await(
        qs.all_done, deadline(timeout), false,
        [&]() -> R {
            if (qs.unfinished.load(std::memory_order_acquire) <= 0) return true;
            return std::nullopt;
        },
        []() -> R { return std::nullopt; });
}

} // namespace shmq::detail
