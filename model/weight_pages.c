#include "weight_pages.h"
#include "clock.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/fs.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

/* The PAGEMAP_SCAN ioctl (Linux 6.7) says which pages of a range are mapped huge. Older headers
 * lack it; its interface is the kernel's stable ABI. */
#ifndef PAGEMAP_SCAN
struct page_region {
    uint64_t start, end, categories;
};
struct pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_HUGE (1 << 6)
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

enum {
    HUGE_PAGE = 2 << 20,
    REREAD_CHUNK = 64 << 20,  /* read again and timed a piece at a time */
};
/* Below this rate (bytes/s) reading again stops. Reading a range again costs length / rate once;
 * where 2 MiB pages speed a pass up as they do a plain read loop here (35 against 55 GB/s), they
 * save about length x 10 ms per GB at every token: at 250 MB/s that is repaid within 400 tokens. */
static const double SLOWEST_REREAD = 250e6;

static weight_pages_mode configured_mode = WEIGHT_PAGES_ON;

int weight_pages_parse(const char *text, weight_pages_mode *mode, ramp_error *err) {
    if (!strcmp(text, "on")) *mode = WEIGHT_PAGES_ON;
    else if (!strcmp(text, "reread")) *mode = WEIGHT_PAGES_REREAD;
    else if (!strcmp(text, "off")) *mode = WEIGHT_PAGES_OFF;
    else return ramp_fail(err, "--huge-pages expects on, reread or off, got '%s'", text);
    return 0;
}

const char *weight_pages_name(weight_pages_mode mode) {
    return mode == WEIGHT_PAGES_ON ? "on" : mode == WEIGHT_PAGES_REREAD ? "reread" : "off";
}

void weight_pages_set_mode(weight_pages_mode mode) { configured_mode = mode; }

/* The kernel uses 2 MiB pages for a mapping marked MADV_HUGEPAGE unless THP is off altogether. */
bool weight_pages_kernel_has_huge_pages(void) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return false;
    char line[128] = "";
    bool on = fgets(line, sizeof line, f) != NULL && strstr(line, "[never]") == NULL;
    fclose(f);
    return on;
}

static bool wants_huge(void) { return configured_mode != WEIGHT_PAGES_OFF && weight_pages_kernel_has_huge_pages(); }

void *weight_pages_map(int fd, size_t size) {
    if (!wants_huge() || size < HUGE_PAGE) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    /* Reserve room for an aligned start, map the file over it, give back the slack. */
    char *room = mmap(NULL, size + HUGE_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (room == MAP_FAILED) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    char *start = (char *)(((uintptr_t)room + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    void *map = mmap(start, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (map == MAP_FAILED) {
        munmap(room, size + HUGE_PAGE);
        return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    }
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t tail_from = ((size_t)(start - room) + size + page - 1) / page * page;
    if (start > room) munmap(room, (size_t)(start - room));
    if (tail_from < size + HUGE_PAGE) munmap(room + tail_from, size + HUGE_PAGE - tail_from);
    return map;
}

/* Bytes of the pages of [from, from + length) mapped now in pages of the PAGE_IS_* category, or -1. */
static long long count_mapped(const void *from, size_t length, uint64_t category) {
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct page_region regions[64];
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE); /* the scan takes whole pages */
    uint64_t at = (uintptr_t)from & ~(page - 1), end = ((uintptr_t)from + length + page - 1) & ~(page - 1);
    long long bytes = 0;
    while (at < end) {
        struct pm_scan_arg scan = {
            .size = sizeof scan,
            .start = at,
            .end = end,
            .vec = (uintptr_t)regions,
            .vec_len = sizeof regions / sizeof regions[0],
            .category_mask = category,
            .return_mask = category,
        };
        long found = ioctl(fd, PAGEMAP_SCAN, &scan);
        if (found < 0) {
            bytes = -1;
            break;
        }
        for (long i = 0; i < found; i++) bytes += (long long)(regions[i].end - regions[i].start);
        if (scan.walk_end <= at) break;
        at = scan.walk_end;
    }
    close(fd);
    return bytes;
}

long long weight_pages_count_huge(const void *from, size_t length) { return count_mapped(from, length, PAGE_IS_HUGE); }
long long weight_pages_count_mapped(const void *from, size_t length) {
    return count_mapped(from, length, PAGE_IS_PRESENT);
}

/* True when at least 90% of the pages of [from, from + length) are in the page cache. */
static bool mostly_cached(const char *from, size_t length, size_t page) {
    const size_t pages = (length + page - 1) / page;
    unsigned char *resident = malloc(pages);
    if (!resident) return false;
    size_t in_cache = 0;
    if (mincore((void *)from, length, resident) == 0)
        for (size_t i = 0; i < pages; i++) in_cache += resident[i] & 1;
    free(resident);
    return in_cache * 10 >= pages * 9;
}

/* Drops [from, from + length) (2 MiB-aligned) from this mapping and from the page cache, and maps
 * it again, which reads it into 2 MiB folios; notes when reading again no longer pays. Returns the
 * range's bytes in 2 MiB pages afterwards (as weight_pages_count_huge). */
static long long read_again(weight_file *file, int fd, char *from, size_t length) {
    (void)madvise(from, length, MADV_DONTNEED); /* the cache drops no page that is still mapped */
    /* nor a dirty one: a file just written (quantized a moment ago) is written out first */
    (void)sync_file_range(fd, (off_t)(from - file->map), (off_t)length,
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
    (void)posix_fadvise(fd, (off_t)(from - file->map), (off_t)length, POSIX_FADV_DONTNEED);
    double started = clock_seconds();
    if (madvise(from, length, MADV_POPULATE_READ) != 0) return 0; /* the first pass faults them in */
    double seconds = clock_seconds() - started;
    if (seconds > 0 && (double)length / seconds < SLOWEST_REREAD) file->storage_too_slow = true;
    long long huge = weight_pages_count_huge(from, length);
    if (huge >= 0 && (size_t)huge * 2 < length) file->no_large_folios = true;
    return huge;
}

void weight_pages_bring_in(weight_file *file, const void *from, size_t length) {
    if (from == NULL || length == 0) return;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *start = (char *)((uintptr_t)from & ~(uintptr_t)(page - 1));
    const size_t span = (size_t)((const char *)from + length - start);
    const bool huge = wants_huge() && madvise(start, span, MADV_HUGEPAGE) == 0;
    if (!mostly_cached(start, span, page)) {
        /* Left to the first pass in 2 MiB modes: MADV_WILLNEED would read small folios. */
        if (!huge) (void)madvise(start, span, MADV_WILLNEED);
        return;
    }
    if (madvise(start, span, MADV_POPULATE_READ) != 0) return; /* Linux < 5.14: faults, as before */
    if (!huge) return;
    /* Only whole 2 MiB pieces can be mapped huge. */
    char *first = (char *)(((uintptr_t)start + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    char *end = (char *)(((uintptr_t)start + span) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (end <= first) return;
    int fd = -1;
    for (char *piece = first; piece < end; piece += REREAD_CHUNK) {
        const size_t piece_length = (size_t)(end - piece) < REREAD_CHUNK ? (size_t)(end - piece) : REREAD_CHUNK;
        long long huge_now = weight_pages_count_huge(piece, piece_length);
        if (huge_now < 0) break; /* the kernel cannot say: leave the pages as they are */
        const bool small = (size_t)huge_now * 10 < piece_length * 9;
        if (small && configured_mode == WEIGHT_PAGES_REREAD && !file->storage_too_slow && !file->no_large_folios &&
            (fd >= 0 || (fd = open(file->path, O_RDONLY | O_CLOEXEC)) >= 0)) {
            huge_now = read_again(file, fd, piece, piece_length);
        }
        if (huge_now > 0) file->huge_bytes += (size_t)huge_now;
    }
    if (fd >= 0) close(fd);
}
