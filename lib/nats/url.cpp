// SPDX-License-Identifier: BSL-1.0
// The grammar is in url.hpp. Strict on purpose: a typo in a queue's URL must not silently name
// another queue or another server.
#include "url.hpp"

#include <shmq/errors.hpp>

#include <cctype>
#include <charconv>
#include <cmath>

namespace shmq::detail {
namespace {

constexpr std::string_view scheme = "nats://";

// The URL as an error message may show it: credentials (before an '@') are masked.
std::string redacted(std::string_view url) {
    const auto slash = url.find('/', scheme.size());
    const auto at = url.substr(0, slash).rfind('@');
    if (!url.starts_with(scheme) || at == std::string_view::npos) return std::string(url);
    return std::string(scheme) + "***" + std::string(url.substr(at));
}

[[noreturn]] void bad(std::string_view url, const std::string& what) {
    throw value_error("shmq: bad NATS URL '" + redacted(url) + "': " + what);
}

bool name_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

bool host_char(char c) noexcept { return name_char(c) || c == '.'; }

// "host[:port]" or "[v6][:port]" → "host:port".
std::string parse_server(std::string_view url, std::string_view s) {
    if (s.empty()) bad(url, "empty server in the server list");
    std::string_view host, port;
    if (s.front() == '[') {
        const auto close = s.find(']');
        if (close == std::string_view::npos) bad(url, "unclosed '[' in server '" + std::string(s) + "'");
        host = s.substr(0, close + 1);
        std::string_view rest = s.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') bad(url, "junk after ']' in server '" + std::string(s) + "'");
            port = rest.substr(1);
        }
        for (char c : host.substr(1, host.size() - 2))
            if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.'))
                bad(url, "bad IPv6 address in server '" + std::string(s) + "'");
    } else {
        const auto colon = s.find(':');
        host = s.substr(0, colon);
        if (colon != std::string_view::npos) port = s.substr(colon + 1);
        if (host.empty()) bad(url, "empty host in server '" + std::string(s) + "'");
        for (char c : host)
            if (!host_char(c)) bad(url, "bad character in host '" + std::string(host) + "'");
    }
    unsigned p = 4222;
    if (port.data() != nullptr && (port.empty() || s.back() == ':'))
        bad(url, "empty port in server '" + std::string(s) + "'");
    if (!port.empty()) {
        const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
        if (ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535)
            bad(url, "bad port '" + std::string(port) + "'");
    }
    return std::string(host) + ":" + std::to_string(p);
}

double parse_seconds(std::string_view url, std::string_view key, std::string_view v) {
    double d = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
    if (ec != std::errc() || end != v.data() + v.size() || !std::isfinite(d) || d <= 0 || d > 1e6)
        bad(url, std::string(key) + "='" + std::string(v) + "' is not a number of seconds in (0, 1e6]");
    return d;
}

// Splits "nats://creds@servers[/rest]". need_name: the path must hold a queue name.
nats_url parse(std::string_view url, bool need_name) {
    if (!is_nats_url(url)) bad(url, "does not start with nats://");
    nats_url u;
    u.text = std::string(url);
    std::string_view rest = url.substr(scheme.size());
    const auto slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);

    std::string creds;
    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
        creds = std::string(authority.substr(0, at));
        if (creds.empty() || creds.front() == ':') bad(url, "empty user or token before '@'");
        authority = authority.substr(at + 1);
    }
    if (authority.empty()) bad(url, "no server (expected host:port after nats://)");
    std::string hosts;
    for (std::size_t pos = 0;;) {
        const auto comma = authority.find(',', pos);
        const std::string server = parse_server(url, authority.substr(pos, comma - pos));
        u.servers.push_back("nats://" + (creds.empty() ? std::string() : creds + "@") + server);
        hosts += (hosts.empty() ? "" : ",") + server;
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    u.hosts = hosts;

    std::string_view query;
    if (const auto q = path.find('?'); q != std::string_view::npos) {
        query = path.substr(q + 1);
        path = path.substr(0, q);
        if (query.empty()) bad(url, "empty query after '?'");
    }
    if (need_name || !path.empty()) {
        if (path.empty()) bad(url, "no queue name (expected /name after the servers)");
        if (path.size() > 200) bad(url, "queue name longer than 200 characters");
        for (char c : path)
            if (!name_char(c))
                bad(url, "queue name '" + std::string(path) + "' may hold only letters, digits, '_' and '-'");
        u.name = std::string(path);
    }
    for (std::size_t pos = 0; !query.empty();) {
        const auto amp = query.find('&', pos);
        const std::string_view kv = query.substr(pos, amp - pos);
        const auto eq = kv.find('=');
        if (kv.empty() || eq == std::string_view::npos || eq == 0 || eq + 1 == kv.size())
            bad(url, "query part '" + std::string(kv) + "' is not key=value");
        const std::string_view key = kv.substr(0, eq), value = kv.substr(eq + 1);
        if (key == "replicas") {
            int n = 0;
            const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec != std::errc() || end != value.data() + value.size() || n < 1 || n > 5)
                bad(url, "replicas='" + std::string(value) + "' is not a whole number from 1 to 5");
            u.replicas = n;
        } else if (key == "ack_wait") {
            u.ack_wait = std::chrono::duration<double>(parse_seconds(url, key, value));
        } else if (key == "timeout") {
            u.timeout = std::chrono::duration<double>(parse_seconds(url, key, value));
        } else {
            bad(url, "unknown option '" + std::string(key) + "' (known: replicas, ack_wait, timeout)");
        }
        if (amp == std::string_view::npos) break;
        pos = amp + 1;
    }
    return u;
}

} // namespace

bool is_nats_url(std::string_view name) noexcept { return name.starts_with(scheme); }

std::string nats_url::display() const {
    return std::string(scheme) + hosts + (name.empty() ? "" : "/" + name);
}

nats_url parse_nats_url(std::string_view url) { return parse(url, true); }
nats_url parse_nats_servers(std::string_view url) { return parse(url, false); }

} // namespace shmq::detail
