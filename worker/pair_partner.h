/* pair_partner.h: the partner rank of a pipeline stage under --pair-ranks: the second process of
 * its layer-parallel pairs (model/forward.h: two ranks per pair).
 *
 * It loads the stage's slice of layers (it reads only the pages of each pair's second layer) and
 * keeps the KV cache of those layers. For every run of pairs the stage sends a PairWork (the rows
 * and their states); the partner computes each pair's second layer and swaps its contribution for
 * the stage's after each attention and each MLP, so both hold the same states, bit for bit, and
 * the stage goes on alone after the run. Controls from the stage free KV slots (RELEASE) or end the
 * partner (SHUTDOWN). A partner talks to its stage only; its failures go to rank 0 like a stage's.
 */
#ifndef RAMP_PAIR_PARTNER_H
#define RAMP_PAIR_PARTNER_H

#include "error.h"
#include "ramp.pb-c.h"
#include "transport.h"

/* Runs the partner described by setup (setup->partner_of: the stage's rank) until SHUTDOWN. */
int partner_main(transport *t, const Ramp__Setup *setup, ramp_error *err);

#endif
