/* file_identity.h: a cheap fingerprint of a model file, so that ranks on different nodes can
 * tell whether they opened the same file under the same path.
 *
 * The fingerprint is the file's size and a 64-bit FNV-1a hash of its first and last MiB (a GGUF's
 * header and tensor table, a llama2.c header; the tail catches a file cut short or re-quantized).
 * Reading 2 MiB costs milliseconds even for multi-GB files; it is not a cryptographic check. The
 * first part of a split model (gguf_split.h) is fingerprinted with all its other parts: the total
 * size, and the first and last MiB of each part.
 */
#ifndef RAMP_FILE_IDENTITY_H
#define RAMP_FILE_IDENTITY_H

#include <stdint.h>

#include "error.h"

typedef struct {
    uint64_t bytes;
    uint64_t checksum;
} file_identity;

int file_identity_read(const char *path, file_identity *out, ramp_error *err);

#endif
