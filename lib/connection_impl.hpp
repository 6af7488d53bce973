// SPDX-License-Identifier: BSL-1.0
// What a Connection holds: the channel it reads, the channel it writes, and this process's
// endpoint (its hold on those ends). Shared by connection.cpp and wait.cpp.
#pragma once

#include "channel.hpp"
#include "endpoint.hpp"
#include "poller.hpp"
#include "segment.hpp"

#include <shmq/connection.hpp>

#include <optional>

#include <unistd.h>

namespace shmq::detail {

class connection_impl {
public:
    /// adopt: the segment was created with these ends pre-attached (segment_params::attach_creator).
    connection_impl(std::shared_ptr<segment> seg, std::optional<std::uint32_t> rx,
                    std::optional<std::uint32_t> tx, bool adopt = false)
        : readable_(rx.has_value()), writable_(tx.has_value()), rx_index_(rx.value_or(0)) {
        const end_counts counts = counts_for(rx, tx);
        if (rx) rx_.emplace(seg, *rx, true);
        if (tx) tx_.emplace(seg, *tx, true);
        ep_.emplace(std::move(seg), counts, adopt);
    }
    static end_counts counts_for(std::optional<std::uint32_t> rx, std::optional<std::uint32_t> tx) noexcept {
        end_counts counts{};
        if (rx) counts[reader_end(*rx)] = 1;
        if (tx) counts[writer_end(*tx)] = 1;
        return counts;
    }
    ~connection_impl() { close(); }

    void close() noexcept {
        if (closed_) return;
        closed_ = true;
        poll_.reset();   // it watches rx_, which goes below
        if (handle_fd_ >= 0) ::close(handle_fd_);
        handle_fd_ = -1;
        ep_->release();
        // Peers blocked on these channels must re-check EOF / broken pipe now, not at their
        // next liveness slice: the writers of what we read (broken pipe), the readers of what
        // we wrote (EOF). Only those: a reader woken (or a poller poked) by another reader's
        // close would find nothing new.
        if (rx_) rx_->wake_writers();
        if (tx_) tx_->wake_readers();
        rx_.reset();
        tx_.reset();
        ep_.reset();   // the last reference unmaps the segment
    }

    /// The poller of rx_ (fileno()).
    poller& poll_fd() {
        return poll_.get([&] {
            return std::make_unique<poller>(ep_->seg(), *rx_, writer_end(rx_index_));
        });
    }

    bool closed_ = false;
    bool readable_, writable_;
    std::uint32_t rx_index_;
    // This connection's end of an AF_UNIX datagram socketpair made with the Pipe (connection.cpp:
    // send_handle), shared with forked children like the rest of the handle; -1 when none.
    int handle_fd_ = -1;
    poll_slot poll_;
    std::optional<channel> rx_, tx_;
    std::optional<endpoint> ep_;
};

/// Makes a Connection from its parts (Listener and Client, lib/listener.cpp).
struct connection_factory {
    static Connection make(std::unique_ptr<connection_impl> impl) noexcept { return Connection(std::move(impl)); }
};

} // namespace shmq::detail
