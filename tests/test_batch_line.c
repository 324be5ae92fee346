/* test_batch_line.c: the batch job's input lines (OpenAI Batch API format and the shorthand) and
 * output lines, as a resumed job reads them back (coordinator/batch_line.h). */
#include <criterion/criterion.h>

#include <string.h>

#include "batch_line.h"

static batch_line_status parse(const char *text, batch_line *line, char *message) {
    return batch_line_parse(text, strlen(text), line, message, 256);
}

Test(batch_line, openai_batch_line) {
    batch_line line;
    char message[256];
    cr_assert_eq(parse("{\"custom_id\":\"a-1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                       "\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}", &line, message),
                 BATCH_LINE_OK);
    cr_assert_str_eq(line.custom_id, "a-1");
    cr_assert_eq(line.endpoint, OPENAI_CHAT);
    cr_assert(json_is_array(json_object_get(line.body, "messages")));
    batch_line_free(&line);
}

Test(batch_line, shorthand_is_a_completions_body) {
    batch_line line;
    char message[256];
    cr_assert_eq(parse("{\"custom_id\":\"x\",\"prompt\":\"Once\",\"max_tokens\":4}", &line, message), BATCH_LINE_OK);
    cr_assert_eq(line.endpoint, OPENAI_COMPLETIONS);
    cr_assert_null(json_object_get(line.body, "custom_id"), "the id is not part of the body");
    cr_assert_str_eq(json_string_value(json_object_get(line.body, "prompt")), "Once");
    batch_line_free(&line);
}

Test(batch_line, lines_that_are_not_requests) {
    const struct {
        const char *text, *message_part;
        bool has_id;
    } cases[] = {
        {"not json", "not valid JSON", false},
        {"[1,2]", "expected a JSON object", false},
        {"{\"prompt\":\"x\"}", "no custom_id", false},
        {"{\"custom_id\":\"\",\"prompt\":\"x\"}", "no custom_id", false},
        {"{\"custom_id\":7,\"prompt\":\"x\"}", "no custom_id", false},
        {"{\"custom_id\":\"a\",\"url\":\"/v1/embeddings\",\"body\":{}}", "unknown url", true},
        {"{\"custom_id\":\"a\",\"method\":\"GET\",\"url\":\"/v1/completions\",\"body\":{}}", "POST", true},
        {"{\"custom_id\":\"a\",\"url\":\"/v1/completions\",\"body\":\"x\"}", "body must be a JSON object", true},
        {"{\"custom_id\":\"a\",\"url\":\"/v1/completions\"}", "body must be a JSON object", true},
        {"{\"custom_id\":\"a\",\"custom_id\":\"b\",\"prompt\":\"x\"}", "not valid JSON", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        batch_line line;
        char message[256];
        cr_assert_eq(parse(cases[i].text, &line, message), BATCH_LINE_NOT_A_REQUEST, "case %zu: %s", i, cases[i].text);
        cr_assert(strstr(message, cases[i].message_part), "case %zu: message '%s'", i, message);
        cr_assert_eq(line.custom_id != NULL, cases[i].has_id, "case %zu", i);
        batch_line_free(&line);
    }
}

Test(batch_line, output_lines_read_back_for_resume) {
    json_t *body = json_pack("{s:s}", "object", "text_completion");
    char *response = batch_output_response("id-7", "cmpl-3", 200, body);
    cr_assert_not_null(response);
    batch_done_line done;
    cr_assert(batch_output_parse(response, strlen(response), &done));
    cr_assert_str_eq(done.custom_id, "id-7");
    cr_assert_eq(done.line_number, -1, "a response is known by its custom_id");
    free(done.custom_id);
    json_t *parsed = json_loads(response, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(parsed, "response"), "status_code")), 200);
    cr_assert(json_is_null(json_object_get(parsed, "error")));
    json_decref(parsed);
    free(response);

    char *error = batch_output_error(NULL, 12, "invalid_line", "the line is not valid JSON");
    cr_assert(batch_output_parse(error, strlen(error), &done));
    cr_assert_null(done.custom_id);
    cr_assert_eq(done.line_number, 12);
    free(error);

    error = batch_output_error("dup", 13, "duplicate_custom_id", "custom_id \"dup\" was used by an earlier line");
    cr_assert(batch_output_parse(error, strlen(error), &done));
    cr_assert(done.duplicate);
    cr_assert_eq(done.line_number, 13);
    free(done.custom_id);
    free(error);
}

/* Generated text may hold a NUL (a byte-fallback <0x00> token): the answered line must still read
 * back, or a resumed job would run that request again. */
Test(batch_line, output_lines_with_nul_in_text_read_back) {
    const char *line = "{\"id\":\"batch_req_1\",\"custom_id\":\"nul\",\"response\":{\"status_code\":200,"
                       "\"body\":{\"choices\":[{\"text\":\"a\\u0000b\"}]}},\"error\":null}";
    batch_done_line done;
    cr_assert(batch_output_parse(line, strlen(line), &done));
    cr_assert_str_eq(done.custom_id, "nul");
    free(done.custom_id);
}

Test(batch_line, torn_output_lines_are_not_output) {
    const char *full = "{\"id\":\"batch_req_1\",\"custom_id\":\"a\",\"response\":{\"status_code\":200},\"error\":null}";
    batch_done_line done;
    for (size_t cut = 0; cut < strlen(full); cut++) {
        cr_assert_not(batch_output_parse(full, cut, &done), "a line cut at %zu bytes reads as output", cut);
    }
    cr_assert(batch_output_parse(full, strlen(full), &done));
    free(done.custom_id);
}
