// SPDX-License-Identifier: BSL-1.0
#include "client.hpp"

#include "../liveness.hpp"

#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

namespace shmq::detail {

std::string nats_error_text(natsStatus s) {
    std::string t = natsStatus_GetText(s);
    if (const char* last = nats_GetLastError(nullptr); last && *last) t += std::string(": ") + last;
    return t;
}

jsOptions js_wait(std::int64_t ms) noexcept {
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = std::max<std::int64_t>(ms, 1);
    return o;
}

std::int64_t to_ms(std::chrono::duration<double> d) noexcept {
    const double ms = d.count() * 1000.0;
    if (!(ms > 1)) return 1;
    return ms > 1e12 ? std::int64_t{1000000000000} : static_cast<std::int64_t>(ms);
}

nats_client::nats_client(const nats_url& url, std::chrono::duration<double> limit)
    : pid_(self_pid()) {
    auto fail = [&](const std::string& why) {
        if (nc_) natsConnection_Destroy(nc_);
        if (opts_) natsOptions_Destroy(opts_);
        nc_ = nullptr;
        opts_ = nullptr;
        throw error("shmq: NATS at '" + url.display() + "': " + why);
    };
    // A prefix no other connection has, whatever libnats' inbox generator draws (see the header).
    std::random_device rd;
    char buf[96];
    std::snprintf(buf, sizeof buf, "_INBOX.shmq%u_%llx%08x", static_cast<unsigned>(pid_),
                  static_cast<unsigned long long>(
                      std::chrono::steady_clock::now().time_since_epoch().count()),
                  static_cast<unsigned>(rd()));
    inbox_ = buf;
    std::vector<const char*> servers;
    for (const auto& s : url.servers) servers.push_back(s.c_str());
    natsStatus s = natsOptions_Create(&opts_);
    if (s == NATS_OK) s = natsOptions_SetServers(opts_, servers.data(), static_cast<int>(servers.size()));
    if (s == NATS_OK) s = natsOptions_SetTimeout(opts_, to_ms(limit));
    if (s == NATS_OK) s = natsOptions_SetCustomInboxPrefix(opts_, inbox_.c_str());
    if (s == NATS_OK) s = natsOptions_SetName(opts_, "shmq");
    // Keep reconnecting in the background (a cluster node may come back, or another take over);
    // every call is bounded by its own deadline, not by the reconnection.
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts_, true);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts_, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts_, 100);
    if (s == NATS_OK) s = natsOptions_SetReconnectJitter(opts_, 50, 50);
    // A request in flight when the connection drops fails at once instead of waiting out its
    // timeout, so put/get retry on the next server promptly (their retries are deduplicated).
    if (s == NATS_OK) s = natsOptions_SetFailRequestsOnDisconnect(opts_, true);
    if (s == NATS_OK) s = natsOptions_SetPingInterval(opts_, 1000);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(opts_, 2);
    if (s != NATS_OK) fail(nats_error_text(s));
    s = natsConnection_Connect(&nc_, opts_);
    if (s != NATS_OK) fail("cannot connect (" + nats_error_text(s) + ")");
    jsOptions jo = js_wait(to_ms(limit));
    s = natsConnection_JetStream(&js_, nc_, &jo);
    if (s != NATS_OK) fail("no JetStream context (" + nats_error_text(s) + ")");
}

nats_client::~nats_client() {
    if (pid_ != self_pid()) return;   // a forked child's copy: not ours to close (see the header)
    if (js_) jsCtx_Destroy(js_);
    if (nc_) natsConnection_Destroy(nc_);
    if (opts_) natsOptions_Destroy(opts_);
}

std::int64_t nats_client::max_payload() const noexcept {
    return natsConnection_GetMaxPayload(nc_);
}

} // namespace shmq::detail
