// SPDX-License-Identifier: BSL-1.0
// shmq-bench — the report: tables, ratios, targets, JSON and the chart.
#include "report.hpp"

#include <boost/version.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iomanip>
#include <set>
#include <sstream>
#include <thread>

#include <sched.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

namespace shmq_bench {

// ---- small formatting helpers ------------------------------------------------------------------

const char* to_string(payload p) noexcept {
    switch (p) {
    case payload::bytes: return "bytes";
    case payload::pod: return "pod";
    case payload::record: return "record";
    }
    return "?";
}

const char* to_string(status s) noexcept {
    switch (s) {
    case status::ok: return "ok";
    case status::timeout: return "timeout";
    case status::error: return "error";
    case status::skipped: return "skipped";
    }
    return "?";
}

std::string size_label(std::size_t b) {
    if (b >= (1u << 20) && b % (1u << 20) == 0) return std::to_string(b >> 20) + " MiB";
    if (b >= 1024 && b % 1024 == 0) return std::to_string(b >> 10) + " KiB";
    return std::to_string(b) + " B";
}

std::string size_tag(std::size_t b) {
    std::string s = size_label(b);
    s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
    return s;
}

std::string scenario::id() const {
    std::string s = what == mode::latency ? "latency " : "throughput ";
    s += transport + " " + to_string(kind) + " " + size_tag(size) + " ";
    s += std::to_string(pairs) + "->" + std::to_string(pairs);
    return s;
}

namespace {

std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

/// Three significant digits.
std::string sig3(double v) {
    if (v >= 100) return fmt("%.0f", v);
    if (v >= 10) return fmt("%.1f", v);
    return fmt("%.2f", v);
}

std::string fmt_count(double v) {
    if (v >= 1e9) return sig3(v / 1e9) + " G";
    if (v >= 1e6) return sig3(v / 1e6) + " M";
    if (v >= 1e3) return sig3(v / 1e3) + " k";
    return sig3(v) + "  ";
}

std::string fmt_bandwidth(double bytes_per_s) {
    if (bytes_per_s >= 1e9) return sig3(bytes_per_s / 1e9) + " GB/s";
    if (bytes_per_s >= 1e6) return sig3(bytes_per_s / 1e6) + " MB/s";
    return sig3(bytes_per_s / 1e3) + " kB/s";
}

std::string fmt_ns(double ns) {
    if (ns >= 1e6) return sig3(ns / 1e6) + " ms";
    if (ns >= 1e3) return sig3(ns / 1e3) + " us";
    return sig3(ns) + " ns";
}

std::string fmt_ratio(double r) {
    if (!std::isfinite(r) || r <= 0) return "-";
    if (r >= 100) return fmt("%.0fx", r);
    if (r >= 10) return fmt("%.1fx", r);
    return fmt("%.2fx", r);
}

std::string pad(std::string s, std::size_t w) {
    // Width in characters, not bytes: count UTF-8 lead bytes only.
    std::size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    if (n < w) s.append(w - n, ' ');
    return s;
}
std::string rpad(std::string s, std::size_t w) {
    std::size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    if (n < w) s.insert(0, w - n, ' ');
    return s;
}

/// The size column: bytes payloads have a size; the struct payloads a fixed shape.
std::string shape_label(const scenario& sc) {
    switch (sc.kind) {
    case payload::bytes: return size_label(sc.size);
    case payload::pod: return "64 B";
    case payload::record: return "73 B";   // Boost binary, no header: 8+8 + (8+9) + (8+32)
    }
    return "?";
}

std::string layout_label(int pairs) { return std::to_string(pairs) + "\u2192" + std::to_string(pairs); }

/// The most cores other programs used during any ok repetition, or "?".
std::string fmt_others(const scenario_result& r) {
    double m = -1;
    for (const auto& x : r.runs)
        if (x.state == status::ok) m = std::max(m, x.others);
    return m < 0 ? "?" : fmt("%.1f", m);
}

std::string json_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        switch (c) {
        case '"': o += "\\\""; break;
        case '\\': o += "\\\\"; break;
        case '\n': o += "\\n"; break;
        case '\t': o += "\\t"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) o += fmt("\\u%04x", static_cast<double>(c));
            else o += c;
        }
    }
    return o;
}

std::string json_num(double v) {
    if (!std::isfinite(v)) return "null";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

const char* role_name(transport::role r) {
    switch (r) {
    case transport::role::baseline: return "baseline";
    case transport::role::ceiling: return "ceiling";
    case transport::role::shmq: return "shmq";
    }
    return "?";
}

// ---- lookups, ratios and targets ---------------------------------------------------------------

class result_index {
public:
    explicit result_index(const report_input& in) : in_(in) {}

    const scenario_result* find(const std::string& t, payload k, std::size_t size, int pairs, mode m) const {
        for (const auto& r : in_.results)
            if (r.sc.transport == t && r.sc.kind == k && r.sc.size == size && r.sc.pairs == pairs &&
                r.sc.what == m && r.state == status::ok)
                return &r;
        return nullptr;
    }
    /// A baseline to compare a shmq scenario with: same payload, else (pod) the same-size bytes.
    const scenario_result* baseline_for(const std::string& base, const scenario& sc) const {
        if (auto* r = find(base, sc.kind, sc.size, sc.pairs, sc.what)) return r;
        if (sc.kind == payload::pod) return find(base, payload::bytes, sc.size, sc.pairs, sc.what);
        return nullptr;
    }
    transport::role role(const std::string& t) const {
        auto it = in_.roles.find(t);
        return it == in_.roles.end() ? transport::role::baseline : it->second;
    }
    std::vector<std::string> transports(transport::role r) const {
        std::vector<std::string> v;
        for (const auto& res : in_.results)
            if (role(res.sc.transport) == r &&
                std::find(v.begin(), v.end(), res.sc.transport) == v.end())
                v.push_back(res.sc.transport);
        return v;
    }

private:
    const report_input& in_;
};

double tput(const scenario_result* r) { return r ? r->of(&run_result::msgs_per_s).median : NAN; }

struct ratio_row {
    const scenario_result* shmq;
    std::vector<std::pair<std::string, double>> vs;   // baseline name -> ratio (NaN = none)
    double of_ceiling = NAN;
};

std::vector<ratio_row> ratios(const report_input& in, const result_index& ix) {
    std::vector<ratio_row> rows;
    auto bases = ix.transports(transport::role::baseline);
    auto ceilings = ix.transports(transport::role::ceiling);
    for (const auto& r : in.results) {
        if (ix.role(r.sc.transport) != transport::role::shmq || r.state != status::ok) continue;
        ratio_row row{&r, {}, NAN};
        for (const auto& b : bases) {
            const auto* br = ix.baseline_for(b, r.sc);
            double v = NAN;
            if (br && r.sc.what == mode::throughput) v = tput(&r) / tput(br);
            if (br && r.sc.what == mode::latency)
                v = br->of(&run_result::p50).median / r.of(&run_result::p50).median;
            row.vs.emplace_back(b, v);
        }
        for (const auto& c : ceilings) {
            const auto* cr = ix.baseline_for(c, r.sc);
            if (!cr) continue;
            row.of_ceiling = r.sc.what == mode::throughput
                                 ? tput(&r) / tput(cr)
                                 : cr->of(&run_result::p50).median / r.of(&run_result::p50).median;
        }
        rows.push_back(std::move(row));
    }
    return rows;
}

struct target_check {
    std::string what;        ///< the target, in words
    std::string shmq;        ///< which shmq transport
    double measured = NAN;   ///< the ratio measured (NaN: a figure is missing)
    double needed = 0;       ///< at least this
};

std::vector<target_check> targets(const report_input& in, const result_index& ix) {
    (void)in;
    std::vector<target_check> v;
    const std::vector<std::string> subjects = {"shmq Pipe", "shmq Queue"};
    auto add = [&](std::string what, const std::string& t, double measured, double needed) {
        v.push_back({std::move(what), t, measured, needed});
    };
    for (const auto& t : subjects) {
        const auto* s64 = ix.find(t, payload::bytes, 64, 1, mode::throughput);
        add("64 B 1\u21921 msg/s vs pipe(2)", t, tput(s64) / tput(ix.find("pipe(2)", payload::bytes, 64, 1, mode::throughput)), 10);
        add("64 B 1\u21921 msg/s vs message_queue", t, tput(s64) / tput(ix.find("message_queue", payload::bytes, 64, 1, mode::throughput)), 3);
        add("64 B 1\u21921 msg/s vs py Queue", t, tput(s64) / tput(ix.find("py Queue", payload::bytes, 64, 1, mode::throughput)), 50);
        for (std::size_t size : {std::size_t{1} << 20, std::size_t{16} << 20}) {
            const auto* s = ix.find(t, payload::bytes, size, 1, mode::throughput);
            add(size_label(size) + " 1\u21921 bytes/s vs pipe(2)", t, tput(s) / tput(ix.find("pipe(2)", payload::bytes, size, 1, mode::throughput)), 20);
            add(size_label(size) + " 1\u21921 bytes/s vs socketpair", t, tput(s) / tput(ix.find("socketpair", payload::bytes, size, 1, mode::throughput)), 1);
        }
        const auto* lat = ix.find(t, payload::bytes, 64, 1, mode::latency);
        const auto* plat = ix.find("pipe(2)", payload::bytes, 64, 1, mode::latency);
        double p50 = lat && plat ? plat->of(&run_result::p50).median / lat->of(&run_result::p50).median : NAN;
        double p99 = lat && plat ? plat->of(&run_result::p99).median / lat->of(&run_result::p99).median : NAN;
        add("64 B round trip p50: pipe(2)'s / shmq's", t, p50, 10);
        add("64 B round trip p99: pipe(2)'s / shmq's", t, p99, 4);
        add("record 1\u21921 msg/s vs py Queue (tuple)", t,
            tput(ix.find(t, payload::record, 64, 1, mode::throughput)) /
                tput(ix.find("py Queue", payload::record, 64, 1, mode::throughput)), 5);
        add("64 B 4\u21924 msg/s / its own 1\u21921", t,
            tput(ix.find(t, payload::bytes, 64, 4, mode::throughput)) / tput(s64), 0.5);
    }
    return v;
}

// ---- issue 12's targets --------------------------------------------------------------------------

const char* const cpp_ipc_name = "cpp-ipc route";     // transport_cpp_ipc.cpp
const char* const ceiling_name = "SPSC ring (ceiling)";   // transport_spsc.cpp
const char* const leased_ring_name = "SPSC ring with leases";   // transport_spsc.cpp

struct issue12_row {
    std::string figure;       ///< as the issue words it
    double measured = NAN;    ///< NaN: not measured in this run (note says why)
    double target = 0;
    bool at_most = false;     ///< the target is an upper bound (shmq's latency over the ring's)
    std::string note;         ///< how it was measured, or why it was not
    /// For targets against another transport, the ratio a perfect transport would reach in this
    /// run (limit_against in issue12_targets); NaN otherwise. Below the target, the target cannot
    /// be met on this machine in this run: a measured limit.
    double limit = NAN;
    /// What the limit is. `leases`: the SPSC ring with leases (the 64 B rows against the ring),
    /// what the ring reaches when it makes shmq's locked instructions, the limit of shmq's way of
    /// sharing an end between processes rather than of every design. `copy_out`: the bare SPSC
    /// ring's round trips against cpp-ipc (the copying rows "every size"), what a receive that
    /// copies the message out can reach against one that reads it in place; also the 1 MiB
    /// Pipe's throughput against cpp-ipc. `ring`: the bare SPSC ring's 1 MiB throughput against
    /// the socketpair, what a transport that copies each message in on one CPU and out on the
    /// other reaches here (the ring's geometry is the best of those measured, doc/design.md §4).
    /// `perfect`: a perfect transport (limit_against).
    enum class limit_kind { perfect, leases, copy_out, ring } limit_of = limit_kind::perfect;
    /// How the report says a MISSED row is beyond this limit, and the JSON's `limit_of`.
    const char* beyond_words() const {
        switch (limit_of) {
        case limit_kind::leases: return ", beyond the ring with leases";
        case limit_kind::copy_out: return ", beyond a receive that copies";
        case limit_kind::ring: return ", beyond the bare ring";
        default: return ", beyond the limit";
        }
    }
    const char* limit_name() const {
        if (!std::isfinite(limit)) return "";
        switch (limit_of) {
        case limit_kind::leases: return "SPSC ring with leases";
        case limit_kind::copy_out: return "SPSC ring (ceiling), copying out";
        case limit_kind::ring: return "SPSC ring (ceiling)";
        default: return "perfect transport";
        }
    }
    bool met() const { return at_most ? measured <= target : measured >= target; }
    bool beyond_limit() const {
        return std::isfinite(limit) && (at_most ? limit > target : limit < target);
    }
};

/// Empty when the suite has a figure for (t, bytes, size, 1->1, m); otherwise why not.
std::string why_missing(const report_input& in, const std::string& t, std::size_t size, mode m) {
    const std::string no = "not measured in this run: ";
    if (!in.suite) return no + "only the LARGE ITEMS section ran (--large)";
    if (!in.roles.count(t))
        return no + (t == cpp_ipc_name ? std::string("cpp-ipc is not built in (b2 ... --cpp-ipc=DIR)")
                                       : "no " + t + " transport");
    for (const auto& r : in.results)
        if (r.sc.transport == t && r.sc.kind == payload::bytes && r.sc.size == size && r.sc.pairs == 1 &&
            r.sc.what == m)
            return r.state == status::ok ? "" : no + t + " " + to_string(r.state) + " (" + r.note + ")";
    if (!in.filters.empty()) return no + "left out by --filter";
    if (in.quick) return no + "not in the --quick suite";
    return no + "no such scenario";
}

std::vector<issue12_row> issue12_targets(const report_input& in) {
    const result_index ix(in);
    std::vector<issue12_row> v;
    const std::string pipe = "shmq Pipe";
    constexpr std::size_t MiB = std::size_t{1} << 20;
    auto scen = [&](const std::string& t, std::size_t size, mode m) {
        return ix.find(t, payload::bytes, size, 1, m);
    };
    // The most any transport could reach against `base` at `size` in this run (issue12_row::limit):
    // for small messages the SPSC ring's msg/s, which pays nothing but the record and one release
    // store; for large ones one hot memcpy of the message per message, since each side copies it
    // at least once and the two sides run on different CPUs at the same time.
    auto limit_against = [&](const std::string& base, std::size_t size) -> double {
        const double base_rate = tput(scen(base, size, mode::throughput));
        if (size < 64 * 1024) {
            if (!why_missing(in, ceiling_name, size, mode::throughput).empty()) return NAN;
            return tput(scen(ceiling_name, size, mode::throughput)) / base_rate;
        }
        for (const auto& c : in.copies)
            if (c.size == size && c.hot_bytes_per_s > 0)
                return c.hot_bytes_per_s / static_cast<double>(size) / base_rate;
        return NAN;
    };
    // shmq's msg/s over a baseline's, both 1->1 bytes from the suite. `copying`: shmq's side
    // copies each large message in and out (the Pipe's send_bytes and recv_bytes_into); its
    // limit is then also the bare ring's rate over the baseline's, the ring doing that and
    // nothing else (`out_kind` says how), whichever of the two limits is lower.
    auto throughput = [&](std::string figure, const std::string& shmq, const std::string& base,
                          std::size_t size, double target, std::string note, bool copying = false,
                          issue12_row::limit_kind out_kind = issue12_row::limit_kind::ring) {
        issue12_row row{std::move(figure), NAN, target, false, std::move(note)};
        std::string why = why_missing(in, shmq, size, mode::throughput);
        if (why.empty()) why = why_missing(in, base, size, mode::throughput);
        if (why.empty()) row.measured = tput(scen(shmq, size, mode::throughput)) / tput(scen(base, size, mode::throughput));
        else row.note = why;
        if (why.empty() && base != ceiling_name) row.limit = limit_against(base, size);
        if (why.empty() && copying && size >= 64 * 1024 &&
            why_missing(in, ceiling_name, size, mode::throughput).empty()) {
            const double ring = tput(scen(ceiling_name, size, mode::throughput)) / tput(scen(base, size, mode::throughput));
            if (!(ring >= row.limit)) {   // lower, or the only one (NaN limit)
                row.limit = ring;
                row.limit_of = out_kind;
            }
        }
        if (why.empty() && base == ceiling_name &&
            why_missing(in, leased_ring_name, size, mode::throughput).empty()) {
            row.limit = tput(scen(leased_ring_name, size, mode::throughput)) / tput(scen(base, size, mode::throughput));
            row.limit_of = issue12_row::limit_kind::leases;
        }
        v.push_back(std::move(row));
    };
    // A ratio of the 64 B round trips' percentile q: num's over den's.
    auto round_trip = [&](std::string figure, const std::string& num, const std::string& den,
                          double run_result::*q, double target, bool at_most, std::string note) {
        issue12_row row{std::move(figure), NAN, target, at_most, std::move(note)};
        std::string why = why_missing(in, num, 64, mode::latency);
        if (why.empty()) why = why_missing(in, den, 64, mode::latency);
        if (why.empty()) row.measured = scen(num, 64, mode::latency)->of(q).median / scen(den, 64, mode::latency)->of(q).median;
        else row.note = why;
        if (why.empty() && den == ceiling_name && why_missing(in, leased_ring_name, 64, mode::latency).empty()) {
            row.limit = scen(leased_ring_name, 64, mode::latency)->of(q).median / scen(den, 64, mode::latency)->of(q).median;
            row.limit_of = issue12_row::limit_kind::leases;
        }
        v.push_back(std::move(row));
    };
    // A ratio from the LARGE ITEMS section; no limit.
    auto large = [&](std::string figure, std::size_t size, large_api num, large_api den, std::string note) {
        issue12_row row{std::move(figure), NAN, 0.9, false, std::move(note)};
        if (!in.large)
            row.note = "not measured in this run: LARGE ITEMS did not run (it runs by default, not with "
                       "--quick or --filter; --with-large adds it)";
        else {
            row.measured = large_ratio(*in.large, size, num, den);
            if (!std::isfinite(row.measured))
                row.note = "not measured in this run: a LARGE ITEMS row has no figure (see its table)";
        }
        v.push_back(std::move(row));
    };

    const auto* socket = scen("socketpair", MiB, mode::throughput);
    throughput("64 B Pipe / SPSC ceiling (msg/s)", pipe, ceiling_name, 64, 0.6, "");
    throughput("64 B Queue<std::string> / boost message_queue (msg/s)", "shmq Queue", "message_queue", 64, 5,
               "both bounded as the suite runs them");
    round_trip("64 B round trip p50: shmq Pipe / bare SPSC ring", pipe, ceiling_name, &run_result::p50, 1.2, true,
               "the SPSC ring's round-trip scenario; lower is better");
    throughput("1 MiB Pipe, default options / seqpacket socketpair", pipe, "socketpair", MiB, 1.5,
               socket && !socket->note.empty() ? "socketpair: " + socket->note : std::string(), true);
    // cpp-ipc's receiver reads the message in place; the Pipe's copies it out (as the round
    // trips "every size" below): the bare ring, copying out, bounds this row.
    throughput("1 MiB Pipe / cpp-ipc (msg/s)", pipe, cpp_ipc_name, MiB, 1.2, "", true,
               issue12_row::limit_kind::copy_out);
    // cpp-ipc's receiver of a large message reads it in place in its chunk store, where the Pipe
    // above copies it out: this row pairs it with the Pipe's own in-place API.
    throughput("1 MiB Pipe loan/view / cpp-ipc, like for like (msg/s)", "shmq Pipe loan/view",
               cpp_ipc_name, MiB, 1.2, "one copy in, read in place, as cpp-ipc; 4 MiB ring");
    {
        issue12_row row{"1 MiB loaned send+view with work / copying API", NAN, 2, false, "the loan section, Pipe"};
        if (!in.loan && !in.suite)
            row.note = "not measured in this run: only the LARGE ITEMS section ran (--large)";
        else if (!in.loan)
            row.note = "not measured in this run: the loan section did not run (it runs by default, not "
                       "with --quick or --filter; --with-loan adds it)";
        else {
            double copying = NAN;
            for (const auto& l : in.loan->rows)
                if (l.api == "Pipe" && l.size == MiB) {
                    row.measured = l.loaned / l.copying;
                    copying = l.copying;
                }
            // The limit: the bare ring's in-place rate with the same work over the Pipe's copying.
            for (const auto& l : in.loan->rows)
                if (l.api == "ring" && l.size == MiB) row.limit = l.loaned / copying;
            if (!std::isfinite(row.measured)) row.note = "not measured in this run: the 1 MiB loan runs failed";
        }
        v.push_back(std::move(row));
    }
    large("64 MiB Queue (get_into) / Pipe", 64 * MiB, large_api::queue_get_into, large_api::pipe,
          "LARGE ITEMS, bounded Queue");
    large("unbounded Queue 1 MiB / bounded", MiB, large_api::unbounded_get_into, large_api::queue_get_into,
          "LARGE ITEMS, get_into both");
    // Against cpp-ipc "every size": the worst of the sizes both round-tripped in this run. `large`
    // is the shmq transport measured from 1 KiB up (64 B is always the Pipe's). `copying`: shmq's
    // receive copies the message out (recv_bytes_into), where cpp-ipc's reads it in place; the
    // limit is then the bare ring's ratio at its worst size, the ring copying out too (NaN unless
    // it round-tripped every size that counts).
    auto every_size = [&](std::string figure, double run_result::*q, const std::string& large,
                          std::string how, bool copying) {
        issue12_row row{std::move(figure), NAN, 1, false, ""};
        if (copying) row.limit_of = issue12_row::limit_kind::copy_out;
        bool ring_everywhere = copying;
        std::string sizes, why;
        for (const auto& r : in.results) {
            const std::string& t = r.sc.size < 1024 ? pipe : large;
            if (r.sc.transport != t || r.sc.what != mode::latency || r.sc.kind != payload::bytes ||
                r.sc.pairs != 1)
                continue;
            std::string w = why_missing(in, t, r.sc.size, mode::latency);
            if (w.empty()) w = why_missing(in, cpp_ipc_name, r.sc.size, mode::latency);
            if (!w.empty()) {
                if (why.empty()) why = w;
                continue;
            }
            const double x = scen(cpp_ipc_name, r.sc.size, mode::latency)->of(q).median /
                             scen(t, r.sc.size, mode::latency)->of(q).median;
            if (!(x >= row.measured)) row.measured = x;   // the smallest (NaN at first)
            sizes += (sizes.empty() ? "" : ", ") + size_label(r.sc.size) + " " + fmt_ratio(x);
            if (ring_everywhere && why_missing(in, ceiling_name, r.sc.size, mode::latency).empty()) {
                const double y = scen(cpp_ipc_name, r.sc.size, mode::latency)->of(q).median /
                                 scen(ceiling_name, r.sc.size, mode::latency)->of(q).median;
                if (!(y >= row.limit)) row.limit = y;
            } else {
                ring_everywhere = false;
            }
        }
        if (!ring_everywhere) row.limit = NAN;
        if (sizes.empty()) row.note = why.empty() ? "not measured in this run: no round trip" : why;
        else row.note = how + "the smallest of: " + sizes + (in.quick ? "; --quick: 64 B only" : "");
        v.push_back(std::move(row));
    };
    every_size("round trip p50, every size: cpp-ipc / shmq Pipe", &run_result::p50, pipe, "", true);
    every_size("round trip p99, every size: cpp-ipc / shmq Pipe", &run_result::p99, pipe, "", true);
    const std::string view = "shmq Pipe loan/view";
    const std::string like = "from 1 KiB the Pipe's loan/view, read in place as cpp-ipc's are; ";
    every_size("round trip p50, like for like: cpp-ipc / shmq Pipe", &run_result::p50, view, like, false);
    every_size("round trip p99, like for like: cpp-ipc / shmq Pipe", &run_result::p99, view, like, false);
    return v;
}

// ---- machine ------------------------------------------------------------------------------------

std::string trim(std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    std::size_t i = 0;
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    return s.substr(i);
}

std::string run_capture(const std::string& cmd) {
    std::string out;
    if (FILE* f = ::popen(cmd.c_str(), "r")) {
        char buf[256];
        while (std::fgets(buf, sizeof buf, f)) out += buf;
        ::pclose(f);
    }
    return trim(out);
}

} // namespace

double busy_cores(double seconds) {
    auto sample = [](double& busy, double& total) {
        std::ifstream f("/proc/stat");
        std::string cpu;
        f >> cpu;
        if (cpu != "cpu") return false;
        double v[10] = {};
        for (double& x : v) f >> x;
        if (!f) return false;
        total = 0;
        for (int i = 0; i < 8; ++i) total += v[i];   // guest time is already in user
        busy = total - v[3] - v[4];                  // minus idle and iowait
        return true;
    };
    double b0, t0, b1, t1;
    if (!sample(b0, t0)) return -1;
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    if (!sample(b1, t1) || t1 <= t0) return -1;
    long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return (b1 - b0) / (t1 - t0) * static_cast<double>(n > 0 ? n : 1);
}

machine_info probe_machine(const std::string& python) {
    machine_info m;
    std::ifstream cpuinfo("/proc/cpuinfo");
    for (std::string line; std::getline(cpuinfo, line);) {
        for (const char* key : {"model name", "Model", "cpu model", "Hardware"}) {
            if (line.rfind(key, 0) == 0 && line.find(':') != std::string::npos) {
                m.cpu = trim(line.substr(line.find(':') + 1));
                break;
            }
        }
        if (!m.cpu.empty()) break;
    }
    if (m.cpu.empty()) m.cpu = "unknown CPU";
    long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    m.cores = online > 0 ? static_cast<unsigned>(online) : std::thread::hardware_concurrency();
    cpu_set_t set;
    CPU_ZERO(&set);
    m.usable = ::sched_getaffinity(0, sizeof set, &set) == 0 ? static_cast<unsigned>(CPU_COUNT(&set)) : m.cores;
    utsname u{};
    if (::uname(&u) == 0) m.kernel = std::string(u.sysname) + " " + u.release + " " + u.machine;
#if defined(__clang__)
    m.compiler = std::string("clang++ ") + __clang_version__;
#elif defined(__GNUC__)
    m.compiler = std::string("g++ ") + __VERSION__;
#else
    m.compiler = __VERSION__;
#endif
    m.boost = std::to_string(BOOST_VERSION / 100000) + "." + std::to_string(BOOST_VERSION / 100 % 1000) + "." +
              std::to_string(BOOST_VERSION % 100) + " (BOOST_LIB_VERSION " + BOOST_LIB_VERSION + ")";
    if (python.empty()) {
        m.python = "no Python baseline";
    } else {
        m.python = run_capture("'" + python + "' --version 2>&1");
        if (m.python.empty()) m.python = "unknown";
    }
    return m;
}

// ---- the text report -----------------------------------------------------------------------------

namespace {

void print_header(std::ostream& out, const report_input& in) {
    const auto& m = in.machine;
    out << "\nshmq-bench" << (in.suite ? "" : " --large") << (in.quick ? " --quick" : "")
        << (in.pinned ? "" : " --no-pin") << ": " << in.repeat << " repetitions per figure, ";
    if (in.suite) out << fmt("%.2f", in.duration_s) << " s per run; ";
    out << "figures are the median of the repetitions, (min .. max) their spread\n";
    out << "machine:  " << m.cpu << ", " << m.cores << " cores (" << m.usable << " usable)\n";
    out << "          " << m.kernel << "; " << m.compiler << "; Boost " << m.boost << "; "
        << m.python << "\n";
    if (m.busy_before >= 0 || m.busy_after >= 0) {
        out << "load:     " << fmt("%.2f", m.busy_before) << " of " << m.cores
            << " cores busy with other programs just before the run, " << fmt("%.2f", m.busy_after)
            << " just after";
        if (std::max(m.busy_before, m.busy_after) > 0.2)
            out << "\n          WARNING: other programs were running; they take cores from the "
                   "benchmark, so figures\n          (especially round trips and spinning transports) "
                   "do not describe an idle machine";
        out << "\n";
    }
    out << "placement: ";
    if (in.pinned && in.cpus.size() >= 2) {
        out << "pinned, each pair's two processes on different CPUs (round robin over";
        for (int c : in.cpus) out << ' ' << c;
        out << ")\n";
    } else if (in.pinned) {
        out << "pinned, but this process may use only one CPU: both ends of a pair share it\n";
    } else {
        out << "not pinned (--no-pin): the scheduler puts a pair on one CPU or two, and the figures\n"
               "           differ by up to 5x between the two\n";
    }
    out << "run took " << fmt("%.0f", in.elapsed_s) << " s\n";
}

void print_suite(std::ostream& out, const report_input& in) {
    const result_index ix(in);
    // Throughput, grouped by payload, layout and size, in suite order.
    out << "\nTHROUGHPUT  (N\u2192N: queues are shared by all 2N processes; pipes, sockets and rings run N pairs)\n";
    out << "  others: cores that other programs used during the runs (the most over the repetitions);\n"
           "  above ~0.2 they took CPU from the benchmark and the figure describes a busy machine\n";
    out << pad("payload", 8) << pad("size", 8) << pad("procs", 6) << pad("transport", 22) << rpad("msg/s", 9)
        << "   " << pad("(min .. max)", 20) << rpad("bandwidth", 12) << rpad("others", 8) << "  note\n";
    std::set<std::tuple<int, int, std::size_t>> done;
    for (const auto& g : in.results) {
        if (g.sc.what != mode::throughput) continue;
        auto key = std::make_tuple(static_cast<int>(g.sc.kind), g.sc.pairs, g.sc.size);
        if (!done.insert(key).second) continue;
        out << "\n";
        for (const auto& r : in.results) {
            if (r.sc.what != mode::throughput || r.sc.kind != g.sc.kind || r.sc.pairs != g.sc.pairs ||
                r.sc.size != g.sc.size)
                continue;
            std::string size = shape_label(r.sc);
            out << pad(to_string(r.sc.kind), 8) << pad(size, 8) << pad(layout_label(r.sc.pairs), 6)
                << pad(r.sc.transport, 22);
            if (r.state != status::ok) {
                out << rpad(to_string(r.state), 9) << "   " << r.note << "\n";
                continue;
            }
            auto s = r.of(&run_result::msgs_per_s);
            auto b = r.of(&run_result::bytes_per_s);
            out << rpad(fmt_count(s.median), 9) << "   "
                << pad("(" + fmt_count(s.min) + " .. " + fmt_count(s.max) + ")", 20)
                << rpad(fmt_bandwidth(b.median), 12) << rpad(fmt_others(r), 8) << "  " << r.note << "\n";
        }
    }

    if (!in.copies.empty()) {
        out << "\nCOPY LIMIT  memcpy in one process: a transport copies each message at least once, so\n"
               "  its bandwidth stays below these (hot: the same buffers, in cache; cold: from memory)\n";
        out << pad("size", 10) << rpad("hot", 12) << rpad("cold", 12) << "\n";
        for (const auto& c : in.copies)
            out << pad(size_label(c.size), 10) << rpad(fmt_bandwidth(c.hot_bytes_per_s), 12)
                << rpad(fmt_bandwidth(c.cold_bytes_per_s), 12) << "\n";
    }

    // Latency.
    bool any_latency = std::any_of(in.results.begin(), in.results.end(),
                                   [](const scenario_result& r) { return r.sc.what == mode::latency; });
    if (any_latency) {
        out << "\nROUND TRIP, one pinger and one ponger process, the message sent back as it came (lower is\n"
               "  better)\n";
        out << pad("size", 8) << pad("transport", 22) << rpad("p50", 10) << rpad("p99", 10) << rpad("p99.9", 10)
            << "   " << pad("p50 (min .. max)", 24) << rpad("trips/run", 11) << rpad("others", 8) << "\n";
        for (const auto& r : in.results) {
            if (r.sc.what != mode::latency) continue;
            out << pad(size_label(r.sc.size), 8) << pad(r.sc.transport, 22);
            if (r.state != status::ok) {
                out << rpad(to_string(r.state), 10) << "   " << r.note << "\n";
                continue;
            }
            auto p50 = r.of(&run_result::p50);
            std::vector<double> samples;
            for (const auto& x : r.runs) samples.push_back(static_cast<double>(x.samples));
            out << rpad(fmt_ns(p50.median), 10) << rpad(fmt_ns(r.of(&run_result::p99).median), 10)
                << rpad(fmt_ns(r.of(&run_result::p999).median), 10) << "   "
                << pad("(" + fmt_ns(p50.min) + " .. " + fmt_ns(p50.max) + ")", 24) << "  "
                << rpad(fmt_count(percentile(samples, 0.5)), 11) << rpad(fmt_others(r), 8) << "\n";
        }
    }

    // Ratios.
    auto rows = ratios(in, ix);
    if (!rows.empty()) {
        auto bases = ix.transports(transport::role::baseline);
        out << "\nSHMQ AGAINST THE BASELINES  (throughput: shmq msg/s / baseline msg/s; round trip: "
               "baseline p50 / shmq p50;\n  > 1 = shmq is faster. Ceiling: shmq's share of the "
               "lock-free SPSC ring)\n";
        out << pad("", 31) << pad("shmq", 18);
        for (const auto& b : bases) out << rpad(b, std::max<std::size_t>(b.size(), 8) + 2);
        out << rpad("ceiling", 10) << "\n";
        for (const auto& row : rows) {
            const auto& sc = row.shmq->sc;
            std::string label = sc.what == mode::latency
                                    ? "round trip " + size_label(sc.size)
                                    : std::string(to_string(sc.kind)) + " " + shape_label(sc) + " " +
                                          layout_label(sc.pairs);
            out << pad(label, 31) << pad(sc.transport, 18);
            for (std::size_t i = 0; i < bases.size(); ++i)
                out << rpad(fmt_ratio(row.vs[i].second), std::max<std::size_t>(bases[i].size(), 8) + 2);
            out << rpad(std::isfinite(row.of_ceiling) ? fmt("%.0f%%", row.of_ceiling * 100) : "-", 10)
                << "\n";
        }
    }

    // Targets of issue 4.
    auto checks = targets(in, ix);
    out << "\nTARGETS (issue 4; ratios within this run)\n";
    int missing = 0;
    for (const auto& t : checks) {
        if (!std::isfinite(t.measured)) {
            ++missing;
            continue;
        }
        out << "  " << pad(t.shmq, 12) << pad(t.what, 44) << rpad(fmt_ratio(t.measured), 9)
            << "  need >= " << pad(fmt_ratio(t.needed), 7) << "  ";
        if (t.measured >= t.needed) out << "met\n";
        else out << "MISSED: " << fmt("%.0f%%", 100 * (1 - t.measured / t.needed)) << " short\n";
    }
    if (missing)
        out << "  (" << missing << " more need figures this run did not produce: see --filter)\n";
    out << "  (memory growth over 10 M messages: shmq-bench --memory)\n";
}

void print_large(std::ostream& out, const large_report& lr) {
    out << "\nLARGE ITEMS  Queue<std::string> against a Pipe moving the same bytes, 1 producer \u2192 1 consumer "
           "process\n  ("
        << (lr.cpus.empty() ? std::string("not pinned")
                            : "consumer on CPU " + std::to_string(lr.cpus[0]) + ", producer on CPU " +
                                  std::to_string(lr.cpus[lr.cpus.size() > 1 ? 1 : 0]))
        << "); " << size_label(lr.bytes_per_run) << " a run, timed from the start to the last item received\n";
    out << pad("size", 8) << pad("api", 33) << rpad("items/s", 9) << "   " << pad("(min .. max)", 20)
        << rpad("bandwidth", 12) << "  note\n";
    std::size_t last_size = 0;
    for (const auto& row : lr.rows) {
        const auto& r = row.r;
        if (r.sc.size != last_size) out << "\n";
        last_size = r.sc.size;
        out << pad(size_label(r.sc.size), 8) << pad(r.sc.transport, 33);
        if (r.state != status::ok) {
            out << rpad(to_string(r.state), 9) << "   " << r.note << "\n";
            continue;
        }
        auto s = r.of(&run_result::msgs_per_s);
        out << rpad(fmt_count(s.median), 9) << "   "
            << pad("(" + fmt_count(s.min) + " .. " + fmt_count(s.max) + ")", 20)
            << rpad(fmt_bandwidth(r.of(&run_result::bytes_per_s).median), 12) << "  " << r.note << "\n";
    }
    out << "\n  ratios of the medians (items/s):\n";
    for (std::size_t size : {std::size_t{1} << 20, std::size_t{64} << 20})
        out << "  " << pad(size_label(size), 8) << "get_into / Pipe "
            << pad(fmt_ratio(large_ratio(lr, size, large_api::queue_get_into, large_api::pipe)), 8)
            << "unbounded / bounded "
            << pad(fmt_ratio(large_ratio(lr, size, large_api::unbounded_get_into, large_api::queue_get_into)), 8)
            << "get_into / get() "
            << fmt_ratio(large_ratio(lr, size, large_api::queue_get_into, large_api::queue_get)) << "\n";
}

} // namespace

void print_report(std::ostream& out, const report_input& in) {
    print_header(out, in);
    if (in.suite) print_suite(out, in);
    if (in.large) print_large(out, *in.large);
}

void print_issue12_targets(std::ostream& out, const report_input& in) {
    out << "\nISSUE 12 TARGETS  (ratios within this run, medians of the repetitions"
        << (in.pinned ? "" : "; NOT pinned, the targets are stated for pinned runs") << ")\n";
    out << "  limit: for a target against another transport, the ratio a perfect transport would reach\n"
           "  in this run: the SPSC ring's msg/s for 64 B, one hot memcpy per message (COPY LIMIT) for\n"
           "  1 MiB, or the SPSC ring's own 1 MiB rate where that is lower and shmq copies the message\n"
           "  in and out as the ring does (the Pipe rows: what copying across two CPUs reaches here);\n"
           "  for the loans, a bare ring's in-place rate with the same work over the Pipe's\n"
           "  copying rate. A limit below the target means this run could not meet it. For the 64 B\n"
           "  rows against the SPSC ring, the limit is that ring making shmq's locked instructions\n"
           "  around each message (SPSC ring with leases): what shmq's way of letting processes\n"
           "  share an end costs here, not a limit of every design. For the round trips against\n"
           "  cpp-ipc at every size, whose receiver reads a message in place where the Pipe's\n"
           "  recv_bytes_into copies it out, the limit is the bare SPSC ring's ratio at its worst\n"
           "  size: a receive that copies too, and nothing else.\n";
    out << "  " << pad("figure", 54) << rpad("measured", 9) << "  " << pad("target", 10) << rpad("limit", 7)
        << "  \n";
    for (const auto& t : issue12_targets(in)) {
        out << "  " << pad(t.figure, 54);
        const std::string limit = std::isfinite(t.limit) ? fmt_ratio(t.limit) : "-";
        if (!std::isfinite(t.measured)) {
            out << rpad("-", 9) << "  " << pad((t.at_most ? "<= " : ">= ") + fmt_ratio(t.target), 10)
                << rpad(limit, 7) << "  " << t.note << "\n";
            continue;
        }
        out << rpad(fmt_ratio(t.measured), 9) << "  " << pad((t.at_most ? "<= " : ">= ") + fmt_ratio(t.target), 10)
            << rpad(limit, 7) << "  ";
        if (t.met()) out << "met";
        else if (t.at_most) out << "MISSED: " << fmt("%.0f%%", 100 * (t.measured / t.target - 1)) << " over";
        else out << "MISSED: " << fmt("%.0f%%", 100 * (1 - t.measured / t.target)) << " short";
        if (!t.met() && t.beyond_limit()) out << t.beyond_words();
        out << (t.note.empty() ? "" : "  (" + t.note + ")") << "\n";
    }
}

// ---- JSON -------------------------------------------------------------------------------------

void write_json(const std::string& path, const report_input& in) {
    const result_index ix(in);
    std::ostringstream o;
    const auto& m = in.machine;
    o << "{\n  \"machine\": {\"cpu\": \"" << json_escape(m.cpu) << "\", \"cores\": " << m.cores
      << ", \"usable_cores\": " << m.usable << ", \"kernel\": \"" << json_escape(m.kernel)
      << "\", \"compiler\": \"" << json_escape(m.compiler) << "\", \"boost\": \"" << json_escape(m.boost)
      << "\", \"python\": \"" << json_escape(m.python) << "\", \"busy_cores_before\": "
      << json_num(m.busy_before) << ", \"busy_cores_after\": " << json_num(m.busy_after) << "},\n";
    o << "  \"settings\": {\"repeat\": " << in.repeat << ", \"duration_s\": " << json_num(in.duration_s)
      << ", \"quick\": " << (in.quick ? "true" : "false") << ", \"pinned\": " << (in.pinned ? "true" : "false") << ", \"cpus\": [";
    for (std::size_t i = 0; i < in.cpus.size(); ++i) o << (i ? ", " : "") << in.cpus[i];
    o << "], \"elapsed_s\": " << json_num(in.elapsed_s) << "},\n";
    o << "  \"copy_limit\": [";
    for (std::size_t i = 0; i < in.copies.size(); ++i)
        o << (i ? ", " : "") << "{\"size\": " << in.copies[i].size << ", \"hot_bytes_per_s\": "
          << json_num(in.copies[i].hot_bytes_per_s) << ", \"cold_bytes_per_s\": "
          << json_num(in.copies[i].cold_bytes_per_s) << "}";
    o << "],\n";
    auto spread_json = [](const spread& s) {
        return "{\"median\": " + json_num(s.median) + ", \"min\": " + json_num(s.min) + ", \"max\": " +
               json_num(s.max) + "}";
    };
    o << "  \"scenarios\": [";
    bool first = true;
    for (const auto& r : in.results) {
        o << (first ? "\n" : ",\n") << "    {\"id\": \"" << json_escape(r.sc.id()) << "\", \"transport\": \""
          << json_escape(r.sc.transport) << "\", \"role\": \"" << role_name(ix.role(r.sc.transport))
          << "\", \"mode\": \"" << (r.sc.what == mode::latency ? "latency" : "throughput")
          << "\", \"payload\": \"" << to_string(r.sc.kind) << "\", \"size\": " << r.sc.size
          << ", \"producers\": " << r.sc.pairs << ", \"consumers\": " << r.sc.pairs
          << ", \"channel\": \"" << (in.shared.count(r.sc.transport) && in.shared.at(r.sc.transport) ? "shared" : "pairs")
          << "\", \"status\": \"" << to_string(r.state) << "\", \"note\": \"" << json_escape(r.note) << "\"";
        if (r.state == status::ok) {
            if (r.sc.what == mode::throughput) {
                o << ", \"msgs_per_s\": " << spread_json(r.of(&run_result::msgs_per_s))
                  << ", \"bytes_per_s\": " << spread_json(r.of(&run_result::bytes_per_s));
            } else {
                o << ", \"p50_ns\": " << spread_json(r.of(&run_result::p50))
                  << ", \"p99_ns\": " << spread_json(r.of(&run_result::p99))
                  << ", \"p999_ns\": " << spread_json(r.of(&run_result::p999));
            }
        }
        o << ", \"runs\": [";
        for (std::size_t i = 0; i < r.runs.size(); ++i) {
            const auto& x = r.runs[i];
            o << (i ? ", " : "") << "{\"status\": \"" << to_string(x.state) << "\"";
            o << ", \"others\": " << json_num(x.others);
            if (x.state != status::ok) o << ", \"note\": \"" << json_escape(x.note) << "\"";
            else if (r.sc.what == mode::throughput)
                o << ", \"messages\": " << x.messages << ", \"seconds\": " << json_num(x.seconds)
                  << ", \"msgs_per_s\": " << json_num(x.msgs_per_s) << ", \"bytes_per_s\": " << json_num(x.bytes_per_s);
            else
                o << ", \"samples\": " << x.samples << ", \"p50_ns\": " << json_num(x.p50)
                  << ", \"p99_ns\": " << json_num(x.p99) << ", \"p999_ns\": " << json_num(x.p999);
            o << "}";
        }
        o << "]}";
        first = false;
    }
    o << "\n  ],\n  \"ratios\": [";
    first = true;
    for (const auto& row : ratios(in, ix)) {
        const auto& sc = row.shmq->sc;
        for (const auto& [base, v] : row.vs) {
            if (!std::isfinite(v)) continue;
            o << (first ? "\n" : ",\n") << "    {\"shmq\": \"" << json_escape(sc.id()) << "\", \"baseline\": \""
              << json_escape(base) << "\", \"ratio\": " << json_num(v) << "}";
            first = false;
        }
        if (std::isfinite(row.of_ceiling)) {
            o << (first ? "\n" : ",\n") << "    {\"shmq\": \"" << json_escape(sc.id())
              << "\", \"baseline\": \"ceiling\", \"ratio\": " << json_num(row.of_ceiling) << "}";
            first = false;
        }
    }
    o << "\n  ],\n  \"targets\": [";
    first = true;
    for (const auto& t : targets(in, ix)) {
        o << (first ? "\n" : ",\n") << "    {\"shmq\": \"" << json_escape(t.shmq) << "\", \"target\": \""
          << json_escape(t.what) << "\", \"measured\": " << json_num(t.measured) << ", \"needed\": "
          << json_num(t.needed) << ", \"met\": "
          << (std::isfinite(t.measured) ? (t.measured >= t.needed ? "true" : "false") : "null") << "}";
        first = false;
    }
    o << "\n  ],\n  \"large\": ";
    if (!in.large) {
        o << "null";
    } else {
        const auto& lr = *in.large;
        o << "{\"bytes_per_run\": " << lr.bytes_per_run << ", \"cpus\": [";
        for (std::size_t i = 0; i < lr.cpus.size(); ++i) o << (i ? ", " : "") << lr.cpus[i];
        o << "], \"rows\": [";
        for (std::size_t i = 0; i < lr.rows.size(); ++i) {
            const auto& row = lr.rows[i];
            const auto& r = row.r;
            o << (i ? ",\n" : "\n") << "    {\"api\": \"" << json_escape(r.sc.transport) << "\", \"size\": "
              << r.sc.size << ", \"items_per_run\": " << row.items << ", \"status\": \"" << to_string(r.state)
              << "\", \"note\": \"" << json_escape(r.note) << "\"";
            if (r.state == status::ok)
                o << ", \"items_per_s\": " << spread_json(r.of(&run_result::msgs_per_s))
                  << ", \"bytes_per_s\": " << spread_json(r.of(&run_result::bytes_per_s));
            o << "}";
        }
        o << "],\n    \"ratios\": [";
        int k = 0;
        for (std::size_t size : {std::size_t{1} << 20, std::size_t{64} << 20})
            o << (k++ ? ", " : "") << "{\"size\": " << size << ", \"get_into_over_pipe\": "
              << json_num(large_ratio(lr, size, large_api::queue_get_into, large_api::pipe))
              << ", \"unbounded_over_bounded\": "
              << json_num(large_ratio(lr, size, large_api::unbounded_get_into, large_api::queue_get_into))
              << ", \"get_into_over_get\": "
              << json_num(large_ratio(lr, size, large_api::queue_get_into, large_api::queue_get)) << "}";
        o << "]}";
    }
    o << ",\n  \"loan\": ";
    if (!in.loan) {
        o << "null";
    } else {
        o << "[";
        for (std::size_t i = 0; i < in.loan->rows.size(); ++i) {
            const auto& l = in.loan->rows[i];
            o << (i ? ", " : "") << "{\"api\": \"" << json_escape(l.api) << "\", \"size\": " << l.size
              << ", \"copying_msgs_per_s\": " << json_num(l.copying) << ", \"loaned_msgs_per_s\": "
              << json_num(l.loaned) << ", \"ratio\": " << json_num(l.loaned / l.copying) << "}";
        }
        o << "]";
    }
    o << ",\n  \"issue12_targets\": [";
    first = true;
    for (const auto& t : issue12_targets(in)) {
        const bool measured = std::isfinite(t.measured);
        o << (first ? "\n" : ",\n") << "    {\"figure\": \"" << json_escape(t.figure) << "\", \"measured\": "
          << json_num(t.measured) << ", \"target\": " << json_num(t.target) << ", \"bound\": \""
          << (t.at_most ? "<=" : ">=") << "\", \"met\": " << (measured ? (t.met() ? "true" : "false") : "null")
          << ", \"limit\": " << json_num(t.limit) << ", \"limit_of\": \"" << t.limit_name()
          << "\", \"note\": \"" << json_escape(t.note) << "\"}";
        first = false;
    }
    o << "\n  ]\n}\n";
    std::ofstream f(path);
    f << o.str();
    f.close();
    if (!f) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
}

// ---- the chart -----------------------------------------------------------------------------------

std::string find_in_path(const std::string& name) {
    if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
    const char* path = std::getenv("PATH");
    std::istringstream dirs(path ? path : "/usr/bin:/bin");
    for (std::string d; std::getline(dirs, d, ':');) {
        std::string p = (d.empty() ? "." : d) + "/" + name;
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    return {};
}

namespace {

std::string gp_quote(const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        o += c;
    }
    return o + "\"";
}

/// Runs `gnuplot script` with a 60 s bound. Returns "" on success, else why not.
std::string run_gnuplot(const std::string& gnuplot, const std::string& script) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) return std::string("fork: ") + std::strerror(errno);
    if (pid == 0) {
        ::execl(gnuplot.c_str(), gnuplot.c_str(), script.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    int st = 0;
    for (int i = 0; i < 6000; ++i) {
        if (::waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "" : "gnuplot failed (see its message above)";
        ::usleep(10'000);
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &st, 0);
    return "gnuplot did not finish within 60 s";
}

} // namespace

bool write_plot(const std::string& png, const report_input& in, std::string& why) {
    const result_index ix(in);
    std::string gnuplot = find_in_path("gnuplot");
    if (gnuplot.empty()) {
        why = "gnuplot not found (install gnuplot-nox: ./bootstrap.sh does)";
        return false;
    }
    std::string script = png;
    if (script.size() > 4 && script.compare(script.size() - 4, 4, ".png") == 0) script.resize(script.size() - 4);
    script += ".gp";

    std::ostringstream g;
    g << "# Generated by shmq-bench: gnuplot " << script << " redraws " << png << "\n";
    // Throughput data: one block per transport, 1->1 bytes, GB/s against message size.
    std::vector<std::string> names;
    for (const auto& r : in.results)
        if (r.sc.what == mode::throughput && r.sc.kind == payload::bytes && r.sc.pairs == 1 &&
            std::find(names.begin(), names.end(), r.sc.transport) == names.end())
            names.push_back(r.sc.transport);
    std::vector<std::string> plotted;
    for (const auto& n : names) {
        std::ostringstream block;
        int points = 0;
        for (const auto& r : in.results) {
            if (r.sc.transport != n || r.sc.what != mode::throughput || r.sc.kind != payload::bytes ||
                r.sc.pairs != 1 || r.state != status::ok)
                continue;
            auto b = r.of(&run_result::bytes_per_s);
            block << r.sc.size << " " << b.median / 1e9 << " " << b.min / 1e9 << " " << b.max / 1e9 << "\n";
            ++points;
        }
        if (!points) continue;
        g << "$t" << plotted.size() << " << EOD\n" << block.str() << "EOD\n";
        plotted.push_back(n);
    }
    std::ostringstream lat;
    int lat_rows = 0;
    for (const auto& r : in.results) {
        // The chart's bars are the small-message round trip; the larger ones are in the report.
        if (r.sc.what != mode::latency || r.state != status::ok || r.sc.size != 64) continue;
        lat << gp_quote(r.sc.transport) << " " << r.of(&run_result::p50).median / 1e3 << " "
            << r.of(&run_result::p99).median / 1e3 << "\n";
        ++lat_rows;
    }
    if (lat_rows) g << "$lat << EOD\n" << lat.str() << "EOD\n";
    if (plotted.empty() && !lat_rows) {
        why = "no figure to plot";
        return false;
    }

    const auto& m = in.machine;
    g << "set terminal pngcairo size 1500,650 font 'Sans,10' noenhanced\n";
    g << "set output " << gp_quote(png) << "\n";
    g << "set multiplot layout 1," << (plotted.empty() || !lat_rows ? 1 : 2) << " title "
      << gp_quote("shmq-bench: " + m.cpu + ", " + std::to_string(m.cores) + " cores, " + m.kernel +
                  " (median of " + std::to_string(in.repeat) + "; error bars: min..max)")
      << "\n";
    if (!plotted.empty()) {
        g << "set title 'Throughput, 1 producer -> 1 consumer process (higher is better)'\n"
             "set logscale xy\nset grid xtics ytics mytics\nset key right bottom box opaque\n"
             "set xlabel 'message size'\nset ylabel 'GB/s (payload bytes)'\n"
             "set xtics ('8 B' 8, '64 B' 64, '1 KiB' 1024, '64 KiB' 65536, '1 MiB' 1048576, '16 MiB' 16777216)\n"
             "set xrange [5:28000000]\n";
        g << "plot ";
        // Fixed colours, so no two lines share one: shmq in strong colours with solid lines,
        // baselines dashed in lighter ones, the ceiling black.
        static const char* const shmq_colours[] = {"#d62728", "#1f77b4", "#2ca02c", "#9467bd"};
        static const char* const base_colours[] = {"#ff7f0e", "#8c564b", "#e377c2", "#bcbd22",
                                                   "#17becf", "#7f7f7f", "#aec7e8", "#98df8a"};
        std::size_t n_shmq = 0, n_base = 0;
        for (std::size_t i = 0; i < plotted.size(); ++i) {
            auto role = ix.role(plotted[i]);
            std::string style =
                role == transport::role::shmq
                    ? std::string("lw 3 pt 7 ps 1.2 lc rgb '") + shmq_colours[n_shmq++ % 4] + "'"
                : role == transport::role::ceiling
                    ? std::string("lw 2 dt 2 pt 6 lc rgb 'black'")
                    : std::string("lw 2 dt 2 pt 5 lc rgb '") + base_colours[n_base++ % 8] + "'";
            g << (i ? ", \\\n     " : "") << "$t" << i << " using 1:2:3:4 with yerrorlines " << style
              << " title " << gp_quote(plotted[i]);
        }
        g << "\n";
    }
    if (lat_rows) {
        g << "reset\nset title '64 B round trip, ping-pong between two processes (lower is better)'\n"
             "set logscale y\nset grid ytics mytics\nset ylabel 'microseconds'\n"
             "set style data histograms\nset style histogram clustered gap 1\n"
             "set style fill solid 0.85 border -1\nset boxwidth 0.9\n"
             "set xtics rotate by -35 left nomirror\nset key right top box opaque\n"
             "set yrange [0.05:*]\n"
             "plot $lat using 2:xtic(1) title 'p50' lc rgb '#3b75af', '' using 3 title 'p99' lc rgb '#ef8636'\n";
    }
    g << "unset multiplot\n";
    {
        std::ofstream f(script);
        f << g.str();
        if (!f) {
            why = "cannot write " + script;
            return false;
        }
    }
    why = run_gnuplot(gnuplot, script);
    return why.empty();
}

} // namespace shmq_bench
