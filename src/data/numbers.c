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

/* Writes one split's two files; the numbers are order[0 .. count). */
static int write_split(const char *dir, const char *split, const int64_t *order, int64_t count) {
    char path_en[4096], path_de[4096];
    char name_en[64], name_de[64];
    snprintf(name_en, sizeof name_en, "%s.en", split);
    snprintf(name_de, sizeof name_de, "%s.de", split);
    if (tfm_join_into(path_en, sizeof path_en, dir, name_en) ||
        tfm_join_into(path_de, sizeof path_de, dir, name_de))
        return 1;
    FILE *fe = fopen(path_en, "wb");
    if (!fe) {
        tfm_set_error("%s: cannot create: %s", path_en, strerror(errno));
        return 1;
    }
    FILE *fd = fopen(path_de, "wb");
    if (!fd) {
        tfm_set_error("%s: cannot create: %s", path_de, strerror(errno));
        fclose(fe);
        return 1;
    }
    char en[TFM_NUMBER_WORDS_CAP], de[TFM_NUMBER_WORDS_CAP];
    int rc = 0;
    for (int64_t i = 0; i < count && !rc; i++) {
        rc = tfm_numbers_pair(order[i], en, sizeof en, de, sizeof de);
        if (!rc && (fprintf(fe, "%s\n", en) < 0 || fprintf(fd, "%s\n", de) < 0)) {
            tfm_set_error("%s: write error: %s", path_en, strerror(errno));
            rc = 1;
        }
    }
    if (fclose(fe) != 0 && !rc) {
        tfm_set_error("%s: write error: %s", path_en, strerror(errno));
        rc = 1;
    }
    if (fclose(fd) != 0 && !rc) {
        tfm_set_error("%s: write error: %s", path_de, strerror(errno));
        rc = 1;
    }
    return rc;
}

int tfm_numbers_corpus_write(const char *dir, uint64_t seed, int64_t n_train, int64_t n_valid,
                             int64_t n_test) {
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
    if (!order) {
        tfm_set_error("numbers: out of memory");
        return 1;
    }
    tfm_numbers_shuffle(seed, order);
    int rc = write_split(dir, "test", order, n_test) ||
             write_split(dir, "valid", order + n_test, n_valid) ||
             write_split(dir, "train", order + n_test + n_valid, n_train);
    free(order);
    return rc;
}
