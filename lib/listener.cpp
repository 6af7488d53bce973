// SPDX-License-Identifier: BSL-1.0
// Listener and Client (include/shmq/listener.hpp): a named bounded queue of connection requests
// (the backlog) and, per connection, a named duplex Pipe segment that the client creates holding
// its own ends and the accepter opens for the other ends.
//
// Who writes what, and what a crash leaves:
//  * The client creates /dev/shm/shmq.<listener>.conn-<pid>-<n> with its ends registered before
//    the segment is ready (segment_params::attach_creator), posts that name, and waits until
//    registry_state::opens shows a second attach (the accepter's). It unlinks the name on every
//    way out. Killed before that: the name stays, held by a dead process: an orphan for `shmq gc`;
//    accept() skips the request once the name is gone, or accepts a connection whose peer is dead
//    (its first recv gives eof_error, as with a socket whose client vanished).
//  * accept() gets a name from the backlog, opens that segment for the server's ends and unlinks
//    the name. Killed in between: the client sees the accepter's attach, gets a connection whose
//    peer is dead (eof_error / broken_pipe_error, never a hang).
//  * The backlog is a Queue with its own element fingerprint (listener_fingerprint), bounded so a
//    client's put never starts a feeder thread; a request is one std::string (the pipe's name).
#include <shmq/listener.hpp>

#include "connection_impl.hpp"
#include "deadline.hpp"
#include "lifecycle.hpp"
#include "liveness.hpp"
#include "registry.hpp"
#include "segment.hpp"

#include <shmq/codec.hpp>

#include <atomic>
#include <chrono>
#include <thread>

namespace shmq {
namespace detail {

std::uint64_t listener_fingerprint() noexcept { return 0x4c495354454e4552ull; }   // "LISTENER"

namespace {

// Channel 0 carries client -> server, channel 1 server -> client.
constexpr std::uint32_t client_rx = 1, client_tx = 0;
constexpr std::uint32_t server_rx = 0, server_tx = 1;

// Connection names start with (a prefix of) the listener's, so `shmq ls` shows whose they are;
// cut so the whole stays within the 200 characters of a name.
std::string connection_prefix(std::string_view listener) {
    return std::string(listener.substr(0, 160)) + ".conn-";
}

segment_params pipe_params(const options& opts) {
    segment_params p;
    p.kind = segment_kind::pipe;
    p.channels = 2;
    p.capacity = opts.capacity;
    return p;
}

timeout_t remaining(const deadline& d) {
    if (d.forever()) return std::nullopt;
    return std::chrono::duration<double>(std::max(clock::duration::zero(), d.at() - clock::now()));
}

// Unlinks the connection's name on every way out of Client(), unless a replacement took it.
struct name_remover {
    std::shared_ptr<segment> seg;
    ~name_remover() {
        if (seg && seg->named_here()) segment::remove(seg->name());
    }
};

} // namespace
} // namespace detail

Listener::Listener(std::string_view name, options opts, std::size_t backlog) : name_(name), opts_(opts) {
    if (backlog == 0) throw value_error("shmq: Listener: backlog must be at least 1");
    opts.redeliver = false;
    // Requests are names of ~200 bytes at most: 64 KiB holds more than the default backlog of
    // 128; opts.capacity is for the connections' rings.
    opts.capacity = std::size_t{64} << 10;
    const auto create = [&](options o) {
        backlog_.emplace(detail::queue_core::create(detail::queue_flavor::queue, name, backlog, o,
                                                    detail::listener_fingerprint()));
        creator_pid_ = detail::self_pid();
    };
    if (opts.if_exists != if_exists::open) {
        create(opts);
        return;
    }
    // Sharing another process's listener (several servers accepting on one name): only the one
    // that created it unlinks it at close, so tell creating from opening.
    for (int round = 0;; ++round) {
        options o = opts;
        o.if_exists = if_exists::fail;
        try {
            create(o);
            return;
        } catch (const exists_error&) {
        }
        try {
            backlog_.emplace(detail::queue_core::open(detail::queue_flavor::queue, name,
                                                      detail::listener_fingerprint(), opts));
            return;
        } catch (const not_found_error&) {
            if (round >= 20) throw;   // removed between our create and our open: again
        }
    }
}

Listener::Listener(Listener&& o) noexcept
    : name_(std::move(o.name_)), opts_(o.opts_), backlog_(std::move(o.backlog_)),
      creator_pid_(std::exchange(o.creator_pid_, 0)) {
    o.backlog_.reset();
}

Listener& Listener::operator=(Listener&& o) noexcept {
    if (this != &o) {
        close();
        name_ = std::move(o.name_);
        opts_ = o.opts_;
        backlog_ = std::move(o.backlog_);
        o.backlog_.reset();
        creator_pid_ = std::exchange(o.creator_pid_, 0);
    }
    return *this;
}

Listener::~Listener() { close(); }

bool Listener::closed() const noexcept { return !backlog_ || backlog_->closed(); }

void Listener::close() noexcept {
    if (!backlog_) return;
    // Only the creating process unlinks: a forked child's copy closing must not take the name
    // from its parent (Python's AF_UNIX Listener has that trap).
    if (creator_pid_ == detail::self_pid()) backlog_->remove_if_named_here();
    backlog_.reset();
}

Connection Listener::accept(timeout_t timeout) {
    if (closed()) throw closed_error("shmq: Listener '" + name_ + "' is closed");
    const detail::deadline until(timeout);
    const std::string prefix = detail::connection_prefix(name_);
    for (;;) {
        std::string request;
        detail::container_sink<std::string> sink(request);
        try {
            backlog_->get(sink, true, detail::remaining(until));
        } catch (const empty_error&) {
            throw timeout_error("shmq: Listener '" + name_ + "': no client within the timeout");
        }
        if (request.compare(0, prefix.size(), prefix) != 0) continue;   // not a request of ours
        std::shared_ptr<detail::segment> seg;
        std::unique_ptr<detail::connection_impl> impl;
        try {
            impl = detail::lifecycle::reopen([&] {
                seg = detail::segment::open_named(request, detail::segment_kind::pipe, 0, opts_.trust_foreign);
                return std::make_unique<detail::connection_impl>(seg, detail::server_rx, detail::server_tx);
            });
        } catch (const error&) {
            continue;   // the client gave up (name gone) or the name is not a connection: next one
        }
        // Both sides hold their ends: the name has served its purpose.
        if (seg->named_here()) detail::segment::remove(request);
        return detail::connection_factory::make(std::move(impl));
    }
}

Connection Client(std::string_view name, timeout_t timeout, options opts) {
    using namespace detail;
    const deadline until(timeout);
    segment::check_name(name);
    // A read-only view of the listener's backlog, to watch whether a listener still holds it.
    std::shared_ptr<segment> watch;
    try {
        watch = segment::inspect(name, inspect_mode{.read_only = true, .wait = true});
    } catch (const not_found_error&) {
        throw not_found_error("shmq: Client: connection refused: no Listener '" + std::string(name) + "'");
    }
    if (watch->kind() != segment_kind::queue || watch->header().type_fingerprint != listener_fingerprint())
        throw type_error("shmq: Client: '" + std::string(name) + "' is not a Listener");

    static std::atomic<unsigned> counter{0};
    const std::string pipe_name = connection_prefix(name) + std::to_string(self_pid()) + "-" +
                                  std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
    segment_params p = pipe_params(opts);
    p.creator_counts = connection_impl::counts_for(client_rx, client_tx);
    options pipe_opts = opts;
    // A name left by a crashed process that had our pid: no live holder, so ours to replace.
    pipe_opts.if_exists = if_exists::replace_stale;
    auto made = lifecycle::create(pipe_name, p, pipe_opts);
    name_remover remover{made.seg};
    auto impl = std::make_unique<connection_impl>(made.seg, client_rx, client_tx, true);
    const std::uint64_t opened_before = registry::opens(*made.seg);

    {
        // Holding the backlog only while posting: the listener's liveness is judged below by
        // its holders, and ours must not count.
        queue_core backlog = [&] {
            try {
                return queue_core::open(queue_flavor::queue, name, listener_fingerprint(), opts);
            } catch (const not_found_error&) {
                throw not_found_error("shmq: Client: connection refused: no Listener '" + std::string(name) + "'");
            }
        }();
        auto& scratch = encode_scratch();
        try {
            backlog.put(codec<std::string>::encode(pipe_name, scratch), true, remaining(until));
        } catch (const full_error&) {
            throw timeout_error("shmq: Client: Listener '" + std::string(name) + "': backlog full until the timeout");
        }
    }

    auto nap = std::chrono::microseconds(50);
    auto next_look = clock::now();
    for (;;) {
        if (registry::opens(*made.seg) != opened_before) break;   // accepted (sticky, see layout.hpp)
        if (until.expired())
            throw timeout_error("shmq: Client: Listener '" + std::string(name) + "' did not accept within the timeout");
        if (clock::now() >= next_look) {
            // The listener closed (its holders gone), or died holding it: refused, not a hang.
            const lifecycle::judgement j = lifecycle::judge(*watch);
            if ((j.alive == 0 && j.unknown == 0) || j.retired)
                throw not_found_error("shmq: Client: connection refused: Listener '" + std::string(name) +
                                      "' closed or died before accepting");
            next_look = clock::now() + std::chrono::milliseconds(50);
        }
        std::this_thread::sleep_for(nap);
        nap = std::min<std::chrono::microseconds>(nap * 2, std::chrono::milliseconds(2));
    }
    return connection_factory::make(std::move(impl));
}

} // namespace shmq
