/* gguf_writer.h: writes GGUF version 3 files (little-endian, alignment 32), the format gguf.h reads.
 *
 * The writer streams: metadata and the tensor directory are small and kept in memory, but tensor
 * bytes go straight to the file, so a model larger than memory can be written piece by piece.
 *
 *   gguf_writer *w;
 *   gguf_writer_create(&w, "model.gguf", &err);
 *   gguf_writer_add_u32(w, "llama.block_count", 2, &err);           ... more metadata
 *   gguf_writer_add_tensor(w, "output_norm.weight", 1, dims, GGML_TYPE_F32, &err);  ... every tensor
 *   gguf_writer_begin_data(w, &err);     header, metadata and directory are written here
 *   gguf_writer_write_data(w, bytes, n, &err);   tensor bytes, in declaration order, any chunking
 *   gguf_writer_finish(w, &err);         checks that every declared byte arrived, closes the file
 *   gguf_writer_free(w);
 *
 * Every function returns 0 or -1 with a message in err. After a failure the writer refuses further
 * calls; gguf_writer_free then deletes the incomplete file, so a failed write leaves nothing behind.
 */
#ifndef RAMP_GGUF_WRITER_H
#define RAMP_GGUF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"

#define GGUF_WRITER_ALIGNMENT 32

typedef struct gguf_writer gguf_writer;

/* Creates (truncates) path for writing. */
int gguf_writer_create(gguf_writer **out, const char *path, ramp_error *err);

/* Metadata, before gguf_writer_begin_data. Keys must be unique. Values are copied. */
int gguf_writer_add_string(gguf_writer *w, const char *key, const char *value, ramp_error *err);
int gguf_writer_add_u16(gguf_writer *w, const char *key, uint16_t value, ramp_error *err);
int gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t value, ramp_error *err);
int gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t value, ramp_error *err);
int gguf_writer_add_f32(gguf_writer *w, const char *key, float value, ramp_error *err);
int gguf_writer_add_bool(gguf_writer *w, const char *key, bool value, ramp_error *err);
int gguf_writer_add_string_array(gguf_writer *w, const char *key, const char *const *values, size_t n,
                                 ramp_error *err);
int gguf_writer_add_f32_array(gguf_writer *w, const char *key, const float *values, size_t n, ramp_error *err);
int gguf_writer_add_i32_array(gguf_writer *w, const char *key, const int32_t *values, size_t n, ramp_error *err);

/* Declares a tensor (before gguf_writer_begin_data): dims[0] is the row length, 1..4 dims, each
 * >= 1, dims[0] a multiple of the type's block size. Its bytes are supplied later, in this order. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *dims, ggml_type type,
                           ramp_error *err);

/* Writes the header, all metadata and the tensor directory. No metadata or tensors after this. */
int gguf_writer_begin_data(gguf_writer *w, ramp_error *err);

/* Appends n bytes of tensor data. Bytes fill the declared tensors in order (a call may cover part
 * of a tensor or span several); alignment padding is inserted automatically. */
int gguf_writer_write_data(gguf_writer *w, const void *bytes, size_t n, ramp_error *err);

/* Checks that every declared tensor is complete, flushes and closes the file. */
int gguf_writer_finish(gguf_writer *w, ramp_error *err);

/* Frees the writer; deletes the file unless gguf_writer_finish succeeded. NULL is fine. */
void gguf_writer_free(gguf_writer *w);

#endif
