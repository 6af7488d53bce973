// SPDX-License-Identifier: BSL-1.0
// Helpers for the queue-family tests (test_queue*.cpp, test_simple_queue.cpp,
// test_joinable_queue.cpp, test_named_queue.cpp), on top of test_fixtures.hpp.
//
//  * queue_child(): a forked child (test_fixtures' scoped_child) that arms its own watchdog and,
//    when its body returns, flushes this process's queue backlogs the way a shmq::Process child
//    does (raw fork children _exit, which skips atexit and so the feeder's flush).
//  * go_signal: a pipe a parent uses to release a child at a chosen moment (bounded on both sides).
//  * Element types whose Boost serialization throws on purpose (codec_error tests).
//  * Timing bounds shared by the files, chosen for a loaded 2-core machine.
#pragma once

#include "test_fixtures.hpp"

#include <shmq/detail/exit_flush.hpp>
#include <shmq/errors.hpp>

#include <boost/serialization/split_member.hpp>
#include <boost/serialization/string.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

namespace shmq::test {

/// A call that must not wait returns within this, although a loaded machine may deschedule it;
/// the waits it must not do are 5 s or forever, so this still tells them apart.
inline constexpr seconds_d at_once{0.25};
/// The tolerance allowed below a timeout (CLOCK_RES), and a generous upper bound above one.
inline constexpr seconds_d clock_res{0.1};
inline constexpr seconds_d late{1.0};

/// Exit codes of queue children; 1..199 so they stay clear of test_fixtures' own codes.
enum child_code : int {
    child_ok = 0,
    child_bad_value = 11,
    child_bad_order = 12,
    child_timed_out_get = 13,
    child_wrong_error = 14,
    child_no_go = 15,
    child_bad_count = 16,
    child_put_failed = 17,
};

/// Forks a child that runs body under a `watchdog_seconds` alarm, then flushes every queue
/// backlog of the child (shmq::detail::run_exit_flush, as a shmq::Process child does before
/// _exit), then _exits with body's value. Throws std::system_error when fork fails.
inline scoped_child queue_child(std::function<int()> body, unsigned watchdog_seconds = 30) {
    return scoped_child([body = std::move(body), watchdog_seconds]() -> int {
        watchdog dog(watchdog_seconds);
        int code = body();
        ::alarm(watchdog_seconds);   // the flush gets a fresh budget, still bounded
        shmq::detail::run_exit_flush();
        return code;
    });
}

/// A one-shot release signal from a parent to children forked after it was made.
class go_signal {
public:
    go_signal() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
        r_ = fds[0];
        w_ = fds[1];
    }
    ~go_signal() {
        if (r_ >= 0) ::close(r_);
        if (w_ >= 0) ::close(w_);
    }
    go_signal(const go_signal&) = delete;
    go_signal& operator=(const go_signal&) = delete;

    /// Parent: releases every waiting child (closing the write end makes every read return).
    void go() noexcept {
        if (w_ >= 0) ::close(w_), w_ = -1;
    }
    /// Child: drops its copy of the write end (or EOF never comes), then waits at most `limit`.
    /// True when released.
    bool wait(seconds_d limit = 10s) noexcept {
        if (w_ >= 0) ::close(w_), w_ = -1;
        const auto give_up = clk::now() + std::chrono::duration_cast<clk::duration>(limit);
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - clk::now());
            if (left.count() <= 0) return false;
            pollfd p{r_, POLLIN, 0};
            const int n = ::poll(&p, 1, static_cast<int>(left.count()));
            if (n < 0 && errno == EINTR) continue;
            return n > 0;
        }
    }

private:
    int r_ = -1, w_ = -1;
};

/// Boost-serialized element whose save() throws for encode_bomb and whose load() throws for
/// decode_bomb, to provoke codec_error on either side of a queue.
struct fragile {
    static constexpr int encode_bomb = -1;
    static constexpr int decode_bomb = -2;

    int value = 0;
    std::string text;

    template <class Archive> void save(Archive& ar, unsigned) const {
        if (value == encode_bomb) throw std::runtime_error("fragile: refusing to encode");
        ar << value << text;
    }
    template <class Archive> void load(Archive& ar, unsigned) {
        ar >> value >> text;
        if (value == decode_bomb) throw std::runtime_error("fragile: refusing to decode");
    }
    BOOST_SERIALIZATION_SPLIT_MEMBER()
};

/// An item that says who put it and when: producer id and a per-producer sequence number.
/// Trivially copyable, so it takes the raw codec.
struct tagged {
    std::uint32_t producer;
    std::uint32_t seq;
};

/// A std::string of n bytes derived from seed (pattern_byte), to check contents end to end.
inline std::string pattern_string(std::size_t n, std::uint64_t seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(pattern_byte(seed, i));
    return s;
}

inline bool matches_pattern(const std::string& s, std::uint64_t seed) noexcept {
    return matches_pattern(std::as_bytes(std::span(s.data(), s.size())), seed);
}

} // namespace shmq::test
