/* Corpus reading (errors with file:line, CRLF, normalization), batching
 * (budget, coverage, bucketing, shuffling, resume, exact layout) and the
 * numbers corpus spellings. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tfm/data.h"
#include "tfm/train.h"
#include "util_test.h"

/* ---- helpers ---------------------------------------------------------------- */

static const char *write_file(const char *dir, const char *name, const char *data, size_t len) {
    static char paths[8][512];
    static int slot;
    char *path = paths[slot++ & 7];
    snprintf(path, 512, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
    return path;
}
#define WRITE_STR(dir, name, s) write_file(dir, name, s, sizeof(s) - 1)

/* Parses a buffer and expects failure with exactly this message. */
static void expect_parse_error(const char *data, size_t len, const tfm_corpus_opts *o,
                               const char *want) {
    tfm_lines l;
    tfm_clear_error();
    ck_assert_int_ne(tfm_text_parse_lines("in.txt", data, len, o, &l), 0);
    ck_assert_msg(strcmp(tfm_last_error(), want) == 0, "got '%s', want '%s'", tfm_last_error(),
                  want);
    ck_assert_int_eq(l.n, 0);
    ck_assert_ptr_null(l.line);
}
#define EXPECT_ERR(s, o, want) expect_parse_error(s, sizeof(s) - 1, o, want)

static void expect_lines(const char *data, size_t len, const tfm_corpus_opts *o, int64_t n,
                         const char *const *want) {
    tfm_lines l;
    int rc = tfm_text_parse_lines("in.txt", data, len, o, &l);
    ck_assert_msg(rc == 0, "%s", tfm_last_error());
    ck_assert_int_eq(l.n, n);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(strcmp(l.line[i], want[i]) == 0, "line %lld: got '%s', want '%s'",
                      (long long)i, l.line[i], want[i]);
    tfm_lines_free(&l);
}

/* ---- reading: good input -------------------------------------------------- */

START_TEST(read_good_corpus_crlf_and_final_newline) {
    const char *dir = tfm_test_tmpdir("corpus");
    const char *en = WRITE_STR(dir, "a.en", "Two dogs run.\r\nA man, smiling.\r\nÜber alles\r\n");
    const char *de = WRITE_STR(dir, "a.de", "Zwei Hunde rennen.\nEin Mann lächelt.\nüber\xC3\x9f");
    tfm_corpus c;
    ck_assert_msg(tfm_corpus_read(en, de, NULL, &c) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(c.n, 3);
    ck_assert_str_eq(c.src[0], "Two dogs run.");
    ck_assert_str_eq(c.src[1], "A man, smiling.");
    ck_assert_str_eq(c.src[2], "Über alles");
    ck_assert_str_eq(c.tgt[0], "Zwei Hunde rennen.");
    ck_assert_str_eq(c.tgt[2], "überß");
    tfm_corpus_free(&c);
    ck_assert_ptr_null(c.src);
}
END_TEST

START_TEST(read_normalizes_whitespace) {
    static const char in[] = "  a\t\tb  c \r\n\xEF\xBB\xBF x\n\v\fd\f e\r \t\nf\xC2\xA0g\r";
    /* the BOM is only special at the very start of the file; U+00A0 is kept */
    const char *want[] = {"a b c", "\xEF\xBB\xBF x", "d e", "f\xC2\xA0g"};
    expect_lines(in, sizeof in - 1, NULL, 4, want);
    static const char bom[] = "\xEF\xBB\xBFhello  world\n";
    const char *want_bom[] = {"hello world"};
    expect_lines(bom, sizeof bom - 1, NULL, 1, want_bom);
}
END_TEST

START_TEST(read_allow_empty) {
    tfm_corpus_opts o = {.allow_empty = 1};
    static const char in[] = "a\n \t \n\nb";
    const char *want[] = {"a", "", "", "b"};
    expect_lines(in, sizeof in - 1, &o, 4, want);
    /* a trailing newline does not add an empty line, but a trailing CR line does */
    static const char in2[] = "a\n\r";
    const char *want2[] = {"a", ""};
    expect_lines(in2, sizeof in2 - 1, &o, 2, want2);
}
END_TEST

/* Feeding the stream in pieces of every size gives the same lines: CRLF and
 * UTF-8 sequences split across chunks are handled. */
START_TEST(read_chunked_equals_whole) {
    static const char in[] = "Zwei  Männer\r\n\xF0\x9F\x98\x80 ok\r\n x \ny\r\n";
    const char *want[] = {"Zwei Männer", "\xF0\x9F\x98\x80 ok", "x", "y"};
    for (size_t step = 1; step <= sizeof in; step++) {
        tfm_line_reader r;
        tfm_corpus_opts o = {.max_line_bytes = 16};
        tfm_line_reader_init(&r, "chunks", &o);
        for (size_t at = 0; at < sizeof in - 1; at += step) {
            size_t n = sizeof in - 1 - at < step ? sizeof in - 1 - at : step;
            ck_assert_int_eq(tfm_line_reader_feed(&r, in + at, n), 0);
        }
        tfm_lines l;
        ck_assert_int_eq(tfm_line_reader_finish(&r, &l), 0);
        ck_assert_int_eq(l.n, 4);
        for (int i = 0; i < 4; i++) ck_assert_str_eq(l.line[i], want[i]);
        tfm_lines_free(&l);
    }
}
END_TEST

/* "-" reads stdin (Check runs each test in its own process, so redirecting
 * stdin here is harmless). */
/* Windows of lines from a pipe: a window ends where the input is not ready
 * yet (the writer still has the pipe open), or at max lines; line numbers
 * and the last line without '\n' carry on across windows. */
START_TEST(window_from_pipe) {
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(write(fds[1],
                           "\xEF\xBB\xBF"
                           "a  b\nc\nd\n",
                           12),
                     12);
    tfm_line_window w;
    tfm_corpus_opts o = {.allow_empty_file = 1};
    tfm_line_window_init(&w, fds[0], "pipe", &o);
    tfm_lines win;
    int64_t first = 0;
    ck_assert_int_eq(tfm_line_window_next(&w, 2, &win, &first), 0);
    ck_assert_int_eq(win.n, 2);
    ck_assert_int_eq(first, 1);
    ck_assert_str_eq(win.line[0], "a b");
    ck_assert_str_eq(win.line[1], "c");
    tfm_lines_free(&win);
    /* one line is there, the writer is still open: the window ends without waiting */
    ck_assert_int_eq(tfm_line_window_next(&w, 100, &win, &first), 0);
    ck_assert_int_eq(win.n, 1);
    ck_assert_int_eq(first, 3);
    ck_assert_str_eq(win.line[0], "d");
    tfm_lines_free(&win);
    ck_assert_int_eq(write(fds[1], "e\n\xff\n", 4), 4);
    ck_assert_int_eq(tfm_line_window_next(&w, 1, &win, &first), 0);
    ck_assert_int_eq(win.n, 1);
    ck_assert_int_eq(first, 4);
    tfm_lines_free(&win);
    ck_assert_int_eq(tfm_line_window_next(&w, 1, &win, &first), 1);
    ck_assert_msg(strstr(tfm_last_error(), "pipe:5: invalid UTF-8"), "%s", tfm_last_error());
    tfm_line_window_free(&w);
    /* a last line without '\n', then the end */
    tfm_line_window_init(&w, fds[0], "pipe", &o);
    ck_assert_int_eq(write(fds[1], "f", 1), 1);
    close(fds[1]);
    ck_assert_int_eq(tfm_line_window_next(&w, 10, &win, &first), 0);
    ck_assert_int_eq(win.n, 1);
    ck_assert_str_eq(win.line[0], "f");
    tfm_lines_free(&win);
    ck_assert_int_eq(tfm_line_window_next(&w, 10, &win, &first), 0);
    ck_assert_int_eq(win.n, 0);
    tfm_line_window_free(&w);
    close(fds[0]);
}
END_TEST

START_TEST(read_stdin) {
    const char *dir = tfm_test_tmpdir("corpus");
    const char *path = WRITE_STR(dir, "in.txt", "eins  zwei\r\ndrei\n");
    ck_assert_ptr_nonnull(freopen(path, "rb", stdin));
    tfm_lines l;
    ck_assert_int_eq(tfm_text_read_lines("-", NULL, &l), 0);
    ck_assert_int_eq(l.n, 2);
    ck_assert_str_eq(l.line[0], "eins zwei");
    ck_assert_str_eq(l.line[1], "drei");
    tfm_lines_free(&l);
    const char *bad = WRITE_STR(dir, "bad.txt", "ok\n\n");
    ck_assert_ptr_nonnull(freopen(bad, "rb", stdin));
    ck_assert_int_ne(tfm_text_read_lines("-", NULL, &l), 0);
    ck_assert_str_eq(tfm_last_error(),
                     "<stdin>:2: empty sentence (the line is blank or only whitespace)");
}
END_TEST

/* After an error the reader stays failed and keeps the first message. */
START_TEST(reader_stays_failed) {
    tfm_line_reader r;
    tfm_line_reader_init(&r, "s", NULL);
    ck_assert_int_eq(tfm_line_reader_feed(&r, "a\nb\xFF", 5), 0); /* line 2 not complete yet */
    ck_assert_int_ne(tfm_line_reader_feed(&r, "\nc\n", 3), 0);
    ck_assert_str_eq(tfm_last_error(),
                     "s:2: invalid UTF-8 at byte column 2: invalid byte (byte 0xFF)");
    ck_assert_int_ne(tfm_line_reader_feed(&r, "d\n", 2), 0);
    tfm_lines l;
    ck_assert_int_ne(tfm_line_reader_finish(&r, &l), 0);
    ck_assert_str_eq(tfm_last_error(),
                     "s:2: invalid UTF-8 at byte column 2: invalid byte (byte 0xFF)");
    ck_assert_int_eq(l.n, 0);
    ck_assert_ptr_null(r.text);
}
END_TEST

START_TEST(read_many_lines_linear) {
    /* 200k lines through 64 KiB chunks: exercises growth and chunk seams */
    int64_t n = 200000;
    size_t cap = (size_t)n * 16;
    char *buf = malloc(cap);
    size_t len = 0;
    for (int64_t i = 0; i < n; i++) len += (size_t)sprintf(buf + len, "s %lld\r\n", (long long)i);
    const char *dir = tfm_test_tmpdir("corpus");
    const char *path = write_file(dir, "big.txt", buf, len);
    free(buf);
    double t0 = tfm_now();
    tfm_lines l;
    ck_assert_int_eq(tfm_text_read_lines(path, NULL, &l), 0);
    double dt = tfm_now() - t0;
    printf("  read %lld lines in %.3f s\n", (long long)l.n, dt);
    ck_assert_int_eq(l.n, n);
    ck_assert_str_eq(l.line[0], "s 0");
    ck_assert_str_eq(l.line[123456], "s 123456");
    ck_assert_str_eq(l.line[n - 1], "s 199999");
    tfm_lines_free(&l);
}
END_TEST

/* ---- reading: errors ------------------------------------------------------ */

START_TEST(error_missing_and_unreadable) {
    const char *dir = tfm_test_tmpdir("corpus");
    char missing[600], want[800];
    snprintf(missing, sizeof missing, "%s/nope.en", dir);
    const char *de = WRITE_STR(dir, "ok.de", "a\n");
    tfm_corpus c;
    ck_assert_int_ne(tfm_corpus_read(missing, de, NULL, &c), 0);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", missing);
    ck_assert_str_eq(tfm_last_error(), want);
    ck_assert_int_eq(c.n, 0);
    ck_assert_int_ne(tfm_corpus_read(de, missing, NULL, &c), 0);
    ck_assert_str_eq(tfm_last_error(), want);
    tfm_lines l;
    ck_assert_int_ne(tfm_text_read_lines(dir, NULL, &l), 0);
    snprintf(want, sizeof want, "%s: is a directory, not a text file", dir);
    ck_assert_str_eq(tfm_last_error(), want);
}
END_TEST

START_TEST(error_empty_file) {
    const char *dir = tfm_test_tmpdir("corpus");
    const char *en = WRITE_STR(dir, "e.en", "");
    const char *de = WRITE_STR(dir, "e.de", "x\n");
    tfm_corpus c;
    ck_assert_int_ne(tfm_corpus_read(de, en, NULL, &c), 0);
    char want[800];
    snprintf(want, sizeof want, "%s: file is empty", en);
    ck_assert_str_eq(tfm_last_error(), want);
    EXPECT_ERR("", NULL, "in.txt: file is empty");
    tfm_corpus_opts o = {.allow_empty = 1};
    EXPECT_ERR("", &o, "in.txt: file is empty");
    /* translation input may be empty */
    o.allow_empty_file = 1;
    tfm_lines l;
    ck_assert_int_eq(tfm_text_parse_lines("in.txt", "", 0, &o, &l), 0);
    ck_assert_int_eq(l.n, 0);
    ck_assert_ptr_nonnull(l.line);
    tfm_lines_free(&l);
}
END_TEST

START_TEST(error_unequal_line_counts) {
    const char *dir = tfm_test_tmpdir("corpus");
    const char *en = WRITE_STR(dir, "u.en", "a\nb\nc\n");
    const char *de = WRITE_STR(dir, "u.de", "a\nb");
    tfm_corpus c;
    ck_assert_int_ne(tfm_corpus_read(en, de, NULL, &c), 0);
    char want[1200];
    snprintf(want, sizeof want,
             "%s has 3 lines but %s has 2: source and target must be aligned line by line", en, de);
    ck_assert_str_eq(tfm_last_error(), want);
    ck_assert_ptr_null(c.src);
}
END_TEST

START_TEST(error_invalid_utf8) {
    EXPECT_ERR("ok\nab\xC0\xAF\n", NULL,
               "in.txt:2: invalid UTF-8 at byte column 3: overlong encoding (byte 0xC0)");
    EXPECT_ERR("x\xE0\x80\xAFy", NULL,
               "in.txt:1: invalid UTF-8 at byte column 2: overlong encoding (byte 0xE0)");
    EXPECT_ERR("\xF0\x8F\xBF\xBF", NULL,
               "in.txt:1: invalid UTF-8 at byte column 1: overlong encoding (byte 0xF0)");
    EXPECT_ERR("a\nb\nsur \xED\xA0\x80", NULL,
               "in.txt:3: invalid UTF-8 at byte column 5: UTF-16 surrogate (byte 0xED)");
    EXPECT_ERR("\xF4\x90\x80\x80", NULL,
               "in.txt:1: invalid UTF-8 at byte column 1: code point above U+10FFFF (byte 0xF4)");
    EXPECT_ERR("\xF5\x80\x80\x80", NULL,
               "in.txt:1: invalid UTF-8 at byte column 1: code point above U+10FFFF (byte 0xF5)");
    EXPECT_ERR("end \xC3", NULL,
               "in.txt:1: invalid UTF-8 at byte column 5: truncated sequence (byte 0xC3)");
    EXPECT_ERR("\xE2\x82x\n", NULL,
               "in.txt:1: invalid UTF-8 at byte column 1: truncated sequence (byte 0xE2)");
    /* a sequence cut by the line end is truncated, not joined with the next line */
    EXPECT_ERR("\xE2\x82\n\xAC", NULL,
               "in.txt:1: invalid UTF-8 at byte column 1: truncated sequence (byte 0xE2)");
    EXPECT_ERR(
        "a\x80", NULL,
        "in.txt:1: invalid UTF-8 at byte column 2: unexpected continuation byte (byte 0x80)");
    EXPECT_ERR("\xFF", NULL, "in.txt:1: invalid UTF-8 at byte column 1: invalid byte (byte 0xFF)");
    /* the largest valid code points of each length pass */
    static const char edge[] =
        "\x7F \xDF\xBF \xEF\xBF\xBF \xF4\x8F\xBF\xBF \xED\x9F\xBF \xEE\x80\x80";
    const char *want[] = {edge};
    expect_lines(edge, sizeof edge - 1, NULL, 1, want);
}
END_TEST

START_TEST(error_invalid_utf8_in_file) {
    const char *dir = tfm_test_tmpdir("corpus");
    const char *en = WRITE_STR(dir, "v.en", "a\nb\n");
    const char *de = WRITE_STR(dir, "v.de", "a\nb \xC3\x28\n");
    tfm_corpus c;
    ck_assert_int_ne(tfm_corpus_read(en, de, NULL, &c), 0);
    char want[800];
    snprintf(want, sizeof want,
             "%s:2: invalid UTF-8 at byte column 3: truncated sequence (byte 0xC3)", de);
    ck_assert_str_eq(tfm_last_error(), want);
}
END_TEST

START_TEST(error_nul_byte) {
    static const char in[] = "fine\nab\0c\n";
    expect_parse_error(in, sizeof in - 1, NULL,
                       "in.txt:2: NUL byte at byte column 3 (is this a binary file?)");
}
END_TEST

START_TEST(error_empty_sentence) {
    EXPECT_ERR("a\n \t\r\nb\n", NULL,
               "in.txt:2: empty sentence (the line is blank or only whitespace)");
    EXPECT_ERR("a\n\nb\n", NULL, "in.txt:2: empty sentence (the line is blank or only whitespace)");
    EXPECT_ERR("\n", NULL, "in.txt:1: empty sentence (the line is blank or only whitespace)");
}
END_TEST

START_TEST(error_absurdly_long_line) {
    tfm_corpus_opts o = {.max_line_bytes = 10};
    /* exactly 10 bytes of content is fine, with or without CR */
    static const char ok[] = "0123456789\r\n0123456789\n0123456789\r";
    const char *want[] = {"0123456789", "0123456789", "0123456789"};
    expect_lines(ok, sizeof ok - 1, &o, 3, want);
    EXPECT_ERR("short\n0123456789A\r\n", &o,
               "in.txt:2: line is absurdly long (over 10 bytes); is this really one sentence per "
               "line?");
    EXPECT_ERR("short\n0123456789\r\r\n", &o,
               "in.txt:2: line is absurdly long (over 10 bytes); is this really one sentence per "
               "line?");
    EXPECT_ERR("0123456789A", &o,
               "in.txt:1: line is absurdly long (over 10 bytes); is this really one sentence per "
               "line?");

    /* with the 1 MiB default, a 3 MiB file without newlines stops early */
    size_t n = (size_t)3 << 20;
    char *big = malloc(n);
    memset(big, 'x', n);
    const char *dir = tfm_test_tmpdir("corpus");
    const char *path = write_file(dir, "long.txt", big, n);
    free(big);
    tfm_lines l;
    ck_assert_int_ne(tfm_text_read_lines(path, NULL, &l), 0);
    char want_msg[800];
    snprintf(want_msg, sizeof want_msg,
             "%s:1: line is absurdly long (over 1048576 bytes); is this really one sentence per "
             "line?",
             path);
    ck_assert_str_eq(tfm_last_error(), want_msg);
}
END_TEST

/* ---- batching ---------------------------------------------------------- */

/* n pairs with pseudo-random lengths in [1, max_len]; id j of pair i is
 * 3 + i (src) or 3 + i + j (tgt), so rows can be traced back to pairs. */
typedef struct {
    tfm_pairs p;
    int32_t *ids;
} test_pairs;

static test_pairs make_pairs(int64_t n, int64_t max_len, uint64_t seed) {
    test_pairs t;
    t.p.n = n;
    t.p.src = malloc((size_t)n * sizeof(int32_t *));
    t.p.tgt = malloc((size_t)n * sizeof(int32_t *));
    t.p.src_len = malloc((size_t)n * sizeof(int64_t));
    t.p.tgt_len = malloc((size_t)n * sizeof(int64_t));
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        t.p.src_len[i] = 1 + (int64_t)(tfm_rand_u64(seed, (uint64_t)(2 * i)) % (uint64_t)max_len);
        t.p.tgt_len[i] =
            1 + (int64_t)(tfm_rand_u64(seed, (uint64_t)(2 * i + 1)) % (uint64_t)max_len);
        total += t.p.src_len[i] + t.p.tgt_len[i];
    }
    t.ids = malloc((size_t)total * sizeof(int32_t));
    int32_t *at = t.ids;
    for (int64_t i = 0; i < n; i++) {
        t.p.src[i] = at;
        for (int64_t j = 0; j < t.p.src_len[i]; j++) *at++ = (int32_t)(3 + i);
        t.p.tgt[i] = at;
        for (int64_t j = 0; j < t.p.tgt_len[i]; j++) *at++ = (int32_t)(3 + i + j);
    }
    return t;
}

static void free_pairs(test_pairs *t) {
    free(t->p.src);
    free(t->p.tgt);
    free(t->p.src_len);
    free(t->p.tgt_len);
    free(t->ids);
}

static int64_t cost_of(const tfm_pairs *p, int64_t i) {
    int64_t s = p->src_len[i] + 1, t = p->tgt_len[i] + 1;
    return s > t ? s : t;
}


/* Pairs whose lengths change every epoch (as BPE-dropout's do): epoch e
 * gives pair i lengths from (e, i); in epoch 3 every pair is too long. */
typedef struct {
    tfm_pairs p;
    int32_t *ids;
    int64_t refreshes, last_epoch;
} epoch_pairs;

static void epoch_refresh(void *ctx, int64_t epoch) {
    epoch_pairs *e = ctx;
    e->refreshes++;
    e->last_epoch = epoch;
    for (int64_t i = 0; i < e->p.n; i++) {
        uint64_t h = tfm_rand_u64(77 + (uint64_t)epoch, (uint64_t)i);
        e->p.src_len[i] = epoch == 3 ? 30 : 1 + (int64_t)(h % 30);
        e->p.tgt_len[i] = epoch == 3 ? 30 : 1 + (int64_t)((h >> 20) % 30);
        for (int64_t j = 0; j < e->p.src_len[i]; j++) e->p.src[i][j] = (int32_t)(3 + epoch);
    }
}

static void epoch_pairs_init(epoch_pairs *e, int64_t n) {
    memset(e, 0, sizeof *e);
    e->p.n = n;
    e->p.src = malloc((size_t)n * sizeof(int32_t *));
    e->p.tgt = malloc((size_t)n * sizeof(int32_t *));
    e->p.src_len = malloc((size_t)n * sizeof(int64_t));
    e->p.tgt_len = malloc((size_t)n * sizeof(int64_t));
    e->ids = calloc((size_t)(2 * 30 * n), sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) {
        e->p.src[i] = e->ids + 60 * i;
        e->p.tgt[i] = e->ids + 60 * i + 30;
    }
    epoch_refresh(e, 0);
    e->refreshes = 0;
}

static void epoch_pairs_free(epoch_pairs *e) {
    free(e->p.src);
    free(e->p.tgt);
    free(e->p.src_len);
    free(e->p.tgt_len);
    free(e->ids);
}

START_TEST(batcher_cuts_each_epoch_anew) {
    enum { N = 400 };
    epoch_pairs ep;
    epoch_pairs_init(&ep, N);
    tfm_batch_opts o = {.batch_tokens = 120, .max_src_len = 25, .max_tgt_len = 25, .seed = 9};
    tfm_batcher b;
    ck_assert_msg(tfm_batcher_init(&b, &ep.p, &o) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(tfm_batcher_set_refresh(&b, epoch_refresh, &ep), 0);
    /* the batches of epochs 0-2, and where epoch 2's fourth batch starts */
    uint64_t trace[3][N];
    int64_t n_batches[3];
    for (int64_t epoch = 0; epoch < 3; epoch++) {
        int64_t *seen = calloc(N, sizeof *seen), kept = 0;
        int64_t k = 0;
        do {
            const int64_t *idx;
            int64_t n = tfm_batcher_next(&b, &idx);
            ck_assert_int_gt(n, 0);
            ck_assert_int_eq(ep.last_epoch, epoch); /* refreshed for this epoch */
            int64_t cost = 0;
            uint64_t h = 0;
            for (int64_t r = 0; r < n; r++) {
                seen[idx[r]]++;
                cost = cost_of(&ep.p, idx[r]) > cost ? cost_of(&ep.p, idx[r]) : cost;
                ck_assert_int_le(ep.p.src_len[idx[r]], 25);
                ck_assert_int_le(ep.p.tgt_len[idx[r]], 25);
                h = tfm_hash64(h ^ (uint64_t)idx[r]);
            }
            ck_assert_int_le(n * cost, 120);
            ck_assert_int_lt(k, N);
            trace[epoch][k++] = h;
        } while (b.state.pos != 0);
        n_batches[epoch] = k;
        ck_assert_int_eq(k, b.n_batches);
        for (int64_t i = 0; i < N; i++) {
            int keep = ep.p.src_len[i] <= 25 && ep.p.tgt_len[i] <= 25;
            ck_assert_int_eq(seen[i], keep);
            kept += keep;
        }
        ck_assert_int_eq(kept, b.n_kept);
        ck_assert_int_eq(N - kept, b.n_dropped);
        free(seen);
    }
    /* refreshed once per new epoch (epoch 0's pairs were given) */
    ck_assert_int_eq(ep.refreshes, 2);
    ck_assert(n_batches[0] != n_batches[1] || n_batches[1] != n_batches[2] ||
              trace[0][0] != trace[1][0]);
    tfm_batcher_free(&b);

    /* a resume at (epoch 2, position 3) continues with the same batches */
    epoch_pairs_free(&ep);
    epoch_pairs_init(&ep, N);
    ck_assert_int_eq(tfm_batcher_init(&b, &ep.p, &o), 0);
    ck_assert_int_eq(tfm_batcher_set_refresh(&b, epoch_refresh, &ep), 0);
    ck_assert_int_eq(tfm_batcher_set_state(&b, (tfm_batcher_state){9, 2, 3}), 0);
    ck_assert_int_eq(b.n_batches, n_batches[2]);
    for (int64_t k = 3; k < n_batches[2]; k++) {
        const int64_t *idx;
        int64_t n = tfm_batcher_next(&b, &idx);
        uint64_t h = 0;
        for (int64_t r = 0; r < n; r++) h = tfm_hash64(h ^ (uint64_t)idx[r]);
        ck_assert_msg(h == trace[2][k], "batch %lld of epoch 2 differs after the resume",
                      (long long)k);
    }
    /* epoch 3 leaves nothing: an error naming the epoch, no batch */
    const int64_t *idx;
    ck_assert_int_eq(tfm_batcher_next(&b, &idx), 0);
    ck_assert_msg(strstr(tfm_last_error(), "epoch 3: no sentence pairs left to batch") != NULL,
                  "%s", tfm_last_error());
    /* a position past the epoch's batches is refused */
    ck_assert_int_ne(tfm_batcher_set_state(&b, (tfm_batcher_state){9, 1, N}), 0);
    tfm_batcher_free(&b);
    epoch_pairs_free(&ep);
}
END_TEST


/* Lines of words over an alphabet with multi-byte characters and the
 * characters BPE escapes ('@', '~'), into path. */
static void dropout_file(const char *path, uint64_t seed, int n) {
    static const char *const alpha[] = {"a", "b", "e", "r", "@", "~", "\xC3\xA4", "\xE5\xAD\x97"};
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int l = 0; l < n; l++) {
        int words = 1 + (int)(tfm_rand_u64(seed, (uint64_t)(100 * l)) % 8);
        for (int w = 0; w < words; w++) {
            if (w) fputc(' ', f);
            int len = 1 + (int)(tfm_rand_u64(seed, (uint64_t)(100 * l + 2 * w + 1)) % 6);
            for (int k = 0; k < len; k++)
                fputs(alpha[tfm_rand_u64(seed ^ 0xABC, (uint64_t)(1000 * l + 10 * w + k)) % 8], f);
        }
        fputc('\n', f);
    }
    fclose(f);
}

/* The ids of every line (source then target of each pair), copied. */
static int32_t *copy_ids(const tfm_corpus_source *s, int64_t *lens) {
    int64_t total = 0;
    for (int64_t i = 0; i < s->own.n; i++) total += s->own.src_len[i] + s->own.tgt_len[i];
    int32_t *ids = malloc((size_t)(total + 1) * sizeof *ids), *at = ids;
    for (int64_t i = 0; i < s->own.n; i++) {
        lens[2 * i] = s->own.src_len[i];
        lens[2 * i + 1] = s->own.tgt_len[i];
        memcpy(at, s->own.src[i], (size_t)s->own.src_len[i] * sizeof *at);
        at += s->own.src_len[i];
        memcpy(at, s->own.tgt[i], (size_t)s->own.tgt_len[i] * sizeof *at);
        at += s->own.tgt_len[i];
    }
    return ids;
}

/* Every line's ids decode to the line and none is <unk>. */
static void check_spelling(const tfm_corpus_source *s, const tfm_corpus *c, const tfm_vocab *v) {
    for (int64_t i = 0; i < c->n; i++)
        for (int side = 0; side < 2; side++) {
            const int32_t *ids = side ? s->own.tgt[i] : s->own.src[i];
            int64_t n = side ? s->own.tgt_len[i] : s->own.src_len[i];
            for (int64_t k = 0; k < n; k++) ck_assert_int_ne(ids[k], TFM_UNK_ID);
            char *text = tfm_vocab_decode(v, ids, n);
            ck_assert_str_eq(text, side ? c->tgt[i] : c->src[i]);
            free(text);
        }
}

START_TEST(dropout_source_segments_each_epoch) {
    const char *dir = tfm_test_tmpdir("dropout-source");
    char src[512], tgt[512];
    snprintf(src, sizeof src, "%s/src.txt", dir);
    snprintf(tgt, sizeof tgt, "%s/tgt.txt", dir);
    dropout_file(src, 1, 150);
    dropout_file(tgt, 2, 150);
    tfm_corpus c;
    ck_assert_msg(tfm_corpus_read(src, tgt, NULL, &c) == 0, "%s", tfm_last_error());
    char *text[2] = {NULL, NULL};
    size_t len[2];
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(k ? tgt : src, "rb");
        text[k] = malloc(1 << 16);
        len[k] = fread(text[k], 1, 1 << 16, f);
        fclose(f);
    }
    tfm_text_input in[2] = {{src, text[0], len[0]}, {tgt, text[1], len[1]}};
    tfm_text_model tm, plain;
    ck_assert_msg(tfm_text_model_learn_texts(in, 2, 300, &tm) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(tfm_text_model_learn_texts(in, 2, 300, &plain), 0);
    ck_assert_int_ge(tfm_vocab_add_merge_symbols(tm.vocab, tm.bpe), 0);
    ck_assert_int_eq(tfm_vocab_missing_merge_symbols(tm.vocab, tm.bpe), 0);
    tfm_batch_opts o = {.batch_tokens = 200, .max_src_len = 60, .max_tgt_len = 60, .seed = 3};
    tfm_corpus_source s, t;
    ck_assert_msg(tfm_corpus_source_init_dropout(&s, &c, tm.bpe, tm.vocab, 0.3, 0, &o) == 0, "%s",
                  tfm_last_error());
    ck_assert_int_eq(s.source.max_cells, 200);
    int64_t *lens0 = malloc((size_t)(2 * c.n) * sizeof(int64_t)),
            *lens1 = malloc((size_t)(2 * c.n) * sizeof(int64_t)),
            *lens = malloc((size_t)(2 * c.n) * sizeof(int64_t));
    check_spelling(&s, &c, tm.vocab);
    int32_t *ids0 = copy_ids(&s, lens0);
    /* through epoch 0 and into epoch 1: the text is segmented anew */
    const int64_t *idx;
    while (s.batcher.state.epoch == 0) ck_assert_int_gt(tfm_batcher_next(&s.batcher, &idx), 0);
    ck_assert_int_gt(tfm_batcher_next(&s.batcher, &idx), 0);
    check_spelling(&s, &c, tm.vocab);
    int32_t *ids1 = copy_ids(&s, lens1);
    int64_t changed = 0, total = 0;
    for (int64_t i = 0; i < 2 * c.n; i++) changed += lens0[i] != lens1[i], total += lens1[i];
    ck_assert_msg(changed > 0 && (memcmp(lens0, lens1, (size_t)(2 * c.n) * sizeof *lens0) ||
                                  memcmp(ids0, ids1, (size_t)total * sizeof *ids1)),
                  "epoch 1 has the segmentation of epoch 0");
    /* another source resumed at either epoch has the same ids */
    ck_assert_int_eq(tfm_corpus_source_init_dropout(&t, &c, tm.bpe, tm.vocab, 0.3, 0, &o), 0);
    for (int64_t e = 1; e >= 0; e--) {
        ck_assert_int_eq(tfm_batcher_set_state(&t.batcher, (tfm_batcher_state){3, e, 1}), 0);
        int32_t *got = copy_ids(&t, lens);
        ck_assert(!memcmp(lens, e ? lens1 : lens0, (size_t)(2 * c.n) * sizeof *lens));
        int64_t n = 0;
        for (int64_t i = 0; i < 2 * c.n; i++) n += lens[i];
        ck_assert(!memcmp(got, e ? ids1 : ids0, (size_t)n * sizeof *got));
        free(got);
    }
    tfm_corpus_source_free(&t);
    /* source side only: the targets keep the plain segmentation every epoch */
    ck_assert_int_eq(tfm_corpus_source_init_dropout(&t, &c, tm.bpe, tm.vocab, 0.3, 1, &o), 0);
    int32_t plain_ids[256];
    int64_t src_changed = 0;
    for (int pass = 0; pass < 2; pass++) {
        int32_t *before = pass ? NULL : copy_ids(&t, lens);
        if (pass) { /* into epoch 1 */
            while (t.batcher.state.epoch == 0)
                ck_assert_int_gt(tfm_batcher_next(&t.batcher, &idx), 0);
            ck_assert_int_gt(tfm_batcher_next(&t.batcher, &idx), 0);
            for (int64_t i = 0; i < c.n; i++) src_changed += t.own.src_len[i] != lens[2 * i];
        }
        check_spelling(&t, &c, tm.vocab);
        for (int64_t i = 0; i < c.n; i++) {
            int64_t n = tfm_vocab_encode(tm.bpe, tm.vocab, c.tgt[i], strlen(c.tgt[i]), plain_ids,
                                         256);
            ck_assert_int_eq(t.own.tgt_len[i], n);
            ck_assert(!memcmp(t.own.tgt[i], plain_ids, (size_t)n * sizeof *plain_ids));
        }
        free(before);
    }
    ck_assert_int_gt(src_changed, 0);
    tfm_corpus_source_free(&t);
    /* limits at the median plain length: a line whose dropout segmentation
     * would exceed its side's limit keeps the plain one, so every epoch
     * keeps each pair the plain segmentation keeps (without the fallback
     * some of those pairs come out too long in these epochs) */
    int64_t *plain_len = malloc((size_t)(2 * c.n) * sizeof *plain_len), most[2] = {0, 0};
    for (int64_t i = 0; i < c.n; i++)
        for (int side = 0; side < 2; side++) {
            const char *line = side ? c.tgt[i] : c.src[i];
            plain_len[2 * i + side] =
                tfm_vocab_encode(tm.bpe, tm.vocab, line, strlen(line), plain_ids, 256);
            if (plain_len[2 * i + side] > most[side]) most[side] = plain_len[2 * i + side];
        }
    tfm_batch_opts tight = {.batch_tokens = 200,
                            .max_src_len = most[0] / 2,
                            .max_tgt_len = most[1] / 2,
                            .seed = 3};
    int64_t plain_kept = 0;
    for (int64_t i = 0; i < c.n; i++)
        plain_kept +=
            plain_len[2 * i] <= tight.max_src_len && plain_len[2 * i + 1] <= tight.max_tgt_len;
    ck_assert_int_gt(plain_kept, 0);
    ck_assert_int_lt(plain_kept, c.n);
    ck_assert_int_eq(tfm_corpus_source_init_dropout(&t, &c, tm.bpe, tm.vocab, 0.3, 0, &tight), 0);
    for (int64_t e = 0; e < 4; e++) {
        ck_assert_int_eq(tfm_batcher_set_state(&t.batcher, (tfm_batcher_state){3, e, 0}), 0);
        check_spelling(&t, &c, tm.vocab);
        int64_t kept = 0;
        for (int64_t i = 0; i < c.n; i++) {
            int fits =
                t.own.src_len[i] <= tight.max_src_len && t.own.tgt_len[i] <= tight.max_tgt_len;
            if (plain_len[2 * i] <= tight.max_src_len && plain_len[2 * i + 1] <= tight.max_tgt_len)
                ck_assert_msg(fits, "epoch %lld: pair %lld fits plain but not now", (long long)e,
                              (long long)i);
            kept += fits;
        }
        ck_assert_int_ge(kept, plain_kept);
        ck_assert_int_eq(t.batcher.n_kept, kept);
    }
    tfm_corpus_source_free(&t);
    free(plain_len);
    /* refused: no dropout, a vocabulary without the merge symbols */
    ck_assert_int_ne(tfm_corpus_source_init_dropout(&t, &c, tm.bpe, tm.vocab, 0.0, 0, &o), 0);
    ck_assert_int_gt(tfm_vocab_missing_merge_symbols(plain.vocab, plain.bpe), 0);
    ck_assert_int_ne(tfm_corpus_source_init_dropout(&t, &c, plain.bpe, plain.vocab, 0.3, 0, &o), 0);
    ck_assert_msg(strstr(tfm_last_error(), "needs a vocabulary with every symbol of the merges"),
                  "%s", tfm_last_error());
    free(ids0);
    free(ids1);
    free(lens0);
    free(lens1);
    free(lens);
    tfm_corpus_source_free(&s);
    tfm_text_model_free(&tm);
    tfm_text_model_free(&plain);
    tfm_corpus_free(&c);
    free(text[0]);
    free(text[1]);
}
END_TEST

START_TEST(batch_budget_and_coverage) {
    test_pairs tp = make_pairs(2000, 60, 11);
    tfm_batcher b;
    tfm_batch_opts o = {.batch_tokens = 300, .seed = 5};
    ck_assert_msg(tfm_batcher_init(&b, &tp.p, &o) == 0, "%s", tfm_last_error());
    ck_assert_int_eq(b.n_dropped, 0);
    int64_t mb, ms, mt;
    tfm_batcher_max_shape(&b, &mb, &ms, &mt);
    ck_assert_int_eq(ms, 61);
    ck_assert_int_eq(mt, 61);
    tfm_batch bt;
    ck_assert_int_eq(tfm_batch_alloc(&bt, mb, ms, mt), 0);
    int64_t *seen = calloc(2000, sizeof *seen);
    int64_t seen_mb = 0, seen_ms = 0, seen_mt = 0;
    for (int epoch = 0; epoch < 3; epoch++) {
        ck_assert_int_eq(b.state.epoch, epoch);
        int64_t total_pairs = 0;
        for (int64_t k = 0; k < b.n_batches; k++) {
            ck_assert_int_eq(b.state.pos, k);
            const int64_t *idx;
            int64_t n = tfm_batcher_next(&b, &idx);
            ck_assert_int_gt(n, 0);
            ck_assert_int_eq(tfm_batch_fill(&bt, &tp.p, idx, n), 0);
            ck_assert_int_le(bt.b * (bt.s > bt.t ? bt.s : bt.t), 300);
            seen_mb = bt.b > seen_mb ? bt.b : seen_mb;
            seen_ms = bt.s > seen_ms ? bt.s : seen_ms;
            seen_mt = bt.t > seen_mt ? bt.t : seen_mt;
            for (int64_t r = 0; r < n; r++) seen[idx[r]]++;
            total_pairs += n;
        }
        ck_assert_int_eq(total_pairs, 2000);
        for (int64_t i = 0; i < 2000; i++)
            ck_assert_msg(seen[i] == epoch + 1, "pair %lld seen %lld times after epoch %d",
                          (long long)i, (long long)seen[i], epoch);
    }
    ck_assert_int_eq(seen_mb, mb);
    ck_assert_int_eq(seen_ms, ms);
    ck_assert_int_eq(seen_mt, mt);
    /* the budget is used well: most batches are more than half full */
    int64_t padded = 0, useful = 0;
    for (int64_t k = 0; k < b.n_batches; k++) {
        const int64_t *idx;
        int64_t n = tfm_batcher_batch(&b, k, &idx);
        int64_t c = 0;
        for (int64_t r = 0; r < n; r++) c = cost_of(&tp.p, idx[r]) > c ? cost_of(&tp.p, idx[r]) : c;
        padded += n * c;
        useful += 300;
    }
    printf("  %lld batches, budget use %.2f\n", (long long)b.n_batches, (double)padded / useful);
    ck_assert((double)padded / useful > 0.75);
    free(seen);
    tfm_batch_free(&bt);
    tfm_batcher_free(&b);
    free_pairs(&tp);
}
END_TEST

START_TEST(batch_bucketing_groups_similar_lengths) {
    test_pairs tp = make_pairs(1000, 80, 3);
    tfm_batcher b;
    tfm_batch_opts o = {.batch_tokens = 400, .seed = 9};
    ck_assert_int_eq(tfm_batcher_init(&b, &tp.p, &o), 0);
    /* padding efficiency: real max(S,T) cost over padded cost, for the
     * bucketed batches and for the same batch sizes taken in index order */
    int64_t prev_max = 0, real = 0, padded = 0, padded_unsorted = 0, at = 0;
    for (int64_t k = 0; k < b.n_batches; k++) {
        const int64_t *idx;
        int64_t n = tfm_batcher_batch(&b, k, &idx);
        int64_t lo = INT64_MAX, hi = 0, hi_unsorted = 0;
        for (int64_t r = 0; r < n; r++) {
            int64_t c = cost_of(&tp.p, idx[r]), cu = cost_of(&tp.p, at++);
            lo = c < lo ? c : lo;
            hi = c > hi ? c : hi;
            hi_unsorted = cu > hi_unsorted ? cu : hi_unsorted;
            real += c;
        }
        /* buckets are contiguous in length order and do not overlap */
        ck_assert_int_ge(lo, prev_max);
        prev_max = hi;
        padded += n * hi;
        padded_unsorted += n * hi_unsorted;
    }
    double eff = (double)real / padded, eff_unsorted = (double)real / padded_unsorted;
    printf("  padding efficiency: bucketed %.3f, unsorted %.3f\n", eff, eff_unsorted);
    ck_assert(eff > 0.95);
    ck_assert(eff_unsorted < 0.8);
    tfm_batcher_free(&b);
    free_pairs(&tp);
}
END_TEST

/* The first pair of each batch in visiting order, for one epoch. */
static void epoch_signature(tfm_batcher *b, int64_t *sig) {
    for (int64_t k = 0; k < b->n_batches; k++) {
        const int64_t *idx;
        tfm_batcher_next(b, &idx);
        sig[k] = idx[0];
    }
}

START_TEST(batch_shuffle_per_epoch_reproducible) {
    test_pairs tp = make_pairs(800, 40, 21);
    tfm_batch_opts o = {.batch_tokens = 200, .seed = 42};
    tfm_batcher b1, b2, b3;
    ck_assert_int_eq(tfm_batcher_init(&b1, &tp.p, &o), 0);
    ck_assert_int_eq(tfm_batcher_init(&b2, &tp.p, &o), 0);
    o.seed = 43;
    ck_assert_int_eq(tfm_batcher_init(&b3, &tp.p, &o), 0);
    int64_t nb = b1.n_batches;
    ck_assert_int_gt(nb, 20);
    ck_assert_int_eq(b3.n_batches, nb);
    int64_t *e0 = malloc((size_t)nb * 8), *e1 = malloc((size_t)nb * 8);
    int64_t *f0 = malloc((size_t)nb * 8), *f1 = malloc((size_t)nb * 8),
            *g0 = malloc((size_t)nb * 8);
    epoch_signature(&b1, e0);
    epoch_signature(&b1, e1);
    epoch_signature(&b2, f0);
    epoch_signature(&b2, f1);
    epoch_signature(&b3, g0);
    ck_assert_int_eq(memcmp(e0, f0, (size_t)nb * 8), 0); /* same seed: same batches */
    ck_assert_int_eq(memcmp(e1, f1, (size_t)nb * 8), 0);
    ck_assert_int_ne(memcmp(e0, e1, (size_t)nb * 8), 0); /* epochs differ */
    ck_assert_int_ne(memcmp(e0, g0, (size_t)nb * 8), 0); /* seeds differ */
    /* the visiting order is not just the bucket order */
    int64_t in_order = 0;
    for (int64_t k = 0; k < nb; k++) {
        const int64_t *idx;
        tfm_batcher_batch(&b1, k, &idx);
        in_order += idx[0] == e0[k];
    }
    ck_assert_int_lt(in_order, nb / 2);
    free(e0);
    free(e1);
    free(f0);
    free(f1);
    free(g0);
    tfm_batcher_free(&b1);
    tfm_batcher_free(&b2);
    tfm_batcher_free(&b3);
    free_pairs(&tp);
}
END_TEST

START_TEST(batch_state_resume_identical) {
    test_pairs tp = make_pairs(500, 30, 8);
    tfm_batch_opts o = {.batch_tokens = 128, .seed = 7};
    tfm_batcher a, b;
    ck_assert_int_eq(tfm_batcher_init(&a, &tp.p, &o), 0);
    int64_t nb = a.n_batches;
    const int64_t *idx;
    for (int64_t k = 0; k < nb + nb / 2 + 3; k++) tfm_batcher_next(&a, &idx);
    tfm_batcher_state saved = a.state;
    ck_assert_int_eq(saved.epoch, 1);
    ck_assert_int_eq(saved.pos, nb / 2 + 3);

    /* a fresh batcher, restored, continues exactly like the original */
    ck_assert_int_eq(tfm_batcher_init(&b, &tp.p, &o), 0);
    ck_assert_int_eq(tfm_batcher_set_state(&b, saved), 0);
    for (int64_t k = 0; k < 2 * nb; k++) {
        const int64_t *ia, *ib;
        int64_t na = tfm_batcher_next(&a, &ia), nb2 = tfm_batcher_next(&b, &ib);
        ck_assert_int_eq(na, nb2);
        ck_assert_int_eq(memcmp(ia, ib, (size_t)na * sizeof *ia), 0);
        ck_assert_int_eq(a.state.epoch, b.state.epoch);
        ck_assert_int_eq(a.state.pos, b.state.pos);
    }
    /* a batcher built with another seed re-buckets when given this state */
    tfm_batcher c;
    o.seed = 1234;
    ck_assert_int_eq(tfm_batcher_init(&c, &tp.p, &o), 0);
    ck_assert_int_eq(tfm_batcher_set_state(&c, a.state), 0);
    for (int64_t k = 0; k < nb; k++) {
        const int64_t *ia, *ic;
        int64_t na = tfm_batcher_next(&a, &ia), nc = tfm_batcher_next(&c, &ic);
        ck_assert_int_eq(na, nc);
        ck_assert_int_eq(memcmp(ia, ic, (size_t)na * sizeof *ia), 0);
    }
    /* bad states are refused */
    tfm_batcher_state bad = {7, 0, nb + 1};
    ck_assert_int_ne(tfm_batcher_set_state(&c, bad), 0);
    ck_assert_msg(strstr(tfm_last_error(), "past the") != NULL, "%s", tfm_last_error());
    bad = (tfm_batcher_state){7, -1, 0};
    ck_assert_int_ne(tfm_batcher_set_state(&c, bad), 0);
    tfm_batcher_free(&a);
    tfm_batcher_free(&b);
    tfm_batcher_free(&c);
    free_pairs(&tp);
}
END_TEST

START_TEST(batch_fill_exact_layout) {
    int32_t s0[] = {5, 6, 7}, t0[] = {8, 9}, s1[] = {10}, t1[] = {11, 12, 13};
    int32_t *src[] = {s0, s1}, *tgt[] = {t0, t1};
    int64_t src_len[] = {3, 1}, tgt_len[] = {2, 3};
    tfm_pairs p = {2, src, src_len, tgt, tgt_len};
    tfm_batch bt;
    ck_assert_int_eq(tfm_batch_alloc(&bt, 4, 8, 8), 0);
    int64_t idx[] = {1, 0};
    ck_assert_int_eq(tfm_batch_fill(&bt, &p, idx, 2), 0);
    ck_assert_int_eq(bt.b, 2);
    ck_assert_int_eq(bt.s, 4);
    ck_assert_int_eq(bt.t, 4);
    const int32_t want_src[] = {10, 2, 0, 0, 5, 6, 7, 2};
    const uint8_t want_spad[] = {0, 0, 1, 1, 0, 0, 0, 0};
    const int32_t want_din[] = {1, 11, 12, 13, 1, 8, 9, 0};
    const int32_t want_dout[] = {11, 12, 13, 2, 8, 9, 2, 0};
    const uint8_t want_tpad[] = {0, 0, 0, 0, 0, 0, 0, 1};
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(bt.src[i], want_src[i]);
        ck_assert_int_eq(bt.src_pad[i], want_spad[i]);
        ck_assert_int_eq(bt.dec_in[i], want_din[i]);
        ck_assert_int_eq(bt.dec_out[i], want_dout[i]);
        ck_assert_int_eq(bt.tgt_pad[i], want_tpad[i]);
    }
    ck_assert_int_eq(bt.n_src_tokens, 6);
    ck_assert_int_eq(bt.n_tgt_tokens, 7);

    /* an empty target still gets <s> / </s> */
    int64_t zero_len[] = {3, 0};
    tfm_pairs pz = {2, src, src_len, tgt, zero_len};
    int64_t one[] = {1};
    ck_assert_int_eq(tfm_batch_fill(&bt, &pz, one, 1), 0);
    ck_assert_int_eq(bt.t, 1);
    ck_assert_int_eq(bt.dec_in[0], TFM_BOS_ID);
    ck_assert_int_eq(bt.dec_out[0], TFM_EOS_ID);
    ck_assert_int_eq(bt.n_tgt_tokens, 1);

    /* a batch larger than the buffers is refused, naming both shapes */
    tfm_batch small;
    ck_assert_int_eq(tfm_batch_alloc(&small, 2, 3, 8), 0);
    ck_assert_int_ne(tfm_batch_fill(&small, &p, idx, 2), 0);
    ck_assert_str_eq(tfm_last_error(),
                     "batch of shape B=2 S=4 T=4 does not fit the buffers sized for B=2 S=3 T=8");
    tfm_batch_free(&small);
    tfm_batch_free(&bt);
}
END_TEST

START_TEST(batch_drop_count_and_limits) {
    test_pairs tp = make_pairs(1000, 50, 4);
    int64_t want = 0;
    for (int64_t i = 0; i < 1000; i++) want += tp.p.src_len[i] > 30 || tp.p.tgt_len[i] > 40;
    ck_assert_int_gt(want, 100);
    ck_assert_int_eq(tfm_pairs_count_too_long(&tp.p, 30, 40), want);
    tfm_batcher b;
    tfm_batch_opts o = {.batch_tokens = 100,
                        .max_src_len = 30,
                        .max_tgt_len = 40,
                        .max_batch_sentences = 3,
                        .seed = 1};
    ck_assert_int_eq(tfm_batcher_init(&b, &tp.p, &o), 0);
    ck_assert_int_eq(b.n_dropped, want);
    ck_assert_int_eq(b.n_kept, 1000 - want);
    int64_t total = 0;
    for (int64_t k = 0; k < b.n_batches; k++) {
        const int64_t *idx;
        int64_t n = tfm_batcher_batch(&b, k, &idx);
        ck_assert_int_le(n, 3);
        for (int64_t r = 0; r < n; r++) {
            ck_assert_int_le(tp.p.src_len[idx[r]], 30);
            ck_assert_int_le(tp.p.tgt_len[idx[r]], 40);
        }
        total += n;
    }
    ck_assert_int_eq(total, b.n_kept);
    tfm_batcher_free(&b);

    /* a pair that cannot fit the budget on its own is an error */
    o = (tfm_batch_opts){.batch_tokens = 20, .seed = 1};
    ck_assert_int_ne(tfm_batcher_init(&b, &tp.p, &o), 0);
    ck_assert_msg(strstr(tfm_last_error(), "does not fit in batch_tokens 20 on its own") != NULL,
                  "%s", tfm_last_error());
    /* everything dropped is an error */
    int32_t ids[] = {5, 6, 7, 8};
    int32_t *two[] = {ids, ids};
    int64_t lens[] = {4, 3};
    tfm_pairs tp2 = {2, two, lens, two, lens};
    ck_assert_int_eq(tfm_pairs_count_too_long(&tp2, 2, 2), 2);
    o = (tfm_batch_opts){.batch_tokens = 100, .max_src_len = 2, .max_tgt_len = 2};
    ck_assert_int_ne(tfm_batcher_init(&b, &tp2, &o), 0);
    ck_assert_str_eq(tfm_last_error(), "no sentence pairs left to batch (2 of 2 are longer than "
                                       "the limits 2 source / 2 target ids)");
    o.batch_tokens = 0;
    ck_assert_int_ne(tfm_batcher_init(&b, &tp.p, &o), 0);
    ck_assert_str_eq(tfm_last_error(), "batch_tokens must be positive, got 0");
    free_pairs(&tp);
}
END_TEST

/* The cut's batch sizes ("3 3 1") under min_batch_sentences = min, and the
 * bucket order, which a minimum must not change (it only moves a boundary). */
static void cut_sizes(const tfm_pairs *p, int64_t budget, int64_t min, char *out, size_t cap,
                      int64_t *order) {
    tfm_batcher b;
    tfm_batch_opts o = {.batch_tokens = budget, .min_batch_sentences = min, .seed = 5};
    ck_assert_int_eq(tfm_batcher_init(&b, p, &o), 0);
    out[0] = 0;
    for (int64_t k = 0; k < b.n_batches; k++) {
        const int64_t *idx;
        int64_t n = tfm_batcher_batch(&b, k, &idx);
        snprintf(out + strlen(out), cap - strlen(out), "%s%lld", k ? " " : "", (long long)n);
    }
    memcpy(order, b.order, (size_t)b.n_kept * sizeof *order);
    tfm_batcher_free(&b);
}

/* min_batch_sentences (data parallelism: a sentence for each process): a
 * last batch short of it takes pairs from the end of the batch before, only
 * when the budget allows and the batch before keeps the minimum; otherwise,
 * and for batches that have it, the cut is the one without a minimum. */
START_TEST(batch_min_sentences_borrows_for_the_last) {
    int32_t ids[32] = {0};
    int32_t *rows[8];
    int64_t len[8], order0[8], order[8];
    for (int i = 0; i < 8; i++) rows[i] = ids;
    char got[64];
    /* lengths: seven pairs of cost 10 (set 0), or six of cost 5 and one of
     * cost 20 (set 1); the cut under a budget and a minimum, and the bucket
     * order, which must be that of the cut without a minimum */
    static const struct {
        int set;
        int64_t budget, min;
        const char *want;
    } cuts[] = {
        {0, 30, 0, "3 3 1"}, {0, 30, 1, "3 3 1"}, {0, 30, 2, "3 2 2"},
        {0, 30, 3, "3 3 1"}, /* the batch before would keep 1 */
        {1, 30, 0, "6 1"},   {1, 30, 2, "6 1"}, /* two of cost 20 would break the budget */
        {1, 40, 0, "6 1"},   {1, 40, 2, "5 2"}, /* now they fit */
    };
    tfm_pairs p = {7, rows, len, rows, len};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        for (int i = 0; i < 7; i++) len[i] = cuts[c].set ? (i < 6 ? 4 : 19) : 9;
        cut_sizes(&p, cuts[c].budget, 0, got, sizeof got, order0);
        cut_sizes(&p, cuts[c].budget, cuts[c].min, got, sizeof got, order);
        ck_assert_msg(!strcmp(got, cuts[c].want), "cut %zu: %s, want %s", c, got, cuts[c].want);
        ck_assert_mem_eq(order, order0, 7 * sizeof *order);
    }

    /* a random corpus with a budget of at least 2 * min * the longest pair
     * (+ 1): every batch holds the minimum and stays within the budget */
    test_pairs tp = make_pairs(997, 40, 9);
    for (int64_t min = 2; min <= 5; min++) {
        tfm_batcher b;
        tfm_batch_opts o = {.batch_tokens = 2 * min * 41, .min_batch_sentences = min, .seed = 2};
        ck_assert_int_eq(tfm_batcher_init(&b, &tp.p, &o), 0);
        int64_t total = 0;
        for (int64_t k = 0; k < b.n_batches; k++) {
            const int64_t *idx;
            int64_t n = tfm_batcher_batch(&b, k, &idx), most = 0;
            for (int64_t r = 0; r < n; r++) {
                int64_t c = (tp.p.src_len[idx[r]] > tp.p.tgt_len[idx[r]] ? tp.p.src_len[idx[r]]
                                                                       : tp.p.tgt_len[idx[r]]) +
                            1;
                most = c > most ? c : most;
            }
            ck_assert_int_ge(n, min);
            ck_assert_int_le(n * most, o.batch_tokens);
            total += n;
        }
        ck_assert_int_eq(total, 997);
        tfm_batcher_free(&b);
    }
    free_pairs(&tp);
}
END_TEST

/* ---- the numbers corpus ----------------------------------------------------- */

static const struct {
    int n;
    const char *en, *de;
} NUMBERS[] = {
    {0, "zero", "null"},
    {1, "one", "eins"},
    {7, "seven", "sieben"},
    {11, "eleven", "elf"},
    {12, "twelve", "zwölf"},
    {13, "thirteen", "dreizehn"},
    {16, "sixteen", "sechzehn"},
    {17, "seventeen", "siebzehn"},
    {20, "twenty", "zwanzig"},
    {21, "twenty-one", "einundzwanzig"},
    {30, "thirty", "dreißig"},
    {31, "thirty-one", "einunddreißig"},
    {40, "forty", "vierzig"},
    {60, "sixty", "sechzig"},
    {66, "sixty-six", "sechsundsechzig"},
    {70, "seventy", "siebzig"},
    {77, "seventy-seven", "siebenundsiebzig"},
    {99, "ninety-nine", "neunundneunzig"},
    {100, "one hundred", "einhundert"},
    {101, "one hundred and one", "einhunderteins"},
    {110, "one hundred and ten", "einhundertzehn"},
    {111, "one hundred and eleven", "einhundertelf"},
    {116, "one hundred and sixteen", "einhundertsechzehn"},
    {200, "two hundred", "zweihundert"},
    {305, "three hundred and five", "dreihundertfünf"},
    {571, "five hundred and seventy-one", "fünfhunderteinundsiebzig"},
    {999, "nine hundred and ninety-nine", "neunhundertneunundneunzig"},
    {1000, "one thousand", "eintausend"},
    {1001, "one thousand and one", "eintausendeins"},
    {1010, "one thousand and ten", "eintausendzehn"},
    {1100, "one thousand one hundred", "eintausendeinhundert"},
    {1234, "one thousand two hundred and thirty-four", "eintausendzweihundertvierunddreißig"},
    {2354, "two thousand three hundred and fifty-four", "zweitausenddreihundertvierundfünfzig"},
    {6017, "six thousand and seventeen", "sechstausendsiebzehn"},
    {7000, "seven thousand", "siebentausend"},
    {7777, "seven thousand seven hundred and seventy-seven",
     "siebentausendsiebenhundertsiebenundsiebzig"},
    {8090, "eight thousand and ninety", "achttausendneunzig"},
    {9999, "nine thousand nine hundred and ninety-nine", "neuntausendneunhundertneunundneunzig"},
};

START_TEST(numbers_spellings) {
    char en[TFM_NUMBER_WORDS_CAP], de[TFM_NUMBER_WORDS_CAP];
    for (size_t i = 0; i < sizeof NUMBERS / sizeof NUMBERS[0]; i++) {
        ck_assert_int_eq(tfm_numbers_pair(NUMBERS[i].n, en, sizeof en, de, sizeof de), 0);
        ck_assert_str_eq(en, NUMBERS[i].en);
        ck_assert_str_eq(de, NUMBERS[i].de);
    }
    ck_assert_int_ne(tfm_number_en(10000, en, sizeof en), 0);
    ck_assert_str_eq(tfm_last_error(), "numbers: 10000 is outside 0..9999");
    ck_assert_int_ne(tfm_number_de(-1, de, sizeof de), 0);
    ck_assert_int_ne(tfm_number_de(7777, de, 20), 0);
    ck_assert_str_eq(de, "");
    ck_assert_int_eq(tfm_number_de(7, de, 7), 0); /* "sieben" + NUL */
    ck_assert_int_ne(tfm_number_de(7, de, 6), 0);
}
END_TEST

/* Every number has a distinct spelling in each language, fits the cap, and
 * the German is one word. */
START_TEST(numbers_all_distinct) {
    int64_t n = TFM_NUMBERS_MAX + 1;
    char(*en)[TFM_NUMBER_WORDS_CAP] = malloc((size_t)n * TFM_NUMBER_WORDS_CAP);
    char(*de)[TFM_NUMBER_WORDS_CAP] = malloc((size_t)n * TFM_NUMBER_WORDS_CAP);
    for (int64_t i = 0; i < n; i++) {
        ck_assert_int_eq(
            tfm_numbers_pair(i, en[i], TFM_NUMBER_WORDS_CAP, de[i], TFM_NUMBER_WORDS_CAP), 0);
        ck_assert_ptr_null(strchr(de[i], ' '));
        ck_assert_ptr_null(strchr(de[i], '-'));
    }
    qsort(en, (size_t)n, TFM_NUMBER_WORDS_CAP, (int (*)(const void *, const void *))strcmp);
    qsort(de, (size_t)n, TFM_NUMBER_WORDS_CAP, (int (*)(const void *, const void *))strcmp);
    for (int64_t i = 1; i < n; i++) {
        ck_assert_str_ne(en[i - 1], en[i]);
        ck_assert_str_ne(de[i - 1], de[i]);
    }
    free(en);
    free(de);
}
END_TEST

START_TEST(numbers_corpus_files) {
    const char *dir = tfm_test_tmpdir("numbers");
    ck_assert_msg(tfm_numbers_corpus_write(dir, 17, 500, 50, 60) == 0, "%s", tfm_last_error());
    int64_t order[TFM_NUMBERS_MAX + 1];
    tfm_numbers_shuffle(17, order);
    char *hit = calloc(TFM_NUMBERS_MAX + 1, 1);
    for (int64_t i = 0; i <= TFM_NUMBERS_MAX; i++) hit[order[i]]++;
    for (int64_t i = 0; i <= TFM_NUMBERS_MAX; i++) ck_assert_int_eq(hit[i], 1);
    free(hit);
    const char *splits[] = {"test", "valid", "train"};
    int64_t counts[] = {60, 50, 500}, offset = 0;
    for (int s = 0; s < 3; s++) {
        char pen[512], pde[512];
        snprintf(pen, sizeof pen, "%s/%s.en", dir, splits[s]);
        snprintf(pde, sizeof pde, "%s/%s.de", dir, splits[s]);
        tfm_corpus c;
        ck_assert_msg(tfm_corpus_read(pen, pde, NULL, &c) == 0, "%s", tfm_last_error());
        ck_assert_int_eq(c.n, counts[s]);
        for (int64_t i = 0; i < c.n; i++) {
            char en[TFM_NUMBER_WORDS_CAP], de[TFM_NUMBER_WORDS_CAP];
            tfm_numbers_pair(order[offset + i], en, sizeof en, de, sizeof de);
            ck_assert_str_eq(c.src[i], en);
            ck_assert_str_eq(c.tgt[i], de);
        }
        offset += c.n;
        tfm_corpus_free(&c);
    }
    /* another seed gives another shuffle */
    int64_t other[TFM_NUMBERS_MAX + 1];
    tfm_numbers_shuffle(18, other);
    ck_assert_int_ne(memcmp(order, other, sizeof order), 0);
    ck_assert_int_ne(tfm_numbers_corpus_write(dir, 1, 9000, 600, 401), 0);
    ck_assert_str_eq(tfm_last_error(), "numbers: 9000 train + 600 valid + 401 test sentences do "
                                       "not fit in the 10000 distinct numbers 0..9999");
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such/dir", dir);
    ck_assert_int_ne(tfm_numbers_corpus_write(missing, 1, 1, 1, 1), 0);
    ck_assert_msg(strstr(tfm_last_error(), "cannot create") != NULL, "%s", tfm_last_error());
}
END_TEST

int main(void) {
    Suite *s = suite_create("corpus");
    TCase *tr = tcase_create("read");
    tcase_set_timeout(tr, 60);
    tcase_add_test(tr, read_good_corpus_crlf_and_final_newline);
    tcase_add_test(tr, read_normalizes_whitespace);
    tcase_add_test(tr, read_allow_empty);
    tcase_add_test(tr, read_chunked_equals_whole);
    tcase_add_test(tr, read_stdin);
    tcase_add_test(tr, window_from_pipe);
    tcase_add_test(tr, reader_stays_failed);
    tcase_add_test(tr, read_many_lines_linear);
    tcase_add_test(tr, error_missing_and_unreadable);
    tcase_add_test(tr, error_empty_file);
    tcase_add_test(tr, error_unequal_line_counts);
    tcase_add_test(tr, error_invalid_utf8);
    tcase_add_test(tr, error_invalid_utf8_in_file);
    tcase_add_test(tr, error_nul_byte);
    tcase_add_test(tr, error_empty_sentence);
    tcase_add_test(tr, error_absurdly_long_line);
    suite_add_tcase(s, tr);
    TCase *tb = tcase_create("batch");
    tcase_add_test(tb, batch_budget_and_coverage);
    tcase_add_test(tb, batch_bucketing_groups_similar_lengths);
    tcase_add_test(tb, batch_shuffle_per_epoch_reproducible);
    tcase_add_test(tb, batch_state_resume_identical);
    tcase_add_test(tb, batch_fill_exact_layout);
    tcase_add_test(tb, batcher_cuts_each_epoch_anew);
    tcase_add_test(tb, dropout_source_segments_each_epoch);
    tcase_add_test(tb, batch_drop_count_and_limits);
    tcase_add_test(tb, batch_min_sentences_borrows_for_the_last);
    suite_add_tcase(s, tb);
    TCase *tn = tcase_create("numbers");
    tcase_add_test(tn, numbers_spellings);
    tcase_add_test(tn, numbers_all_distinct);
    tcase_add_test(tn, numbers_corpus_files);
    suite_add_tcase(s, tn);
    return tfm_test_main(s);
}
