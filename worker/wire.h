/* wire.h: frames between ranks: a packed protobuf Envelope plus an optional raw float payload.
 *
 * Frame layout (see proto/ramp.proto): u32 header length | header | pad to 4 | float32 payload.
 * wire_pack_room allocates the frame (caller frees). wire_unpack validates the framing and the protocol
 * version and returns the unpacked Envelope (free with wire_envelope_free) and a pointer to the
 * payload inside the frame (valid while the frame lives).
 */
#ifndef RAMP_WIRE_H
#define RAMP_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "ramp.pb-c.h"

#define WIRE_PROTOCOL_VERSION RAMP__PROTOCOL__PROTOCOL_VERSION

/* A frame of the envelope with room for n_payload_floats floats, which the caller writes before the
 * frame is sent: *payload points at them, inside the frame. A stage computes a row of logits
 * (128 KB for a 32,000-token vocabulary) straight into the frame instead of copying it in. */
int wire_pack_room(const Ramp__Envelope *envelope, size_t n_payload_floats, uint8_t **frame, size_t *frame_length,
                   float **payload, ramp_error *err);
int wire_unpack(const uint8_t *frame, size_t frame_length, Ramp__Envelope **envelope, const float **payload,
                size_t *n_payload_floats, ramp_error *err);
void wire_envelope_free(Ramp__Envelope *envelope);

#endif
