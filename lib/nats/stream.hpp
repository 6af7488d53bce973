// SPDX-License-Identifier: BSL-1.0
// shmq — how a NATS queue is laid out in JetStream, shared by the queue (queue_nats.cpp) and the
// CLI's ls/stat/rm (admin.cpp):
//   stream   <name>, subject "shmq.<name>", work-queue retention, file storage,
//            max_msgs = maxsize with discard-new when bounded, replicas from the URL;
//            its description holds what open() checks:
//              "shmq queue v1 kind=<flavor> fp=<16 hex> id=<creator nonce>"
//   consumer "shmq": durable pull consumer with explicit acks, shared by every handle.
#pragma once

#include "client.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shmq::detail {

inline constexpr const char* nats_consumer_name = "shmq";
inline constexpr std::string_view nats_description_magic = "shmq queue v1 ";

inline std::string nats_subject(const std::string& name) { return "shmq." + name; }

/// What a stream's description says; nullopt when it is not a shmq queue's.
struct nats_stream_tag {
    std::uint32_t flavor = 0;
    std::uint64_t fingerprint = 0;
};
std::optional<nats_stream_tag> parse_nats_description(const char* description);

/// The server's counts for one queue (two JetStream API requests). Throws not_found_error,
/// error (unreachable, timeout) naming the URL.
struct nats_queue_counts {
    std::uint64_t messages = 0;      // in the stream: not yet acknowledged (work-queue retention)
    std::uint64_t undelivered = 0;   // the consumer's num_pending
    std::int64_t ack_pending = 0;    // delivered, not yet acknowledged
    std::int64_t redelivered = 0;
    std::int64_t consumers = 0;
    std::int64_t max_msgs = -1;
    std::int64_t replicas = 1;
    std::int64_t ack_wait_ns = 0;
    std::optional<nats_stream_tag> tag;
};
nats_queue_counts nats_counts(const nats_client& c, const nats_url& url, std::int64_t wait_ms);

} // namespace shmq::detail

namespace shmq::detail {

/// The shmq queues of an engine (streams whose description is a shmq queue's), by name.
/// Throws error naming the URL.
std::vector<std::string> nats_queue_names(const nats_client& c, const nats_url& url, std::int64_t wait_ms);

} // namespace shmq::detail
