// SPDX-License-Identifier: BSL-1.0
// shmq — the name of a queue that lives in NATS JetStream (doc/design.md §16):
//
//   nats://[credentials@]host[:port][,host[:port]...]/name[?key=value[&key=value...]]
//
//   credentials  user:password or a token, as NATS accepts them in a URL; used for every server
//   host         a name, an IPv4 address or a bracketed IPv6 address; port 1..65535 (4222)
//   name         the queue: 1..200 of [A-Za-z0-9_-] (it names the JetStream stream, and NATS
//                forbids '.', '*', '>' and spaces there)
//   replicas=N   stream replicas, 1..5 (default 1); fixed at create, ignored by open
//   ack_wait=S   seconds before an item got but not acknowledged is delivered again (default 30)
//   timeout=S    the longest a call waits for an unreachable or failing-over server when the
//                caller gave no timeout of its own (default 10); also bounds create/open/remove
//
// Every parse error is a value_error naming the part that is wrong.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace shmq::detail {

/// True when `name` is meant for the NATS backend (starts with "nats://"). Never throws.
bool is_nats_url(std::string_view name) noexcept;

struct nats_url {
    std::string text;                       // the URL as given (for error messages)
    std::vector<std::string> servers;       // "nats://[credentials@]host:port", one per server
    std::string name;                       // the queue's name (the stream's name)
    int replicas = 1;
    std::chrono::duration<double> ack_wait{30.0};
    std::chrono::duration<double> timeout{10.0};

    /// The URL without credentials, for messages and listings.
    std::string display() const;
    /// The servers part alone, credentials removed ("host:port,host:port").
    std::string hosts;
};

/// Throws value_error naming the bad part.
nats_url parse_nats_url(std::string_view url);

/// Only the servers ("nats://host:port[,...][/]"), for listing every queue of an engine: the
/// name may be empty. Throws value_error.
nats_url parse_nats_servers(std::string_view url);

} // namespace shmq::detail
