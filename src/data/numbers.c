/* A generated parallel corpus: integers 0 .. 9999 spelled out in English and
 * German. Small, exact and unambiguous, yet the German side reorders the
 * units before the tens ("vierundfünfzig") and glues a whole number into one
 * word, which exercises attention and subword segmentation. Conventions are
 * documented in tfm/data.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tfm/data.h"

static const char *const EN_UNITS[20] = {"zero",    "one",     "two",       "three",    "four",
                                         "five",    "six",     "seven",     "eight",    "nine",
                                         "ten",     "eleven",  "twelve",    "thirteen", "fourteen",
                                         "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"};
static const char *const EN_TENS[10] = {"",      "",      "twenty",  "thirty", "forty",
                                        "fifty", "sixty", "seventy", "eighty", "ninety"};

/* German 0..19 as a whole word ("eins"); in front of "und", "hundert" and
 * "tausend" the 1 is "ein", handled by de_prefix. */
static const char *const DE_UNITS[20] = {
    "null",     "eins",     "zwei",     "drei",     "vier",     "fünf",    "sechs",
    "sieben",   "acht",     "neun",     "zehn",     "elf",      "zwölf",   "dreizehn",
    "vierzehn", "fünfzehn", "sechzehn", "siebzehn", "achtzehn", "neunzehn"};
static const char *const DE_TENS[10] = {"",        "",        "zwanzig", "dreißig", "vierzig",
                                        "fünfzig", "sechzig", "siebzig", "achtzig", "neunzig"};

/* A tiny bounded string builder: overflow is remembered, not written. */
typedef struct {
    char *buf;
    size_t cap, len;
    int overflow;
} sbuf;

static void put(sbuf *b, const char *s) {
    size_t n = strlen(s);
    if (b->overflow || b->len + n + 1 > b->cap) {
        b->overflow = 1;
        return;
    }
    memcpy(b->buf + b->len, s, n + 1);
    b->len += n;
}

static void en_below100(sbuf *b, int n) {
    if (n < 20) {
        put(b, EN_UNITS[n]);
        return;
    }
    put(b, EN_TENS[n / 10]);
    if (n % 10) {
        put(b, "-");
        put(b, EN_UNITS[n % 10]);
    }
}

/* English: "[X thousand] [Y hundred] [and Z]" with "and" before the part
 * below 100 whenever something bigger precedes it (British usage). */
static void en_words(sbuf *b, int n) {
    int th = n / 1000, h = n / 100 % 10, rest = n % 100;
    if (n < 100) {
        en_below100(b, n);
        return;
    }
    if (th) {
        put(b, EN_UNITS[th]);
        put(b, " thousand");
    }
    if (h) {
        if (th) put(b, " ");
        put(b, EN_UNITS[h]);
        put(b, " hundred");
    }
    if (rest) {
        put(b, " and ");
        en_below100(b, rest);
    }
}

/* The form of 1..9 in front of "und", "hundert" and "tausend". */
static const char *de_prefix(int d) { return d == 1 ? "ein" : DE_UNITS[d]; }

static void de_below100(sbuf *b, int n) {
    if (n < 20) {
        put(b, DE_UNITS[n]);
        return;
    }
    if (n % 10) {
        put(b, de_prefix(n % 10));
        put(b, "und");
    }
    put(b, DE_TENS[n / 10]);
}

/* German: one word, thousands, hundreds, then the part below 100 with the
 * units before the tens. */
static void de_words(sbuf *b, int n) {
    int th = n / 1000, h = n / 100 % 10, rest = n % 100;
    if (n < 100) {
        de_below100(b, n);
        return;
    }
    if (th) {
        put(b, de_prefix(th));
        put(b, "tausend");
    }
    if (h) {
        put(b, de_prefix(h));
        put(b, "hundert");
    }
    if (rest) de_below100(b, rest);
}

static int spell(int64_t n, char *buf, size_t cap, void (*words)(sbuf *, int), const char *lang) {
    if (n < 0 || n > TFM_NUMBERS_MAX) {
        tfm_set_error("numbers: %lld is outside 0..%d", (long long)n, TFM_NUMBERS_MAX);
        return 1;
    }
    sbuf b = {buf, cap, 0, 0};
    if (cap > 0) buf[0] = 0;
    words(&b, (int)n);
    if (b.overflow) {
        if (cap > 0) buf[0] = 0;
        tfm_set_error("numbers: buffer of %zu bytes too small for %lld in %s", cap, (long long)n,
                      lang);
        return 1;
    }
    return 0;
}

int tfm_number_en(int64_t n, char *buf, size_t cap) {
    return spell(n, buf, cap, en_words, "English");
}
int tfm_number_de(int64_t n, char *buf, size_t cap) {
    return spell(n, buf, cap, de_words, "German");
}

int tfm_numbers_pair(int64_t n, char *en, size_t en_cap, char *de, size_t de_cap) {
    return tfm_number_en(n, en, en_cap) || tfm_number_de(n, de, de_cap);
}

void tfm_numbers_shuffle(uint64_t seed, int64_t *order) {
    const int64_t n = TFM_NUMBERS_MAX + 1;
    for (int64_t i = 0; i < n; i++) order[i] = i;
    tfm_rng r;
    tfm_rng_seed(&r, seed ^ 0x4E554D42455253ull); /* "NUMBERS" */
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)tfm_rng_below(&r, (uint64_t)i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

const char *const tfm_numbers_files[6] = {"test.en",  "test.de",  "valid.en",
                                          "valid.de", "train.en", "train.de"};

void tfm_numbers_corpus_free(tfm_numbers_corpus *c) {
    for (int i = 0; i < 6; i++) free(c->text[i]);
    memset(c, 0, sizeof *c);
}

int tfm_numbers_corpus_make(tfm_numbers_corpus *c, uint64_t seed, int64_t n_train, int64_t n_valid,
                            int64_t n_test) {
    memset(c, 0, sizeof *c);
    const int64_t total = TFM_NUMBERS_MAX + 1;
    if (n_train < 0 || n_valid < 0 || n_test < 0 || n_train > total || n_valid > total ||
        n_test > total || n_train + n_valid + n_test > total) {
        tfm_set_error("numbers: %lld train + %lld valid + %lld test sentences do not fit in the "
                      "%lld distinct numbers 0..%d",
                      (long long)n_train, (long long)n_valid, (long long)n_test, (long long)total,
                      TFM_NUMBERS_MAX);
        return 1;
    }
    int64_t *order = malloc((size_t)total * sizeof *order);
    /* each line is shorter than TFM_NUMBER_WORDS_CAP: the splits' sizes bound the texts */
    const int64_t count[3] = {n_test, n_valid, n_train}, first[3] = {0, n_test, n_test + n_valid};
    for (int i = 0; i < 6 && order; i++)
        if (!(c->text[i] = malloc((size_t)(count[i / 2] * TFM_NUMBER_WORDS_CAP + 1)))) break;
    if (!order || !c->text[5]) {
        free(order);
        tfm_numbers_corpus_free(c);
        return tfm_set_error("numbers: out of memory"), 1;
    }
    tfm_numbers_shuffle(seed, order);
    char en[TFM_NUMBER_WORDS_CAP], de[TFM_NUMBER_WORDS_CAP];
    int rc = 0;
    for (int k = 0; k < 3 && !rc; k++)
        for (int64_t i = 0; i < count[k] && !rc; i++) {
            rc = tfm_numbers_pair(order[first[k] + i], en, sizeof en, de, sizeof de);
            const char *line[2] = {en, de};
            for (int side = 0; side < 2 && !rc; side++) {
                size_t n = strlen(line[side]);
                memcpy(c->text[2 * k + side] + c->len[2 * k + side], line[side], n);
                c->text[2 * k + side][c->len[2 * k + side] + n] = '\n';
                c->len[2 * k + side] += n + 1;
            }
        }
    free(order);
    if (rc) tfm_numbers_corpus_free(c);
    return rc;
}

int tfm_numbers_corpus_write(const char *dir, uint64_t seed, int64_t n_train, int64_t n_valid,
                             int64_t n_test) {
    tfm_numbers_corpus c;
    if (tfm_numbers_corpus_make(&c, seed, n_train, n_valid, n_test)) return 1;
    int rc = 0;
    for (int i = 0; i < 6 && !rc; i++) {
        char path[4096];
        if (tfm_join_into(path, sizeof path, dir, tfm_numbers_files[i])) {
            rc = 1;
            break;
        }
        FILE *f = fopen(path, "wb");
        if (!f) {
            tfm_set_error("%s: cannot create: %s", path, strerror(errno));
            rc = 1;
            break;
        }
        int bad = fwrite(c.text[i], 1, c.len[i], f) != c.len[i];
        if (fclose(f) != 0 || bad) {
            tfm_set_error("%s: write error: %s", path, strerror(errno));
            rc = 1;
        }
    }
    tfm_numbers_corpus_free(&c);
    return rc;
}
