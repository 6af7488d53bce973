// SPDX-License-Identifier: BSL-1.0
// The NATS JetStream backend of Queue, SimpleQueue and JoinableQueue (queue_impl.hpp), chosen by
// a `nats://` name (url.hpp). Layout in JetStream: stream.hpp.
//
//  * put publishes with a message id and waits for the server's ack, so a put that returns is
//    stored (replicated when replicas > 1). A failed attempt (lost connection, leader election)
//    is retried with the same id until the deadline: JetStream drops the duplicate if an earlier
//    attempt was stored after all (its duplicate window is 2 minutes). A put that finally throws
//    error may still have been stored.
//  * An unbounded put cannot keep shared memory's "never blocks": it returns only once the
//    server holds the item, so it waits for the network (never for room), bounded by the call's
//    timeout or the URL's `timeout`. There is no backlog and no feeder: join_thread() has nothing
//    to wait for.
//  * get fetches one message through the shared durable pull consumer. Queue and SimpleQueue
//    acknowledge it (synchronously) before returning it; JoinableQueue keeps it unacknowledged in
//    this process's `unfinished` list and task_done() acknowledges the oldest one. A process that
//    dies holding unacknowledged messages loses nothing: the server delivers them again after the
//    consumer's ack wait (at-least-once), so join() completes.
//  * Items larger than the server's max_payload (less room for headers) are refused at put with
//    value_error; they are not split.
//  * Per-process state (connection, subscription, unfinished list) is keyed by pid: a forked child
//    builds its own on first use and leaves its parent's alone (client.hpp says why).
#include "../queue_impl.hpp"

#include "../deadline.hpp"
#include "../liveness.hpp"
#include "client.hpp"
#include "stream.hpp"
#include "url.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cinttypes>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include <pthread.h>

namespace shmq::detail {
namespace {

using clock = std::chrono::steady_clock;
using ms_t = std::chrono::milliseconds;

// The fingerprint stored with the stream is the one the facade passes: detail::type_fingerprint
// (codec.hpp) has already folded the byte order into it for the raw codec and the binary archive,
// which copy numbers in the writer's byte order, and left it out for a portable encoding
// (shmq::portable<T>), so hosts of either byte order may share such a queue.

// Room kept below max_payload for the headers a publish carries (Nats-Msg-Id, Nats-Expected-Stream).
constexpr std::int64_t header_room = 256;

// Guards the creation of a process's state. A forked child gets it fresh (pthread_atfork below):
// another thread of the parent may have held it at the fork.
std::mutex* state_mutex() {
    static std::mutex* m = [] {
        static std::aligned_storage_t<sizeof(std::mutex), alignof(std::mutex)> storage;
        auto* p = new (&storage) std::mutex;
        ::pthread_atfork(nullptr, nullptr, [] { new (state_mutex()) std::mutex; });
        return p;
    }();
    return m;
}

// What a retry may cure: the connection (being re-established by libnats) or a server that did
// not answer in time. A refusal (bad credentials, a limit) is not retried.
bool network_failure(natsStatus s) noexcept {
    return s == NATS_TIMEOUT || s == NATS_CONNECTION_CLOSED || s == NATS_CONNECTION_DISCONNECTED ||
           s == NATS_NO_RESPONDERS || s == NATS_NO_SERVER || s == NATS_IO_ERROR ||
           s == NATS_STALE_CONNECTION;
}

// Milliseconds left before d (at least 1; "forever" is capped at about 11 days).
std::int64_t left_ms(const deadline& d) {
    if (d.forever()) return 1000000000;
    return std::max<std::int64_t>(1, std::chrono::duration_cast<ms_t>(d.at() - clock::now()).count());
}

// One attempt of a request (publish, ack, API call) waits at most this long for its answer before
// it is sent again: a request lost in a failover (sent to a node that died, or to a stream leader
// that lost its office) never gets one, and the caller's deadline may be much longer.
constexpr std::int64_t attempt_cap_ms = 2000;
std::int64_t attempt_ms(const deadline& d) { return std::min(left_ms(d), attempt_cap_ms); }

// A fetch that times out on a live connection just found nothing (the server's 408).
bool connected(natsConnection* nc) noexcept {
    return natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED;
}

// A short growing pause between retries: first retries are quick (a failover takes tens of ms),
// later ones do not hammer the server.
struct backoff {
    ms_t next{5};
    void pause(const deadline& until) {
        auto d = next;
        if (!until.forever()) d = std::min(d, std::chrono::duration_cast<ms_t>(until.at() - clock::now()));
        if (d.count() > 0) std::this_thread::sleep_for(d);
        next = std::min(next * 2, ms_t(200));
    }
};

} // namespace

class nats_queue final : public queue_impl {
public:
    nats_queue(nats_url url, queue_flavor flavor, std::int64_t maxsize,
               std::unique_ptr<nats_client> client)
        : url_(std::move(url)), flavor_(flavor), maxsize_(maxsize), subject_(nats_subject(url_.name)) {
        // The creating/opening process keeps the connection it has already made.
        cur_.store(new proc_state(std::move(client)), std::memory_order_release);
    }

    ~nats_queue() override {
        proc_state* st = cur_.load(std::memory_order_acquire);
        // A forked child's copy of its parent's state is left alone (client.hpp).
        if (st && st->client->pid() == self_pid()) delete st;
    }

    void put(std::span<const std::byte> item, bool block, const timeout_t& timeout) override;
    void get(message_sink& sink, bool block, const timeout_t& timeout) override;
    std::size_t qsize() const override {
        const nats_queue_counts n = counts();
        const auto ack = static_cast<std::uint64_t>(std::max<std::int64_t>(n.ack_pending, 0));
        return static_cast<std::size_t>(n.messages > ack ? n.messages - ack : 0);
    }
    bool empty() const override { return qsize() == 0; }
    bool full() const override {
        return maxsize_ > 0 && counts().messages >= static_cast<std::uint64_t>(maxsize_);
    }
    std::int64_t maxsize() const noexcept override { return maxsize_; }
    void close() noexcept override { closed_by_.store(self_pid(), std::memory_order_release); }
    bool closed() const noexcept override {
        return closed_by_.load(std::memory_order_acquire) == self_pid();
    }
    void check_open() const override {
        if (closed()) throw closed_error("shmq: queue is closed");
    }
    void join_thread() override {}          // no backlog: every put returned stored
    void cancel_join_thread() noexcept override {}
    void finish() noexcept override {}
    void task_done() override;
    bool join(const timeout_t& timeout) override;
    std::uint64_t lost_to_dead_consumers() const noexcept override { return 0; }   // redelivered instead

private:
    struct proc_state {
        explicit proc_state(std::unique_ptr<nats_client> c) : client(std::move(c)) {}
        ~proc_state() {
            for (natsMsg* m : unfinished) natsMsg_Destroy(m);   // not acked: delivered again later
            if (sub) natsSubscription_Destroy(sub);
        }
        std::unique_ptr<nats_client> client;
        std::timed_mutex fetch_m;        // one Fetch at a time per subscription (libnats refuses more)
        natsSubscription* sub = nullptr; // bound to the durable consumer on first get; under fetch_m
        std::mutex unfinished_m;
        std::deque<natsMsg*> unfinished; // JoinableQueue: got, not yet task_done'd, oldest first
    };

    // This process's state: made on first use in a forked child (the parent's is left alone).
    proc_state& state(const deadline& until) const {
        proc_state* st = cur_.load(std::memory_order_acquire);
        if (st && st->client->pid() == self_pid()) return *st;
        std::lock_guard lk(*state_mutex());
        st = cur_.load(std::memory_order_acquire);
        if (st && st->client->pid() == self_pid()) return *st;
        auto c = std::make_unique<nats_client>(url_, network_limit(until));
        st = new proc_state(std::move(c));
        cur_.store(st, std::memory_order_release);   // the parent's stays allocated (client.hpp)
        return *st;
    }

    // How long network trouble may last within a call whose own deadline is `until`: its
    // timeout (but at least one second, so a short timeout still allows one round trip), or
    // the URL's `timeout` when it waits forever.
    std::chrono::duration<double> network_limit(const deadline& until) const {
        if (until.forever()) return url_.timeout;
        const std::chrono::duration<double> left = until.at() - clock::now();
        return std::max(left, std::min(url_.timeout, std::chrono::duration<double>(1.0)));
    }
    deadline network_deadline(const deadline& until) const {
        return deadline(timeout_t(network_limit(until)));
    }

    nats_queue_counts counts() const {
        const deadline net = network_deadline(deadline(timeout_t(url_.timeout)));
        proc_state& st = state(net);
        return nats_counts(*st.client, url_, left_ms(net));
    }

    [[noreturn]] void fail(const std::string& what, natsStatus s) const {
        throw error("shmq: NATS queue '" + url_.display() + "': " + what + " (" + nats_error_text(s) + ")");
    }

    // Acknowledges m, retrying through reconnections until `net`. False when it never got through.
    bool ack(natsMsg* m, const deadline& net, natsStatus& last) const {
        backoff b;
        for (;;) {
            jsOptions jo = js_wait(attempt_ms(net));
            jsErrCode jerr = static_cast<jsErrCode>(0);
            last = natsMsg_AckSync(m, &jo, &jerr);
            if (last == NATS_OK) return true;
            if (net.expired()) return false;
            b.pause(net);
        }
    }

    std::string message_id() {
        // Unique across processes and hosts: pid, a random per-handle part, a counter.
        thread_local std::mt19937_64 rng{std::random_device{}() ^ static_cast<std::uint64_t>(self_pid())};
        char buf[64];
        std::snprintf(buf, sizeof buf, "%u-%016" PRIx64 "-%" PRIu64, static_cast<unsigned>(self_pid()),
                      rng(), next_id_.fetch_add(1, std::memory_order_relaxed));
        return buf;
    }

    nats_url url_;
    queue_flavor flavor_;
    std::int64_t maxsize_;
    std::string subject_;
    mutable std::atomic<proc_state*> cur_{nullptr};
    std::atomic<std::uint64_t> next_id_{0};
    std::atomic<std::uint32_t> closed_by_{0};   // as in the shared-memory queue: per process
};

void nats_queue::put(std::span<const std::byte> item, bool block, const timeout_t& timeout) {
    check_open();
    const deadline until = flavor_ == queue_flavor::simple ? deadline() : deadline::from(block, timeout);
    deadline net = network_deadline(until);
    proc_state& st = state(net);
    const std::int64_t limit = st.client->max_payload() - header_room;
    if (static_cast<std::int64_t>(item.size()) > limit)
        throw value_error("shmq: NATS queue '" + url_.display() + "': an item of " +
                          std::to_string(item.size()) + " bytes exceeds the server's limit of " +
                          std::to_string(limit) + " (max_payload less header room); items are not split");
    const std::string id = message_id();
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id.c_str();
    po.ExpectStream = url_.name.c_str();
    backoff b;
    for (;;) {
        po.MaxWait = attempt_ms(net);
        jsPubAck* pa = nullptr;
        jsErrCode jerr = static_cast<jsErrCode>(0);
        const natsStatus s = js_Publish(&pa, st.client->js(), subject_.c_str(), item.data(),
                                        static_cast<int>(item.size()), &po, &jerr);
        if (pa) jsPubAck_Destroy(pa);
        if (s == NATS_OK) return;
        const char* last = nats_GetLastError(nullptr);
        const bool is_full = jerr == JSStreamStoreFailedErr ||
                             (last && std::strstr(last, "maximum messages") != nullptr);
        if (is_full) {
            // Waiting for room is the caller's timeout alone (forever when it gave none).
            if (until.expired() || (!until.forever() && !block))
                throw full_error("shmq: queue is full");
            b.pause(until);
            net = network_deadline(until);   // the network bound restarts after a full answer
            continue;
        }
        // Transient: the connection, or a cluster electing leaders (no responders, "cluster
        // not available", "insufficient resources" while peers are missing). Anything else is
        // the server refusing this put.
        const bool transient = network_failure(s) || jerr == 10008 /* JSClusterNotAvailErr */ ||
                               jerr == 10023 /* JSInsufficientResourcesErr */;
        if (!transient) fail("put refused", s);
        if (net.expired()) fail("put failed", s);
        b.pause(net);
    }
}

void nats_queue::get(message_sink& sink, bool block, const timeout_t& timeout) {
    check_open();
    const deadline until = flavor_ == queue_flavor::simple ? deadline() : deadline::from(block, timeout);
    deadline net = network_deadline(until);
    proc_state& st = state(net);
    std::unique_lock lk(st.fetch_m, std::defer_lock);
    if (until.forever()) lk.lock();
    else if (!lk.try_lock_until(until.at())) throw empty_error("shmq: queue is empty");
    backoff b;
    natsMsg* msg = nullptr;
    for (;;) {
        natsStatus s = NATS_OK;
        if (!st.sub) {
            jsOptions jo = js_wait(attempt_ms(net));
            jsSubOptions so;
            jsSubOptions_Init(&so);
            so.Stream = url_.name.c_str();
            so.Consumer = nats_consumer_name;
            jsErrCode jerr = static_cast<jsErrCode>(0);
            s = js_PullSubscribe(&st.sub, st.client->js(), subject_.c_str(), nats_consumer_name,
                                 &jo, &so, &jerr);
            if (s != NATS_OK) st.sub = nullptr;
            if (s != NATS_OK && !network_failure(s)) fail("cannot attach to the consumer", s);
        }
        if (s == NATS_OK) {
            jsFetchRequest req;
            jsFetchRequest_Init(&req);
            req.Batch = 1;
            // Not waiting (or the time is up): nats-server 2.9 holds a no_wait pull request
            // that carries an expiry until it expires, so ask the consumer first whether
            // anything is waiting (one round trip), and fetch briefly only then. Otherwise wait
            // in slices of at most 5 s (a lost connection is then noticed and retried).
            const bool no_wait = until.expired();
            if (no_wait) {
                jsOptions jo = js_wait(attempt_ms(net));
                jsErrCode jerr = static_cast<jsErrCode>(0);
                jsConsumerInfo* ci = nullptr;
                s = js_GetConsumerInfo(&ci, st.client->js(), url_.name.c_str(), nats_consumer_name,
                                       &jo, &jerr);
                if (s == NATS_OK) {
                    const bool none = ci->NumPending == 0;
                    jsConsumerInfo_Destroy(ci);
                    if (none) throw empty_error("shmq: queue is empty");
                }
                req.Expires = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  ms_t(std::min<std::int64_t>(left_ms(net), 250))).count();
            } else {
                req.Expires = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  ms_t(std::clamp<std::int64_t>(left_ms(until), 20, 5000))).count();
            }
            natsMsgList list{};
            if (s == NATS_OK) s = natsSubscription_FetchRequest(&list, st.sub, &req);
            if (s == NATS_OK && list.Count > 0) {
                msg = list.Msgs[0];
                list.Msgs[0] = nullptr;
                for (int i = 1; i < list.Count; ++i) natsMsg_Nak(list.Msgs[i], nullptr);
                natsMsgList_Destroy(&list);
                break;
            }
            natsMsgList_Destroy(&list);
            if (s == NATS_OK || s == NATS_NOT_FOUND || (s == NATS_TIMEOUT && connected(st.client->nc()))) {
                // No message in this slice: the server answered, so the network is fine.
                if (until.expired()) throw empty_error("shmq: queue is empty");
                net = network_deadline(until);
                continue;
            }
        }
        if (!network_failure(s)) fail("get failed", s);
        if (net.expired())
            fail("get failed", s);
        b.pause(net);
    }
    // Copy out first: if the sink throws (allocation), the message goes back at once.
    try {
        const int len = natsMsg_GetDataLength(msg);
        std::byte* dst = sink.reserve(static_cast<std::size_t>(len));
        if (len > 0) std::memcpy(dst, natsMsg_GetData(msg), static_cast<std::size_t>(len));
    } catch (...) {
        natsMsg_Nak(msg, nullptr);
        natsMsg_Destroy(msg);
        throw;
    }
    if (flavor_ == queue_flavor::joinable) {
        std::lock_guard ul(st.unfinished_m);
        st.unfinished.push_back(msg);
        return;
    }
    natsStatus last = NATS_OK;
    const bool acked = ack(msg, network_deadline(until), last);
    natsMsg_Destroy(msg);
    if (!acked) fail("get could not acknowledge the item (it will be delivered again)", last);
}

void nats_queue::task_done() {
    const deadline net(timeout_t(url_.timeout));
    proc_state& st = state(net);
    natsMsg* m = nullptr;
    {
        std::lock_guard ul(st.unfinished_m);
        if (st.unfinished.empty())
            throw value_error("shmq: task_done() called too many times (with NATS, task_done "
                              "acknowledges an item this process got from this handle)");
        m = st.unfinished.front();
        st.unfinished.pop_front();
    }
    natsStatus last = NATS_OK;
    if (!ack(m, net, last)) {
        std::lock_guard ul(st.unfinished_m);
        st.unfinished.push_front(m);
        fail("task_done could not acknowledge the item", last);
    }
    natsMsg_Destroy(m);
}

bool nats_queue::join(const timeout_t& timeout) {
    const deadline until(timeout);
    deadline net = network_deadline(until);
    proc_state& st = state(net);
    backoff b;
    ms_t poll{5};
    for (;;) {
        natsStatus s = NATS_OK;
        try {
            const nats_queue_counts n = nats_counts(*st.client, url_, attempt_ms(net));
            if (n.messages == 0 && n.ack_pending == 0 && n.undelivered == 0) return true;
            net = network_deadline(until);
        } catch (const not_found_error&) {
            throw;
        } catch (const error&) {
            s = NATS_TIMEOUT;
            if (net.expired()) throw;
        }
        if (until.expired()) return false;
        if (s != NATS_OK) {
            b.pause(net);
            continue;
        }
        // The server has no notification for "consumer drained": poll, quickly at first.
        auto d = poll;
        if (!until.forever()) d = std::min(d, std::chrono::duration_cast<ms_t>(until.at() - clock::now()) + ms_t(1));
        std::this_thread::sleep_for(d);
        poll = std::min(poll * 2, ms_t(50));
    }
}

// ---- create / open / remove ----

std::shared_ptr<queue_impl> nats_queue_create(queue_flavor flavor, std::string_view text,
                                              std::int64_t maxsize, const options&,
                                              std::uint64_t fp) {
    nats_url url = parse_nats_url(text);
    if (flavor == queue_flavor::simple) maxsize = 0;
    auto client = std::make_unique<nats_client>(url, url.timeout);
    const std::int64_t wait = to_ms(url.timeout);
    jsOptions jo = js_wait(wait);
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsStreamInfo* si = nullptr;
    natsStatus s = js_GetStreamInfo(&si, client->js(), url.name.c_str(), &jo, &jerr);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        throw exists_error("shmq: NATS queue '" + url.display() + "' already exists");
    }
    if (!(s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr))
        throw error("shmq: NATS at '" + url.display() + "': " + nats_error_text(s));

    // The nonce makes the description differ between two racing creators, so JetStream refuses
    // the second (a stream is created idempotently when the configuration is identical).
    char desc[160];
    std::snprintf(desc, sizeof desc, "%.*skind=%u fp=%016" PRIx64 " id=%08x",
                  static_cast<int>(nats_description_magic.size()), nats_description_magic.data(),
                  static_cast<unsigned>(flavor), fp,
                  static_cast<unsigned>(std::random_device{}()));
    const std::string subject = nats_subject(url.name);
    const char* subjects[] = {subject.c_str()};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = url.name.c_str();
    cfg.Description = desc;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Retention = js_WorkQueuePolicy;
    cfg.Storage = js_FileStorage;
    cfg.MaxMsgs = maxsize > 0 ? maxsize : -1;
    cfg.Discard = js_DiscardNew;
    cfg.Replicas = url.replicas;
    s = js_AddStream(&si, client->js(), &cfg, &jo, &jerr);
    if (jerr == JSStreamNameExistErr)
        throw exists_error("shmq: NATS queue '" + url.display() + "' already exists");
    if (s != NATS_OK)
        throw error("shmq: NATS at '" + url.display() + "': cannot create the stream (" +
                    nats_error_text(s) + ")");
    jsStreamInfo_Destroy(si);

    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = nats_consumer_name;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = static_cast<std::int64_t>(url.ack_wait.count() * 1e9);
    cc.DeliverPolicy = js_DeliverAll;
    cc.FilterSubject = subject.c_str();
    // Every item got and not yet task_done'd is pending: do not let the server cap the work
    // in progress below what shared memory allows.
    cc.MaxAckPending = 1 << 20;
    cc.MaxWaiting = 4096;   // pull requests waiting at once: one per blocked get()
    jsConsumerInfo* ci = nullptr;
    s = js_AddConsumer(&ci, client->js(), url.name.c_str(), &cc, &jo, &jerr);
    if (s != NATS_OK) {
        const std::string why = nats_error_text(s);
        js_DeleteStream(client->js(), url.name.c_str(), &jo, nullptr);
        throw error("shmq: NATS at '" + url.display() + "': cannot create the consumer (" + why + ")");
    }
    jsConsumerInfo_Destroy(ci);
    return std::make_shared<nats_queue>(std::move(url), flavor, maxsize, std::move(client));
}

std::shared_ptr<queue_impl> nats_queue_open(queue_flavor flavor, std::string_view text,
                                            std::uint64_t fp) {
    nats_url url = parse_nats_url(text);
    auto client = std::make_unique<nats_client>(url, url.timeout);
    const nats_queue_counts n = nats_counts(*client, url, to_ms(url.timeout));
    if (!n.tag)
        throw type_error("shmq: NATS stream '" + url.display() + "' is not a shmq queue");
    if (n.tag->flavor != static_cast<std::uint32_t>(flavor) || n.tag->fingerprint != fp)
        throw type_error("shmq: NATS queue '" + url.display() +
                         "' holds another element type or queue kind (or was made on a host "
                         "with another byte order)");
    return std::make_shared<nats_queue>(std::move(url), flavor, n.max_msgs > 0 ? n.max_msgs : 0,
                                        std::move(client));
}

bool nats_queue_remove(std::string_view text) noexcept {
    try {
        const nats_url url = parse_nats_url(text);
        const deadline until{timeout_t(url.timeout)};
        nats_client client(url, url.timeout);
        // A cluster that just lost a node answers "not available" until it has re-elected its
        // leaders: retry within the URL's timeout. Only "no such stream" is final.
        backoff b;
        for (;;) {
            jsOptions jo = js_wait(attempt_ms(until));
            jsErrCode jerr = static_cast<jsErrCode>(0);
            const natsStatus s = js_DeleteStream(client.js(), url.name.c_str(), &jo, &jerr);
            if (s == NATS_OK) return true;
            if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr || until.expired()) return false;
            b.pause(until);
        }
    } catch (...) {
        return false;
    }
}

} // namespace shmq::detail
