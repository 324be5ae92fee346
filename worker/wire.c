#include "wire.h"

#include <stdlib.h>
#include <string.h>

static size_t header_end(size_t header_length) { /* u32 length + header, rounded up to 4 bytes */
    return (4 + header_length + 3) & ~(size_t)3;
}

int wire_pack_room(const Ramp__Envelope *envelope, size_t n_payload_floats, uint8_t **frame, size_t *frame_length,
                   float **payload, ramp_error *err) {
    size_t header_length = ramp__envelope__get_packed_size(envelope);
    if (header_length > UINT32_MAX) return ramp_fail(err, "wire: header of %zu bytes is too large", header_length);
    size_t start = header_end(header_length), length = start + n_payload_floats * sizeof(float);
    uint8_t *buffer = malloc(length);
    if (!buffer) return ramp_fail(err, "wire: out of memory for a frame of %zu bytes", length);
    memset(buffer, 0, start); /* the header's padding too: every byte sent is defined */
    uint32_t h = (uint32_t)header_length;
    buffer[0] = (uint8_t)h;
    buffer[1] = (uint8_t)(h >> 8);
    buffer[2] = (uint8_t)(h >> 16);
    buffer[3] = (uint8_t)(h >> 24);
    ramp__envelope__pack(envelope, buffer + 4);
    *frame = buffer;
    *frame_length = length;
    *payload = (float *)(buffer + start);
    return 0;
}

int wire_unpack(const uint8_t *frame, size_t frame_length, Ramp__Envelope **envelope, const float **payload,
                size_t *n_payload_floats, ramp_error *err) {
    if (frame_length < 4) return ramp_fail(err, "wire: frame of %zu bytes is shorter than its 4-byte length", frame_length);
    size_t header_length = (size_t)frame[0] | (size_t)frame[1] << 8 | (size_t)frame[2] << 16 | (size_t)frame[3] << 24;
    if (header_length > frame_length - 4)
        return ramp_fail(err, "wire: header claims %zu bytes, frame holds %zu", header_length, frame_length - 4);
    size_t start = header_end(header_length);
    if (start > frame_length) start = frame_length;
    if ((frame_length - start) % sizeof(float) != 0)
        return ramp_fail(err, "wire: payload of %zu bytes is not a whole number of floats", frame_length - start);
    Ramp__Envelope *e = ramp__envelope__unpack(NULL, header_length, frame + 4);
    if (!e) return ramp_fail(err, "wire: malformed header (%zu bytes do not parse as an Envelope)", header_length);
    if (e->version != WIRE_PROTOCOL_VERSION) {
        ramp_fail(err, "wire: protocol version %u, expected %u", e->version, (unsigned)WIRE_PROTOCOL_VERSION);
        ramp__envelope__free_unpacked(e, NULL);
        return -1;
    }
    if (e->body_case == RAMP__ENVELOPE__BODY__NOT_SET) {
        ramp__envelope__free_unpacked(e, NULL);
        return ramp_fail(err, "wire: envelope carries no message");
    }
    *envelope = e;
    *payload = (const float *)(frame + start);
    *n_payload_floats = (frame_length - start) / sizeof(float);
    return 0;
}

void wire_envelope_free(Ramp__Envelope *envelope) {
    if (envelope) ramp__envelope__free_unpacked(envelope, NULL);
}
