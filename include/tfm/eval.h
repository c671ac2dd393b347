/* tfm/eval.h: corpus BLEU, computed exactly as sacreBLEU's default
 * (tok:13a, case:mixed or lc, smooth:exp, closest reference length) and as
 * our reference implementation tools/bleu.py does, so that the numbers the
 * trainer logs are the numbers a paper would report.
 *
 *   const char *hyps[] = {"the cat sat", "hello world"};
 *   const char *ref0[] = {"the cat sat down", "hello , world"};
 *   const char *const *refs[] = {ref0};
 *   tfm_bleu b;
 *   if (tfm_bleu_corpus(hyps, 2, refs, 1, 0, &b)) die(tfm_last_error());
 *   char line[256];
 *   tfm_bleu_format(&b, "BLEU", 2, line, sizeof line);
 *   // "BLEU = 41.23 72.1/48.3/34.0/24.6 (BP = 0.982 ratio = 0.982 hyp_len = ...)"
 *
 * Segments are byte strings, normally UTF-8. Bytes that are not valid UTF-8
 * are kept as opaque characters (neither space, cased nor case-ignorable) so
 * that a model emitting broken bytes still gets a score; the file reader
 * below rejects them with file:line (bleu.py stops with a decode error). */
#ifndef TFM_EVAL_H
#define TFM_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TFM_BLEU_MAX_N 4

typedef struct {
    double score;                      /* 0..100 */
    double precisions[TFM_BLEU_MAX_N]; /* percent, after exp smoothing (0 where
                                          bleu.py leaves them 0) */
    double bp;                         /* brevity penalty */
    double ratio;                      /* hyp_len / ref_len, 0 when ref_len == 0 */
    int64_t hyp_len, ref_len;          /* tokens; ref_len sums the closest lengths */
    int64_t correct[TFM_BLEU_MAX_N];   /* clipped n-gram matches, n = 1..4 */
    int64_t total[TFM_BLEU_MAX_N];     /* hypothesis n-grams */
    int64_t n_segments;
} tfm_bleu;

/* How segments become tokens: TFM_BLEU_TOK_13A is sacreBLEU's default
 * (mteval-v13a); TFM_BLEU_TOK_NONE splits on whitespace only (sacreBLEU's
 * -tok none), for text that is already tokenized, such as Multi30k's
 * *.lc.norm.tok files. The functions without _tok use 13a. */
typedef enum { TFM_BLEU_TOK_13A = 0, TFM_BLEU_TOK_NONE = 1 } tfm_bleu_tok;
/* "13a" or "none"; 0, or non-zero with tfm_last_error() naming the choices. */
int tfm_bleu_tok_parse(const char *name, tfm_bleu_tok *tok);
const char *tfm_bleu_tok_name(tfm_bleu_tok tok); /* "13a", "none" */

/* Corpus BLEU of n_lines hypotheses against n_refs reference sets:
 * refs[r][i] is reference r of segment i. lowercase != 0 lowercases both
 * sides first (Python's str.lower(), Final_Sigma included). Returns 0, or
 * non-zero with tfm_last_error() set (no reference, NULL segment, memory). */
int tfm_bleu_corpus(const char *const *hyps, int64_t n_lines, const char *const *const *refs,
                    int n_refs, int lowercase, tfm_bleu *out);
int tfm_bleu_corpus_tok(const char *const *hyps, int64_t n_lines, const char *const *const *refs,
                        int n_refs, int lowercase, tfm_bleu_tok tok, tfm_bleu *out);

/* The same, one segment at a time: for a trainer decoding in batches. */
typedef struct tfm_bleu_acc tfm_bleu_acc;
tfm_bleu_acc *tfm_bleu_acc_new(int lowercase); /* NULL with an error on OOM */
tfm_bleu_acc *tfm_bleu_acc_new_tok(int lowercase, tfm_bleu_tok tok);
int tfm_bleu_acc_add(tfm_bleu_acc *acc, const char *hyp, const char *const *refs, int n_refs);
void tfm_bleu_acc_result(const tfm_bleu_acc *acc, tfm_bleu *out);
void tfm_bleu_acc_free(tfm_bleu_acc *acc);

/* Fills score, precisions, bp and ratio from the counts (hyp_len, ref_len,
 * correct, total), e.g. after summing the counts of several accumulators. */
void tfm_bleu_finish(tfm_bleu *b);

/* "<label> = <score> p1/p2/p3/p4 (BP = x ratio = x hyp_len = n ref_len = n)",
 * the score with `decimals` digits (bleu.py's -w, default 1) and everything
 * else as bleu.py prints it. label NULL means "BLEU". Truncates to size. */
void tfm_bleu_format(const tfm_bleu *b, const char *label, int decimals, char *buf, size_t size);

/* The 13a tokens of one segment exactly as bleu.py prepares it (rstrip,
 * optional lowercase, tokenize), joined by single spaces into a malloc'd,
 * NUL-terminated string (free with free()). text may hold any bytes,
 * including NUL. Returns 0, or non-zero on out-of-memory. */
int tfm_bleu_tokenize(const char *text, size_t len, int lowercase, char **out, size_t *out_len);
/* The same with either tokenizer (none: rstrip, optional lowercase, split). */
int tfm_bleu_tokenize_tok(const char *text, size_t len, int lowercase, tfm_bleu_tok tok, char **out,
                          size_t *out_len);

/* A text file as lines (without the '\n'; a '\r' or other trailing space is
 * kept, BLEU strips it). The whole file is validated as strict UTF-8, as
 * Python decodes it; errors name "file:line". NUL bytes are rejected too. */
typedef struct {
    char **lines; /* n pointers into data, each NUL-terminated */
    int64_t n;
    char *data;
} tfm_eval_lines;

int tfm_eval_read_lines(const char *path, tfm_eval_lines *out);
/* name is used in messages only (e.g. "<stdin>"). */
int tfm_eval_read_lines_fp(FILE *f, const char *name, tfm_eval_lines *out);
void tfm_eval_lines_free(tfm_eval_lines *l);

#ifdef __cplusplus
}
#endif

#endif
