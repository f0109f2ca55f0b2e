/*
 * aco_assert_override.h - libaco's short assertion names, for programs
 * written against libaco 1.2 (its test and tutorial programs include it).
 *
 * It defines likely, unlikely, assert, assertptr, assertalloc_bool and
 * assertalloc_ptr as the aco_* macros of aco.h, which are always on (not
 * compiled out by NDEBUG) and abort with the expression, file and line.
 * It replaces the C library's assert, so include it after every other
 * header, as libaco asks, or not at all if you want <assert.h>'s.
 */
#ifndef ACO_ASSERT_OVERRIDE_H
#define ACO_ASSERT_OVERRIDE_H

#include "aco.h"

#undef likely
#undef unlikely
#undef assert
#undef assertptr
#undef assertalloc_bool
#undef assertalloc_ptr

#define likely(x) aco_likely(x)
#define unlikely(x) aco_unlikely(x)
#define assert(EX) aco_assert(EX)
#define assertptr(ptr) aco_assertptr(ptr)
#define assertalloc_bool(b) aco_assertalloc_bool(b)
#define assertalloc_ptr(ptr) aco_assertalloc_ptr(ptr)

#endif /* ACO_ASSERT_OVERRIDE_H */
