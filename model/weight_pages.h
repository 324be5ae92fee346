/* weight_pages.h: the memory pages a model file's weights are read through.
 *
 * Decode reads every weight once per token. A plain read loop on 2 threads ran x1.12-1.47 faster
 * through 2 MiB pages than through 4 KiB ones on the machines ramp is measured on (ramp's decode,
 * whose kernels prefetch ahead themselves, showed no difference there within the noise). Linux
 * maps a file in 2 MiB pages where its page cache holds the file in 2 MiB folios and the mapping is
 * 2 MiB-aligned, and it reads a file into such folios when the mapping is marked MADV_HUGEPAGE. A file written or read before (just downloaded, just quantized) usually sits in
 * the cache in small folios and stays so: the only way to 2 MiB pages is to drop it from the page
 * cache and read it again.
 *
 * The mode is process configuration, like the thread count (set once from --huge-pages):
 *   WEIGHT_PAGES_ON (the default): 2 MiB pages where the cache already has them or reads a range
 *     anew (a file not read since boot); nothing is dropped;
 *   WEIGHT_PAGES_REREAD: the same, and a range cached in small pages is dropped from the page cache
 *     and read again at load, 64 MiB at a time, while storage gives it back at 250 MB/s or more (on
 *     a slower disk reading a big slice again would cost more than it saves) and while that yields
 *     2 MiB pages (a file system without large folios never does);
 *   WEIGHT_PAGES_OFF: a plain mapping in the kernel's default pages.
 * Nothing here changes a value read, only which pages hold the bytes; everything is best effort.
 */
#ifndef RAMP_WEIGHT_PAGES_H
#define RAMP_WEIGHT_PAGES_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

typedef enum { WEIGHT_PAGES_ON, WEIGHT_PAGES_REREAD, WEIGHT_PAGES_OFF } weight_pages_mode;

/* "on", "reread" or "off". */
int weight_pages_parse(const char *text, weight_pages_mode *mode, ramp_error *err);
const char *weight_pages_name(weight_pages_mode mode);
void weight_pages_set_mode(weight_pages_mode mode);

/* False when transparent huge pages are off altogether (the kernel's "never"). */
bool weight_pages_kernel_has_huge_pages(void);

/* Maps size bytes of fd read-only and private, 2 MiB-aligned unless the mode is off. Returns
 * MAP_FAILED with errno set on failure; munmap(map, size) releases it. */
void *weight_pages_map(int fd, size_t size);

/* A file mapped by weight_pages_map, and what bringing ranges of it in has found so far. */
typedef struct {
    const char *path;      /* borrowed: reopened to drop ranges from the page cache */
    const char *map;       /* borrowed: the mapping, map_size bytes */
    size_t map_size;
    bool storage_too_slow; /* a range read again came back below 250 MB/s: read no more again */
    bool no_large_folios;  /* a range read again came back in small pages: read no more again */
    size_t huge_bytes;     /* bytes of the ranges brought in that sit in 2 MiB pages, when known */
} weight_file;

/* Readies [from, from + length) of file's mapping, which every forward pass reads whole, so that
 * the first pass does not pay a page fault per few pages: a range mostly in the page cache is
 * mapped now (in 2 MiB pages, read again if need be, as the mode says); a range still on disk is
 * left to the first pass (2 MiB modes: a fault there reads 2 MiB folios; off: an asynchronous
 * read-ahead starts now). */
void weight_pages_bring_in(weight_file *file, const void *from, size_t length);

/* Bytes of the pages of [from, from + length) in this process's memory that are mapped now in 2 MiB
 * pages, or in pages of any size; -1 when the kernel cannot say (before Linux 6.7). */
long long weight_pages_count_huge(const void *from, size_t length);
long long weight_pages_count_mapped(const void *from, size_t length);

#endif
