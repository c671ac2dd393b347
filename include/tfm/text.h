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

/* ---------------------------------------------------------------- UTF-8 */

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
/* Ids -> detokenised text (malloc'd, caller frees). <pad>, <s> and </s> are
 * skipped; <unk> is written as the word piece "<unk>" so that unknown output
 * stays visible. NULL with an error for an id outside [0, size). */
char *tfm_vocab_decode(const tfm_vocab *v, const int32_t *ids, int64_t n);

/* ----------------------------------------------------- Hugging Face export */

/* Writes a Hugging Face tokenizers "tokenizer.json" for this model: model
 * "BPE" with unk_token "<unk>", continuing_subword_prefix null,
 * end_of_word_suffix "</w>", a WhitespaceSplit pre-tokenizer, a BPEDecoder
 * with suffix "</w>", the four specials as added tokens, and the merges.
 *
 * Mapping of subwords: HF marks the END of a word instead of continuation,
 * so our "X@@" (a piece followed by more of the word) becomes "X" and our
 * word-final "Y" becomes "Y</w>"; the specials are kept as they are. Ids
 * 0..size-1 are exactly ours. HF also requires every merge's two symbols
 * and their concatenation to be in the vocab; the ones that are not among
 * our tokens (intermediate symbols, characters never left alone) get ids
 * from size upwards in merge order. On the training text they never come
 * out of HF's tokenizer; on unseen text such an id stands where our encoder
 * gives <unk>. If two of our tokens map to the same HF string (only possible
 * when the text itself contains "</w>") the lower id keeps it. HF splits on
 * Unicode whitespace while we split on ASCII whitespace only. Only version
 * 0.2 codes can be exported. */
char *tfm_bpe_hf_tokenizer_json(const tfm_bpe *b, const tfm_vocab *v, size_t *len);
int tfm_bpe_write_hf_tokenizer(const tfm_bpe *b, const tfm_vocab *v, const char *path);

#endif
