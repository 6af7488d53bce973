// SPDX-License-Identifier: BSL-1.0
#include "sync/object_segment.hpp"

#include "deadline.hpp"

#include <shmq/errors.hpp>

namespace shmq::detail {
namespace {

segment_params params_of(const object_spec& spec) {
    segment_params p;
    p.kind = spec.kind;
    p.channels = 0;
    p.object_bytes = spec.bytes;
    p.type_fingerprint = spec.type_fingerprint;
    p.maxsize = spec.count;
    p.init_object = spec.init;
    return p;
}

} // namespace

std::shared_ptr<segment> make_object(const object_spec& spec) {
    return segment::create_anonymous(params_of(spec));
}

std::shared_ptr<segment> create_object(std::string_view name, const object_spec& spec,
                                       const options& opts) {
    // No registry, so nothing can tell a stale object from a live one (lifecycle.hpp).
    if (opts.if_exists != if_exists::fail)
        throw value_error("shmq: '" + std::string(name) +
                          "': options::if_exists applies to queues and Listener only; "
                          "synchronization objects and shared values keep no holders");
    return segment::create_named(name, params_of(spec), opts.mode);
}

std::shared_ptr<segment> open_object(std::string_view name, segment_kind kind,
                                     std::uint64_t min_bytes, const options& opts,
                                     std::uint64_t type_fingerprint) {
    auto s = segment::open_named(name, kind, type_fingerprint, opts.trust_foreign);
    if (s->object_bytes() < min_bytes)
        throw broken_error("shmq: '" + std::string(name) + "': corrupt header (object area of " +
                           std::to_string(s->object_bytes()) + " bytes, expected at least " +
                           std::to_string(min_bytes) + ")");
    return s;
}

std::int64_t now_ticks() noexcept { return clock::now().time_since_epoch().count(); }

} // namespace shmq::detail
