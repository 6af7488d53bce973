// SPDX-License-Identifier: BSL-1.0
// shmq-soak — command line (see config.hpp).
#include "config.hpp"

#include <cstdlib>
#include <cstring>
#include <iostream>

namespace shmq_soak {
namespace {

void usage(std::ostream& o)
{
    o << "usage: shmq-soak [options]\n"
         "Chaos soak of shmq: producers and consumers over Pipe, Queue (unbounded and bounded) and\n"
         "JoinableQueue, anonymous and named, while a controller SIGKILLs, SIGSTOPs and respawns\n"
         "them; checks that nothing acknowledged is lost, duplicated or torn and nothing hangs.\n\n"
         "  --seconds N          length of the chaos phases in all (default 60)\n"
         "  --producers N        producer processes per phase (default 3)\n"
         "  --consumers M        consumer processes per phase (default 2)\n"
         "  --seed S             fixes every random choice (timing still varies); default: clock\n"
         "  --capacity BYTES     ring bytes per object (default 65536)\n"
         "  --chaos-ms MS        mean interval between chaos actions (default 100)\n"
         "  --phase-max N        longest phase in seconds; long runs rotate (default 60)\n"
         "  --wrap               also push > 2^36 bytes through one Pipe (~20-60 s; automatic\n"
         "                       when --seconds >= 600); runs before the chaos phases\n"
         "  --wrap-bytes N       bytes for that phase (default 2^36 + 2^31)\n"
         "  --json FILE          write the figures as JSON too\n"
         "  --only SUBSTR        only the phases whose label contains SUBSTR (\"Pipe\",\n"
         "                       \"JoinableQueue named\", \"maxsize\"...), to reproduce one\n"
         "Exit status: 0 when every check passed, 1 on any violation, 2 on a bad command line,\n"
         "3 when the overall deadline (seconds + 60, + 240 with the wrap phase) was reached.\n";
}

} // namespace

config parse_command_line(int argc, char** argv)
{
    config c;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) { std::cerr << "shmq-soak: " << a << " needs a value\n"; std::exit(2); }
            return argv[++i];
        };
        auto number = [&]() {
            const char* v = value();
            char* end;
            double d = std::strtod(v, &end);
            if (*end || d < 0) { std::cerr << "shmq-soak: bad value for " << a << ": " << v << "\n"; std::exit(2); }
            return d;
        };
        if (a == "--help" || a == "-h") { usage(std::cout); std::exit(0); }
        else if (a == "--seconds") c.seconds = number();
        else if (a == "--producers") c.producers = static_cast<unsigned>(number());
        else if (a == "--consumers") c.consumers = static_cast<unsigned>(number());
        else if (a == "--seed") c.seed = std::strtoull(value(), nullptr, 0);
        else if (a == "--capacity") c.capacity = static_cast<std::size_t>(number());
        else if (a == "--chaos-ms") c.chaos_interval_ms = number();
        else if (a == "--phase-max") c.phase_max_s = number();
        else if (a == "--wrap") c.wrap = true;
        else if (a == "--wrap-bytes") c.wrap_bytes = static_cast<std::uint64_t>(number());
        else if (a == "--json") c.json = value();
        else if (a == "--only") c.only = value();
        else { std::cerr << "shmq-soak: unknown option " << a << "\n"; usage(std::cerr); std::exit(2); }
    }
    if (c.producers < 1 || c.consumers < 1 || c.producers + c.consumers > 60) {
        std::cerr << "shmq-soak: need 1..59 producers and consumers together at least one each\n";
        std::exit(2);
    }
    if (c.phase_max_s < 1) c.phase_max_s = 1;
    if (c.seconds >= 600) c.wrap = true;
    return c;
}

} // namespace shmq_soak
