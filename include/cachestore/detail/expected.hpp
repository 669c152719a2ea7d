// cachestore/detail/expected.hpp - <expected> for every compiler the docs
// list. libstdc++ 12 and 13 declare std::expected only when __cpp_concepts is
// at least 202002L, which clang 16 does not define (it reports 201907L while
// it compiles the header correctly). With clang and a libstdc++ that hid
// std::expected, the macro is raised here, before <expected>, so that no
// user needs -U__cpp_concepts -D__cpp_concepts=202002L. A translation unit
// that includes <expected> itself must then include a cachestore header
// first (or pass those flags).
#pragma once

#include <version>

#if defined(__clang__) && defined(__GLIBCXX__) && !defined(__cpp_lib_expected) && __cplusplus > 202002L && \
    defined(__cpp_concepts) && __cpp_concepts < 202002L
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wbuiltin-macro-redefined"
#undef __cpp_concepts
#define __cpp_concepts 202002L
#pragma clang diagnostic pop
#endif

#include <expected>
