/* fuzz_batch_line.c: a batch job's input and output lines (`ramp batch`). Every input is parsed as
 * an input line (and, when it is a request, its body as an OpenAI request) and as an output line of
 * an earlier run; nothing may crash, leak or read out of bounds. `make fuzz` runs it (seeds:
 * tests/fuzz/seeds.sh; dictionary: tests/fuzz/openai.dict). */
#include <stdint.h>
#include <stdlib.h>

#include "batch_line.h"
#include "fuzz.h"

int fuzz_batch_line(const uint8_t *data, size_t size) {
    batch_line line;
    char message[256];
    if (batch_line_parse((const char *)data, size, &line, message, sizeof message) == BATCH_LINE_OK) {
        openai_request request;
        openai_error error;
        if (openai_parse_object(line.endpoint, line.body, 512, &request, &error) == 0) openai_request_free(&request);
    }
    batch_line_free(&line);
    batch_done_line done;
    if (batch_output_parse((const char *)data, size, &done)) free(done.custom_id);
    return 0;
}

FUZZ_ENTRY(fuzz_batch_line)
