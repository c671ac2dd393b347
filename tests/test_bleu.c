/* Corpus BLEU: hand-computed cases, agreement with tools/bleu.py on the
 * fixtures written by tests/gen_bleu_fixtures.py (every field), the line
 * reader and the `tfm bleu` command. */
#include <math.h>
#include <string.h>

#include "tfm/base.h"
#include "tfm/eval.h"
#include "util_test.h"

/* ------------------------------------------------------------ helpers */

static tfm_bleu bleu1(const char *hyp, const char *ref, int lowercase) {
    const char *hyps[1] = {hyp};
    const char *ref0[1] = {ref};
    const char *const *refs[1] = {ref0};
    tfm_bleu b;
    ck_assert_msg(tfm_bleu_corpus(hyps, 1, refs, 1, lowercase, &b) == 0, "%s", tfm_last_error());
    return b;
}

static void assert_near(const char *what, double got, double want, double tol) {
    ck_assert_msg(fabs(got - want) <= tol, "%s: got %.17g, want %.17g (|diff| %.3g > %.3g)", what,
                  got, want, fabs(got - want), tol);
}

static char *tokens(const char *s, int lowercase) {
    char *out;
    size_t len;
    ck_assert_int_eq(tfm_bleu_tokenize(s, strlen(s), lowercase, &out, &len), 0);
    ck_assert_uint_eq(len, strlen(out));
    return out;
}

#define ck_assert_tokens(input, lc, want)                                                          \
    do {                                                                                           \
        char *got_ = tokens(input, lc);                                                            \
        ck_assert_msg(!strcmp(got_, want), "tokens of \"%s\": got \"%s\", want \"%s\"", input,     \
                      got_, want);                                                                 \
        free(got_);                                                                                \
    } while (0)

/* Fixture strings: "\\\\" is a backslash and "\\xHH" a byte (see the
 * generator); returns a malloc'd buffer and its length. */
static char *unescape(const char *s, size_t *len) {
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    ck_assert_ptr_nonnull(out);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && s[i + 1] == '\\') {
            out[k++] = '\\';
            i++;
        } else if (s[i] == '\\' && s[i + 1] == 'x') {
            unsigned v;
            ck_assert_msg(sscanf(s + i + 2, "%2x", &v) == 1, "bad escape in \"%s\"", s);
            out[k++] = (char)v;
            i += 3;
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = 0;
    *len = k;
    return out;
}

static void load_fixture(tfm_eval_lines *lines, const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/bleu/%s", name);
    ck_assert_msg(tfm_eval_read_lines(tfm_test_path(rel), lines) == 0, "%s", tfm_last_error());
}

static const char *record(const tfm_eval_lines *lines, int64_t i, const char *tag) {
    ck_assert_msg(i < lines->n, "fixture ends early: want a '%s' record", tag);
    size_t n = strlen(tag);
    const char *line = lines->lines[i];
    ck_assert_msg(!strncmp(line, tag, n) && line[n] == ' ', "line %lld: want '%s ', got \"%.40s\"",
                  (long long)i + 1, tag, line);
    return line + n + 1;
}

/* ---------------------------------------------------- hand computed */

START_TEST(identical_is_100) {
    tfm_bleu b = bleu1("The cat sat on the mat .", "The cat sat on the mat .", 0);
    assert_near("score", b.score, 100.0, 1e-12);
    for (int n = 0; n < 4; n++) {
        assert_near("precision", b.precisions[n], 100.0, 1e-12);
        ck_assert_int_eq(b.correct[n], 7 - n);
        ck_assert_int_eq(b.total[n], 7 - n);
    }
    assert_near("bp", b.bp, 1.0, 0);
    assert_near("ratio", b.ratio, 1.0, 0);
    ck_assert_int_eq(b.hyp_len, 7);
    ck_assert_int_eq(b.ref_len, 7);
}
END_TEST

START_TEST(brevity_penalty) {
    /* every n-gram matches, c = 5, r = 10: BP = exp(1 - 10/5) */
    tfm_bleu b = bleu1("a b c d e", "a b c d e f g h i j", 0);
    assert_near("bp", b.bp, exp(-1.0), 1e-15);
    assert_near("score", b.score, 100.0 * exp(-1.0), 1e-12);
    assert_near("ratio", b.ratio, 0.5, 0);
    /* longer hypotheses are not penalised */
    b = bleu1("a b c d e f", "a b c d e", 0);
    assert_near("bp", b.bp, 1.0, 0);
    assert_near("ratio", b.ratio, 1.2, 1e-15);
}
END_TEST

START_TEST(exp_smoothing_when_a_precision_is_zero) {
    /* "a b c d" vs "a b x d": 1-grams 3/4, 2-grams 1/3, 3-grams 0/2 and
     * 4-grams 0/1; the k-th zero order gets 1 / (2^k * total) */
    tfm_bleu b = bleu1("a b c d", "a b x d", 0);
    ck_assert_int_eq(b.correct[2], 0);
    ck_assert_int_eq(b.correct[3], 0);
    assert_near("p1", b.precisions[0], 75.0, 1e-12);
    assert_near("p2", b.precisions[1], 100.0 / 3, 1e-12);
    assert_near("p3", b.precisions[2], 100.0 / (2 * 2), 1e-12);
    assert_near("p4", b.precisions[3], 100.0 / (4 * 1), 1e-12);
    double want = exp((log(75.0) + log(100.0 / 3) + log(25.0) + log(25.0)) / 4);
    assert_near("score", b.score, want, 1e-12);
    /* no unigram match at all: 0, with the precisions left at 0 */
    b = bleu1("x y z w", "a b c d", 0);
    assert_near("score", b.score, 0, 0);
    assert_near("p2", b.precisions[1], 0, 0);
}
END_TEST

START_TEST(fewer_than_four_tokens_scores_zero) {
    tfm_bleu b = bleu1("a b c", "a b c", 0);
    ck_assert_int_eq(b.total[3], 0);
    assert_near("p3", b.precisions[2], 100.0, 1e-12);
    assert_near("p4", b.precisions[3], 0.0, 0);
    assert_near("score", b.score, 0.0, 0);
}
END_TEST

START_TEST(casing_with_and_without_lowercase) {
    tfm_bleu mixed = bleu1("The Cat sat down", "the cat sat down", 0);
    ck_assert_int_eq(mixed.correct[0], 2);
    double want = exp((log(50.0) + log(100.0 / 3) + log(25.0) + log(25.0)) / 4);
    assert_near("mixed", mixed.score, want, 1e-12);
    tfm_bleu lc = bleu1("The Cat sat down", "the cat sat down", 1);
    assert_near("lowercase", lc.score, 100.0, 1e-12);
    /* full Unicode lowercasing, Greek final sigma included */
    ck_assert_tokens("MÄDCHEN ΟΔΟΣ ΣΑΣ. İ", 1, "mädchen οδος σας . i\xcc\x87");
    ck_assert_tokens("MÄDCHEN ΟΔΟΣ", 0, "MÄDCHEN ΟΔΟΣ");
}
END_TEST

START_TEST(punctuation_splitting_13a) {
    ck_assert_tokens("Hello, world!", 0, "Hello , world !");
    /* . and , stay inside numbers, a dash after a digit is split, other
     * dashes and apostrophes stay in the word */
    ck_assert_tokens("1,000.50 1990-2000 -5 e-mail don't U.S.", 0,
                     "1,000.50 1990 - 2000 -5 e-mail don't U . S .");
    ck_assert_tokens("(x) \"q\" a/b $5 50%", 0, "( x ) \" q \" a / b $ 5 50 %");
    /* entities unescaped, <skipped> dropped, Unicode punctuation untouched */
    ck_assert_tokens("&quot;A&amp;B&quot; <skipped>x &lt;b&gt;", 0, "\" A & B \" x < b >");
    ck_assert_tokens("“Mädchen”—ok…", 0, "“Mädchen”—ok…");
    /* every kind of Unicode whitespace separates tokens; ends are trimmed */
    ck_assert_tokens(" \ta\xc2\xa0"
                     "b\xe3\x80\x80"
                     "c\r\n ",
                     0, "a b c");
    ck_assert_tokens("", 0, "");
}
END_TEST

START_TEST(multiple_references) {
    /* refs of 2 and 5 tokens for a 4-token hypothesis: |2-4| = 2 and
     * |5-4| = 1, so r = 5. Counts clip to the max over references ("a"
     * twice in the second one). */
    const char *hyps[1] = {"a b c a"};
    const char *ref0[1] = {"a b"};
    const char *ref1[1] = {"a a b c d"};
    const char *const *refs[2] = {ref0, ref1};
    tfm_bleu b;
    ck_assert_int_eq(tfm_bleu_corpus(hyps, 1, refs, 2, 0, &b), 0);
    ck_assert_int_eq(b.ref_len, 5);
    int64_t correct[4] = {4, 2, 1, 0}, total[4] = {4, 3, 2, 1};
    for (int n = 0; n < 4; n++) {
        ck_assert_int_eq(b.correct[n], correct[n]);
        ck_assert_int_eq(b.total[n], total[n]);
    }
    double want = exp(1 - 5.0 / 4) * exp((log(100.0) + log(200.0 / 3) + log(50.0) + log(50.0)) / 4);
    assert_near("score", b.score, want, 1e-12);

    /* ties go to the shorter reference: 3 tokens vs refs of 2 and 4 */
    const char *h2[1] = {"a b c"}, *r2a[1] = {"a b c d"}, *r2b[1] = {"a b"};
    const char *const *refs2[2] = {r2a, r2b};
    ck_assert_int_eq(tfm_bleu_corpus(h2, 1, refs2, 2, 0, &b), 0);
    ck_assert_int_eq(b.ref_len, 2);
}
END_TEST

START_TEST(empty_lines_and_empty_corpus) {
    tfm_bleu b = bleu1("", "a b", 0);
    ck_assert_int_eq(b.hyp_len, 0);
    ck_assert_int_eq(b.ref_len, 2);
    assert_near("bp", b.bp, 0.0, 0);
    assert_near("score", b.score, 0.0, 0);
    b = bleu1("   ", "", 0);
    assert_near("bp", b.bp, 1.0, 0);
    assert_near("ratio", b.ratio, 0.0, 0);

    const char *const *refs[1] = {NULL};
    ck_assert_int_eq(tfm_bleu_corpus(NULL, 0, refs, 1, 0, &b), 0);
    ck_assert_int_eq(b.hyp_len + b.ref_len + b.total[0], 0);
    char line[256];
    tfm_bleu_format(&b, NULL, 1, line, sizeof line);
    ck_assert_str_eq(line, "BLEU = 0.0 0.0/0.0/0.0/0.0 (BP = 1.000 ratio = 0.000 hyp_len = 0 "
                           "ref_len = 0)");
    /* an empty line among others only adds reference length */
    const char *hyps[2] = {"a b c d", ""}, *ref0[2] = {"a b c d", "x y"};
    const char *const *refs2[1] = {ref0};
    ck_assert_int_eq(tfm_bleu_corpus(hyps, 2, refs2, 1, 0, &b), 0);
    assert_near("bp", b.bp, exp(1 - 6.0 / 4), 1e-15);
}
END_TEST

START_TEST(bad_arguments_are_errors) {
    const char *hyps[1] = {"a"};
    const char *ref0[1] = {NULL};
    const char *const *refs[1] = {ref0};
    tfm_bleu b;
    ck_assert_int_ne(tfm_bleu_corpus(hyps, 1, refs, 0, 0, &b), 0);
    ck_assert_msg(strstr(tfm_last_error(), "no reference") != NULL, "%s", tfm_last_error());
    ck_assert_int_ne(tfm_bleu_corpus(hyps, 1, refs, 1, 0, &b), 0);
    ck_assert_msg(strstr(tfm_last_error(), "segment 1") != NULL, "%s", tfm_last_error());
}
END_TEST

START_TEST(invalid_utf8_is_scored_not_crashed) {
    /* bytes that are not UTF-8 are opaque characters: still tokens */
    tfm_bleu b = bleu1("a \xff\xfe b\xc3 .\xe2\x82", "a \xff\xfe b\xc3 .\xe2\x82", 1);
    ck_assert_int_eq(b.hyp_len, 5);
    assert_near("score", b.score, 100.0, 1e-12);
    ck_assert_tokens("\xce\xa3\xff\xce\xa3", 1, "\xcf\x83\xff\xcf\x83");
    /* a NUL byte is an ordinary character for the tokenizer */
    char *out;
    size_t len;
    ck_assert_int_eq(tfm_bleu_tokenize("a\0b c", 5, 0, &out, &len), 0);
    ck_assert_uint_eq(len, 5);
    ck_assert_int_eq(memcmp(out, "a\0b c", 5), 0);
    free(out);
}
END_TEST

START_TEST(accumulator_matches_corpus) {
    const char *hyps[3] = {"the cat , the mat", "Hello world !", "x"};
    const char *r0[3] = {"the cat on the mat", "hello , world !", "x y"};
    const char *r1[3] = {"a cat on a mat", "Hello world", ""};
    const char *const *refs[2] = {r0, r1};
    tfm_bleu whole, part;
    ck_assert_int_eq(tfm_bleu_corpus(hyps, 3, refs, 2, 0, &whole), 0);
    tfm_bleu_acc *acc = tfm_bleu_acc_new(0);
    ck_assert_ptr_nonnull(acc);
    for (int i = 0; i < 3; i++) {
        const char *seg[2] = {r0[i], r1[i]};
        ck_assert_int_eq(tfm_bleu_acc_add(acc, hyps[i], seg, 2), 0);
    }
    tfm_bleu_acc_result(acc, &part);
    tfm_bleu_acc_free(acc);
    ck_assert_int_eq(part.n_segments, 3);
    ck_assert_int_eq(memcmp(&whole, &part, sizeof whole), 0);
    /* finish() from summed counts gives the same score */
    tfm_bleu copy = whole;
    copy.score = copy.bp = -1;
    tfm_bleu_finish(&copy);
    ck_assert(copy.score == whole.score && copy.bp == whole.bp);
}
END_TEST

START_TEST(long_segments_and_many_lines) {
    /* repeated n-grams: clipping counts, hash table growth */
    enum { WORDS = 5000 };
    char *hyp = malloc(WORDS * 8), *ref = malloc(WORDS * 8);
    size_t h = 0, r = 0;
    for (int i = 0; i < WORDS; i++) {
        h += (size_t)sprintf(hyp + h, "w%d ", i % 7);
        r += (size_t)sprintf(ref + r, "w%d ", i % 5);
    }
    tfm_bleu b = bleu1(hyp, ref, 0);
    ck_assert_int_eq(b.total[0], WORDS);
    /* unigrams w0..w4 appear 715-714 times in hyp, 1000 in ref: all match;
     * w5, w6 never match */
    ck_assert_int_eq(b.correct[0], WORDS - 714 - 714);

    /* 3000 distinct words: ~12000 distinct n-grams, past the table's first
     * size, so it rehashes while counting; the reference is the first 2000 */
    h = r = 0;
    for (int i = 0; i < 3000; i++) {
        h += (size_t)sprintf(hyp + h, "u%d ", i);
        if (i < 2000) r += (size_t)sprintf(ref + r, "u%d ", i);
    }
    b = bleu1(hyp, ref, 0);
    for (int n = 0; n < 4; n++) {
        ck_assert_int_eq(b.total[n], 3000 - n);
        ck_assert_int_eq(b.correct[n], 2000 - n);
    }
    free(hyp);
    free(ref);
}
END_TEST

/* --------------------------------------------------- against bleu.py */

/* Every s/t/l record of a tokenize fixture: tokens without and with lowercasing. */
static int64_t check_tokenize_fixture(const char *file, tfm_bleu_tok tok) {
    tfm_eval_lines f;
    load_fixture(&f, file);
    int64_t cases = 0;
    for (int64_t i = 1; i < f.n; i += 3, cases++) {
        size_t in_len, want_len[2];
        char *in = unescape(record(&f, i, "s"), &in_len);
        char *want[2] = {unescape(record(&f, i + 1, "t"), &want_len[0]),
                         unescape(record(&f, i + 2, "l"), &want_len[1])};
        for (int lc = 0; lc < 2; lc++) {
            char *got;
            size_t got_len;
            ck_assert_int_eq(tfm_bleu_tokenize_tok(in, in_len, lc, tok, &got, &got_len), 0);
            ck_assert_msg(got_len == want_len[lc] && !memcmp(got, want[lc], got_len),
                          "%s line %lld (lowercase %d): got \"%s\", want \"%s\"", file,
                          (long long)i + 1, lc, got, want[lc]);
            free(got);
        }
        free(in);
        free(want[0]);
        free(want[1]);
    }
    tfm_eval_lines_free(&f);
    return cases;
}

START_TEST(tokenizer_matches_bleu_py) {
    ck_assert_int_ge(check_tokenize_fixture("tokenize.txt", TFM_BLEU_TOK_13A), 400);
}
END_TEST

START_TEST(tokenizer_none_matches_bleu_py) {
    ck_assert_int_ge(check_tokenize_fixture("tokenize_none.txt", TFM_BLEU_TOK_NONE), 250);
    /* the _tok entry points with 13a are the plain ones */
    char *a, *b;
    const char *s = "Hello, world!";
    ck_assert_int_eq(tfm_bleu_tokenize(s, strlen(s), 0, &a, NULL), 0);
    ck_assert_int_eq(tfm_bleu_tokenize_tok(s, strlen(s), 0, TFM_BLEU_TOK_13A, &b, NULL), 0);
    ck_assert_str_eq(a, "Hello , world !");
    ck_assert_str_eq(b, a);
    free(a);
    free(b);
    ck_assert_int_eq(tfm_bleu_tokenize_tok(s, strlen(s), 1, TFM_BLEU_TOK_NONE, &a, NULL), 0);
    ck_assert_str_eq(a, "hello, world!");
    free(a);
    tfm_bleu_tok tok = TFM_BLEU_TOK_13A;
    ck_assert_int_eq(tfm_bleu_tok_parse("none", &tok), 0);
    ck_assert_int_eq(tok, TFM_BLEU_TOK_NONE);
    ck_assert_str_eq(tfm_bleu_tok_name(tok), "none");
    ck_assert_int_eq(tfm_bleu_tok_parse("13a", &tok), 0);
    ck_assert_int_eq(tok, TFM_BLEU_TOK_13A);
    ck_assert_str_eq(tfm_bleu_tok_name(tok), "13a");
    ck_assert_int_ne(tfm_bleu_tok_parse("intl", &tok), 0);
    ck_assert_msg(strstr(tfm_last_error(), "unknown tokenizer 'intl' (13a or none)"), "%s",
                  tfm_last_error());
    ck_assert_int_ne(tfm_bleu_tok_parse(NULL, &tok), 0);
}
END_TEST

/* Every case of a corpus fixture, each field to 1e-9 and the printed line
 * exactly; *differ counts the cases whose counts the other tokenizer changes
 * (evidence that the fixture tells the tokenizers apart). Returns the number
 * of cases. */
static int64_t check_corpus_fixture(const char *file, tfm_bleu_tok tok, int64_t *differ) {
    tfm_eval_lines f;
    load_fixture(&f, file);
    int64_t i = 1, cases = 0, segments = 0;
    double max_diff = 0;
    while (i < f.n) {
        int id, n_lines, n_refs, lc, width;
        ck_assert_msg(sscanf(record(&f, i, "case"), "%d lines %d refs %d lc %d width %d", &id,
                             &n_lines, &n_refs, &lc, &width) == 5,
                      "%s line %lld", file, (long long)i + 1);
        i++;
        char **hyps = calloc((size_t)n_lines + 1, sizeof *hyps);
        char **ref_store = calloc((size_t)n_lines * n_refs + 1, sizeof *ref_store);
        const char *const *refs[4];
        ck_assert_int_le(n_refs, 4);
        for (int k = 0; k < n_lines; k++) {
            size_t len;
            hyps[k] = unescape(record(&f, i++, "h"), &len);
            for (int r = 0; r < n_refs; r++)
                ref_store[(size_t)r * n_lines + k] = unescape(record(&f, i++, "r"), &len);
        }
        for (int r = 0; r < n_refs; r++)
            refs[r] = (const char *const *)ref_store + (size_t)r * n_lines;
        tfm_bleu want, got;
        long long hl, rl, c[4], t[4];
        ck_assert_int_eq(sscanf(record(&f, i++, "want"),
                                "%lf %lf %lf %lf %lf %lf %lf %lld %lld %lld %lld %lld %lld %lld "
                                "%lld %lld %lld",
                                &want.score, &want.precisions[0], &want.precisions[1],
                                &want.precisions[2], &want.precisions[3], &want.bp, &want.ratio,
                                &hl, &rl, &c[0], &c[1], &c[2], &c[3], &t[0], &t[1], &t[2], &t[3]),
                         17);
        const char *want_out = record(&f, i++, "out");
        ck_assert_msg(tfm_bleu_corpus_tok((const char *const *)hyps, n_lines, refs, n_refs, lc, tok,
                                          &got) == 0,
                      "%s", tfm_last_error());
        tfm_bleu other;
        ck_assert_int_eq(
            tfm_bleu_corpus_tok((const char *const *)hyps, n_lines, refs, n_refs, lc,
                                tok == TFM_BLEU_TOK_13A ? TFM_BLEU_TOK_NONE : TFM_BLEU_TOK_13A,
                                &other),
            0);
        *differ += memcmp(other.correct, got.correct, sizeof got.correct) ||
                   memcmp(other.total, got.total, sizeof got.total) || other.ref_len != got.ref_len;
        ck_assert_msg(got.hyp_len == hl && got.ref_len == rl,
                      "case %d: lengths %lld/%lld, bleu.py %lld/%lld", id, (long long)got.hyp_len,
                      (long long)got.ref_len, hl, rl);
        for (int n = 0; n < 4; n++)
            ck_assert_msg(got.correct[n] == c[n] && got.total[n] == t[n],
                          "case %d: %d-grams %lld/%lld, bleu.py %lld/%lld", id, n + 1,
                          (long long)got.correct[n], (long long)got.total[n], c[n], t[n]);
        /* the requirement is 0.01; same operations and libm give ~exact */
        const double tol = 1e-9;
        double diffs[7] = {got.score - want.score, got.bp - want.bp, got.ratio - want.ratio};
        for (int n = 0; n < 4; n++) diffs[3 + n] = got.precisions[n] - want.precisions[n];
        for (int k = 0; k < 7; k++) {
            ck_assert_msg(fabs(diffs[k]) <= tol,
                          "case %d: field %d differs by %g (score %.17g, bleu.py %.17g)", id, k,
                          diffs[k], got.score, want.score);
            if (fabs(diffs[k]) > max_diff) max_diff = fabs(diffs[k]);
        }
        char line[512];
        tfm_bleu_format(&got, "", width, line, sizeof line);
        ck_assert_msg(!strcmp(line + 3, want_out), "case %d: printed \"%s\", bleu.py \"%s\"", id,
                      line + 3, want_out);
        for (int k = 0; k < n_lines; k++) free(hyps[k]);
        for (size_t k = 0; k < (size_t)n_lines * n_refs; k++) free(ref_store[k]);
        free(hyps);
        free(ref_store);
        cases++;
        segments += n_lines;
    }
    printf("bleu: %lld %s corpora (%lld segments) agree with bleu.py -tok %s, max |diff| %.3g; "
           "%lld score differently with the other tokenizer\n",
           (long long)cases, file, (long long)segments, tfm_bleu_tok_name(tok), max_diff,
           (long long)*differ);
    tfm_eval_lines_free(&f);
    return cases;
}

START_TEST(corpus_matches_bleu_py) {
    int64_t differ = 0;
    ck_assert_int_ge(check_corpus_fixture("corpus.txt", TFM_BLEU_TOK_13A, &differ), 250);
}
END_TEST

START_TEST(corpus_none_matches_bleu_py) {
    int64_t differ = 0;
    ck_assert_int_ge(check_corpus_fixture("corpus_none.txt", TFM_BLEU_TOK_NONE, &differ), 250);
    ck_assert_int_ge(differ, 150);
}
END_TEST

/* ------------------------------------------------------------- files */

static const char *write_file(const char *dir, const char *name, const char *data, size_t n) {
    static char paths[8][512];
    static int slot;
    char *p = paths[slot++ & 7];
    snprintf(p, 512, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
    return p;
}

START_TEST(read_lines_splits_and_validates) {
    const char *dir = tfm_test_tmpdir("bleu-read");
    tfm_eval_lines l;
    const char *p = write_file(dir, "a.txt", "one\r\n\ntwo  \nlast", 16);
    ck_assert_int_eq(tfm_eval_read_lines(p, &l), 0);
    ck_assert_int_eq(l.n, 4);
    ck_assert_str_eq(l.lines[0], "one\r");
    ck_assert_str_eq(l.lines[1], "");
    ck_assert_str_eq(l.lines[2], "two  ");
    ck_assert_str_eq(l.lines[3], "last");
    tfm_eval_lines_free(&l);

    p = write_file(dir, "b.txt", "x\n", 2);
    ck_assert_int_eq(tfm_eval_read_lines(p, &l), 0);
    ck_assert_int_eq(l.n, 1);
    tfm_eval_lines_free(&l);
    p = write_file(dir, "empty.txt", "", 0);
    ck_assert_int_eq(tfm_eval_read_lines(p, &l), 0);
    ck_assert_int_eq(l.n, 0);
    tfm_eval_lines_free(&l);

    /* invalid UTF-8: surrogate, overlong, stray continuation, truncated */
    const char *bad[] = {"ok\n\xed\xa0\x80\n", "ok\n\xc0\xaf\n", "ok\nab\x80\n", "ok\nab\xe2\x82"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        p = write_file(dir, "bad.txt", bad[k], strlen(bad[k]));
        ck_assert_int_ne(tfm_eval_read_lines(p, &l), 0);
        ck_assert_msg(strstr(tfm_last_error(), "bad.txt:2: invalid UTF-8") != NULL, "%s",
                      tfm_last_error());
    }
    p = write_file(dir, "nul.txt", "a\0b\n", 4);
    ck_assert_int_ne(tfm_eval_read_lines(p, &l), 0);
    ck_assert_msg(strstr(tfm_last_error(), "nul.txt:1: NUL byte") != NULL, "%s", tfm_last_error());
    /* 4-byte UTF-8 and U+10FFFF are fine, above is not */
    p = write_file(dir, "ok.txt", "\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 8);
    ck_assert_int_eq(tfm_eval_read_lines(p, &l), 0);
    tfm_eval_lines_free(&l);
    p = write_file(dir, "big.txt", "\xf4\x90\x80\x80", 4);
    ck_assert_int_ne(tfm_eval_read_lines(p, &l), 0);

    ck_assert_int_ne(tfm_eval_read_lines("/nonexistent/ref.txt", &l), 0);
    ck_assert_msg(strstr(tfm_last_error(), "/nonexistent/ref.txt: cannot open") != NULL, "%s",
                  tfm_last_error());
}
END_TEST

/* ---------------------------------------------------------------- CLI */

START_TEST(cli_prints_bleu_line_and_fails_cleanly) {
    const char *dir = tfm_test_tmpdir("bleu-cli");
    char ref[512], ref2[512], hyp[512], hyp3[512], badf[512];
    snprintf(ref, sizeof ref, "%s",
             write_file(dir, "ref.txt", "The cat sat on the mat.\nHello, world!\n", 38));
    snprintf(ref2, sizeof ref2, "%s",
             write_file(dir, "ref2.txt", "A dog sat on a rug.\nhello there world\n", 38));
    snprintf(hyp, sizeof hyp, "%s",
             write_file(dir, "hyp.txt", "The cat sat on a mat.\nhello world\n", 34));
    snprintf(hyp3, sizeof hyp3, "%s", write_file(dir, "hyp3.txt", "a\nb\nc\n", 6));
    snprintf(badf, sizeof badf, "%s", write_file(dir, "bad.txt", "fine\nnot \xff fine\n", 16));
    char cmd[4096], out[4096];

    /* the numbers below are what tools/bleu.py prints for these files */
    snprintf(cmd, sizeof cmd, "%s bleu %s < %s", tfm_test_bin(), ref, hyp);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_str_eq(out, "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|impl:tfm = 36.8 "
                          "77.8/57.1/40.0/25.0 (BP = 0.801 ratio = 0.818 hyp_len = 9 ref_len = "
                          "11)\n36.8\n");
    snprintf(cmd, sizeof cmd, "%s bleu --lowercase -w 2 %s < %s", tfm_test_bin(), ref, hyp);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_str_eq(out, "BLEU|nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|impl:tfm = 38.01 "
                          "88.9/57.1/40.0/25.0 (BP = 0.801 ratio = 0.818 hyp_len = 9 ref_len = "
                          "11)\n38.01\n");
    /* -tok none: "mat." and "Hello," stay whole (bleu.py -tok none prints this) */
    snprintf(cmd, sizeof cmd, "%s bleu --tokenize none %s < %s", tfm_test_bin(), ref, hyp);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_str_eq(out, "BLEU|nrefs:1|case:mixed|eff:no|tok:none|smooth:exp|impl:tfm = 47.8 "
                          "62.5/50.0/50.0/33.3 (BP = 1.000 ratio = 1.000 hyp_len = 8 ref_len = "
                          "8)\n47.8\n");
    snprintf(cmd, sizeof cmd, "%s bleu -tok 13a %s < %s", tfm_test_bin(), ref, hyp);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "tok:13a|smooth:exp|impl:tfm = 36.8 ") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd, "%s bleu -tok intl %s < %s", tfm_test_bin(), ref, hyp);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_str_eq(out, "tfm: --tokenize: 'intl' is not 13a or none\n");
    snprintf(cmd, sizeof cmd, "%s bleu %s --tokenize < %s", tfm_test_bin(), ref, hyp);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_str_eq(out, "tfm: --tokenize: missing value\n");
    snprintf(cmd, sizeof cmd, "%s bleu %s %s < %s", tfm_test_bin(), ref, ref2, hyp);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "nrefs:2") && strstr(out, "= 51.2 100.0/71.4/60.0/25.0 (BP = 0.895 "
                                                        "ratio = 0.900 hyp_len = 9 ref_len = 10)"),
                  "%s", out);

    snprintf(cmd, sizeof cmd, "%s bleu %s < %s", tfm_test_bin(), ref, hyp3);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "tfm: ") == out && strstr(out, "ref.txt: 2 reference lines but 3 "
                                                             "hypothesis lines"),
                  "%s", out);
    snprintf(cmd, sizeof cmd, "%s bleu %s/missing.txt < %s", tfm_test_bin(), dir, hyp);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "missing.txt: cannot open: No such file") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd, "%s bleu %s < %s", tfm_test_bin(), badf, hyp);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "bad.txt:2: invalid UTF-8 (byte 0xFF at column 5)") != NULL, "%s",
                  out);
    snprintf(cmd, sizeof cmd, "%s bleu %s < %s", tfm_test_bin(), ref, badf);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "<stdin>:2: invalid UTF-8") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd, "%s bleu --frobnicate %s < %s", tfm_test_bin(), ref, hyp);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "unknown flag '--frobnicate'") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd, "%s bleu < %s", tfm_test_bin(), hyp);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "no reference file") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd, "%s bleu --help", tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--lowercase") && strstr(out, "--width") && strstr(out, "--tokenize"),
                  "%s", out);
}
END_TEST

int main(void) {
    Suite *s = suite_create("bleu");
    TCase *tc = tcase_create("bleu");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, identical_is_100);
    tcase_add_test(tc, brevity_penalty);
    tcase_add_test(tc, exp_smoothing_when_a_precision_is_zero);
    tcase_add_test(tc, fewer_than_four_tokens_scores_zero);
    tcase_add_test(tc, casing_with_and_without_lowercase);
    tcase_add_test(tc, punctuation_splitting_13a);
    tcase_add_test(tc, multiple_references);
    tcase_add_test(tc, empty_lines_and_empty_corpus);
    tcase_add_test(tc, bad_arguments_are_errors);
    tcase_add_test(tc, invalid_utf8_is_scored_not_crashed);
    tcase_add_test(tc, accumulator_matches_corpus);
    tcase_add_test(tc, long_segments_and_many_lines);
    tcase_add_test(tc, tokenizer_matches_bleu_py);
    tcase_add_test(tc, corpus_matches_bleu_py);
    tcase_add_test(tc, tokenizer_none_matches_bleu_py);
    tcase_add_test(tc, corpus_none_matches_bleu_py);
    tcase_add_test(tc, read_lines_splits_and_validates);
    tcase_add_test(tc, cli_prints_bleu_line_and_fails_cleanly);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
