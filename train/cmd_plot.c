/* tfm plot: a run's learning curves as one SVG, from DIR/metrics.csv.
 * Three panels sharing the step axis: training and validation loss, the
 * validation BLEU, and the learning rate. Columns are found by the header
 * names, so extra or reordered columns are fine; an empty field means "not
 * measured at this step". After a resume the run re-does the steps since its
 * checkpoint, so a row whose step goes backwards replaces the later rows. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "flags.h"
#include "tfm/svg.h"

static const char *USAGE = "tfm plot DIR [-o curves.svg] [--title T]   (reads DIR/metrics.csv)";

enum { COL_STEP, COL_LOSS, COL_LR, COL_VALID_LOSS, COL_VALID_BLEU, N_COLS };
static const char *const COL_NAMES[N_COLS] = {"step", "loss", "lr", "valid_loss", "valid_bleu"};

typedef struct {
    double *v[N_COLS]; /* one array per column, n rows */
    int64_t n, cap;
} metrics;

static void metrics_free(metrics *m) {
    for (int c = 0; c < N_COLS; c++) free(m->v[c]);
    memset(m, 0, sizeof *m);
}

/* Splits line in place at commas; returns the field count (up to cap). */
static int split_csv(char *line, char **fields, int cap) {
    int n = 0;
    char *p = line;
    for (;;) {
        if (n < cap) fields[n] = p;
        n++;
        char *comma = strchr(p, ',');
        if (!comma) break;
        *comma = 0;
        p = comma + 1;
    }
    return n;
}

static void chomp(char *s) {
    size_t len = strlen(s);
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r')) s[--len] = 0;
}

static int metrics_read(const char *path, metrics *m) {
    memset(m, 0, sizeof *m);
    FILE *f = tfm_open_input(path);
    if (!f) return 1;
    char *line = NULL;
    size_t line_cap = 0;
    int64_t lineno = 0;
    int index[N_COLS], n_header = 0, rc = 1;
    char *fields[64];
    if (getline(&line, &line_cap, f) < 0) {
        tfm_set_error("%s: empty file (no header line)", path);
        goto done;
    }
    lineno = 1;
    chomp(line);
    n_header = split_csv(line, fields, 64);
    if (n_header > 64) {
        tfm_set_error("%s:1: more than 64 columns", path);
        goto done;
    }
    for (int c = 0; c < N_COLS; c++) {
        index[c] = -1;
        for (int i = 0; i < n_header; i++)
            if (!strcmp(fields[i], COL_NAMES[c])) index[c] = i;
    }
    if (index[COL_STEP] < 0) {
        tfm_set_error("%s:1: the header has no 'step' column (is this a tfm metrics.csv?)", path);
        goto done;
    }
    for (;;) {
        errno = 0;
        ssize_t got = getline(&line, &line_cap, f);
        if (got < 0) {
            if (tfm_getline_error(f, path, lineno + 1, errno)) goto done;
            break;
        }
        lineno++;
        const char *nul = memchr(line, 0, (size_t)got);
        if (nul) {
            tfm_set_error("%s:%lld: NUL byte at byte %lld", path, (long long)lineno,
                          (long long)(nul - line) + 1);
            goto done;
        }
        chomp(line);
        if (!line[0]) continue;
        int n = split_csv(line, fields, 64);
        if (n != n_header) {
            tfm_set_error("%s:%lld: %d fields, the header has %d", path, (long long)lineno, n,
                          n_header);
            goto done;
        }
        double row[N_COLS];
        for (int c = 0; c < N_COLS; c++) {
            row[c] = NAN;
            if (index[c] < 0) continue;
            const char *text = fields[index[c]];
            if (!text[0]) continue; /* not measured */
            char *end;
            errno = 0;
            double v = strtod(text, &end);
            /* overflow is an error; underflow (1e-308, a subnormal or 0) is a value */
            if (end == text || *end || (errno == ERANGE && fabs(v) == HUGE_VAL) ||
                (!isfinite(v) && c == COL_STEP)) {
                tfm_set_error("%s:%lld: column '%s': '%s' is not a number", path, (long long)lineno,
                              COL_NAMES[c], text);
                goto done;
            }
            row[c] = v; /* nan/inf losses are kept: they break the curve where they happened */
        }
        if (!isfinite(row[COL_STEP])) {
            tfm_set_error("%s:%lld: the step is empty", path, (long long)lineno);
            goto done;
        }
        while (m->n > 0 && m->v[COL_STEP][m->n - 1] > row[COL_STEP]) m->n--; /* resumed run */
        if (m->n == m->cap) {
            m->cap = m->cap ? 2 * m->cap : 256;
            for (int c = 0; c < N_COLS; c++) {
                double *p = realloc(m->v[c], (size_t)m->cap * sizeof(double));
                if (!p) {
                    tfm_set_error("out of memory");
                    goto done;
                }
                m->v[c] = p;
            }
        }
        for (int c = 0; c < N_COLS; c++) m->v[c][m->n] = row[c];
        m->n++;
    }
    if (m->n == 0) {
        tfm_set_error("%s: no rows yet (the run has not logged a step)", path);
        goto done;
    }
    rc = 0;
done:
    free(line);
    fclose(f);
    if (rc) metrics_free(m);
    return rc;
}

/* Finite min/max of up to two columns; 0 when none. */
static int col_range(const metrics *m, int a, int b, double *lo, double *hi) {
    int any = 0;
    for (int64_t i = 0; i < m->n; i++)
        for (int k = 0; k < 2; k++) {
            int c = k ? b : a;
            if (c < 0) continue;
            double v = m->v[c][i];
            if (!isfinite(v)) continue;
            if (!any || v < *lo) *lo = v;
            if (!any || v > *hi) *hi = v;
            any = 1;
        }
    return any;
}

/* Each validation writes a row of its own at the step of a progress row:
 * plot the training loss once per step. */
static int64_t train_loss_series(const metrics *m, double *x, double *y) {
    int64_t n = 0;
    for (int64_t i = 0; i < m->n; i++) {
        if (n > 0 && x[n - 1] == m->v[COL_STEP][i]) continue;
        if (isnan(m->v[COL_LOSS][i])) continue;
        x[n] = m->v[COL_STEP][i];
        y[n] = m->v[COL_LOSS][i];
        n++;
    }
    return n;
}

static int64_t sparse_series(const metrics *m, int col, double *x, double *y) {
    int64_t n = 0;
    for (int64_t i = 0; i < m->n; i++) {
        if (isnan(m->v[col][i])) continue;
        x[n] = m->v[COL_STEP][i];
        y[n] = m->v[col][i];
        n++;
    }
    return n;
}

#define C_TRAIN "#1f77b4"
#define C_VALID "#d62728"
#define C_BLEU "#2ca02c"
#define C_LR "#9467bd"

static void note(tfm_svg *s, const tfm_svg_plot *p, const char *text) {
    double w = tfm_svg_text_width(text, 12) + 12;
    tfm_svg_rect(s, p->x + (p->w - w) / 2, p->y + p->h / 2 - 10, w, 20, "#ffffff", "none");
    tfm_svg_text(s, p->x + p->w / 2, p->y + p->h / 2 + 4, 12, "middle", 0, "#888888", text);
}

static int draw(const metrics *m, const char *title, const char *out) {
    const double W = 760, left = 84, pw = W - left - 30;
    tfm_svg s;
    tfm_svg_init(&s, W, 716);
    tfm_svg_text(&s, 16, 24, 15, "start", 0, "#111111", title);
    double *x = malloc((size_t)m->n * sizeof(double)), *y = malloc((size_t)m->n * sizeof(double));
    if (!x || !y) {
        free(x);
        free(y);
        tfm_svg_free(&s);
        return tfm_set_error("out of memory"), 1;
    }
    double x_lo = 0, x_hi = 1, lo = 0, hi = 1;
    col_range(m, COL_STEP, -1, &x_lo, &x_hi);
    if (x_lo > 0) x_lo = 0;

    /* loss: training and validation, from 0 so that the two are comparable */
    tfm_svg_plot p = {.x = left, .y = 64, .w = pw, .h = 250};
    int any = col_range(m, COL_LOSS, COL_VALID_LOSS, &lo, &hi);
    tfm_svg_plot_axes(&s, &p, x_lo, x_hi, lo < 0 ? lo : 0, any ? hi : 1, "Loss", NULL,
                      "loss (nats per token)");
    const char *names[2], *colors[2];
    int n_leg = 0;
    int64_t n = train_loss_series(m, x, y);
    if (n) {
        tfm_svg_plot_series(&s, &p, x, y, n, C_TRAIN, 0);
        names[n_leg] = "training loss";
        colors[n_leg++] = C_TRAIN;
    }
    n = sparse_series(m, COL_VALID_LOSS, x, y);
    if (n) {
        tfm_svg_plot_series(&s, &p, x, y, n, C_VALID, 1);
        names[n_leg] = "validation loss";
        colors[n_leg++] = C_VALID;
    }
    tfm_svg_plot_legend(&s, &p, names, colors, n_leg, 0);
    if (!any) note(&s, &p, "no loss logged yet");

    /* validation BLEU */
    p = (tfm_svg_plot){.x = left, .y = 370, .w = pw, .h = 150};
    lo = 0, hi = 1;
    any = col_range(m, COL_VALID_BLEU, -1, &lo, &hi);
    tfm_svg_plot_axes(&s, &p, x_lo, x_hi, 0, any && hi > 0 ? hi : 100, "Validation BLEU", NULL,
                      "BLEU");
    n = sparse_series(m, COL_VALID_BLEU, x, y);
    if (n) {
        tfm_svg_plot_series(&s, &p, x, y, n, C_BLEU, 1);
        names[0] = "validation BLEU";
        colors[0] = C_BLEU;
        tfm_svg_plot_legend(&s, &p, names, colors, 1, 1); /* BLEU rises: keep the top free */
    } else {
        note(&s, &p, "no validation BLEU in metrics.csv (toy tasks are scored at the end)");
    }

    /* learning rate */
    p = (tfm_svg_plot){.x = left, .y = 576, .w = pw, .h = 90};
    lo = 0, hi = 1;
    any = col_range(m, COL_LR, -1, &lo, &hi);
    tfm_svg_plot_axes(&s, &p, x_lo, x_hi, 0, any ? hi : 1, "Learning rate", "step", "lr");
    n = sparse_series(m, COL_LR, x, y);
    if (n) {
        tfm_svg_plot_series(&s, &p, x, y, n, C_LR, 0);
        names[0] = "learning rate";
        colors[0] = C_LR;
        tfm_svg_plot_legend(&s, &p, names, colors, 1, 0);
    }
    free(x);
    free(y);
    int rc = tfm_svg_save(&s, out);
    tfm_svg_free(&s);
    return rc;
}

int tfm_cmd_plot(int argc, char **argv) {
    const char *out = NULL, *title = NULL;
    flag_def flags[] = {
        {"output", FLAG_STR, &out, "SVG file to write (default DIR/curves.svg)", 0},
        {"title", FLAG_STR, &title, "title above the plots (default: the run directory)", 0},
    };
    int n_flags = (int)(sizeof flags / sizeof flags[0]);
    static const flag_alias aliases[] = {{"-o", "output"}}; /* the familiar spelling */
    char *pos[2];
    int n_pos = 0;
    int rc = flags_parse_aliases(flags, n_flags, aliases, 1, argc, argv, USAGE, pos, 2, &n_pos);
    if (rc) return rc == 1 ? 0 : rc;
    if (n_pos != 1) return tfm_cli_fail(2, "plot: give one run directory (usage: %s)", USAGE);
    const char *dir = pos[0];
    char *csv = tfm_path_join(dir, "metrics.csv"), *def_out = tfm_path_join(dir, "curves.svg"),
         *def_title = tfm_format("tfm run %s", dir);
    metrics m;
    if (!csv || !def_out || !def_title)
        rc = tfm_cli_fail(1, "%s", tfm_last_error());
    else if (out && cli_same_file(out, csv))
        rc = tfm_cli_fail(2, "-o %s: that is the metrics.csv it reads", out);
    else if (metrics_read(csv, &m))
        rc = tfm_cli_fail(1, "%s", tfm_last_error());
    else {
        const char *path = out ? out : def_out;
        if (draw(&m, title ? title : def_title, path))
            rc = tfm_cli_fail(1, "%s", tfm_last_error());
        else
            fprintf(stderr, "wrote %s (%lld rows of %s)\n", path, (long long)m.n, csv);
        metrics_free(&m);
    }
    free(csv);
    free(def_out);
    free(def_title);
    return rc;
}
