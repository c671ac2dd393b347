/* UTF-8, BPE learn/apply/detok, vocabulary, tokenizer.json, tfm bpe CLI. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/base.h"
#include "tfm/json.h"
#include "tfm/text.h"
#include "util_test.h"

/* ------------------------------------------------------------ helpers */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

/* The segmentation of line joined by single spaces, in static storage. */
static const char *seg(tfm_bpe *b, const char *line) {
    static char out[8192];
    tfm_subwords sw = {0};
    ck_assert_msg(tfm_bpe_segment(b, line, strlen(line), &sw) == 0, "%s", tfm_last_error());
    size_t o = 0;
    for (int64_t i = 0; i < sw.n; i++) {
        const char *t = tfm_subwords_get(&sw, i);
        size_t l = strlen(t);
        ck_assert(o + l + 2 < sizeof out);
        if (i) out[o++] = ' ';
        memcpy(out + o, t, l);
        o += l;
    }
    out[o] = 0;
    tfm_subwords_free(&sw);
    return out;
}

static const char *detok(const char *s) {
    static char out[8192];
    size_t n = strlen(s);
    ck_assert(n < sizeof out);
    size_t got = tfm_bpe_detok(s, n, out);
    ck_assert_uint_eq(got, strlen(out));
    return out;
}

/* The corpus of the BPE paper's example: low x5, lower x2, newest x6,
 * widest x3. */
static const char PAPER[] = "low low low low low lower lower newest\n"
                            "newest newest newest newest newest widest widest widest\n";

/* Hand-derived (see the comments) with pair counts
 * (l,o)=7 (o,w</w>)=5 (o,w)=2 (w,e)=8 (e,r</w>)=2 (n,e)=6 (e,w)=6 (e,s)=9
 * (s,t</w>)=9 (w,i)=3 (i,d)=3 (d,e)=3. */
static const char *const PAPER_CODES[] = {
    "#version: 0.2", "s t</w>", /* 9, ties with (e,s): "s" > "e" */
    "e st</w>",                 /* 9 */
    "l o",                      /* 7; (w,e) fell to 2 when "e st</w>" took newest's e */
    "w est</w>",                /* 6, ties (n,e) (e,w): "w" > "n" > "e" */
    "n e",                      /* 6, ties (e,west</w>) */
    "ne west</w>",              /* 6 */
    "lo w</w>",                 /* 5 */
    "w i",                      /* 3, ties (i,d) (d,est</w>) */
    "wi d",                     /* 3, ties (d,est</w>) */
    "wid est</w>",              /* 3 */
    "w e",                      /* 2, ties (lo,w) (e,r</w>): "w" > "lo" > "e" */
    "we r</w>",                 /* 2, ties (lo,we) */
    "lo wer</w>",               /* 2; then nothing is left to merge */
};
#define N_PAPER_LINES (int)(sizeof PAPER_CODES / sizeof PAPER_CODES[0])

static void check_paper_codes(const char *path) {
    char *text = read_file(path);
    char *save = NULL;
    int line = 0;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save), line++) {
        ck_assert_msg(line < N_PAPER_LINES, "extra codes line %d: '%s'", line + 1, l);
        ck_assert_msg(!strcmp(l, PAPER_CODES[line]), "codes line %d: got '%s' want '%s'", line + 1,
                      l, PAPER_CODES[line]);
    }
    ck_assert_int_eq(line, N_PAPER_LINES);
    free(text);
}

/* --------------------------------------------------------------- UTF-8 */

START_TEST(utf8_strict_validation) {
    struct {
        const char *s;
        int ok;
        size_t bad;
        const char *why; /* tfm_utf8_error at the bad offset */
    } cases[] = {
        {"plain ascii", 1, 0, NULL},
        {"M\xC3\xA4"
         "dchen \xE2\x82\xAC \xF0\x9F\x98\x80",
         1, 0, NULL},                                  /* ä € 😀 */
        {"\xEF\xBF\xBF \xF4\x8F\xBF\xBF", 1, 0, NULL}, /* U+FFFF, U+10FFFF */
        {"ab\x80", 0, 2, "unexpected continuation byte"},
        {"a\xC0\x80", 0, 1, "overlong encoding"},        /* overlong NUL */
        {"\xC1\xBF", 0, 0, "overlong encoding"},         /* overlong 0x7F */
        {"xy\xE0\x80\xAF", 0, 2, "overlong encoding"},   /* overlong '/' */
        {"\xF0\x82\x82\xAC", 0, 0, "overlong encoding"}, /* overlong euro */
        {"ok\xED\xA0\x80", 0, 2, "UTF-16 surrogate"},    /* U+D800 */
        {"\xED\xBF\xBF", 0, 0, "UTF-16 surrogate"},      /* U+DFFF */
        {"\xF4\x90\x80\x80", 0, 0, "code point above U+10FFFF"},
        {"\xF5\x80\x80\x80", 0, 0, "code point above U+10FFFF"},
        {"abc\xE2\x82", 0, 3, "truncated sequence"},
        {"\xC3", 0, 0, "truncated sequence"},
        {"\xE2\x28\xA1", 0, 0, "truncated sequence"}, /* bad 2nd byte */
        {"\xE0\x80\x41", 0, 0, "truncated sequence"}, /* the missing byte wins */
        {"\xF0\x9F\x98", 0, 0, "truncated sequence"},
        {"\xFF", 0, 0, "invalid byte"},
        {"\xF8\x88\x80\x80\x80", 0, 0, "invalid byte"}, /* the old 5-byte form */
        {"", 1, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t bad = 999, n = strlen(cases[i].s);
        int rc = tfm_utf8_check(cases[i].s, n, &bad);
        ck_assert_msg((rc == 0) == cases[i].ok, "case %zu: rc %d", i, rc);
        if (cases[i].ok) {
            ck_assert_ptr_null(tfm_utf8_error(cases[i].s, n));
            continue;
        }
        ck_assert_msg(bad == cases[i].bad, "case %zu: bad at %zu", i, bad);
        const char *why = tfm_utf8_error(cases[i].s + bad, n - bad);
        ck_assert_msg(why && strcmp(why, cases[i].why) == 0, "case %zu: '%s'", i,
                      why ? why : "(null)");
    }
    /* Embedded NUL is valid UTF-8 (U+0000). */
    ck_assert_int_eq(tfm_utf8_check("a\0b", 3, NULL), 0);
    ck_assert_int_eq(tfm_utf8_count("M\xC3\xA4"
                                    "d",
                                    4),
                     3);
    ck_assert_int_eq(tfm_utf8_count("\xC3", 1), -1);
}
END_TEST

START_TEST(utf8_encode_decode_every_code_point) {
    char buf[4];
    for (uint32_t cp = 0; cp <= 0x110000; cp++) {
        size_t n = tfm_utf8_encode(cp, buf);
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
            ck_assert_uint_eq(n, 0);
            continue;
        }
        ck_assert_uint_eq(n, cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4);
        ck_assert_int_eq(tfm_utf8_check(buf, n, NULL), 0);
        ck_assert_uint_eq(tfm_utf8_seq_len(buf, n), n);
        ck_assert_uint_eq(tfm_utf8_seq_len(buf, n - 1), 0); /* truncated */
        size_t pos = 0;
        ck_assert_int_eq(tfm_utf8_next(buf, n, &pos), (int32_t)cp);
        ck_assert_uint_eq(pos, n);
    }
    /* Iteration stops on invalid input without moving. */
    size_t pos = 1;
    ck_assert_int_eq(tfm_utf8_next("a\x80", 2, &pos), -1);
    ck_assert_uint_eq(pos, 1);
    ck_assert_int_eq(tfm_utf8_next("a", 1, &pos), -1);
}
END_TEST

/* ------------------------------------------------------------ learning */

START_TEST(learn_paper_example_hand_checked) {
    tfm_bpe *b = tfm_bpe_learn_text(PAPER, strlen(PAPER), "paper", 100, 2);
    ck_assert_msg(b != NULL, "%s", tfm_last_error());
    ck_assert_int_eq(tfm_bpe_n_merges(b), N_PAPER_LINES - 1);
    const char *dir = tfm_test_tmpdir("bpe");
    char path[512];
    snprintf(path, sizeof path, "%s/codes", dir);
    ck_assert_int_eq(tfm_bpe_save(b, path), 0);
    check_paper_codes(path);
    tfm_bpe_free(b);

    /* --merges caps the count; min_freq 3 stops before the frequency-2 merges. */
    b = tfm_bpe_learn_text(PAPER, strlen(PAPER), "paper", 4, 2);
    ck_assert_int_eq(tfm_bpe_n_merges(b), 4);
    ck_assert_str_eq(tfm_bpe_merge_left(b, 3), "w");
    ck_assert_str_eq(tfm_bpe_merge_right(b, 3), "est</w>");
    ck_assert_ptr_null(tfm_bpe_merge_left(b, 4));
    tfm_bpe_free(b);
    b = tfm_bpe_learn_text(PAPER, strlen(PAPER), "paper", 100, 3);
    ck_assert_int_eq(tfm_bpe_n_merges(b), 10);
    tfm_bpe_free(b);
    ck_assert_ptr_null(tfm_bpe_learn_text(PAPER, strlen(PAPER), "paper", 10, 0));
}
END_TEST

START_TEST(learn_counts_repeated_symbols_exactly) {
    /* Overlapping pairs, checked by hand. "aaaa" x3 = a a a a</w>, "aaa" x2
     * = a a a</w>: (a,a) = 3*2 + 2*1 = 8, (a,a</w>) = 5 -> "a a", merged
     * left to right without overlap: aaaa = aa a a</w>, aaa = aa a</w>.
     * Then (aa,a) = 3, (a,a</w>) = 3, (aa,a</w>) = 2: the tie goes to the
     * greater pair, "aa" > "a" -> "aa a". */
    const char text[] = "aaaa aaaa aaaa aaa aaa\n";
    tfm_bpe *b = tfm_bpe_learn_text(text, strlen(text), "t", 10, 1);
    ck_assert_msg(b != NULL, "%s", tfm_last_error());
    ck_assert_str_eq(tfm_bpe_merge_left(b, 0), "a");
    ck_assert_str_eq(tfm_bpe_merge_right(b, 0), "a");
    ck_assert_str_eq(tfm_bpe_merge_left(b, 1), "aa");
    ck_assert_str_eq(tfm_bpe_merge_right(b, 1), "a");
    /* aaaa = aaa a</w>, aaa = aa a</w>: (aaa,a</w>)=3, (aa,a</w>)=2 */
    ck_assert_str_eq(tfm_bpe_merge_left(b, 2), "aaa");
    ck_assert_str_eq(tfm_bpe_merge_right(b, 2), "a</w>");
    ck_assert_str_eq(tfm_bpe_merge_left(b, 3), "aa");
    ck_assert_str_eq(tfm_bpe_merge_right(b, 3), "a</w>");
    ck_assert_int_eq(tfm_bpe_n_merges(b), 4);
    /* aaaaa: rank 0 at 0 and 2 -> aa aa a</w>; (aa,aa) has no merge, (aa,a</w>)
     * is rank 3 -> aa aaa</w>. */
    ck_assert_str_eq(seg(b, "aaaa aaa aaaaa"), "aaaa aaa aa@@ aaa");
    tfm_bpe_free(b);
}
END_TEST

/* A naive learner for cross-checking the incremental one: every step
 * recounts all pairs from scratch and takes the max over (count, pair). */
typedef struct {
    const char *a, *b;
    int64_t freq;
} naive_pair;

static int naive_pair_cmp(const void *x, const void *y) {
    const naive_pair *p = x, *q = y;
    int c = strcmp(p->a, q->a);
    return c ? c : strcmp(p->b, q->b);
}

#define NAIVE_MAX_WORDS 512
#define NAIVE_MAX_SYMS 16

static int64_t naive_learn(char *words[], const int64_t *freq, int n_words, int n_merges,
                           char merges[][2][64]) {
    /* syms[w][i]: malloc'd symbol strings */
    static char *syms[NAIVE_MAX_WORDS][NAIVE_MAX_SYMS];
    static int len[NAIVE_MAX_WORDS];
    for (int w = 0; w < n_words; w++) {
        const char *s = words[w];
        size_t n = strlen(s), pos = 0;
        len[w] = 0;
        while (pos < n) {
            size_t cl = tfm_utf8_seq_len(s + pos, n - pos);
            char *sym = calloc(cl + 5, 1);
            memcpy(sym, s + pos, cl);
            if (pos + cl == n) strcat(sym, "</w>");
            syms[w][len[w]++] = sym;
            pos += cl;
        }
    }
    naive_pair *pairs = malloc(NAIVE_MAX_WORDS * NAIVE_MAX_SYMS * sizeof *pairs);
    int64_t m = 0;
    for (; m < n_merges; m++) {
        int np = 0;
        for (int w = 0; w < n_words; w++)
            for (int i = 0; i + 1 < len[w]; i++)
                pairs[np++] = (naive_pair){syms[w][i], syms[w][i + 1], freq[w]};
        if (!np) break;
        qsort(pairs, (size_t)np, sizeof *pairs, naive_pair_cmp);
        naive_pair best = {NULL, NULL, 0};
        for (int i = 0; i < np;) {
            naive_pair cur = pairs[i];
            int j = i + 1;
            for (; j < np && !naive_pair_cmp(&pairs[j], &cur); j++) cur.freq += pairs[j].freq;
            /* sorted ascending, so ">=" keeps the greatest pair among ties */
            if (cur.freq >= best.freq) best = cur;
            i = j;
        }
        snprintf(merges[m][0], 64, "%s", best.a);
        snprintf(merges[m][1], 64, "%s", best.b);
        for (int w = 0; w < n_words; w++) {
            int j = 0;
            for (int i = 0; i < len[w];) {
                if (i + 1 < len[w] && !strcmp(syms[w][i], merges[m][0]) &&
                    !strcmp(syms[w][i + 1], merges[m][1])) {
                    char *cat = malloc(strlen(syms[w][i]) + strlen(syms[w][i + 1]) + 1);
                    strcpy(cat, syms[w][i]);
                    strcat(cat, syms[w][i + 1]);
                    free(syms[w][i]);
                    free(syms[w][i + 1]);
                    syms[w][j++] = cat;
                    i += 2;
                } else {
                    syms[w][j++] = syms[w][i++];
                }
            }
            len[w] = j;
        }
    }
    free(pairs);
    for (int w = 0; w < n_words; w++)
        for (int i = 0; i < len[w]; i++) free(syms[w][i]);
    return m;
}

START_TEST(learn_matches_naive_recount) {
    /* Small alphabets make many repeats, overlaps ("aaaa") and ties. */
    static const char *const alpha[] = {"a", "b", "a", "\xC3\xA4", "\xE2\x82\xAC", "@", "~"};
    for (int trial = 0; trial < 6; trial++) {
        tfm_rng r;
        tfm_rng_seed(&r, 777 + (uint64_t)trial);
        int n_words = 40 + 60 * trial;
        char *words[NAIVE_MAX_WORDS];
        int64_t freq[NAIVE_MAX_WORDS];
        size_t cap = 1 << 16, o = 0;
        char *text = malloc(cap);
        int n_alpha = 3 + trial % 5;
        for (int w = 0; w < n_words; w++) {
            char buf[64] = "";
            int len = 1 + (int)tfm_rng_below(&r, 9);
            for (int k = 0; k < len; k++) strcat(buf, alpha[tfm_rng_below(&r, (uint64_t)n_alpha)]);
            /* Unique words only (the naive learner takes them as given). */
            int dup = 0;
            for (int v = 0; v < w && !dup; v++) dup = !strcmp(words[v], buf);
            size_t k = strlen(buf);
            while (k > 0 && buf[k - 1] == '~') k--;
            if (dup || (k >= 2 && buf[k - 1] == '@' && buf[k - 2] == '@')) { /* escaped */
                w--;
                n_words--;
                continue;
            }
            words[w] = strdup(buf);
            freq[w] = 1 + (int64_t)tfm_rng_below(&r, 1 + 40 / (w % 7 + 1));
            for (int64_t c = 0; c < freq[w]; c++) {
                o += (size_t)snprintf(text + o, cap - o, "%s%c", buf, c % 5 == 4 ? '\n' : ' ');
                ck_assert(o + 64 < cap);
            }
        }
        static char want[400][2][64];
        int64_t n_want = naive_learn(words, freq, n_words, 400, want);
        tfm_bpe *b = tfm_bpe_learn_text(text, o, "random", 400, 1);
        ck_assert_msg(b != NULL, "%s", tfm_last_error());
        ck_assert_int_eq(tfm_bpe_n_merges(b), n_want);
        for (int64_t m = 0; m < n_want; m++) {
            ck_assert_msg(!strcmp(tfm_bpe_merge_left(b, m), want[m][0]) &&
                              !strcmp(tfm_bpe_merge_right(b, m), want[m][1]),
                          "trial %d merge %lld: got '%s %s' want '%s %s'", trial, (long long)m,
                          tfm_bpe_merge_left(b, m), tfm_bpe_merge_right(b, m), want[m][0],
                          want[m][1]);
        }
        printf("  naive recount: trial %d, %d words, %lld merges agree\n", trial, n_words,
               (long long)n_want);
        tfm_bpe_free(b);
        for (int w = 0; w < n_words; w++) free(words[w]);
        free(text);
    }
}
END_TEST

START_TEST(learn_rejects_bad_utf8_with_file_and_line) {
    const char *dir = tfm_test_tmpdir("bpe");
    char path[512];
    snprintf(path, sizeof path, "%s/bad.txt", dir);
    write_file(path, "good line\nstill good\nbad \xC3\x28 here\n");
    const char *files[] = {path};
    ck_assert_ptr_null(tfm_bpe_learn_files(files, 1, 10, 2, NULL));
    char want[600];
    snprintf(want, sizeof want, "%s:3: invalid UTF-8 at byte 5", path);
    ck_assert_msg(strstr(tfm_last_error(), want) != NULL, "%s", tfm_last_error());
    ck_assert_ptr_null(tfm_bpe_learn_text("ok\na\0b\n", 7, "mem", 10, 2));
    ck_assert_msg(strstr(tfm_last_error(), "mem:2: NUL byte at byte 2") != NULL, "%s",
                  tfm_last_error());
    const char *missing[] = {"/nonexistent/corpus.txt"};
    ck_assert_ptr_null(tfm_bpe_learn_files(missing, 1, 10, 2, NULL));
    ck_assert_msg(strstr(tfm_last_error(), "/nonexistent/corpus.txt") != NULL, "%s",
                  tfm_last_error());
}
END_TEST

/* ------------------------------------------------------------ applying */

START_TEST(apply_known_words) {
    tfm_bpe *b = tfm_bpe_learn_text(PAPER, strlen(PAPER), "paper", 100, 2);
    ck_assert_ptr_nonnull(b);
    /* lowest: s t</w> -> e st</w> -> l o -> w est</w>; (lo, west</w>) has no merge. */
    ck_assert_str_eq(seg(b, "lowest"), "lo@@ west");
    ck_assert_str_eq(seg(b, "newer"), "ne@@ wer"); /* n e, w e, we r</w> */
    ck_assert_str_eq(seg(b, "wider"), "wid@@ e@@ r");
    ck_assert_str_eq(seg(b, "low lower newest widest"), "low lower newest widest");
    ck_assert_str_eq(seg(b, "  x\tlow  \r\n"), "x low"); /* whitespace normalised */
    ck_assert_str_eq(seg(b, ""), "");
    /* Cached words segment the same the second time. */
    ck_assert_str_eq(seg(b, "lowest lowest"), "lo@@ west lo@@ west");
    tfm_bpe_free(b);

    const char codes[] = "#version: 0.2\nM \xC3\xA4\nM\xC3\xA4 d\nc h\nch e\nche n</w>\n";
    b = tfm_bpe_load_mem(codes, strlen(codes), "codes");
    ck_assert_msg(b != NULL, "%s", tfm_last_error());
    ck_assert_int_eq(tfm_bpe_version(b), 2);
    ck_assert_str_eq(seg(b, "M\xC3\xA4"
                            "dchen"),
                     "M\xC3\xA4"
                     "d@@ chen");
    ck_assert_str_eq(detok("M\xC3\xA4"
                           "d@@ chen"),
                     "M\xC3\xA4"
                     "dchen");
    /* "chen" is word-final only: inside a word it stays "che n". */
    ck_assert_str_eq(seg(b, "chenM"), "che@@ n@@ M");
    tfm_bpe_free(b);
}
END_TEST

START_TEST(apply_version_01_codes_without_header) {
    /* No header: subword-nmt reads version 0.1, where "</w>" is a symbol. */
    const char codes[] = "l o\nlo w\nlow </w>\ne r\ner </w>\n";
    tfm_bpe *b = tfm_bpe_load_mem(codes, strlen(codes), "codes01");
    ck_assert_msg(b != NULL, "%s", tfm_last_error());
    ck_assert_int_eq(tfm_bpe_version(b), 1);
    ck_assert_int_eq(tfm_bpe_n_merges(b), 5);
    ck_assert_str_eq(seg(b, "low lower lowe"), "low low@@ er low@@ e");
    tfm_bpe_free(b);
    /* With the 0.2 header the same merges never see a separate "</w>". */
    const char codes2[] = "#version: 0.2\nl o\nlo w\nlow </w>\ne r\ner </w>\n";
    b = tfm_bpe_load_mem(codes2, strlen(codes2), "codes02");
    ck_assert_str_eq(seg(b, "low lower"), "lo@@ w low@@ e@@ r");
    tfm_bpe_free(b);
}
END_TEST

START_TEST(codes_errors_name_file_and_line) {
    struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"#version: 0.2\na b\na b c\n", "c.txt:3: malformed merge 'a b c'"},
        {"#version: 0.2\na b\nab\n", "c.txt:3: malformed merge"},
        {"#version: 0.2\na b\n\na c\n", "c.txt:3: malformed merge"},
        {"#version: 0.2\na  b\n", "c.txt:2: malformed merge"},
        {"#version: 0.2\na\tb c\n", "c.txt:2: malformed merge"},
        {"#version: 0.2\nx y\n\xC3\xA4 \xFF\n", "c.txt:3: invalid UTF-8 at byte 4"},
        {"#version: 0.3\na b\n", "c.txt:1: unsupported codes version"},
        {"#version:\n", "c.txt:1: unsupported codes version"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tfm_bpe *b = tfm_bpe_load_mem(cases[i].text, strlen(cases[i].text), "c.txt");
        ck_assert_msg(b == NULL, "case %zu loaded", i);
        ck_assert_msg(strstr(tfm_last_error(), cases[i].want) != NULL, "case %zu: '%s'", i,
                      tfm_last_error());
    }
    /* Accepted like apply_bpe.py: CRLF, surrounding spaces, trailing blank
     * lines, "0.2.0", duplicates (the first rank wins). */
    const char ok[] = "#version: 0.2.0\r\n a b \r\nb c\r\na b\n\n\n";
    tfm_bpe *b = tfm_bpe_load_mem(ok, strlen(ok), "ok.txt");
    ck_assert_msg(b != NULL, "%s", tfm_last_error());
    ck_assert_int_eq(tfm_bpe_version(b), 2);
    ck_assert_int_eq(tfm_bpe_n_merges(b), 3);
    ck_assert_str_eq(seg(b, "abc"), "ab@@ c");
    tfm_bpe_free(b);
    ck_assert_ptr_null(tfm_bpe_load("/nonexistent/codes"));
    ck_assert_msg(strstr(tfm_last_error(), "/nonexistent/codes") != NULL, "%s", tfm_last_error());
    /* An empty file is a model without merges. */
    b = tfm_bpe_load_mem("", 0, "empty");
    ck_assert_ptr_nonnull(b);
    ck_assert_str_eq(seg(b, "abc d"), "a@@ b@@ c d");
    tfm_subwords sw = {0};
    ck_assert_int_ne(tfm_bpe_segment(b, "a\xC3", 2, &sw), 0);
    ck_assert_msg(strstr(tfm_last_error(), "invalid UTF-8 at byte 2") != NULL, "%s",
                  tfm_last_error());
    tfm_subwords_free(&sw);
    tfm_bpe_free(b);
}
END_TEST

/* ----------------------------------------------------------- detok */

START_TEST(detok_rules) {
    ck_assert_str_eq(detok("Ein M\xC3\xA4"
                           "d@@ chen ."),
                     "Ein M\xC3\xA4"
                     "dchen .");
    ck_assert_str_eq(detok("  a@@   b  c@@ "), "ab c"); /* trailing "@@" dropped */
    ck_assert_str_eq(detok("a@@@@ b"), "a@@b");         /* piece ending in "@@" */
    ck_assert_str_eq(detok("a@@ @@ b"), "ab");          /* empty piece joins too */
    ck_assert_str_eq(detok("@@"), "");
    ck_assert_str_eq(detok("x @@"), "x");
    ck_assert_str_eq(detok("a@@~ b@@~~ c~ @@~"), "a@@ b@@~ c~ @@"); /* escape undone */
    ck_assert_str_eq(detok("a@@@@ ~"), "a@@");
    ck_assert_str_eq(detok("x</w>@@ y"), "x</w>y");
    ck_assert_str_eq(detok(""), "");
}
END_TEST

START_TEST(text_with_markers_round_trips) {
    const char text[] = "a@@ @@ @@~ x</w> </w> @@@@ ~@@ a@@b w> </w>w\n"
                        "x</w> x</w> a@@ a@@ </w></w> @@ @@\n";
    tfm_bpe *b = tfm_bpe_learn_text(text, strlen(text), "t", 50, 1);
    ck_assert_msg(b != NULL, "%s", tfm_last_error());
    const char *lines[] = {"a@@ @@ @@~ x</w> </w> @@@@ ~@@ a@@b w> </w>w",
                           "x</w> x</w> a@@ a@@ </w></w> @@ @@", "@@~~ a@@~b <w> @"};
    for (int i = 0; i < 3; i++) {
        const char *s = seg(b, lines[i]);
        char copy[8192];
        snprintf(copy, sizeof copy, "%s", s);
        /* No word-final token may read as a continuation. */
        ck_assert_str_eq(detok(copy), lines[i]);
    }
    /* The escape is visible: "a@@" is written with a '~'. */
    ck_assert_ptr_nonnull(strstr(seg(b, "a@@"), "~"));
    tfm_bpe_free(b);
}
END_TEST

/* Random words of code points from every plane (no NUL, no ASCII
 * whitespace), with extra '@', '~', '<', '/', 'w', '>' so that the markers
 * occur inside words. */
static size_t random_text(tfm_rng *r, char *out, size_t cap, int n_lines) {
    static const uint32_t special[] = {'@', '@', '~', '<', '/', 'w', '>', 'a', 'e', 0xE4};
    size_t o = 0;
    for (int l = 0; l < n_lines; l++) {
        int n_words = 1 + (int)tfm_rng_below(r, 12);
        for (int w = 0; w < n_words; w++) {
            if (w) out[o++] = ' ';
            int len = 1 + (int)tfm_rng_below(r, 8);
            for (int k = 0; k < len; k++) {
                uint32_t cp;
                uint64_t kind = tfm_rng_below(r, 10);
                if (kind < 4)
                    cp = special[tfm_rng_below(r, 10)];
                else if (kind < 6)
                    cp = 0x21 + (uint32_t)tfm_rng_below(r, 0x5E);
                else if (kind < 7)
                    cp = 0x80 + (uint32_t)tfm_rng_below(r, 0x780);
                else if (kind < 8)
                    cp = 0x800 + (uint32_t)tfm_rng_below(r, 0xF800);
                else
                    cp = 0x10000 + (uint32_t)tfm_rng_below(r, 0x100000);
                if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
                if (cp == 0x7F) cp = '@';
                o += tfm_utf8_encode(cp, out + o);
                ck_assert(o + 16 < cap);
            }
        }
        out[o++] = '\n';
    }
    out[o] = 0;
    return o;
}

START_TEST(round_trip_random_utf8_is_lossless) {
    size_t cap = 1 << 20;
    char *text = malloc(cap), *other = malloc(cap);
    tfm_rng r;
    tfm_rng_seed(&r, 12345);
    size_t n = random_text(&r, text, cap, 400);
    size_t n_other = random_text(&r, other, cap, 100);
    ck_assert_int_eq(tfm_utf8_check(text, n, NULL), 0);
    tfm_bpe *b = tfm_bpe_learn_text(text, n, "random", 300, 2);
    ck_assert_msg(b != NULL, "%s", tfm_last_error());
    ck_assert_int_gt(tfm_bpe_n_merges(b), 50);
    tfm_subwords sw = {0};
    char *joined = malloc(cap), *back = malloc(cap);
    int64_t lines = 0, pieces = 0, words = 0;
    /* Lines of the training text and of unseen text. */
    for (int pass = 0; pass < 2; pass++) {
        char *t = pass ? other : text;
        size_t tn = pass ? n_other : n;
        for (char *line = t; line < t + tn;) {
            char *nl = strchr(line, '\n');
            size_t len = (size_t)(nl - line);
            ck_assert_int_eq(tfm_bpe_segment(b, line, len, &sw), 0);
            size_t o = 0;
            for (int64_t i = 0; i < sw.n; i++) {
                const char *tok = tfm_subwords_get(&sw, i);
                size_t tl = strlen(tok);
                if (i) joined[o++] = ' ';
                memcpy(joined + o, tok, tl);
                o += tl;
                pieces++;
                words += !(tl >= 2 && tok[tl - 1] == '@' && tok[tl - 2] == '@');
            }
            size_t bn = tfm_bpe_detok(joined, o, back);
            ck_assert_msg(bn == len && memcmp(back, line, len) == 0,
                          "round trip differs:\n in  '%.*s'\n bpe '%.*s'\n out '%s'", (int)len,
                          line, (int)o, joined, back);
            lines++;
            line = nl + 1;
        }
    }
    printf("  round trip: %lld lines, %lld words, %lld pieces, %lld merges\n", (long long)lines,
           (long long)words, (long long)pieces, (long long)tfm_bpe_n_merges(b));
    ck_assert_int_gt(pieces, words); /* the merges did not swallow everything */
    tfm_subwords_free(&sw);
    tfm_bpe_free(b);
    free(text);
    free(other);
    free(joined);
    free(back);
}
END_TEST


/* ------------------------------------------------------------ BPE-dropout */

/* subword-nmt's apply_bpe.py --dropout loop on symbol strings, for version
 * 0.2 codes and words without '@' or '~' (no escape): each step draws once
 * per adjacent pair (kept when >= p), takes the lowest-rank merge among the
 * kept pairs, merges its kept occurrences left to right, and stops when no
 * kept pair has a merge. Writes the pieces joined by spaces ("@@" on all but
 * a word's last) into out. */
static void ref_dropout(const tfm_bpe *b, const char *line, double p, tfm_rng *r, char *out) {
    enum { MAXS = 64, SYM = 64 };
    size_t o = 0;
    const char *w = line;
    while (*w) {
        while (*w == ' ') w++;
        if (!*w) break;
        const char *e = w;
        while (*e && *e != ' ') e++;
        char sym[MAXS][SYM];
        int n = 0;
        for (const char *c = w; c < e;) {
            size_t cl = tfm_utf8_seq_len(c, (size_t)(e - c));
            ck_assert(n < MAXS && cl > 0);
            memcpy(sym[n], c, cl);
            sym[n][cl] = 0;
            if (c + cl == e) strcat(sym[n], "</w>");
            n++;
            c += cl;
        }
        while (n > 1) {
            int keep[MAXS];
            int64_t best = -1;
            for (int i = 0; i + 1 < n; i++) {
                keep[i] = tfm_rng_double(r) >= p;
                if (!keep[i]) continue;
                for (int64_t m = 0; m < tfm_bpe_n_merges(b) && (best < 0 || m < best); m++)
                    if (!strcmp(tfm_bpe_merge_left(b, m), sym[i]) &&
                        !strcmp(tfm_bpe_merge_right(b, m), sym[i + 1])) {
                        best = m;
                        break;
                    }
            }
            if (best < 0) break;
            const char *l = tfm_bpe_merge_left(b, best), *rr = tfm_bpe_merge_right(b, best);
            int j = 0;
            for (int i = 0; i < n;) {
                if (i + 1 < n && keep[i] && !strcmp(sym[i], l) && !strcmp(sym[i + 1], rr)) {
                    char merged[SYM];
                    snprintf(merged, sizeof merged, "%s%s", sym[i], sym[i + 1]);
                    strcpy(sym[j], merged);
                    i += 2;
                } else {
                    if (j != i) memmove(sym[j], sym[i], strlen(sym[i]) + 1);
                    i++;
                }
                j++;
            }
            n = j;
        }
        for (int i = 0; i < n; i++) {
            size_t l = strlen(sym[i]);
            if (i + 1 == n) l -= 4; /* "</w>" */
            if (o) out[o++] = ' ';
            memcpy(out + o, sym[i], l);
            o += l;
            if (i + 1 < n) o += (size_t)sprintf(out + o, "@@");
        }
        w = e;
    }
    out[o] = 0;
}

/* Lines of words over a small alphabet with multi-byte characters. */
static char *dropout_text(tfm_rng *r, int n_lines) {
    static const char *const alpha[] = {"a", "b", "e", "n", "r", "t", "\xC3\xA4", "\xE5\xAD\x97"};
    size_t cap = (size_t)n_lines * 200 + 1, o = 0;
    char *t = malloc(cap);
    for (int l = 0; l < n_lines; l++) {
        int words = 1 + (int)tfm_rng_below(r, 10);
        for (int w = 0; w < words; w++) {
            if (w) t[o++] = ' ';
            int len = 1 + (int)tfm_rng_below(r, 7);
            for (int k = 0; k < len; k++) {
                const char *c = alpha[tfm_rng_below(r, 8)];
                memcpy(t + o, c, strlen(c));
                o += strlen(c);
            }
        }
        t[o++] = '\n';
    }
    t[o] = 0;
    return t;
}

/* Joins a subword list with spaces into out. */
static void join_pieces(const tfm_subwords *sw, char *out) {
    size_t o = 0;
    for (int64_t i = 0; i < sw->n; i++) {
        const char *tok = tfm_subwords_get(sw, i);
        if (i) out[o++] = ' ';
        memcpy(out + o, tok, strlen(tok));
        o += strlen(tok);
    }
    out[o] = 0;
}

START_TEST(dropout_follows_subword_nmt_loop) {
    tfm_rng r;
    tfm_rng_seed(&r, 7);
    char *text = dropout_text(&r, 300);
    tfm_bpe *b = tfm_bpe_learn_text(text, strlen(text), "dropout", 120, 2);
    ck_assert_msg(b != NULL, "%s", tfm_last_error());
    ck_assert_int_eq(tfm_bpe_version(b), 2);
    tfm_subwords sw = {0};
    static char got[16384], want[16384], plain[16384];
    int64_t lines = 0, differ = 0;
    int64_t pieces[4] = {0};
    const double ps[4] = {0.0, 0.1, 0.5, 1.0};
    for (int k = 0; k < 4; k++) {
        tfm_rng ra, rb;
        tfm_rng_seed(&ra, 100 + (uint64_t)k);
        tfm_rng_seed(&rb, 100 + (uint64_t)k);
        for (char *line = text; *line;) {
            char *nl = strchr(line, '\n');
            *nl = 0;
            size_t len = (size_t)(nl - line);
            ck_assert_int_eq(tfm_bpe_segment_dropout(b, line, len, ps[k], &ra, &sw), 0);
            int64_t n_drop = sw.n;
            pieces[k] += n_drop;
            join_pieces(&sw, got);
            ref_dropout(b, line, ps[k], &rb, want);
            ck_assert_msg(!strcmp(got, want), "p %g, '%s':\n got  '%s'\n want '%s'", ps[k], line,
                          got, want);
            /* the pieces still spell the line */
            char back[16384];
            size_t bn = tfm_bpe_detok(got, strlen(got), back);
            ck_assert_msg(bn == len && !memcmp(back, line, len), "'%s' -> '%s'", line, back);
            ck_assert_int_eq(tfm_bpe_segment(b, line, len, &sw), 0);
            join_pieces(&sw, plain);
            if (k == 0) ck_assert_str_eq(got, plain); /* p = 0: the usual segmentation */
            if (k == 1) differ += strcmp(got, plain) != 0, lines++;
            if (k == 3) { /* p = 1: characters */
                int64_t chars = 0;
                for (size_t i = 0; i < len; i++)
                    chars += line[i] != ' ' && ((unsigned char)line[i] & 0xC0) != 0x80;
                ck_assert_int_eq(n_drop, chars);
            }
            *nl = '\n';
            line = nl + 1;
        }
    }
    /* p = 0.1 changes some lines, not all; more dropout, more pieces */
    printf("  BPE-dropout: p 0.1 changed %lld of %lld lines; pieces %lld / %lld / %lld / %lld at "
           "p 0 / 0.1 / 0.5 / 1\n",
           (long long)differ, (long long)lines, (long long)pieces[0], (long long)pieces[1],
           (long long)pieces[2], (long long)pieces[3]);
    ck_assert_int_gt(differ, lines / 20);
    ck_assert_int_lt(differ, lines);
    ck_assert_int_lt(pieces[0], pieces[1]);
    ck_assert_int_lt(pieces[1], pieces[2]);
    ck_assert_int_lt(pieces[2], pieces[3]);
    /* the same draws give the same pieces */
    tfm_rng r1, r2;
    tfm_rng_seed(&r1, 5);
    tfm_rng_seed(&r2, 5);
    const char *line = "ab\xC3\xA4rt\xE5\xAD\x97 nenet baba";
    ck_assert_int_eq(tfm_bpe_segment_dropout(b, line, strlen(line), 0.3, &r1, &sw), 0);
    join_pieces(&sw, got);
    ck_assert_int_eq(tfm_bpe_segment_dropout(b, line, strlen(line), 0.3, &r2, &sw), 0);
    join_pieces(&sw, want);
    ck_assert_str_eq(got, want);
    /* out of range */
    ck_assert_int_ne(tfm_bpe_segment_dropout(b, line, strlen(line), 1.5, &r1, &sw), 0);
    ck_assert_str_eq(tfm_last_error(), "BPE-dropout 1.5: must be between 0 and 1");
    ck_assert_int_ne(tfm_bpe_segment_dropout(b, line, strlen(line), NAN, &r1, &sw), 0);
    tfm_subwords_free(&sw);
    tfm_bpe_free(b);
    free(text);
}
END_TEST

START_TEST(dropout_version_01_codes_and_vocabulary) {
    /* version 0.1: "</w>" is a symbol of its own; p = 0 and p = 1 */
    const char codes[] = "l o\nlo w\nlow </w>\ne r\ner </w>\n";
    tfm_bpe *b = tfm_bpe_load_mem(codes, strlen(codes), "codes01");
    ck_assert_ptr_nonnull(b);
    tfm_subwords sw = {0};
    char got[256];
    tfm_rng r;
    tfm_rng_seed(&r, 3);
    ck_assert_int_eq(tfm_bpe_segment_dropout(b, "low lower lowe", 14, 0.0, &r, &sw), 0);
    join_pieces(&sw, got);
    ck_assert_str_eq(got, "low low@@ er low@@ e");
    ck_assert_int_eq(tfm_bpe_segment_dropout(b, "low lower", 9, 1.0, &r, &sw), 0);
    join_pieces(&sw, got);
    ck_assert_str_eq(got, "l@@ o@@ w l@@ o@@ w@@ e@@ r");
    tfm_bpe_free(b);
    /* every piece of a dropout segmentation of the training text has an id
     * in a vocabulary with the merge symbols (no <unk>) */
    tfm_rng_seed(&r, 11);
    char *text = dropout_text(&r, 200);
    b = tfm_bpe_learn_text(text, strlen(text), "dropout", 80, 2);
    tfm_vocab *v = tfm_vocab_build_text(b, text, strlen(text), "dropout");
    ck_assert_ptr_nonnull(v);
    ck_assert_int_ge(tfm_vocab_add_merge_symbols(v, b), 0);
    int32_t ids[512];
    int64_t total = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        for (int k = 0; k < 3; k++) {
            int64_t n = tfm_vocab_encode_dropout(b, v, line, (size_t)(nl - line), 0.1 * k + 0.1,
                                                 &r, ids, 512);
            ck_assert(n > 0 && n <= 512);
            for (int64_t i = 0; i < n; i++) ck_assert_int_ne(ids[i], TFM_UNK_ID);
            total += n;
        }
        line = nl + 1;
    }
    ck_assert_int_gt(total, 0);
    tfm_subwords_free(&sw);
    tfm_vocab_free(v);
    tfm_bpe_free(b);
    free(text);
}
END_TEST

/* ---------------------------------------------------------- vocabulary */

START_TEST(vocab_build_save_load_lookup) {
    tfm_bpe *b = tfm_bpe_learn_text(PAPER, strlen(PAPER), "paper", 3, 2);
    ck_assert_ptr_nonnull(b);
    /* 3 merges (s t</w>, e st</w>, l o): low = lo@@ w x5, lower = lo@@ w@@ e@@ r
     * x2, newest = n@@ e@@ w@@ est x6, widest = w@@ i@@ d@@ est x3. */
    tfm_vocab *v = tfm_vocab_build_text(b, PAPER, strlen(PAPER), "paper");
    ck_assert_msg(v != NULL, "%s", tfm_last_error());
    /* w@@: lower 2 + newest 6 + widest 3 = 11; e@@: lower 2 + newest 6 = 8;
     * est 9; lo@@ 7; ties at 3 by bytes: "d@@" < "i@@". */
    const char *order[] = {"<pad>", "<s>", "</s>", "<unk>", "w@@", "est", "e@@",
                           "lo@@",  "n@@", "w",    "d@@",   "i@@", "r"};
    const int64_t order_counts[] = {0, 0, 0, 0, 11, 9, 8, 7, 6, 5, 3, 3, 2};
    ck_assert_int_eq(tfm_vocab_size(v), 13);
    for (int i = 0; i < 13; i++) {
        ck_assert_str_eq(tfm_vocab_token(v, i), order[i]);
        ck_assert_int_eq(tfm_vocab_count(v, i), order_counts[i]);
        ck_assert_int_eq(tfm_vocab_id(v, order[i]), i);
    }
    ck_assert_int_eq(tfm_vocab_id(v, "nope"), TFM_UNK_ID);
    ck_assert_ptr_null(tfm_vocab_token(v, 13));
    ck_assert_ptr_null(tfm_vocab_token(v, -1));

    const char *dir = tfm_test_tmpdir("vocab");
    char path[512];
    snprintf(path, sizeof path, "%s/vocab", dir);
    ck_assert_int_eq(tfm_vocab_save(v, path), 0);
    char *text = read_file(path);
    const char *head = "<pad> 0\n<s> 0\n</s> 0\n<unk> 0\nw@@ 11\nest 9\n";
    ck_assert_msg(!strncmp(text, head, strlen(head)), "%s", text);
    free(text);
    tfm_vocab *v2 = tfm_vocab_load(path);
    ck_assert_msg(v2 != NULL, "%s", tfm_last_error());
    ck_assert_int_eq(tfm_vocab_size(v2), 13);
    for (int i = 0; i < 13; i++) ck_assert_str_eq(tfm_vocab_token(v2, i), order[i]);

    /* Encode: no specials added; unknown pieces become <unk>. */
    int32_t ids[16];
    const char line[] = "lower widest low";
    int64_t n = tfm_vocab_encode(b, v2, line, strlen(line), ids, 16);
    const int32_t want_ids[] = {7, 4, 6, 12, 4, 11, 10, 5, 7, 9};
    ck_assert_int_eq(n, 10);
    for (int i = 0; i < 10; i++) ck_assert_int_eq(ids[i], want_ids[i]);
    ck_assert_int_eq(tfm_vocab_encode(b, v2, line, strlen(line), ids, 3), 10); /* asks for more */
    n = tfm_vocab_encode(b, v2, "low zz", 6, ids, 16);
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(ids[2], TFM_UNK_ID);
    ck_assert_int_eq(tfm_vocab_encode(b, v2, "\xFF", 1, ids, 16), -1);

    /* Decode skips <pad> <s> </s>, shows <unk>, detokenises. */
    const int32_t dec[] = {TFM_BOS_ID, 7,  4, 6,          12,         4,
                           11,         10, 5, TFM_UNK_ID, TFM_EOS_ID, TFM_PAD_ID};
    char *s = tfm_vocab_decode(v2, dec, 12);
    ck_assert_str_eq(s, "lower widest <unk>");
    free(s);
    const int32_t bad[] = {4, 13};
    ck_assert_ptr_null(tfm_vocab_decode(v2, bad, 2));
    ck_assert_msg(strstr(tfm_last_error(), "13") != NULL, "%s", tfm_last_error());
    tfm_vocab_free(v);
    tfm_vocab_free(v2);
    tfm_bpe_free(b);
}
END_TEST

START_TEST(vocab_literal_specials_get_no_second_entry) {
    const char text[] = "<unk> x <s>\n";
    const char codes[] = "#version: 0.2\n< u\n<u n\n<un k\n<unk ></w>\n< s\n<s ></w>\n";
    tfm_bpe *b = tfm_bpe_load_mem(codes, strlen(codes), "c");
    ck_assert_msg(b != NULL, "%s", tfm_last_error());
    ck_assert_str_eq(seg(b, "<unk>"), "<unk>");
    tfm_vocab *v = tfm_vocab_build_text(b, text, strlen(text), "t");
    ck_assert_int_eq(tfm_vocab_size(v), 5);
    ck_assert_str_eq(tfm_vocab_token(v, 4), "x");
    tfm_vocab_free(v);
    tfm_bpe_free(b);
}
END_TEST

START_TEST(vocab_errors_name_file_and_line) {
    const char *head = "<pad>\n<s>\n</s>\n<unk>\n";
    struct {
        const char *body;
        const char *want;
    } cases[] = {
        {"a 3\nb 2\na 1\n", "v.txt:7: duplicate token 'a' (first on line 5)"},
        {"a\n\nb\n", "v.txt:6: empty line"},
        {"a\nb\xC3\x28\n", "v.txt:6: invalid UTF-8 at byte 2"},
        {"a 1 2\n", "v.txt:5: malformed line"},
        {"a x\n", "v.txt:5: malformed line"},
        {"a \n", "v.txt:5: malformed line"},
        {" 5\n", "v.txt:5: empty token"},
        {"a\tb 5\n", "v.txt:5: token contains whitespace"},
        {"<unk>\n", "v.txt:5: duplicate token '<unk>' (first on line 4)"},
    };
    char buf[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(buf, sizeof buf, "%s%s", head, cases[i].body);
        tfm_vocab *v = tfm_vocab_load_mem(buf, strlen(buf), "v.txt");
        ck_assert_msg(v == NULL, "case %zu loaded", i);
        ck_assert_msg(strstr(tfm_last_error(), cases[i].want) != NULL, "case %zu: '%s'", i,
                      tfm_last_error());
    }
    const char *missing[] = {"<s>\n<pad>\n</s>\n<unk>\n", "<pad>\n<s>\n"};
    const char *want[] = {"v.txt:1: expected special token '<pad>'", "v.txt: 2 lines"};
    for (int i = 0; i < 2; i++) {
        ck_assert_ptr_null(tfm_vocab_load_mem(missing[i], strlen(missing[i]), "v.txt"));
        ck_assert_msg(strstr(tfm_last_error(), want[i]) != NULL, "'%s'", tfm_last_error());
    }
    /* CRLF and a missing count column are fine. */
    const char ok[] = "<pad>\r\n<s> 0\r\n</s>\n<unk>\nMäd@@ 12\nchen\n";
    tfm_vocab *v = tfm_vocab_load_mem(ok, strlen(ok), "ok");
    ck_assert_msg(v != NULL, "%s", tfm_last_error());
    ck_assert_int_eq(tfm_vocab_id(v, "Mäd@@"), 4);
    ck_assert_int_eq(tfm_vocab_count(v, 4), 12);
    ck_assert_int_eq(tfm_vocab_id(v, "chen"), 5);
    tfm_vocab_free(v);
    ck_assert_ptr_null(tfm_vocab_load("/nonexistent/vocab"));
}
END_TEST

START_TEST(hf_tokenizer_json_maps_subwords) {
    tfm_bpe *b = tfm_bpe_learn_text(PAPER, strlen(PAPER), "paper", 3, 2);
    tfm_vocab *v = tfm_vocab_build_text(b, PAPER, strlen(PAPER), "paper");
    size_t len;
    tfm_hf_tokenizer_info info;
    char *json = tfm_bpe_hf_tokenizer_json(b, v, &len, &info);
    ck_assert_msg(json != NULL, "%s", tfm_last_error());
    ck_assert_uint_eq(len, strlen(json));
    tfm_json *doc;
    ck_assert_msg(tfm_json_parse(json, len, NULL, "tokenizer.json", &doc) == 0, "%s",
                  tfm_last_error());
    const tfm_json *model = tfm_json_get(doc, "model"), *vocab = tfm_json_get(model, "vocab");
    struct {
        const char *key;
        int64_t id;
    } want[] = {
        {"<pad>", 0},
        {"<unk>", 3},
        {"w", 4},       /* our "w@@" */
        {"est</w>", 5}, /* our word-final "est" */
        {"w</w>", 9},
        {"r</w>", 12}, /* our word-final "w", "r" */
        /* merge symbols we lack map to <unk>: s t</w> st</w> (e, est</w>
         * are ours), l o (lo is ours: "lo@@" = 7) */
        {"s", 3},
        {"t</w>", 3},
        {"st</w>", 3},
        {"l", 3},
        {"o", 3},
        {"lo", 7},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int64_t id = -1;
        ck_assert_msg(tfm_json_get_int64(vocab, want[i].key, &id) == 0, "no %s", want[i].key);
        ck_assert_msg(id == want[i].id, "%s: %lld, want %lld", want[i].key, (long long)id,
                      (long long)want[i].id);
    }
    ck_assert_int_eq(tfm_json_len(vocab), tfm_vocab_size(v) + 5);
    ck_assert_int_eq(info.n_tokens, tfm_vocab_size(v) + 5);
    ck_assert_int_eq(info.n_symbols_unk, 5);
    ck_assert_int_eq(info.n_merges_from_unk, 3); /* all three */
    const tfm_json *merges = tfm_json_get(model, "merges");
    ck_assert_int_eq(tfm_json_len(merges), 3);
    const char *m;
    ck_assert_int_eq(tfm_json_as_string(tfm_json_at(merges, 1), &m, NULL), 0);
    ck_assert_str_eq(m, "e st</w>");
    tfm_json_free(doc);
    free(json);
    /* JSON escaping of quotes, backslashes and control characters; a
     * repeated merge is written once (HF would keep the last rank). */
    const char codes[] = "#version: 0.2\n\" \\\n\x01 x</w>\n\" \\\n";
    tfm_bpe *b2 = tfm_bpe_load_mem(codes, strlen(codes), "c");
    ck_assert_ptr_nonnull(b2);
    json = tfm_bpe_hf_tokenizer_json(b2, v, &len, &info);
    ck_assert_ptr_nonnull(json);
    ck_assert_msg(strstr(json, "\"\\\" \\\\\"") && strstr(json, "\"\\u0001 x</w>\""), "%s", json);
    ck_assert_int_eq(info.n_duplicate_merges, 1);
    free(json);
    tfm_bpe_free(b2);
    /* Version 0.1 codes have no HF equivalent. */
    b2 = tfm_bpe_load_mem("a b\n", 4, "c");
    ck_assert_ptr_null(tfm_bpe_hf_tokenizer_json(b2, v, &len, NULL));
    tfm_bpe_free(b2);
    /* Adding the merge symbols makes every one of them ours. */
    ck_assert_int_eq(tfm_vocab_add_merge_symbols(v, b), 5);
    ck_assert_int_eq(tfm_vocab_id(v, "s@@"), tfm_vocab_size(v) - 5);
    ck_assert_int_eq(tfm_vocab_id(v, "st"), tfm_vocab_size(v) - 3);
    ck_assert_int_eq(tfm_vocab_id(v, "o@@"), tfm_vocab_size(v) - 1);
    ck_assert_int_eq(tfm_vocab_add_merge_symbols(v, b), 0);
    json = tfm_bpe_hf_tokenizer_json(b, v, &len, &info);
    ck_assert_ptr_nonnull(json);
    ck_assert_int_eq(info.n_symbols_unk, 0);
    ck_assert_int_eq(info.n_merges_from_unk, 0);
    free(json);
    tfm_vocab_free(v);
    tfm_bpe_free(b);
}
END_TEST

/* ----------------------------------------------------------------- CLI */

START_TEST(cli_learn_apply_detok_vocab) {
    const char *dir = tfm_test_tmpdir("bpecli");
    char a[512], bpath[512], codes[512], vocab[512], in[512], cmd[4096], out[8192];
    snprintf(a, sizeof a, "%s/a.txt", dir);
    snprintf(bpath, sizeof bpath, "%s/b.txt", dir);
    snprintf(codes, sizeof codes, "%s/codes", dir);
    snprintf(vocab, sizeof vocab, "%s/vocab", dir);
    snprintf(in, sizeof in, "%s/in.txt", dir);
    /* The paper corpus split over two files: learning is joint. */
    write_file(a, "low low low low low lower lower newest\n");
    write_file(bpath, "newest newest newest newest newest widest widest widest\n");
    snprintf(cmd, sizeof cmd, "%s bpe learn --merges 100 -o %s --vocab-out %s %s %s",
             tfm_test_bin(), codes, vocab, a, bpath);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "13 merges learned") != NULL, "%s", out);
    check_paper_codes(codes);
    tfm_vocab *v = tfm_vocab_load(vocab);
    ck_assert_msg(v != NULL, "%s", tfm_last_error());
    ck_assert_int_eq(tfm_vocab_size(v), 8); /* specials + low lower newest widest */
    tfm_vocab_free(v);

    write_file(in, "lowest newer\nwider  low\n");
    snprintf(cmd, sizeof cmd, "%s bpe apply -c %s < %s", tfm_test_bin(), codes, in);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_str_eq(out, "lo@@ west ne@@ wer\nwid@@ e@@ r low\n");
    snprintf(cmd, sizeof cmd, "%s bpe apply -c %s %s | %s bpe detok", tfm_test_bin(), codes, in,
             tfm_test_bin());
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_str_eq(out, "lowest newer\nwider low\n");

    snprintf(cmd, sizeof cmd, "(%s bpe vocab -c %s -o %s %s && cat %s)", tfm_test_bin(), codes,
             vocab, in, vocab);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "<unk> 0\ne@@ 1\nlo@@ 1\nlow 1\nne@@ 1\n") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd,
             "echo 'wider lowest' | %s bpe encode -c %s -v %s | %s bpe decode -v %s",
             tfm_test_bin(), codes, vocab, tfm_test_bin(), vocab);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_str_eq(out, "wider lowest\n");
    /* a vocabulary of the segmented text lacks merge symbols: no tokenizer.json
     * from it (it would segment otherwise), one from the exact vocabulary */
    snprintf(cmd, sizeof cmd, "%s bpe hf -c %s -v %s -o %s/tokenizer.json", tfm_test_bin(), codes,
             vocab, dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "Hugging Face's BPE cannot reproduce"), "%s", out);
    snprintf(cmd, sizeof cmd,
             "(%s bpe vocab --exact-vocab -c %s -o %s %s 2>/dev/null && %s bpe hf -c %s -v %s -o "
             "%s/tokenizer.json && head -c 1 %s/tokenizer.json)",
             tfm_test_bin(), codes, vocab, in, tfm_test_bin(), codes, vocab, dir, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    ck_assert_str_eq(out, "{");
}
END_TEST

START_TEST(cli_errors) {
    char cmd[2048], out[8192];
    snprintf(cmd, sizeof cmd, "%s bpe learn --bogus 3", tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "tfm: unknown flag '--bogus'") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd, "%s bpe learn -o /tmp/x", tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "--merges N is required") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd, "%s bpe learn --merges ten -o /tmp/x f", tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s bpe frobnicate", tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "unknown subcommand 'frobnicate'") != NULL, "%s", out);

    const char *dir = tfm_test_tmpdir("bpecli");
    char codes[512];
    snprintf(codes, sizeof codes, "%s/codes", dir);
    write_file(codes, "#version: 0.2\na b\nbroken\n");
    snprintf(cmd, sizeof cmd, "echo ab | %s bpe apply -c %s", tfm_test_bin(), codes);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    char want[600];
    snprintf(want, sizeof want, "tfm: %s:3: malformed merge 'broken'", codes);
    ck_assert_msg(strstr(out, want) != NULL, "%s", out);
    write_file(codes, "#version: 0.2\na b\n");
    snprintf(cmd, sizeof cmd, "printf 'ab\\n\\377\\n' | %s bpe apply -c %s", tfm_test_bin(), codes);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "tfm: <stdin>:2: invalid UTF-8 at byte 1") != NULL, "%s", out);
}
END_TEST

int main(void) {
    Suite *s = suite_create("bpe");
    TCase *tc = tcase_create("bpe");
    tcase_set_timeout(tc, 300); /* one case takes ~7 s of CPU, over 60 s of wall time at load 20 */
    tcase_add_test(tc, utf8_strict_validation);
    tcase_add_test(tc, utf8_encode_decode_every_code_point);
    tcase_add_test(tc, learn_paper_example_hand_checked);
    tcase_add_test(tc, learn_counts_repeated_symbols_exactly);
    tcase_add_test(tc, learn_matches_naive_recount);
    tcase_add_test(tc, learn_rejects_bad_utf8_with_file_and_line);
    tcase_add_test(tc, apply_known_words);
    tcase_add_test(tc, apply_version_01_codes_without_header);
    tcase_add_test(tc, codes_errors_name_file_and_line);
    tcase_add_test(tc, detok_rules);
    tcase_add_test(tc, text_with_markers_round_trips);
    tcase_add_test(tc, round_trip_random_utf8_is_lossless);
    tcase_add_test(tc, dropout_follows_subword_nmt_loop);
    tcase_add_test(tc, dropout_version_01_codes_and_vocabulary);
    tcase_add_test(tc, vocab_build_save_load_lookup);
    tcase_add_test(tc, vocab_literal_specials_get_no_second_entry);
    tcase_add_test(tc, vocab_errors_name_file_and_line);
    tcase_add_test(tc, hf_tokenizer_json_maps_subwords);
    tcase_add_test(tc, cli_learn_apply_detok_vocab);
    tcase_add_test(tc, cli_errors);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
