#ifndef CMALLOCCOUNTER_H
#define CMALLOCCOUNTER_H
#include <stdint.h>
/// Number of heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc)
/// made by any thread of this process since it started.
uint64_t warren_malloc_count(void);
#endif
