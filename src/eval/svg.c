/* A tiny SVG writer: escaped text, axes with nice ticks, polylines, legends,
 * labelled heatmaps. See include/tfm/svg.h. */
#include "tfm/svg.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "../util/buf.h"
#include "tfm/atomic_file.h"

#define FONT "DejaVu Sans, Helvetica, Arial, sans-serif"
#define LABEL_SIZE 12.0
#define TICK_SIZE 11.0
#define TITLE_SIZE 14.0

static int reserve(tfm_svg *s, size_t more) {
    if (s->failed) return 1;
    if (more < SIZE_MAX && tfm_bytes_reserve(&s->buf, &s->cap, s->len, more + 1) == 0) return 0;
    s->failed = 1;
    return 1;
}

void tfm_svg_raw(tfm_svg *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(s, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(s->buf + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

void tfm_svg_init(tfm_svg *s, double width, double height) {
    memset(s, 0, sizeof *s);
    s->width = width;
    s->height = height;
    tfm_svg_raw(s,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                "viewBox=\"0 0 %.0f %.0f\" font-family=\"%s\">\n"
                "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n",
                width, height, width, height, FONT, width, height);
}

void tfm_svg_free(tfm_svg *s) {
    free(s->buf);
    memset(s, 0, sizeof *s);
}

const char *tfm_svg_finish(tfm_svg *s, size_t *len) {
    if (!s->closed) tfm_svg_raw(s, "</svg>\n");
    s->closed = 1;
    if (len) *len = s->failed ? 0 : s->len;
    return s->failed ? NULL : s->buf;
}

int tfm_svg_save(tfm_svg *s, const char *path) {
    size_t len;
    const char *text = tfm_svg_finish(s, &len);
    if (!text) return tfm_set_error("%s: out of memory while drawing", path), 1;
    return tfm_write_file_atomic(path, text, len) ? 1 : 0;
}

/* ---- text ---------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p that XML 1.0 allows, or 0. */
static size_t utf8_ok(const unsigned char *p) {
    unsigned c = p[0];
    if (c < 0x80) return c >= 0x20 || c == '\t' || c == '\n' || c == '\r' ? 1 : 0;
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0; /* overlong */
        if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    if (n == 3 && c == 0xEF && p[1] == 0xBF && (p[2] == 0xBE || p[2] == 0xBF))
        return 0; /* U+FFFE/F */
    return n;
}

size_t tfm_svg_escape(const char *text, char *out, size_t cap) {
    size_t need = 0;
    const unsigned char *p = (const unsigned char *)(text ? text : "");
    size_t written = 0; /* stays == need until the first piece that does not fit */
#define EMIT(str, n)                                                                               \
    do {                                                                                           \
        if (written == need && need + (n) < cap) {                                                 \
            memcpy(out + need, (str), (n));                                                        \
            written += (n);                                                                        \
        }                                                                                          \
        need += (n);                                                                               \
    } while (0)
    while (*p) {
        const char *rep = NULL;
        switch (*p) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        default:
            break;
        }
        if (rep) {
            EMIT(rep, strlen(rep));
            p++;
            continue;
        }
        size_t n = utf8_ok(p);
        if (!n) {
            EMIT("?", 1);
            p++;
        } else {
            EMIT((const char *)p, n);
            p += n;
        }
    }
#undef EMIT
    if (cap) out[written] = 0;
    return need;
}

void tfm_svg_escaped(tfm_svg *s, const char *text) {
    size_t n = tfm_svg_escape(text, NULL, 0);
    if (reserve(s, n)) return;
    tfm_svg_escape(text, s->buf + s->len, n + 1);
    s->len += n;
}

double tfm_svg_text_width(const char *text, double size) {
    double n = 0;
    for (const unsigned char *p = (const unsigned char *)(text ? text : ""); *p; p++)
        if ((*p & 0xC0) != 0x80) n++; /* count code points */
    return n * 0.6 * size;
}

void tfm_svg_text(tfm_svg *s, double x, double y, double size, const char *anchor, double rotate,
                  const char *fill, const char *text) {
    tfm_svg_raw(s, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" text-anchor=\"%s\" fill=\"%s\"",
                x, y, size, anchor, fill);
    if (rotate != 0) tfm_svg_raw(s, " transform=\"rotate(%.0f %.1f %.1f)\"", rotate, x, y);
    tfm_svg_raw(s, ">");
    tfm_svg_escaped(s, text);
    tfm_svg_raw(s, "</text>\n");
}

/* ---- shapes -------------------------------------------------------------------- */

void tfm_svg_line(tfm_svg *s, double x1, double y1, double x2, double y2, const char *stroke,
                  double width, int dashed) {
    tfm_svg_raw(s,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"%g\"%s/>\n",
                x1, y1, x2, y2, stroke, width, dashed ? " stroke-dasharray=\"4 3\"" : "");
}

void tfm_svg_rect(tfm_svg *s, double x, double y, double w, double h, const char *fill,
                  const char *stroke) {
    tfm_svg_raw(
        s,
        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"%s\"/>\n",
        x, y, w, h, fill, stroke);
}

/* ---- ticks --------------------------------------------------------------------- */

int tfm_svg_nice_ticks(double lo, double hi, int target, double *ticks, int cap, double *nice_lo,
                       double *nice_hi, double *step_out) {
    if (!isfinite(lo) || !isfinite(hi)) lo = 0, hi = 1;
    if (hi < lo) {
        double t = lo;
        lo = hi;
        hi = t;
    }
    /* hi - lo of two finite doubles can still be inf (-1e308 .. 1e308), and
     * every coordinate after it NaN: an axis spans at most +-1e300 (values
     * beyond are drawn at the edge of the plot). */
    if (lo < -1e300) lo = -1e300;
    if (hi > 1e300) hi = 1e300;
    if (lo > 1e300) lo = 1e300;
    if (hi < -1e300) hi = -1e300;
    /* a span below 1e-290 (0 .. 5e-324) would make a tick step of 0 */
    if (hi - lo <= 1e-12 * (fabs(lo) + fabs(hi)) || hi - lo < 1e-290) {
        double d = fabs(lo) * 0.1;
        if (!(d >= 1e-290)) d = 0.5; /* 0, or a subnormal lo */
        lo -= d;
        hi += d;
    }
    if (target < 1) target = 1;
    double raw = (hi - lo) / target;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    double step = (f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 5.0 ? 5.0 : 10.0) * mag;
    /* a tiny tolerance keeps 0.30000000000000004 from adding a tick */
    double a = floor(lo / step + 1e-9) * step, b = ceil(hi / step - 1e-9) * step;
    int count = (int)llround((b - a) / step) + 1;
    int n = 0;
    for (int i = 0; i < count && n < cap; i++) {
        double v = a + i * step;
        if (fabs(v) < step * 1e-9) v = 0; /* no "-0" */
        ticks[n++] = v;
    }
    if (nice_lo) *nice_lo = a;
    if (nice_hi) *nice_hi = b;
    if (step_out) *step_out = step;
    return n;
}

void tfm_svg_format_tick(double v, double step, char *buf, size_t cap) {
    if (v == 0) {
        snprintf(buf, cap, "0");
    } else if (step < 1e-4 || fabs(v) >= 1e7) {
        snprintf(buf, cap, "%.2g", v);
    } else {
        int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        /* a step of 0.25 needs two decimals, 0.2 one */
        double scaled = step * pow(10.0, decimals);
        if (fabs(scaled - llround(scaled)) > 1e-6) decimals++;
        snprintf(buf, cap, "%.*f", decimals, v);
    }
}

/* ---- charts -------------------------------------------------------------------- */

/* v mapped into [lo, hi]: values beyond the axis (see tfm_svg_nice_ticks)
 * are drawn at the edge of the frame */
static double clamp_to(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

double tfm_svg_plot_x(const tfm_svg_plot *p, double x) {
    return clamp_to(p->x + (x - p->x_lo) / (p->x_hi - p->x_lo) * p->w, p->x, p->x + p->w);
}

double tfm_svg_plot_y(const tfm_svg_plot *p, double y) {
    return clamp_to(p->y + p->h - (y - p->y_lo) / (p->y_hi - p->y_lo) * p->h, p->y, p->y + p->h);
}

void tfm_svg_plot_axes(tfm_svg *s, tfm_svg_plot *p, double x_lo, double x_hi, double y_lo,
                       double y_hi, const char *title, const char *x_label, const char *y_label) {
    double xt[32], yt[32], xs, ys;
    int nx = tfm_svg_nice_ticks(x_lo, x_hi, (int)(p->w / 90) + 1, xt, 32, &p->x_lo, &p->x_hi, &xs);
    int ny = tfm_svg_nice_ticks(y_lo, y_hi, (int)(p->h / 45) + 1, yt, 32, &p->y_lo, &p->y_hi, &ys);
    char lab[64];
    for (int i = 0; i < ny; i++) {
        double y = tfm_svg_plot_y(p, yt[i]);
        tfm_svg_line(s, p->x, y, p->x + p->w, y, "#e5e5e5", 1, 0);
        tfm_svg_line(s, p->x - 4, y, p->x, y, "#444444", 1, 0);
        tfm_svg_format_tick(yt[i], ys, lab, sizeof lab);
        tfm_svg_text(s, p->x - 7, y + 4, TICK_SIZE, "end", 0, "#333333", lab);
    }
    for (int i = 0; i < nx; i++) {
        double x = tfm_svg_plot_x(p, xt[i]);
        tfm_svg_line(s, x, p->y, x, p->y + p->h, "#e5e5e5", 1, 0);
        tfm_svg_line(s, x, p->y + p->h, x, p->y + p->h + 4, "#444444", 1, 0);
        tfm_svg_format_tick(xt[i], xs, lab, sizeof lab);
        tfm_svg_text(s, x, p->y + p->h + 17, TICK_SIZE, "middle", 0, "#333333", lab);
    }
    tfm_svg_rect(s, p->x, p->y, p->w, p->h, "none", "#444444");
    if (title) tfm_svg_text(s, p->x, p->y - 9, TITLE_SIZE, "start", 0, "#111111", title);
    if (x_label)
        tfm_svg_text(s, p->x + p->w / 2, p->y + p->h + 35, LABEL_SIZE, "middle", 0, "#111111",
                     x_label);
    if (y_label)
        tfm_svg_text(s, p->x - 52, p->y + p->h / 2, LABEL_SIZE, "middle", -90, "#111111", y_label);
}

void tfm_svg_plot_series(tfm_svg *s, const tfm_svg_plot *p, const double *x, const double *y,
                         int64_t n, const char *color, int markers) {
    int64_t i = 0;
    while (i < n) {
        while (i < n && !(isfinite(x[i]) && isfinite(y[i]))) i++;
        int64_t start = i;
        while (i < n && isfinite(x[i]) && isfinite(y[i])) i++;
        if (i - start >= 2) {
            tfm_svg_raw(s,
                        "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" "
                        "stroke-linejoin=\"round\" points=\"",
                        color);
            for (int64_t j = start; j < i; j++)
                tfm_svg_raw(s, "%s%.1f,%.1f", j > start ? " " : "", tfm_svg_plot_x(p, x[j]),
                            tfm_svg_plot_y(p, y[j]));
            tfm_svg_raw(s, "\"/>\n");
        }
        /* a lone point would be invisible without a dot */
        for (int64_t j = start; j < i; j++)
            if (markers || i - start == 1)
                tfm_svg_raw(s, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.8\" fill=\"%s\"/>\n",
                            tfm_svg_plot_x(p, x[j]), tfm_svg_plot_y(p, y[j]), color);
    }
}

void tfm_svg_plot_legend(tfm_svg *s, const tfm_svg_plot *p, const char *const *names,
                         const char *const *colors, int n, int bottom) {
    if (n <= 0) return;
    double wmax = 0;
    for (int i = 0; i < n; i++) {
        double w = tfm_svg_text_width(names[i], TICK_SIZE);
        if (w > wmax) wmax = w;
    }
    double bw = wmax + 40, bh = n * 17 + 8, bx = p->x + p->w - bw - 8;
    double by = bottom ? p->y + p->h - bh - 8 : p->y + 8;
    tfm_svg_raw(s,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ffffff\" "
                "fill-opacity=\"0.9\" stroke=\"#bbbbbb\"/>\n",
                bx, by, bw, bh);
    for (int i = 0; i < n; i++) {
        double y = by + 14 + i * 17;
        tfm_svg_line(s, bx + 8, y - 4, bx + 28, y - 4, colors[i], 2.5, 0);
        tfm_svg_text(s, bx + 34, y, TICK_SIZE, "start", 0, "#111111", names[i]);
    }
}

/* ---- heatmaps ------------------------------------------------------------------ */

void tfm_svg_heat_color(double v, double v_max, char *buf) {
    /* white to dark blue, through light and mid blues */
    static const double stops[5][3] = {
        {255, 255, 255}, {198, 219, 239}, {107, 174, 214}, {33, 113, 181}, {8, 48, 107}};
    double t = v_max > 0 && isfinite(v) ? v / v_max : 0;
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    double pos = t * 4;
    int i = pos >= 4 ? 3 : (int)pos;
    double f = pos - i;
    int rgb[3];
    for (int c = 0; c < 3; c++)
        rgb[c] = (int)lround(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]));
    snprintf(buf, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

typedef struct {
    double left, top, width, height;
} heat_layout;

#define COS45 0.70710678

static heat_layout heat_layout_of(const tfm_svg_heatmap_spec *h) {
    double rw = 0, cw = 0;
    for (int64_t r = 0; h->row_labels && r < h->rows; r++) {
        double w = tfm_svg_text_width(h->row_labels[r], LABEL_SIZE);
        if (w > rw) rw = w;
    }
    for (int64_t c = 0; h->col_labels && c < h->cols; c++) {
        double w = tfm_svg_text_width(h->col_labels[c], LABEL_SIZE);
        if (w > cw) cw = w;
    }
    heat_layout L;
    L.left = (h->row_axis ? 22 : 0) + rw + 8;
    L.top = (h->title ? 24 : 4) + cw * COS45 + 12;
    double right = cw * COS45 - h->cell / 2 + 8;
    L.width = L.left + h->cols * h->cell + (right > 8 ? right : 8);
    if (h->title && tfm_svg_text_width(h->title, TITLE_SIZE) + 8 > L.width)
        L.width = tfm_svg_text_width(h->title, TITLE_SIZE) + 8;
    L.height = L.top + h->rows * h->cell + (h->col_axis ? 26 : 6);
    return L;
}

void tfm_svg_heatmap_extent(const tfm_svg_heatmap_spec *h, double *width, double *height) {
    heat_layout L = heat_layout_of(h);
    *width = L.width;
    *height = L.height;
}

void tfm_svg_heatmap(tfm_svg *s, const tfm_svg_heatmap_spec *h, double x, double y) {
    heat_layout L = heat_layout_of(h);
    double cx = x + L.left, cy = y + L.top, c = h->cell;
    if (h->title) tfm_svg_text(s, x, y + 16, TITLE_SIZE, "start", 0, "#111111", h->title);
    char color[8];
    for (int64_t r = 0; r < h->rows; r++)
        for (int64_t k = 0; k < h->cols; k++) {
            tfm_svg_heat_color(h->values[r * h->cols + k], h->v_max, color);
            tfm_svg_raw(
                s, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n",
                cx + k * c, cy + r * c, c, c, color);
        }
    tfm_svg_rect(s, cx, cy, h->cols * c, h->rows * c, "none", "#888888");
    for (int64_t r = 0; h->row_labels && r < h->rows; r++)
        tfm_svg_text(s, cx - 6, cy + r * c + c / 2 + 4, LABEL_SIZE, "end", 0, "#111111",
                     h->row_labels[r]);
    for (int64_t k = 0; h->col_labels && k < h->cols; k++)
        tfm_svg_text(s, cx + k * c + c / 2 - 2, cy - 6, LABEL_SIZE, "start", -45, "#111111",
                     h->col_labels[k]);
    if (h->row_axis)
        tfm_svg_text(s, x + 12, cy + h->rows * c / 2, LABEL_SIZE, "middle", -90, "#555555",
                     h->row_axis);
    if (h->col_axis)
        tfm_svg_text(s, cx + h->cols * c / 2, cy + h->rows * c + 18, LABEL_SIZE, "middle", 0,
                     "#555555", h->col_axis);
}

void tfm_svg_colorbar(tfm_svg *s, double x, double y, double w, double v_max, const char *label) {
    const int n = 40;
    char color[8];
    for (int i = 0; i < n; i++) {
        tfm_svg_heat_color((i + 0.5) / n * v_max, v_max, color);
        tfm_svg_raw(s, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"10\" fill=\"%s\"/>\n",
                    x + i * w / n, y, w / n + 0.3, color);
    }
    tfm_svg_rect(s, x, y, w, 10, "none", "#888888");
    char lab[32];
    for (int i = 0; i <= 2; i++) {
        double v = v_max * i / 2;
        tfm_svg_format_tick(v, v_max / 2, lab, sizeof lab);
        tfm_svg_text(s, x + w * i / 2, y + 23, TICK_SIZE, "middle", 0, "#333333", lab);
    }
    if (label) tfm_svg_text(s, x + w + 8, y + 9, TICK_SIZE, "start", 0, "#333333", label);
}
