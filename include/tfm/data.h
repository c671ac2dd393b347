/* tfm/data.h: parallel text in memory, length-bucketed batches of token ids,
 * and a generated English/German numbers corpus for tests.
 *
 *   tfm_corpus c;                                   // aligned sentences
 *   if (tfm_corpus_read("train.en", "train.de", NULL, &c)) die(tfm_last_error());
 *   ... encode c.src[i], c.tgt[i] into ids (text.h) -> tfm_pairs pairs ...
 *   tfm_batcher b;
 *   tfm_batch_opts o = {.batch_tokens = 4096, .max_src_len = 100, .max_tgt_len = 100, .seed = 1};
 *   if (tfm_batcher_init(&b, &pairs, &o)) die(tfm_last_error());
 *   printf("dropped %lld pairs longer than 100\n", (long long)b.n_dropped);
 *   int64_t B, S, T;
 *   tfm_batcher_max_shape(&b, &B, &S, &T);
 *   tfm_batch batch;
 *   tfm_batch_alloc(&batch, B, S, T);               // once; filling never allocates
 *   for (;;) {
 *       const int64_t *idx;
 *       int64_t n = tfm_batcher_next(&b, &idx);      // b.state says where we are
 *       tfm_batch_fill(&batch, &pairs, idx, n);
 *       ... train on batch.src (B, S), batch.dec_in / batch.dec_out (B, T) ...
 *       ... checkpoint b.state (three integers); tfm_batcher_set_state resumes ...
 *   }
 *
 * Text conventions (applied by every reader here):
 *   - UTF-8, one sentence per line, "\n" or "\r\n" line endings, the final line
 *     ending is optional; a UTF-8 byte order mark at the start is skipped.
 *   - Strict UTF-8: overlong forms, UTF-16 surrogates, code points above
 *     U+10FFFF and truncated sequences are errors (file:line, byte column).
 *   - Whitespace normalization: runs of ASCII whitespace (space, tab, CR, VT,
 *     FF) become one space, and leading/trailing whitespace is removed. Other
 *     Unicode spaces (U+00A0, ...) are left alone: they are the tokenizer's
 *     business. So "  a\tb  \r\n" reads as "a b".
 *   - Errors (non-zero return, tfm_last_error()): missing or unreadable file,
 *     an empty (0-byte) file unless allow_empty_file, a NUL byte, invalid
 *     UTF-8, a line longer than max_line_bytes (checked while reading, so an
 *     unbounded line is never held in memory), an empty sentence unless
 *     allow_empty, and for tfm_corpus_read unequal line counts in the two
 *     files.
 *   - Reading is linear in the input size: the file is streamed in 64 KiB
 *     chunks and all sentences of a file share one growing buffer. */
#ifndef TFM_DATA_H
#define TFM_DATA_H

#include "tfm/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reserved token ids shared with the vocabulary (text.h). */
#define TFM_PAD_ID 0
#define TFM_BOS_ID 1
#define TFM_EOS_ID 2

/* ---- reading text ----------------------------------------------------------- */
#define TFM_MAX_LINE_BYTES_DEFAULT ((int64_t)1 << 20)

typedef struct {
    int64_t max_line_bytes; /* longest accepted line (bytes, without "\r\n"); <= 0: 1 MiB */
    int allow_empty;        /* accept sentences that are empty after normalization */
    int allow_empty_file;   /* a 0-byte file gives 0 lines instead of an error (translate stdin) */
} tfm_corpus_opts;

/* The lines of one file: n NUL-terminated normalized sentences. line[i]
 * points into text (one block); free with tfm_lines_free. */
typedef struct {
    int64_t n;
    char **line;
    char *text;
} tfm_lines;

/* Aligned sentence pairs: src[i] translates to tgt[i]. Owned (free with
 * tfm_corpus_free); src[i] and tgt[i] point into src_text and tgt_text. */
typedef struct {
    int64_t n;
    char **src;
    char **tgt;
    char *src_text, *tgt_text;
} tfm_corpus;

/* opts may be NULL (defaults). On error *out is left empty (safe to free). */
int tfm_corpus_read(const char *src_path, const char *tgt_path, const tfm_corpus_opts *opts,
                    tfm_corpus *out);
void tfm_corpus_free(tfm_corpus *c);

/* One file of sentences (translation input); path "-" reads stdin, named
 * "<stdin>" in messages. */
int tfm_text_read_lines(const char *path, const tfm_corpus_opts *opts, tfm_lines *out);
/* The same from a memory buffer; name is used in error messages. */
int tfm_text_parse_lines(const char *name, const char *buf, size_t len, const tfm_corpus_opts *opts,
                         tfm_lines *out);
void tfm_lines_free(tfm_lines *l);

/* The streaming line reader behind the functions above, for input that
 * arrives in pieces: init, feed any number of chunks (split anywhere, even
 * inside a UTF-8 sequence or a "\r\n"), then finish. After an error, feed
 * and finish keep returning non-zero; finish (or free) releases everything.
 * Fields are private. name must outlive the reader. */
typedef struct {
    const char *name;
    int64_t max_line;
    int allow_empty, allow_empty_file;
    int failed;
    int64_t line_no;   /* 1-based number of the line being read */
    uint64_t bytes_in; /* total bytes fed, to tell an empty file */
    char *cur;         /* the current line when it straddles chunks */
    size_t cur_len, cur_cap;
    char *text; /* normalized sentences, NUL-separated */
    size_t text_len, text_cap;
    int64_t *offs; /* start of each sentence in text */
    int64_t n, offs_cap;
} tfm_line_reader;

void tfm_line_reader_init(tfm_line_reader *r, const char *name, const tfm_corpus_opts *opts);
/* Hint: reserve room for this many bytes of text (the file size) up front. */
int tfm_line_reader_reserve(tfm_line_reader *r, size_t bytes);
int tfm_line_reader_feed(tfm_line_reader *r, const char *bytes, size_t n);
/* Takes the sentences into *out (on success) and frees the reader. */
int tfm_line_reader_finish(tfm_line_reader *r, tfm_lines *out);
void tfm_line_reader_free(tfm_line_reader *r);

/* Lines as they arrive (tfm translate reading a pipe): windows of at most max
 * lines (max < 1 counts as 1), cut short when no more input is ready, so a program that answers
 * each window before reading on never waits for lines not yet written.
 * Lines are checked and normalized as above, errors naming name:line.
 *
 *     tfm_line_window w;
 *     tfm_line_window_init(&w, 0, "<stdin>", &opts);
 *     for (;;) {
 *         tfm_lines win; int64_t first;             // number of win's first line
 *         if (tfm_line_window_next(&w, 1024, &win, &first)) die(tfm_last_error());
 *         if (win.n == 0) break;                    // end of input
 *         ... answer win.line[0 .. win.n), flush ...; tfm_lines_free(&win);
 *     }
 *     tfm_line_window_free(&w);                     // fd stays open */
typedef struct {
    int fd;
    const char *name;
    tfm_corpus_opts opts;
    char *buf; /* bytes read and not yet handed out */
    size_t len, cap;
    size_t scanned;     /* bytes of buf searched for line ends */
    size_t cut;         /* end of the last complete line counted */
    int64_t n_complete; /* complete lines in buf[0 .. cut) */
    int64_t next_line;  /* number of the first line in buf */
    uint64_t total;     /* bytes read so far */
    int eof;
} tfm_line_window;
void tfm_line_window_init(tfm_line_window *w, int fd, const char *name,
                          const tfm_corpus_opts *opts);
int tfm_line_window_next(tfm_line_window *w, int64_t max, tfm_lines *out, int64_t *first);
void tfm_line_window_free(tfm_line_window *w);

/* ---- batching ----------------------------------------------------------------
 * Input: already encoded pairs of id sequences, without <s> or </s> (those are
 * added when a batch is filled). Not owned by the batcher, which keeps a
 * pointer: the pairs must outlive it and must not change. */
typedef struct {
    int64_t n;
    int32_t **src; /* src[i]: src_len[i] ids */
    int64_t *src_len;
    int32_t **tgt; /* tgt[i]: tgt_len[i] ids */
    int64_t *tgt_len;
} tfm_pairs;

/* Shapes of a batch of pairs i in I: B = |I|, S = max src_len + 1 (</s>),
 * T = max tgt_len + 1 (<s> in front of the decoder input, </s> after the
 * decoder output). The token budget bounds the padded size: B * max(S, T) <=
 * batch_tokens, so every (B, S) and (B, T) tensor of a batch has at most
 * batch_tokens entries. */
typedef struct {
    int64_t batch_tokens;        /* > 0 */
    int64_t max_src_len;         /* drop pairs with more source ids; <= 0: no limit */
    int64_t max_tgt_len;         /* drop pairs with more target ids; <= 0: no limit */
    int64_t max_batch_sentences; /* cap on B; <= 0: no cap */
    /* at least this many pairs in every batch (data parallelism: one for
     * each process); <= 1: no minimum. Only the last batch of a cut can hold
     * fewer, and then it takes the missing pairs from the end of the batch
     * before it, when both stay within the budget and keep the minimum;
     * batches that already have it are left as they are. */
    int64_t min_batch_sentences;
    uint64_t seed;
} tfm_batch_opts;

/* Where the batcher is: the whole state a checkpoint needs. The batch order
 * is a function of (pairs, opts, seed, epoch), so restoring these three
 * integers resumes with exactly the batch that would have come next. */
typedef struct {
    uint64_t seed;
    int64_t epoch; /* 0-based */
    int64_t pos;   /* batches of this epoch already handed out */
} tfm_batcher_state;

/* Length bucketing: the kept pairs are sorted by max(S, T), then by S, ties
 * broken by a random key from the seed; the sorted list is cut greedily into
 * batches that respect the budget. The batches stay fixed (unless the pairs
 * change every epoch: tfm_batcher_set_refresh); each epoch visits them in an
 * order shuffled from (seed, epoch). No threads, so the result is
 * the same for any thread count. */
typedef struct {
    const tfm_pairs *pairs;
    tfm_batch_opts opts;
    int64_t n_kept, n_dropped; /* pairs kept / dropped for exceeding max lengths */
    int64_t *order; /* kept pair indices, bucketed; batch k is order[start[k] .. start[k+1]) */
    int64_t *start; /* n_batches + 1 */
    int64_t n_batches;
    int64_t *perm; /* visiting order of the batches in perm_epoch */
    int64_t perm_epoch;
    tfm_batcher_state state;
    /* tfm_batcher_set_refresh: pairs whose ids change every epoch */
    void (*refresh)(void *ctx, int64_t epoch);
    void *refresh_ctx;
    int64_t pairs_epoch; /* the epoch the pairs and batches are cut for */
    void *keys;          /* (pairs->n) sort keys, kept for re-cutting */
} tfm_batcher;

/* Errors: batch_tokens <= 0, no pair left after filtering, a kept pair that
 * alone exceeds the budget (names it and the numbers). */
int tfm_batcher_init(tfm_batcher *b, const tfm_pairs *pairs, const tfm_batch_opts *opts);
void tfm_batcher_free(tfm_batcher *b);
/* The next batch's pair indices (valid while b lives); returns their number
 * (> 0) and advances the state; after the last batch of an epoch the state
 * moves to (epoch + 1, 0). */
int64_t tfm_batcher_next(tfm_batcher *b, const int64_t **idx);
/* Batch k (0 <= k < n_batches) in bucket order, without touching the state:
 * for evaluation passes. Returns its size. */
int64_t tfm_batcher_batch(const tfm_batcher *b, int64_t k, const int64_t **idx);
/* Resume from a saved state (a different seed re-buckets with it). Error if
 * pos is outside [0, n_batches] or epoch < 0. */
int tfm_batcher_set_state(tfm_batcher *b, tfm_batcher_state s);
/* For pairs that change every epoch (BPE-dropout): before the batches of an
 * epoch are handed out (tfm_batcher_next, and tfm_batcher_set_state for
 * the epoch resumed), refresh(ctx, epoch) rewrites the pairs' ids and
 * lengths in place, and the batches are cut again from them as by
 * tfm_batcher_init (with the same seed): n_kept, n_dropped and n_batches
 * then describe that epoch. The pairs must already hold epoch e's ids when
 * this is called (e = the state's epoch); refresh must not fail, and it is
 * called only when the epoch changes. No allocation after this call (the
 * cut sorts in a buffer made here). An epoch whose pairs leave none to
 * batch, or one that alone exceeds the budget, makes tfm_batcher_next
 * return 0 with the error set. */
int tfm_batcher_set_refresh(tfm_batcher *b, void (*refresh)(void *ctx, int64_t epoch), void *ctx);
/* Largest B, S and T over all batches (each maximized separately), to size
 * buffers and arenas once. */
void tfm_batcher_max_shape(const tfm_batcher *b, int64_t *max_b, int64_t *max_s, int64_t *max_t);
/* Number of pairs lengths over max_src_len / max_tgt_len (<= 0: no limit). */
int64_t tfm_pairs_count_too_long(const tfm_pairs *p, int64_t max_src_len, int64_t max_tgt_len);

/* One batch, dense row-major with this batch's own S and T as row strides:
 *   src     (B, S): x_1 .. x_m </s> pad ...
 *   dec_in  (B, T): <s> y_1 .. y_k pad ...
 *   dec_out (B, T): y_1 .. y_k </s> pad ...
 *   src_pad (B, S), tgt_pad (B, T): 1 where the position is padding, else 0
 * pad is TFM_PAD_ID (0), <s> TFM_BOS_ID (1), </s> TFM_EOS_ID (2). The buffers
 * hold cap_b * cap_s (or cap_t) entries; tfm_batch_alloc sets them up, or the
 * caller may point them into its own memory and set the caps. */
typedef struct {
    int64_t cap_b, cap_s, cap_t;
    int64_t b, s, t;
    int32_t *src, *dec_in, *dec_out;
    uint8_t *src_pad, *tgt_pad;
    int64_t n_src_tokens; /* non-pad entries of src (with </s>) */
    int64_t n_tgt_tokens; /* non-pad entries of dec_out (with </s>): the loss denominator */
} tfm_batch;

int tfm_batch_alloc(tfm_batch *bt, int64_t max_b, int64_t max_s, int64_t max_t);
void tfm_batch_free(tfm_batch *bt);
/* Fills bt with pairs idx[0 .. n). No allocation. Error (nothing written) if
 * the batch does not fit the capacities. */
int tfm_batch_fill(tfm_batch *bt, const tfm_pairs *p, const int64_t *idx, int64_t n);

/* ---- the numbers corpus --------------------------------------------------------
 * Integers 0 .. TFM_NUMBERS_MAX as English and German words:
 *   English (British style): "zero", "twenty-one" (hyphenated tens),
 *     "three hundred and five", "one thousand and five",
 *     "two thousand three hundred and fifty-four": "and" goes before the last
 *     part below 100 when a hundred or thousand precedes it; always "one
 *     hundred" / "one thousand", never "a hundred" or "eleven hundred".
 *   German (one word, standard spelling): "null", "eins", "einundzwanzig",
 *     "dreihundertfünf", "zweitausenddreihundertvierundfünfzig"; "eins" only
 *     at the end ("hunderteins"), "ein" inside compounds ("einundzwanzig",
 *     "einhundert", "eintausend"); always "einhundert" / "eintausend", never a
 *     bare "hundert"; "sechzehn", "siebzehn", "sechzig", "siebzig",
 *     "dreißig" (with ß).
 * Buffers: TFM_NUMBER_WORDS_CAP bytes always suffice. */
#define TFM_NUMBERS_MAX 9999
#define TFM_NUMBER_WORDS_CAP 96

/* Return 0, or non-zero (with an error) if n is out of range or cap too small. */
int tfm_number_en(int64_t n, char *buf, size_t cap);
int tfm_number_de(int64_t n, char *buf, size_t cap);
/* Both spellings of n at once. */
int tfm_numbers_pair(int64_t n, char *en, size_t en_cap, char *de, size_t de_cap);
/* The seeded shuffle of 0 .. TFM_NUMBERS_MAX the corpus files are cut from:
 * fills order[0 .. TFM_NUMBERS_MAX]. */
void tfm_numbers_shuffle(uint64_t seed, int64_t *order);
/* The corpus files' texts, one number per line, with disjoint numbers across
 * (and within) splits: test takes the first n_test numbers of the seeded
 * shuffle, valid the next n_valid, train the next n_train. text[i] (len[i]
 * bytes, malloc'd) is the file tfm_numbers_files[i]: test.en, test.de,
 * valid.en, valid.de, train.en, train.de. Error if n_train + n_valid + n_test
 * > TFM_NUMBERS_MAX + 1. */
typedef struct {
    char *text[6];
    size_t len[6];
} tfm_numbers_corpus;
extern const char *const tfm_numbers_files[6];
int tfm_numbers_corpus_make(tfm_numbers_corpus *c, uint64_t seed, int64_t n_train, int64_t n_valid,
                            int64_t n_test);
void tfm_numbers_corpus_free(tfm_numbers_corpus *c);
/* Writes them into dir (which must exist), one file after the other in
 * place; `tfm data numbers` replaces all six atomically instead. */
int tfm_numbers_corpus_write(const char *dir, uint64_t seed, int64_t n_train, int64_t n_valid,
                             int64_t n_test);

#ifdef __cplusplus
}
#endif

#endif
