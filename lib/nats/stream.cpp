// SPDX-License-Identifier: BSL-1.0
#include "stream.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace shmq::detail {

std::optional<nats_stream_tag> parse_nats_description(const char* d) {
    if (!d || std::strncmp(d, nats_description_magic.data(), nats_description_magic.size()) != 0)
        return std::nullopt;
    nats_stream_tag t;
    unsigned flavor = 0;
    std::uint64_t fp = 0;
    if (std::sscanf(d + nats_description_magic.size(), "kind=%u fp=%" SCNx64, &flavor, &fp) != 2)
        return std::nullopt;
    t.flavor = flavor;
    t.fingerprint = fp;
    return t;
}

nats_queue_counts nats_counts(const nats_client& c, const nats_url& url, std::int64_t wait_ms) {
    jsOptions jo = js_wait(wait_ms);
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsStreamInfo* si = nullptr;
    natsStatus s = js_GetStreamInfo(&si, c.js(), url.name.c_str(), &jo, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
        throw not_found_error("shmq: no NATS queue at '" + url.display() + "'");
    if (s != NATS_OK)
        throw error("shmq: NATS at '" + url.display() + "': stream info failed (" + nats_error_text(s) + ")");
    nats_queue_counts n;
    n.messages = si->State.Msgs;
    n.consumers = si->State.Consumers;
    n.max_msgs = si->Config->MaxMsgs;
    n.replicas = si->Config->Replicas;
    n.tag = parse_nats_description(si->Config->Description);
    jsStreamInfo_Destroy(si);
    jsConsumerInfo* ci = nullptr;
    s = js_GetConsumerInfo(&ci, c.js(), url.name.c_str(), nats_consumer_name, &jo, &jerr);
    if (s == NATS_OK) {
        n.undelivered = ci->NumPending;
        n.ack_pending = ci->NumAckPending;
        n.redelivered = ci->NumRedelivered;
        n.ack_wait_ns = ci->Config ? ci->Config->AckWait : 0;
        jsConsumerInfo_Destroy(ci);
    } else if (!(s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr)) {
        throw error("shmq: NATS at '" + url.display() + "': consumer info failed (" + nats_error_text(s) + ")");
    }
    return n;
}

} // namespace shmq::detail

namespace shmq::detail {

std::vector<std::string> nats_queue_names(const nats_client& c, const nats_url& url, std::int64_t wait_ms) {
    jsOptions jo = js_wait(wait_ms);
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsStreamInfoList* list = nullptr;
    const natsStatus s = js_Streams(&list, c.js(), &jo, &jerr);
    std::vector<std::string> names;
    if (s == NATS_NOT_FOUND) return names;   // no stream at all
    if (s != NATS_OK)
        throw error("shmq: NATS at '" + url.display() + "': cannot list streams (" + nats_error_text(s) + ")");
    for (int i = 0; i < list->Count; ++i) {
        const jsStreamInfo* si = list->List[i];
        if (si && si->Config && parse_nats_description(si->Config->Description))
            names.emplace_back(si->Config->Name);
    }
    jsStreamInfoList_Destroy(list);
    return names;
}

} // namespace shmq::detail
