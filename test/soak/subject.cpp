// SPDX-License-Identifier: BSL-1.0
// shmq-soak — the object under test (see subject.hpp).
#include "subject.hpp"

#include "cleanup.hpp"

#include <chrono>

namespace shmq_soak {

using seconds_d = std::chrono::duration<double>;

std::string phase_spec::label() const
{
    std::string s;
    switch (what) {
    case kind::pipe: s = "Pipe"; break;
    case kind::queue: s = "Queue"; break;
    case kind::bounded: s = "Queue(maxsize=" + std::to_string(subject::bounded_maxsize) + ")"; break;
    case kind::joinable: s = "JoinableQueue"; break;
    }
    return s + (named ? " named" : " anonymous");
}

subject::subject(const phase_spec& spec, std::size_t capacity, const std::string& name)
    : spec_(spec), name_(spec.named ? name : std::string())
{
    shmq::options o{.capacity = capacity};
    if (!name_.empty()) cleanup::add_name(name_);   // before create: a signal may come at once
    std::size_t maxsize = spec.what == kind::bounded ? bounded_maxsize : 0;
    switch (spec.what) {
    case kind::pipe: {
        auto [r, w] = shmq::Pipe(false, o);
        reader_.emplace(std::move(r));
        writer_.emplace(std::move(w));
        break;
    }
    case kind::queue:
    case kind::bounded:
        if (spec.named) shmq::Queue<bytes>::create(name_, maxsize, o);   // handle dropped
        else queue_.emplace(maxsize, o);
        break;
    case kind::joinable:
        if (spec.named) shmq::JoinableQueue<bytes>::create(name_, 0, o);
        else joinable_.emplace(0, o);
        break;
    }
}

subject::~subject()
{
    if (name_.empty()) return;
    shmq::Queue<bytes>::remove(name_);
    cleanup::forget_name(name_);
}

void subject::attach(bool producer)
{
    if (spec_.what == kind::pipe) {
        (producer ? reader_ : writer_)->close();
        return;
    }
    if (name_.empty() || queue_ || joinable_) return;
    if (spec_.what == kind::joinable) joinable_.emplace(shmq::JoinableQueue<bytes>::open(name_));
    else queue_.emplace(shmq::Queue<bytes>::open(name_));
}

bool subject::put(std::span<const std::byte> msg)
{
    if (writer_) {
        writer_->send_bytes(msg);   // no timeout in the API: blocks while the ring is full
        return true;
    }
    // A copy per put: Queue<bytes> takes the vector; the raw path encodes it without another.
    bytes item(msg.begin(), msg.end());
    try {
        // Unbounded puts never block; a bounded one waits at most 2 s, then the caller retries
        // (and heartbeats in between).
        if (queue_) queue_->put(item, true, seconds_d(2));
        else joinable_->put(item, true, seconds_d(2));
        return true;
    } catch (const shmq::full_error&) {
        return false;
    }
}

bool subject::get(bytes& out, double timeout_s)
{
    if (reader_) {
        // poll first: recv has no timeout. With several readers, poll may say yes and another
        // reader take the message; recv then waits for the next one or EOF, which the runner
        // provides at the end by closing the last writer end.
        if (!reader_->poll(seconds_d(timeout_s))) return false;
        out = reader_->recv_bytes();
        return true;
    }
    try {
        out = queue_ ? queue_->get(true, seconds_d(timeout_s))
                     : joinable_->get(true, seconds_d(timeout_s));
        return true;
    } catch (const shmq::empty_error&) {
        return false;
    }
}

void subject::task_done()
{
    if (joinable_) joinable_->task_done();
}

std::size_t subject::backlog_hint()
{
    if (!spec_.has_backlog()) return 0;
    return queue_ ? queue_->qsize() : joinable_->qsize();
}

void subject::producer_exit()
{
    if (queue_) { queue_->close(); queue_->join_thread(); }
    if (joinable_) { joinable_->close(); joinable_->join_thread(); }
    if (writer_) writer_->close();
}

void subject::close_writer()
{
    if (writer_) writer_->close();
}

bool subject::join(double timeout_s)
{
    if (spec_.what != kind::joinable) return true;
    if (!joinable_) joinable_.emplace(shmq::JoinableQueue<bytes>::open(name_));
    return joinable_->join(seconds_d(timeout_s));
}

} // namespace shmq_soak
