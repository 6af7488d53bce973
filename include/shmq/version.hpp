// SPDX-License-Identifier: BSL-1.0
// shmq's version: the only place it is written. The Jamroot reads the three numbers below for
// the shared library's file name and soname, shmq.pc and shmqConfigVersion.cmake; `shmq
// --version` prints SHMQ_VERSION_STRING; CHANGELOG.md's newest entry must match (.ci/run checks).
//
// How it moves (semantic versioning): PATCH for fixes that keep the ABI, MINOR for additions,
// MAJOR for breaking changes. While MAJOR is 0, a MINOR step may break the ABI too, so the
// shared library's soname is libshmq.so.0.MINOR; from 1.0 it is libshmq.so.MAJOR.
#pragma once

#define SHMQ_VERSION_MAJOR 0
#define SHMQ_VERSION_MINOR 2
#define SHMQ_VERSION_PATCH 0

#define SHMQ_VERSION_STR_(x) #x
#define SHMQ_VERSION_STR(x) SHMQ_VERSION_STR_(x)
/// "MAJOR.MINOR.PATCH", e.g. "0.2.0".
#define SHMQ_VERSION_STRING                                                                        \
    SHMQ_VERSION_STR(SHMQ_VERSION_MAJOR)                                                           \
    "." SHMQ_VERSION_STR(SHMQ_VERSION_MINOR) "." SHMQ_VERSION_STR(SHMQ_VERSION_PATCH)
/// One comparable number: MAJOR * 10000 + MINOR * 100 + PATCH (0.2.0 is 200).
#define SHMQ_VERSION (SHMQ_VERSION_MAJOR * 10000 + SHMQ_VERSION_MINOR * 100 + SHMQ_VERSION_PATCH)
