/* tfm/text.h: UTF-8 validation, byte-pair-encoding subwords (learn, apply,
 * detokenize) and the token vocabulary, interoperable with subword-nmt.
 *
 * Worked example (error handling elided):
 *
 *     const char *files[] = {"train.de", "train.en"};
 *     tfm_bpe *bpe = tfm_bpe_learn_files(files, 2, 10000, 2, NULL);  // joint model
 *     tfm_bpe_save(bpe, "codes");
 *     tfm_vocab *voc = tfm_vocab_build(bpe, files, 2);
 *     tfm_vocab_save(voc, "vocab");
 *     int32_t ids[256];
 *     int64_t n = tfm_vocab_encode(bpe, voc, "Ein Mädchen", 12, ids, 256);
 *     char *text = tfm_vocab_decode(voc, ids, n);  // "Ein Mädchen"
 *     free(text); tfm_vocab_free(voc); tfm_bpe_free(bpe);
 *
 * Text model (the rules every function below follows)
 * ---------------------------------------------------
 * - Input text is UTF-8, checked strictly (tfm_utf8_check); a NUL byte is
 *   rejected too because tokens are C strings.
 * - Words are the maximal runs of non-whitespace bytes, whitespace being the
 *   ASCII set: space, \t, \n, \v, \f, \r. Nothing else is split off (no
 *   punctuation splitting, no Unicode spaces such as U+00A0: those stay inside
 *   words). Runs of whitespace are therefore normalised: segmentation and
 *   detokenisation give words separated by single spaces with no leading or
 *   trailing space. subword-nmt splits on ' ' only; the two agree on text
 *   without tabs or other control whitespace.
 * - Each word is a sequence of code points; the end-of-word marker "</w>" is
 *   appended to the last one (subword-nmt codes version 0.2). Codes without a
 *   "#version:" header are read as version 0.1 (the marker is its own symbol)
 *   like subword-nmt does.
 * - Segmented text uses the "@@ " continuation convention of subword-nmt's
 *   apply_bpe.py with separator "@@": every piece except a word's last gets
 *   "@@" appended ("Mädchen" -> "Mäd@@ chen").
 * - Text that contains "</w>" is handled as ordinary characters: the marker
 *   is tracked by position, never searched for, so it round-trips. (As in
 *   subword-nmt, a learned symbol string such as "x</w>" then means the same
 *   thing in the middle of a word and at its end.)
 * - Text that contains "@@": pieces ending in "@@" are unambiguous inside a
 *   word (the separator is stripped exactly once), but a WORD ending in "@@"
 *   would read as a continuation. Such words are escaped: a word matching
 *   /@@~*$/ (ending in "@@" then zero or more '~') gets one more '~' before
 *   segmentation and learning, and tfm_bpe_detok removes one '~' from every
 *   word matching /@@~+$/. So "a@@" is emitted as "a@@~" (or its pieces) and
 *   detokenises back to "a@@". subword-nmt does not escape (its output for
 *   such words is not reversible); everything else is identical.
 * With these rules learn -> apply -> detok is lossless on any valid UTF-8
 * text without NUL whose whitespace is already normalised.
 *
 * Learning is subword-nmt's algorithm with exact incremental pair counts:
 * an index from each pair to the words containing it, so each merge only
 * revisits those words, and a max-heap of pairs with lazy deletion (10000
 * merges on Multi30k's 58k training sentences take under a second).
 * Tie rule: the next merge is the pair with the highest frequency; among
 * equal frequencies the lexicographically greatest pair (first symbol, then
 * second, comparing UTF-8 bytes = code point order), i.e. the max over
 * (freq, pair) that subword-nmt's learn_bpe.py takes. Learning stops early
 * when the best pair occurs fewer than min_freq times.
 *
 * Objects are not thread-safe: tfm_bpe keeps a segmentation cache, so use
 * one per thread (or serialise the calls). */
#ifndef TFM_TEXT_H
#define TFM_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tfm/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- UTF-8 */

/* 3 when s[0..n) starts with a UTF-8 byte order mark (EF BB BF, which
 * editors on Windows write), else 0: readers of text files skip it. */
size_t tfm_utf8_bom_len(const char *s, size_t n);
/* 0 when line[0..len) is valid UTF-8 without NUL bytes; otherwise -1 with
 * "<name>:<lineno>: invalid UTF-8 at byte N" or "...: NUL byte at byte N"
 * (N from 1), the check of every text reader. */
int tfm_text_check_line(const char *line, size_t len, const char *name, int64_t lineno);

/* 0 when s[0..n) is valid UTF-8; otherwise -1 and, when bad_offset is not
 * NULL, the byte offset of the first invalid sequence. Strict: rejects stray
 * continuation bytes, overlong forms, surrogates (U+D800..U+DFFF), code
 * points above U+10FFFF, bytes 0xC0, 0xC1, 0xF5..0xFF and truncated
 * sequences. U+0000 is valid UTF-8 (callers that need C strings reject it). */
int tfm_utf8_check(const char *s, size_t n, size_t *bad_offset);

/* Length in bytes (1..4) of the valid sequence starting at s[0] with n bytes
 * available, or 0 when it is invalid or n == 0. */
size_t tfm_utf8_seq_len(const char *s, size_t n);

/* Why the sequence starting at s[0] (n bytes available) is not valid UTF-8,
 * for error messages: "unexpected continuation byte", "overlong encoding",
 * "UTF-16 surrogate", "code point above U+10FFFF", "invalid byte" or
 * "truncated sequence"; NULL when it is valid (or n is 0). */
const char *tfm_utf8_error(const char *s, size_t n);

/* Decodes the code point at s[*pos] and advances *pos past it. Returns the
 * code point, or -1 (leaving *pos unchanged) when the sequence is invalid or
 * *pos >= n. Iterate with: while (*pos < n) { int32_t c = tfm_utf8_next(...);
 * if (c < 0) error; } */
int32_t tfm_utf8_next(const char *s, size_t n, size_t *pos);

/* Writes the UTF-8 form of cp into out (up to 4 bytes, not terminated) and
 * returns its length, or 0 when cp is a surrogate or above U+10FFFF. */
size_t tfm_utf8_encode(uint32_t cp, char out[4]);

/* Number of code points in s[0..n), or -1 when it is not valid UTF-8. */
int64_t tfm_utf8_count(const char *s, size_t n);

/* Whether c is one of the ASCII whitespace bytes that separate words. */
static inline int tfm_text_is_space(int c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* ------------------------------------------------------------------ BPE */

#define TFM_BPE_EOW "</w>" /* end-of-word marker inside codes */
#define TFM_BPE_SEP "@@"   /* continuation separator in segmented text */
#define TFM_BPE_ESCAPE '~' /* escape for words ending in "@@" (see above) */

typedef struct tfm_bpe tfm_bpe; /* merges + segmentation cache */

/* Learns a joint model from every file (each read line by line; errors name
 * file:line for bad UTF-8 or NUL bytes). Stops after n_merges merges or when
 * the best pair is rarer than min_freq (>= 1; subword-nmt's default is 2).
 * Progress goes to log (one line per 1000 merges) when log is not NULL.
 * Returns NULL with tfm_last_error() set on failure. */
tfm_bpe *tfm_bpe_learn_files(const char *const *paths, int n_paths, int64_t n_merges,
                             int64_t min_freq, FILE *log);
/* The same on text in memory; name is used in error messages. */
tfm_bpe *tfm_bpe_learn_text(const char *text, size_t len, const char *name, int64_t n_merges,
                            int64_t min_freq);
/* One text in memory per input, with its name for errors. A caller that
 * also builds the vocabulary (tfm_vocab_build_texts) reads each input once
 * (tfm_read_input) and passes the same buffers to both: pipes, FIFOs and
 * /dev/stdin cannot be read twice. */
typedef struct {
    const char *name;
    const char *text;
    size_t len;
} tfm_text_input;
tfm_bpe *tfm_bpe_learn_texts(const tfm_text_input *in, int n, int64_t n_merges, int64_t min_freq,
                             FILE *log);

/* Codes file: "#version: 0.2" then one merge "left right" per line. Loading
 * accepts CRLF, a missing header (version 0.1) and "#version: 0.1"/"0.2";
 * errors name file:line (malformed line, bad UTF-8, unknown version). Lines
 * are read like apply_bpe.py: leading/trailing spaces are ignored, and the
 * first occurrence of a duplicated merge keeps its rank. */
tfm_bpe *tfm_bpe_load(const char *path);
tfm_bpe *tfm_bpe_load_mem(const char *data, size_t len, const char *name);
int tfm_bpe_save(const tfm_bpe *b, const char *path);
void tfm_bpe_free(tfm_bpe *b);

int64_t tfm_bpe_n_merges(const tfm_bpe *b);
int tfm_bpe_version(const tfm_bpe *b); /* 1 for codes 0.1, 2 for 0.2 */
/* The rank-th merge (0-based); NULL when out of range. */
const char *tfm_bpe_merge_left(const tfm_bpe *b, int64_t rank);
const char *tfm_bpe_merge_right(const tfm_bpe *b, int64_t rank);

/* A list of subword strings; token i is data + offset[i], NUL-terminated.
 * Zero-initialise before first use, reuse across calls, free once. */
typedef struct {
    int64_t n, cap;
    size_t *offset;
    char *data;
    size_t data_len, data_cap;
} tfm_subwords;
static inline const char *tfm_subwords_get(const tfm_subwords *s, int64_t i) {
    return s->data + s->offset[i];
}
void tfm_subwords_free(tfm_subwords *s);

/* Segments one line into subwords ("@@" on every piece but a word's last),
 * replacing the previous contents of out. Words are split on ASCII
 * whitespace. Errors say "invalid UTF-8 at byte N" or "NUL byte at byte N"
 * (1-based within the line) with no file: callers that know it prefix
 * "file:line: ". Not thread-safe (cache, scratch): one tfm_bpe per thread. */
int tfm_bpe_segment(tfm_bpe *b, const char *line, size_t len, tfm_subwords *out);
/* BPE-dropout (Provilkov et al. 2020), as subword-nmt's apply_bpe.py
 * --dropout: at every merge step of a word each adjacent pair is first left
 * out with probability p (one tfm_rng_double draw per pair, kept when >= p);
 * the lowest-rank merge among the pairs kept is applied to its kept
 * occurrences, and the word is final when no kept pair has a merge. Every
 * piece is a character or a merge's result, so a vocabulary with the merge
 * symbols (tfm_vocab_add_merge_symbols) has them all. p = 0 is
 * tfm_bpe_segment; p = 1 leaves single characters. The cache is not used:
 * once out and b's scratch have grown to a line's character count, no call
 * allocates. */
int tfm_bpe_segment_dropout(tfm_bpe *b, const char *line, size_t len, double p, tfm_rng *rng,
                            tfm_subwords *out);

/* Detokenises segmented text: a token ending in "@@" is joined to the next
 * one with the "@@" removed (also at the end of the input, like subword-nmt's
 * sed rule), the '~' escape is undone, and words are separated by single
 * spaces. Writes at most len bytes plus a NUL to out (detokenising never
 * lengthens text, so out may be in itself), returns the output length.
 * Newlines count as whitespace, so pass one line at a time to keep lines. */
size_t tfm_bpe_detok(const char *in, size_t len, char *out);

/* ----------------------------------------------------------- vocabulary */

/* The special tokens, always ids 0..3 in this order. */
#define TFM_PAD_ID 0
#define TFM_BOS_ID 1
#define TFM_EOS_ID 2
#define TFM_UNK_ID 3
#define TFM_N_SPECIALS 4
#define TFM_PAD_TOKEN "<pad>"
#define TFM_BOS_TOKEN "<s>"
#define TFM_EOS_TOKEN "</s>"
#define TFM_UNK_TOKEN "<unk>"

/* Vocabulary file: UTF-8, one token per line, id = line number - 1 (the
 * first line is id 0). A line is "TOKEN" or "TOKEN COUNT" (one space, COUNT
 * a decimal integer: the token's frequency in the segmented training text;
 * the specials have 0). The first four lines must be <pad>, <s>, </s>,
 * <unk>. The rest, as written by tfm_vocab_build, are subwords in the
 * segmented form ("Mäd@@", "chen") by descending count, ties by ascending
 * byte order. Loading rejects, naming file:line: empty lines, bad UTF-8,
 * tokens with whitespace, bad counts, duplicates, missing specials. CRLF is
 * accepted. A text token equal to a special (a literal "<unk>" in the
 * corpus) is not given an entry of its own: it encodes to the special's id. */
typedef struct tfm_vocab tfm_vocab;

tfm_vocab *tfm_vocab_build(tfm_bpe *b, const char *const *paths, int n_paths);
tfm_vocab *tfm_vocab_build_text(tfm_bpe *b, const char *text, size_t len, const char *name);
tfm_vocab *tfm_vocab_build_texts(tfm_bpe *b, const tfm_text_input *in, int n);
tfm_vocab *tfm_vocab_load(const char *path);
tfm_vocab *tfm_vocab_load_mem(const char *data, size_t len, const char *name);
int tfm_vocab_save(const tfm_vocab *v, const char *path);
void tfm_vocab_free(tfm_vocab *v);

int32_t tfm_vocab_size(const tfm_vocab *v);
/* Id of a token (hash lookup), TFM_UNK_ID when absent. */
int32_t tfm_vocab_id(const tfm_vocab *v, const char *token);
int32_t tfm_vocab_id_n(const tfm_vocab *v, const char *token, size_t len);
/* Token of an id, NULL when out of range. */
const char *tfm_vocab_token(const tfm_vocab *v, int32_t id);
int64_t tfm_vocab_count(const tfm_vocab *v, int32_t id);

/* One line of text -> ids (segmentation + lookup, no <s>/</s> added). Writes
 * min(n, cap) ids and returns n, the number the line needs (call again with
 * a bigger buffer when n > cap), or -1 on bad input (tfm_last_error()). */
int64_t tfm_vocab_encode(tfm_bpe *b, const tfm_vocab *v, const char *line, size_t len, int32_t *ids,
                         int64_t cap);
/* The same with BPE-dropout (tfm_bpe_segment_dropout). */
int64_t tfm_vocab_encode_dropout(tfm_bpe *b, const tfm_vocab *v, const char *line, size_t len,
                                 double p, tfm_rng *rng, int32_t *ids, int64_t cap);
/* Ids -> detokenised text (malloc'd, caller frees). <pad>, <s> and </s> are
 * skipped; <unk> is written as the word piece "<unk>" so that unknown output
 * stays visible. NULL with an error for an id outside [0, size). */
char *tfm_vocab_decode(const tfm_vocab *v, const int32_t *ids, int64_t n);

/* ----------------------------------------------------- Hugging Face export */

/* Writes a Hugging Face tokenizers "tokenizer.json" (src/io/hf_tokenizer.c)
 * whose tokenizer(text) gives exactly tfm_vocab_encode's ids followed by
 * </s>, and whose decode(ids) gives tfm_vocab_decode's text:
 *   - added_tokens: the four specials (ids 0..3, special);
 *   - normalizer: Replace adding our '~' escape to words ending in "@@~*";
 *   - pre_tokenizer: Split on runs of ASCII whitespace (our word rule; HF's
 *     WhitespaceSplit would also split at U+00A0 and other Unicode spaces);
 *   - model: BPE with end_of_word_suffix "</w>", no continuing prefix, unk
 *     "<unk>", fuse_unk false; our "X@@" becomes "X" and a word-final "Y"
 *     becomes "Y</w>", with our ids. HF requires every merge's two symbols
 *     and their concatenation in the vocab: those our vocabulary lacks
 *     (intermediate symbols, characters never left alone) get <unk>'s id,
 *     which is what our encoder gives for such a piece. Duplicate merges are
 *     left out (HF would keep the last, we keep the first);
 *   - post_processor: TemplateProcessing "A </s>" (pairs "A B </s>");
 *   - decoder: a Sequence of Replace/Fuse steps equivalent to
 *     tfm_vocab_decode (with decode(..., skip_special_tokens=False); True
 *     also drops <unk>).
 * Exact when no merge has an input our vocabulary lacks
 * (info->n_merges_from_unk == 0; tfm_vocab_add_merge_symbols makes a
 * vocabulary so). Otherwise HF, which keys merges by the ids of their
 * inputs, also applies such a merge to a real <unk> (a character it has
 * never seen) next to the merge's other input, where we give <unk> and the
 * other piece. Also different: text containing "</w>" or the literal
 * special strings (HF matches "<s>" etc. in the raw text). Only version 0.2
 * codes can be exported. info (may be NULL) receives the counts. */
typedef struct {
    int64_t n_tokens;           /* entries in the model's vocab */
    int64_t n_symbols_unk;      /* merge symbols we lack, given <unk>'s id */
    int64_t n_merges_from_unk;  /* merges with such a symbol as an input */
    int64_t n_duplicate_merges; /* repeated merges left out */
} tfm_hf_tokenizer_info;
char *tfm_bpe_hf_tokenizer_json(const tfm_bpe *b, const tfm_vocab *v, size_t *len,
                                tfm_hf_tokenizer_info *info);
int tfm_bpe_write_hf_tokenizer(const tfm_bpe *b, const tfm_vocab *v, const char *path,
                               tfm_hf_tokenizer_info *info);
/* The same for the pad-last layout of a zero-start model's export
 * (tfm/export.h): "<pad>" is one more id, the vocabulary's size (the zero
 * row, decoder start and padding id of the model), and our id 0 is renamed
 * TFM_HF_TFM_PAD; every other id and the segmentation are unchanged. */
char *tfm_bpe_hf_tokenizer_json_pad_last(const tfm_bpe *b, const tfm_vocab *v, size_t *len,
                                         tfm_hf_tokenizer_info *info);
extern const char *const TFM_HF_TFM_PAD;
/* The regular expressions tokenizer.json uses (for tests and docs). */
extern const char *const TFM_HF_SPLIT_REGEX, *const TFM_HF_ESCAPE_REGEX,
                                                 *const TFM_HF_UNESCAPE_REGEX;

/* Appends to v every symbol of b's merges that v lacks (in merge order, count
 * 0, in our "@@" form), so that a Hugging Face tokenizer.json of the pair is
 * exact. Returns how many were added, -1 on error. Changes the vocabulary
 * size: do it before training a model on it. */
int64_t tfm_vocab_add_merge_symbols(tfm_vocab *v, const tfm_bpe *b);
/* How many of those v lacks (0: BPE-dropout's pieces all have ids), -1 on
 * error (version 0.1 codes). */
int64_t tfm_vocab_missing_merge_symbols(const tfm_vocab *v, const tfm_bpe *b);

#ifdef __cplusplus
}
#endif

#endif
