/* test_text_stream.c: stop strings, held-back text and UTF-8 repair of a request's growing text
 * (coordinator/text_stream.h), and the scheduler's cancel and finish rules. */
#include <criterion/criterion.h>

#include <string.h>

#include "scheduler.h"
#include "text_stream.h"

static text_stream stream_with(const char *const *stops, int n) {
    text_stream t;
    ramp_error err;
    cr_assert_eq(text_stream_init(&t, stops, n, &err), 0);
    return t;
}

/* Appends pieces one by one and concatenates what is handed out, then the final rest. */
static void feed(text_stream *t, const char *const *pieces, int n, char *out, size_t capacity, int *stopped_at) {
    out[0] = '\0';
    *stopped_at = -1;
    for (int i = 0; i < n; i++) {
        int stopped = text_stream_append(t, pieces[i], strlen(pieces[i]));
        size_t length;
        const char *piece = text_stream_take(t, false, &length);
        strncat(out, piece, capacity - strlen(out) - 1);
        if (stopped) {
            *stopped_at = i;
            break;
        }
    }
    size_t length;
    strncat(out, text_stream_take(t, true, &length), capacity - strlen(out) - 1);
}

Test(text_stream, without_stops_everything_passes) {
    text_stream t = stream_with(NULL, 0);
    const char *pieces[] = {"Once", " upon", " a time"};
    char out[64];
    int stopped;
    feed(&t, pieces, 3, out, sizeof out, &stopped);
    cr_assert_str_eq(out, "Once upon a time");
    cr_assert_eq(stopped, -1);
    text_stream_free(&t);
}

Test(text_stream, stop_string_across_pieces_is_cut_and_never_shown) {
    const char *stops[] = {"\nSentiment"};
    text_stream t = stream_with(stops, 1);
    const char *pieces[] = {"a fine film", " .", "\nSent", "iment: positive"};
    char out[64];
    int stopped;
    feed(&t, pieces, 4, out, sizeof out, &stopped);
    cr_assert_str_eq(out, "a fine film .");
    cr_assert_eq(stopped, 3);
    text_stream_free(&t);
}

Test(text_stream, possible_stop_prefix_is_held_back_then_released) {
    const char *stops[] = {"END"};
    text_stream t = stream_with(stops, 1);
    cr_assert_eq(text_stream_append(&t, "the EN", 6), 0);
    size_t n;
    const char *piece = text_stream_take(&t, false, &n);
    cr_assert_eq(n, 4);
    cr_assert(!memcmp(piece, "the ", 4));
    cr_assert_eq(text_stream_append(&t, "ter, EN", 7), 0); /* "END" never appears */
    piece = text_stream_take(&t, true, &n);
    cr_assert_eq(n, 9);
    cr_assert(!memcmp(piece, "ENter, EN", 9));
    text_stream_free(&t);
}

Test(text_stream, first_of_several_stops_wins) {
    const char *stops[] = {"zz", "b"};
    text_stream t = stream_with(stops, 2);
    cr_assert_eq(text_stream_append(&t, "aab zz", 6), 1);
    size_t n;
    const char *piece = text_stream_take(&t, true, &n);
    cr_assert_eq(n, 2);
    cr_assert(!memcmp(piece, "aa", 2));
    text_stream_free(&t);
}

Test(text_stream, unfinished_utf8_character_waits_for_its_bytes) {
    text_stream t = stream_with(NULL, 0);
    text_stream_append(&t, "caf\xC3", 4);
    size_t n;
    const char *piece = text_stream_take(&t, false, &n);
    cr_assert_eq(n, 3);
    cr_assert(!memcmp(piece, "caf", 3));
    text_stream_append(&t, "\xA9!", 2);
    piece = text_stream_take(&t, false, &n);
    cr_assert_eq(n, 3);
    cr_assert(!memcmp(piece, "\xC3\xA9!", 3));
    text_stream_free(&t);
}

Test(text_stream, invalid_bytes_become_replacement_characters) {
    text_stream t = stream_with(NULL, 0);
    text_stream_append(&t, "a\xFF" "b\xC3", 4); /* a stray 0xFF, and a lead byte cut off at the end */
    size_t n;
    const char *piece = text_stream_take(&t, true, &n);
    cr_assert_eq(n, 8);
    cr_assert(!memcmp(piece, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD", 8));
    text_stream_free(&t);
}

Test(text_stream, surrogates_and_overlong_forms_are_invalid) {
    char out[32];
    size_t n = utf8_sanitize("\xED\xA0\x80", 3, out); /* U+D800 */
    cr_assert_eq(n, 9);
    n = utf8_sanitize("\xC0\xAF", 2, out); /* overlong "/" */
    cr_assert_eq(n, 6);
    cr_assert_eq(utf8_complete_prefix("ab\xE2\x82", 4), 2);
    cr_assert_eq(utf8_complete_prefix("ab\xE2\x82\xAC", 5), 5);
}

/* ---- scheduler: cancel while rows travel -------------------------------------------------------- */

static scheduler make_scheduler(void) {
    scheduler s;
    ramp_error err;
    scheduler_config c = {.lanes = 1, .max_sequences = 2, .batch_tokens = 16, .context = 32, .eos_token = 7,
                          .eot_token = 6, .vocab_size = 8};
    cr_assert_eq(scheduler_init(&s, &c, &err), 0);
    return s;
}

/* A chat turn's end (eot) finishes a sequence as eos does, and neither is kept as output. */
Test(scheduler, end_of_turn_finishes_like_eos) {
    sampling_params greedy = {.temperature = 0, .top_p = 1};
    int prompt[] = {1, 2, 3};
    ramp_error err;
    for (int end = 6; end <= 7; end++) {
        scheduler s = make_scheduler();
        int index;
        cr_assert_eq(scheduler_submit(&s, prompt, 3, 4, &greedy, NULL, 0.0, &index, &err), 0);
        cr_assert_not_null(scheduler_next_batch(&s));
        scheduler_accept_token(&s, index, 5, 1.0);
        scheduler_accept_token(&s, index, end, 1.0);
        cr_assert_eq(s.requests[index].generated, 1, "token %d was kept as output", end);
        cr_assert(s.requests[index].finished == FINISH_EOS || s.requests[index].pending_finish == FINISH_EOS,
                  "token %d did not finish the sequence", end);
        scheduler_free(&s);
    }
}

Test(scheduler, cancel_waits_until_the_rows_come_back) {
    scheduler s = make_scheduler();
    sampling_params greedy = {.temperature = 0, .top_p = 1};
    int prompt[] = {1, 2, 3}, index;
    ramp_error err;
    cr_assert_eq(scheduler_submit(&s, prompt, 3, 4, &greedy, NULL, 0.0, &index, &err), 0);
    const micro_batch *b = scheduler_next_batch(&s);
    cr_assert_not_null(b);
    uint64_t batch = b->batch_id;
    scheduler_cancel(&s, index, 1.0);
    cr_assert_eq(s.requests[index].finished, FINISH_NONE, "a cancelled request keeps its slot while rows travel");
    const int *released;
    cr_assert_eq(scheduler_take_released(&s, &released), 0);
    scheduler_accept_token(&s, index, 5, 2.0); /* its output arrives: ignored */
    cr_assert_eq(s.requests[index].generated, 0);
    cr_assert_eq(scheduler_batch_done(&s, batch, 2.0, &err), 0);
    cr_assert_eq(s.requests[index].finished, FINISH_CANCELLED);
    cr_assert_eq(scheduler_take_released(&s, &released), 1, "the slot is released once nothing is in flight");
    const int *finished;
    cr_assert_eq(scheduler_take_finished(&s, &finished), 1);
    cr_assert_eq(finished[0], index);
    cr_assert(scheduler_finished(&s));
    scheduler_free(&s);
}

Test(scheduler, a_released_slot_waits_until_the_stages_are_told) {
    scheduler s = make_scheduler();
    sampling_params greedy = {.temperature = 0, .top_p = 1};
    int prompt[] = {1, 2}, first, second, third;
    ramp_error err;
    cr_assert_eq(scheduler_submit(&s, prompt, 2, 1, &greedy, NULL, 0.0, &first, &err), 0);
    const micro_batch *b = scheduler_next_batch(&s);
    uint64_t id = b->batch_id;
    int slot = b->rows[0].slot;
    scheduler_accept_token(&s, first, 3, 1.0);
    cr_assert_eq(scheduler_batch_done(&s, id, 1.0, &err), 0);
    cr_assert_eq(scheduler_submit(&s, prompt, 2, 1, &greedy, NULL, 0.0, &second, &err), 0);
    cr_assert_eq(scheduler_submit(&s, prompt, 2, 1, &greedy, NULL, 0.0, &third, &err), 0);
    b = scheduler_next_batch(&s);
    cr_assert_not_null(b);
    for (int i = 0; i < b->n_rows; i++) cr_assert_neq(b->rows[i].slot, slot, "slot %d was reused before its release", slot);
    scheduler_free(&s);
}

Test(scheduler, cancel_of_a_waiting_request_is_immediate) {
    scheduler s = make_scheduler();
    sampling_params greedy = {.temperature = 0, .top_p = 1};
    int prompt[] = {1, 2}, index;
    ramp_error err;
    cr_assert_eq(scheduler_submit(&s, prompt, 2, 4, &greedy, NULL, 0.0, &index, &err), 0);
    cr_assert_eq(s.n_waiting, 1);
    scheduler_cancel(&s, index, 1.0);
    cr_assert_eq(s.requests[index].finished, FINISH_CANCELLED);
    cr_assert_eq(s.n_waiting, 0);
    cr_assert_null(scheduler_next_batch(&s));
    cr_assert(scheduler_finished(&s));
    scheduler_free(&s);
}

Test(scheduler, finished_prefix_is_skipped_and_slots_are_reused) {
    scheduler s = make_scheduler();
    sampling_params greedy = {.temperature = 0, .top_p = 1};
    int prompt[] = {1, 2}, index;
    ramp_error err;
    for (int round = 0; round < 50; round++) {
        cr_assert_eq(scheduler_submit(&s, prompt, 2, 1, &greedy, NULL, 0.0, &index, &err), 0);
        const micro_batch *b = scheduler_next_batch(&s);
        cr_assert_not_null(b);
        cr_assert_eq(b->n_rows, 2);
        uint64_t id = b->batch_id;
        scheduler_accept_token(&s, index, 3, 1.0);
        cr_assert_eq(scheduler_batch_done(&s, id, 1.0, &err), 0);
        cr_assert_eq(s.requests[index].finished, FINISH_LENGTH);
        const int *released;
        cr_assert_eq(scheduler_take_released(&s, &released), 1);
    }
    cr_assert_eq(s.n_running, 0);
    cr_assert_eq(s.positions_reserved, 0);
    scheduler_free(&s);
}
