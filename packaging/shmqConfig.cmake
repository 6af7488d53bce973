# SPDX-License-Identifier: BSL-1.0
# CMake package for shmq, installed by `b2 install` as DIR/lib/cmake/shmq/shmqConfig.cmake.
#
#   find_package(shmq 0.2 REQUIRED)
#   target_link_libraries(app PRIVATE shmq::shmq)
#
# shmq::shmq carries the include directory, cxx_std_20, Boost::serialization and Threads. It is
# the shared library when installed, else the static one; set shmq_USE_STATIC_LIBS to ON before
# find_package to link libshmq.a. Paths are found relative to this file, so an installed tree
# may be moved (or staged with DESTDIR) without editing it.
cmake_minimum_required(VERSION 3.16)

include(CMakeFindDependencyMacro)
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_dependency(Threads)
find_dependency(Boost 1.81 COMPONENTS serialization)

get_filename_component(_shmq_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

if(NOT TARGET shmq::shmq)
    set(_shmq_static "${_shmq_prefix}/lib/libshmq.a")
    set(_shmq_shared "${_shmq_prefix}/lib/libshmq.so")
    if(shmq_USE_STATIC_LIBS OR NOT EXISTS "${_shmq_shared}")
        set(_shmq_kind STATIC)
        set(_shmq_file "${_shmq_static}")
    else()
        set(_shmq_kind SHARED)
        # The file itself; a binary linked with it records its soname (libshmq.so.0.2).
        file(REAL_PATH "${_shmq_shared}" _shmq_file)
    endif()
    if(NOT EXISTS "${_shmq_file}")
        set(${CMAKE_FIND_PACKAGE_NAME}_FOUND FALSE)
        set(${CMAKE_FIND_PACKAGE_NAME}_NOT_FOUND_MESSAGE "shmq: ${_shmq_file} is missing")
        return()
    endif()

    add_library(shmq::shmq ${_shmq_kind} IMPORTED)
    set_target_properties(shmq::shmq PROPERTIES
        IMPORTED_LOCATION "${_shmq_file}"
        IMPORTED_LINK_INTERFACE_LANGUAGES CXX
        INTERFACE_INCLUDE_DIRECTORIES "${_shmq_prefix}/include"
        INTERFACE_COMPILE_FEATURES cxx_std_20
        INTERFACE_LINK_LIBRARIES "Boost::serialization;Threads::Threads")
    if(_shmq_kind STREQUAL "STATIC")
        # libshmq.a needs what libshmq.so records itself: librt and the NATS client (libnats).
        set_property(TARGET shmq::shmq APPEND PROPERTY INTERFACE_LINK_LIBRARIES rt nats)
    endif()
    unset(_shmq_static)
    unset(_shmq_shared)
    unset(_shmq_kind)
    unset(_shmq_file)
endif()
unset(_shmq_prefix)
