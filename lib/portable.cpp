// SPDX-License-Identifier: BSL-1.0
// Explicit instantiation of the Boost internals of shmq's checked text archive (portable.hpp), as
// Boost's text_iarchive.cpp does for text_iarchive: they are templates on the archive type, and
// the library compiles them once so that users' translation units need not.
#include <shmq/portable.hpp>

#include <boost/archive/detail/archive_serializer_map.hpp>
#include <boost/archive/impl/archive_serializer_map.ipp>
#include <boost/archive/impl/basic_text_iarchive.ipp>
#include <boost/archive/impl/text_iarchive_impl.ipp>

namespace boost::archive {
template class detail::archive_serializer_map<shmq::detail::checked_text_iarchive>;
template class basic_text_iarchive<shmq::detail::checked_text_iarchive>;
template class text_iarchive_impl<shmq::detail::checked_text_iarchive>;
} // namespace boost::archive
