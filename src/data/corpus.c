/* Reading sentence-per-line UTF-8 text: a streaming line reader that checks
 * and normalizes each line as soon as its end is seen, so memory is bounded
 * by the output plus one line of at most max_line_bytes, and the work is
 * linear in the input. Conventions are documented in tfm/data.h. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/buf.h"
#include "tfm/data.h"
#include "tfm/text.h"

#define READ_CHUNK ((size_t)64 << 10)

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* ---- the streaming reader ------------------------------------------------ */

void tfm_line_reader_init(tfm_line_reader *r, const char *name, const tfm_corpus_opts *opts) {
    memset(r, 0, sizeof *r);
    r->name = name;
    r->max_line =
        opts && opts->max_line_bytes > 0 ? opts->max_line_bytes : TFM_MAX_LINE_BYTES_DEFAULT;
    /* keep max_line + 2 and doubling far from overflow */
    if ((uint64_t)r->max_line > (uint64_t)1 << 40) r->max_line = (int64_t)1 << 40;
    r->allow_empty = opts ? opts->allow_empty : 0;
    r->allow_empty_file = opts ? opts->allow_empty_file : 0;
    r->line_no = 1;
}

void tfm_line_reader_free(tfm_line_reader *r) {
    free(r->cur);
    free(r->text);
    free(r->offs);
    r->cur = r->text = NULL;
    r->offs = NULL;
    r->cur_len = r->cur_cap = r->text_len = r->text_cap = 0;
    r->n = r->offs_cap = 0;
}

static int fail_oom(tfm_line_reader *r, size_t bytes) {
    r->failed = 1;
    tfm_set_error("%s: out of memory (%zu bytes) while reading", r->name, bytes);
    return 1;
}

/* Grows *buf to hold at least need bytes, doubling so appends stay linear. */
static int grow(tfm_line_reader *r, char **buf, size_t *cap, size_t need) {
    return tfm_bytes_reserve(buf, cap, 0, need) ? fail_oom(r, need) : 0;
}

int tfm_line_reader_reserve(tfm_line_reader *r, size_t bytes) {
    if (r->failed) return 1;
    return grow(r, &r->text, &r->text_cap, bytes + 1);
}

static int too_long(tfm_line_reader *r) {
    r->failed = 1;
    tfm_set_error("%s:%lld: line is absurdly long (over %lld bytes); is this really one sentence "
                  "per line?",
                  r->name, (long long)r->line_no, (long long)r->max_line);
    return 1;
}

/* One complete line (without its '\n'): strip '\r', check, normalize, store. */
static int take_line(tfm_line_reader *r, const char *line, size_t len) {
    if (len > 0 && line[len - 1] == '\r') len--;
    if (len > (size_t)r->max_line) return too_long(r);
    /* strict UTF-8 (tfm_utf8_check); a NUL byte is valid UTF-8 but never
     * text, so the first of the two problems is reported */
    size_t bad = len;
    int invalid = tfm_utf8_check(line, len, &bad) != 0;
    const char *nul = memchr(line, 0, bad);
    if (nul) {
        r->failed = 1;
        tfm_set_error("%s:%lld: NUL byte at byte column %zu (is this a binary file?)", r->name,
                      (long long)r->line_no, (size_t)(nul - line) + 1);
        return 1;
    }
    if (invalid) {
        r->failed = 1;
        tfm_set_error("%s:%lld: invalid UTF-8 at byte column %zu: %s (byte 0x%02X)", r->name,
                      (long long)r->line_no, bad + 1, tfm_utf8_error(line + bad, len - bad),
                      (unsigned)(unsigned char)line[bad]);
        return 1;
    }
    size_t i = 0;
    if (r->line_no == 1) i = tfm_utf8_bom_len(line, len);

    if (grow(r, &r->text, &r->text_cap, r->text_len + (len - i) + 1)) return 1;
    char *out = r->text + r->text_len, *o = out;
    int pending_space = 0;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (is_space(c)) {
            pending_space = o != out;
        } else {
            if (pending_space) *o++ = ' ';
            pending_space = 0;
            *o++ = (char)c;
        }
    }
    *o = 0;
    if (o == out && !r->allow_empty) {
        r->failed = 1;
        tfm_set_error("%s:%lld: empty sentence (the line is blank or only whitespace)", r->name,
                      (long long)r->line_no);
        return 1;
    }
    if (tfm_grow((void **)&r->offs, &r->offs_cap, r->n + 1, sizeof *r->offs))
        return fail_oom(r, (size_t)(r->n + 1) * sizeof *r->offs);
    r->offs[r->n++] = (int64_t)r->text_len;
    r->text_len += (size_t)(o - out) + 1;
    r->line_no++;
    return 0;
}

int tfm_line_reader_feed(tfm_line_reader *r, const char *bytes, size_t n) {
    if (r->failed) return 1;
    r->bytes_in += n;
    /* a line's content may be max_line bytes, plus one '\r' we cannot yet
     * tell from content until the '\n' arrives */
    size_t limit = (size_t)r->max_line + 1;
    while (n > 0) {
        const char *nl = memchr(bytes, '\n', n);
        size_t seg = nl ? (size_t)(nl - bytes) : n;
        if (r->cur_len + seg > limit) return too_long(r);
        if (nl && r->cur_len == 0) {
            if (take_line(r, bytes, seg)) return 1;
        } else {
            if (grow(r, &r->cur, &r->cur_cap, r->cur_len + seg)) return 1;
            memcpy(r->cur + r->cur_len, bytes, seg);
            r->cur_len += seg;
            if (nl) {
                if (take_line(r, r->cur, r->cur_len)) return 1;
                r->cur_len = 0;
            }
        }
        if (!nl) break;
        bytes += seg + 1;
        n -= seg + 1;
    }
    return 0;
}

int tfm_line_reader_finish(tfm_line_reader *r, tfm_lines *out) {
    memset(out, 0, sizeof *out);
    int rc = r->failed;
    if (!rc && r->bytes_in == 0 && !r->allow_empty_file) {
        tfm_set_error("%s: file is empty", r->name);
        rc = 1;
    }
    /* the last line without a final newline */
    if (!rc && r->cur_len > 0) rc = take_line(r, r->cur, r->cur_len);
    if (rc) {
        tfm_line_reader_free(r);
        return 1;
    }
    char **line = malloc((size_t)(r->n ? r->n : 1) * sizeof *line);
    if (!line) {
        fail_oom(r, (size_t)r->n * sizeof *line);
        tfm_line_reader_free(r);
        return 1;
    }
    for (int64_t i = 0; i < r->n; i++) line[i] = r->text + r->offs[i];
    out->n = r->n;
    out->line = line;
    out->text = r->text;
    r->text = NULL;
    tfm_line_reader_free(r);
    return 0;
}

void tfm_lines_free(tfm_lines *l) {
    free(l->line);
    free(l->text);
    memset(l, 0, sizeof *l);
}

/* ---- files and buffers ----------------------------------------------------- */

int tfm_text_parse_lines(const char *name, const char *buf, size_t len, const tfm_corpus_opts *opts,
                         tfm_lines *out) {
    tfm_line_reader r;
    tfm_line_reader_init(&r, name, opts);
    if (tfm_line_reader_reserve(&r, len) == 0) tfm_line_reader_feed(&r, buf, len);
    return tfm_line_reader_finish(&r, out);
}

int tfm_text_read_lines(const char *path, const tfm_corpus_opts *opts, tfm_lines *out) {
    memset(out, 0, sizeof *out);
    int is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "<stdin>" : path;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        tfm_set_error("%s: cannot open: %s", path, strerror(errno));
        return 1;
    }
    tfm_line_reader r;
    tfm_line_reader_init(&r, name, opts);
    struct stat st;
    int rc = 0;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        tfm_set_error("%s: is a directory, not a text file", name);
        rc = 1;
    } else if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        rc = tfm_line_reader_reserve(&r, (size_t)st.st_size);
    }
    char *chunk = rc ? NULL : malloc(READ_CHUNK);
    if (!rc && !chunk) {
        tfm_set_error("%s: out of memory", name);
        rc = 1;
    }
    while (!rc) {
        size_t got = fread(chunk, 1, READ_CHUNK, f);
        if (got > 0) rc = tfm_line_reader_feed(&r, chunk, got);
        if (got < READ_CHUNK) {
            if (ferror(f)) {
                tfm_set_error("%s: read error: %s", name, strerror(errno));
                rc = 1;
            }
            break;
        }
    }
    free(chunk);
    if (!is_stdin) fclose(f);
    if (rc) {
        tfm_line_reader_free(&r);
        return 1;
    }
    return tfm_line_reader_finish(&r, out);
}

/* ---- windows of lines as they arrive ------------------------------------------- */

void tfm_line_window_init(tfm_line_window *w, int fd, const char *name,
                          const tfm_corpus_opts *opts) {
    memset(w, 0, sizeof *w);
    w->fd = fd;
    w->name = name;
    if (opts) w->opts = *opts;
    if (w->opts.max_line_bytes <= 0) w->opts.max_line_bytes = TFM_MAX_LINE_BYTES_DEFAULT;
    w->next_line = 1;
}

void tfm_line_window_free(tfm_line_window *w) {
    free(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
}

/* Whether a read would return at once (data or the end of the input). */
static int input_ready(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

int tfm_line_window_next(tfm_line_window *w, int64_t max, tfm_lines *out, int64_t *first) {
    memset(out, 0, sizeof *out);
    *first = w->next_line;
    if (max < 1) max = 1;
    for (;;) {
        while (w->n_complete < max && w->scanned < w->len) {
            const char *nl = memchr(w->buf + w->scanned, '\n', w->len - w->scanned);
            if (!nl) {
                w->scanned = w->len;
                break;
            }
            w->scanned = w->cut = (size_t)(nl - w->buf) + 1;
            w->n_complete++;
        }
        if (w->n_complete >= max || w->eof) break;
        if (w->n_complete > 0 && !input_ready(w->fd)) break;
        /* a line without an end in sight is refused before it fills memory */
        if (w->len - w->cut > (size_t)w->opts.max_line_bytes + 2) {
            tfm_set_error("%s:%lld: line is absurdly long (over %lld bytes); is this really one "
                          "sentence per line?",
                          w->name, (long long)(w->next_line + w->n_complete),
                          (long long)w->opts.max_line_bytes);
            return 1;
        }
        if (w->cap - w->len < READ_CHUNK &&
            tfm_bytes_reserve(&w->buf, &w->cap, w->len, READ_CHUNK)) {
            tfm_set_error("%s: out of memory while reading", w->name);
            return 1;
        }
        ssize_t got = read(w->fd, w->buf + w->len, w->cap - w->len);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            tfm_set_error("%s: read error: %s", w->name, strerror(errno));
            return 1;
        }
        if (got == 0) w->eof = 1;
        w->len += (size_t)got;
        w->total += (uint64_t)got;
    }
    /* the window: the complete lines, and at the end a last line without '\n' */
    size_t take = w->cut;
    if (w->eof && w->n_complete < max) take = w->len;
    if (take == 0) {
        if (w->total == 0 && !w->opts.allow_empty_file)
            return tfm_set_error("%s: file is empty", w->name), 1;
        return 0;
    }
    tfm_corpus_opts opts = w->opts;
    opts.allow_empty_file = 1;
    tfm_line_reader r;
    tfm_line_reader_init(&r, w->name, &opts);
    r.line_no = w->next_line;
    if (tfm_line_reader_feed(&r, w->buf, take) || tfm_line_reader_finish(&r, out)) {
        tfm_line_reader_free(&r);
        return 1;
    }
    w->next_line += out->n;
    memmove(w->buf, w->buf + take, w->len - take);
    w->len -= take;
    w->scanned = w->cut = 0;
    w->n_complete = 0;
    return 0;
}

int tfm_corpus_read(const char *src_path, const char *tgt_path, const tfm_corpus_opts *opts,
                    tfm_corpus *out) {
    memset(out, 0, sizeof *out);
    tfm_lines src, tgt;
    if (tfm_text_read_lines(src_path, opts, &src)) return 1;
    if (tfm_text_read_lines(tgt_path, opts, &tgt)) {
        tfm_lines_free(&src);
        return 1;
    }
    if (src.n != tgt.n) {
        tfm_set_error("%s has %lld lines but %s has %lld: source and target must be aligned line "
                      "by line",
                      src_path, (long long)src.n, tgt_path, (long long)tgt.n);
        tfm_lines_free(&src);
        tfm_lines_free(&tgt);
        return 1;
    }
    out->n = src.n;
    out->src = src.line;
    out->tgt = tgt.line;
    out->src_text = src.text;
    out->tgt_text = tgt.text;
    return 0;
}

void tfm_corpus_free(tfm_corpus *c) {
    free(c->src);
    free(c->tgt);
    free(c->src_text);
    free(c->tgt_text);
    memset(c, 0, sizeof *c);
}
