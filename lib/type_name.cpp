// SPDX-License-Identifier: BSL-1.0
#include "type_name.hpp"

#include <cstdlib>

#if defined(__GLIBCXX__) || defined(_LIBCPP_VERSION)
#include <cxxabi.h>
#define SHMQ_HAVE_CXXABI 1
#endif

namespace shmq::detail {

std::string type_name(const std::type_info* type) {
    if (type == nullptr) return "unknown type";
#ifdef SHMQ_HAVE_CXXABI
    int status = 0;
    char* demangled = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
    if (status == 0 && demangled != nullptr) {
        std::string out(demangled);
        std::free(demangled);
        return out;
    }
    std::free(demangled);
#endif
    return type->name();
}

const std::type_info* current_exception_type() noexcept {
#ifdef SHMQ_HAVE_CXXABI
    return abi::__cxa_current_exception_type();
#else
    return nullptr;
#endif
}

} // namespace shmq::detail
