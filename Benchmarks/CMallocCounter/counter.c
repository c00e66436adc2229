// Counts heap allocations of the whole process by interposing the allocator entry
// points and forwarding to glibc's own implementations (__libc_*). Linked only into
// warren-bench, which uses it to report "heap allocations per fast-path lookup".
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include "cmalloccounter.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static uint64_t counter;

static inline void bump(void) { __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED); }

uint64_t warren_malloc_count(void) { return __atomic_load_n(&counter, __ATOMIC_RELAXED); }

void *malloc(size_t n) { bump(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { bump(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { bump(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t al, size_t n) { bump(); return __libc_memalign(al, n); }
void *aligned_alloc(size_t al, size_t n) { bump(); return __libc_memalign(al, n); }
int posix_memalign(void **out, size_t al, size_t n) {
    bump();
    void *p = __libc_memalign(al, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
