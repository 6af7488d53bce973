#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# Installs what shmq needs to build, test and benchmark — on Debian 12, and only what is missing.
#
#   ./bootstrap.sh && b2 test
#   ./bootstrap.sh --consumers   also what .ci/run needs to check installs and portability: cmake
#                                and pkgconf (the consumers of test/consumer/run) and clang 16 (the
#                                clang build of the tests and examples)
#   ./bootstrap.sh --fuzz        also the fuzzing toolchain (clang 16 + libFuzzer), for test/fuzz/run
#
# Idempotent and silent when everything is present (one dpkg-query, no network). When something
# is missing it must run as root: it then runs apt-get update + install non-interactively. As
# another user it names what is missing and exits 1 without touching the system.
set -euo pipefail

# What each package is for:
packages=(
    g++                               # C++20 compiler (g++ 12 on Debian 12); brings the ASan/UBSan runtimes
    libboost1.81-dev                  # Boost headers: Interprocess and the rest
    libboost-serialization1.81-dev    # codec: Boost.Serialization
    libboost-test1.81-dev             # tests: Boost.Test
    libboost1.81-tools-dev            # b2, the build tool
    gnuplot-nox                       # benchmark charts
    python3                           # benchmark baseline: Python's multiprocessing
    libnats-dev                       # queues named nats://... (lib/nats/): the NATS C client
    nats-server                       # test_nats and the --nats benchmark start their own servers
)

# Only for the fuzzers (test/fuzz/run): libFuzzer ships with clang, and Debian 12's g++ has none.
fuzz_packages=(
    clang-16                          # the compiler libFuzzer's -fsanitize=fuzzer needs
    libfuzzer-16-dev                  # libFuzzer itself
    libclang-rt-16-dev                # clang 16's ASan/UBSan runtimes
)
# Only for .ci/run's install and portability steps: building shmq needs none of them.
consumer_packages=(
    cmake                             # test/consumer: find_package(shmq) consumer
    pkgconf                           # test/consumer: pkg-config consumer
    clang-16                          # the clang build of the tests and examples (portable C++20)
)
for arg in "$@"; do
    case $arg in
        --fuzz) packages+=("${fuzz_packages[@]}") ;;
        --consumers) packages+=("${consumer_packages[@]}") ;;
        *) printf 'bootstrap.sh: unknown argument %s (--consumers, --fuzz)\n' "$arg" >&2; exit 2 ;;
    esac
done

say() { printf 'bootstrap.sh: %s\n' "$*" >&2; }

if ! command -v dpkg-query >/dev/null 2>&1; then
    # Not Debian: trust an environment that already has the tools, else say what to install.
    if command -v g++ >/dev/null 2>&1 && command -v b2 >/dev/null 2>&1; then
        exit 0
    fi
    say "this script installs packages on Debian 12 only; install by hand: ${packages[*]}"
    exit 1
fi

missing() {
    local installed
    # "ii" = installed and configured; a package dpkg has never heard of prints nothing.
    installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${packages[@]}" 2>/dev/null \
                | awk '$1 == "ii" { print $2 }') || true
    local p
    for p in "${packages[@]}"; do
        grep -qxF -- "$p" <<<"$installed" || printf '%s\n' "$p"
    done
}

mapfile -t todo < <(missing)
if ((${#todo[@]} == 0)); then
    exit 0
fi

if ((EUID != 0)); then
    say "missing packages: ${todo[*]}"
    say "run it as root (sudo ./bootstrap.sh) or: sudo apt-get install ${todo[*]}"
    exit 1
fi

say "installing: ${todo[*]}"
export DEBIAN_FRONTEND=noninteractive
# Wait for a concurrent apt/dpkg (unattended-upgrades on a fresh machine) instead of failing.
apt=(apt-get -q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
"${apt[@]}" update >/dev/null
"${apt[@]}" install --no-install-recommends "${todo[@]}"

mapfile -t todo < <(missing)
if ((${#todo[@]} != 0)); then
    say "still missing after apt-get install: ${todo[*]}"
    exit 1
fi
hash -r
if ! command -v b2 >/dev/null 2>&1; then
    say "b2 is not on PATH after installing libboost1.81-tools-dev"
    exit 1
fi
say "done"
