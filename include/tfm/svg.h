/* tfm/svg.h: a tiny dependency-free SVG writer for learning curves and
 * attention maps (tfm plot, tfm attention). The document is built in memory
 * and written at the end, so a failed run never leaves half a file.
 *
 *     tfm_svg s;
 *     tfm_svg_init(&s, 640, 400);
 *     tfm_svg_plot p = {.x = 70, .y = 40, .w = 520, .h = 300};
 *     tfm_svg_plot_axes(&s, &p, 0, 600, 0, 5.2, "loss", "step", NULL);
 *     tfm_svg_plot_series(&s, &p, steps, loss, n, "#1f77b4", 0);
 *     tfm_svg_plot_legend(&s, &p, names, colors, 1, 0);
 *     if (tfm_svg_save(&s, "curves.svg")) puts(tfm_last_error());
 *     tfm_svg_free(&s);
 *
 * Every piece of text goes through the XML escaper (& < > " ' become
 * entities; control characters and bytes that are not UTF-8 become '?'), so
 * the output is well-formed whatever the labels hold. Coordinates are SVG
 * user units (pixels), y pointing down. */
#ifndef TFM_SVG_H
#define TFM_SVG_H

#include <stddef.h>
#include <stdint.h>

#include "tfm/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char *buf;
    size_t len, cap;
    int failed; /* out of memory while building: tfm_svg_save reports it */
    int closed; /* </svg> written */
    double width, height;
} tfm_svg;

/* Starts a document of the given size with a white background. */
void tfm_svg_init(tfm_svg *s, double width, double height);
void tfm_svg_free(tfm_svg *s);
/* Appends </svg> (once) and returns the text (NULL after an allocation failure). */
const char *tfm_svg_finish(tfm_svg *s, size_t *len);
/* Finishes and writes the document atomically; 0 ok, else an error naming the path. */
int tfm_svg_save(tfm_svg *s, const char *path);

/* Raw markup (the caller escapes) and escaped text. */
void tfm_svg_raw(tfm_svg *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tfm_svg_escaped(tfm_svg *s, const char *text);
/* Escapes text into out (always NUL-terminated when cap > 0); returns the
 * length the full escaped text needs. */
size_t tfm_svg_escape(const char *text, char *out, size_t cap);

/* Shapes. Colors are CSS colors ("#1f77b4", "none"). */
void tfm_svg_line(tfm_svg *s, double x1, double y1, double x2, double y2, const char *stroke,
                  double width, int dashed);
void tfm_svg_rect(tfm_svg *s, double x, double y, double w, double h, const char *fill,
                  const char *stroke);
/* anchor: "start", "middle" or "end"; rotate in degrees around (x, y). */
void tfm_svg_text(tfm_svg *s, double x, double y, double size, const char *anchor, double rotate,
                  const char *fill, const char *text);
/* Rough rendered width of text in a sans-serif font (code points * 0.6 * size),
 * used to make room for labels. */
double tfm_svg_text_width(const char *text, double size);

/* Nice ticks: steps of 1, 2 or 5 times a power of ten, about target of them
 * over [lo, hi]. The range is widened to whole steps (*nice_lo, *nice_hi);
 * writes up to cap tick values and returns the count; *step gets the step.
 * An empty or degenerate range (lo == hi, NaN) becomes a unit around it. */
int tfm_svg_nice_ticks(double lo, double hi, int target, double *ticks, int cap, double *nice_lo,
                       double *nice_hi, double *step);
/* A tick label with as many decimals as the step needs ("0.5", "1200",
 * "2e-04" for small or huge values). */
void tfm_svg_format_tick(double v, double step, char *buf, size_t cap);

/* One x/y chart panel. Fill x, y, w, h (the plot area inside the axes);
 * tfm_svg_plot_axes sets the ranges from the data ranges. */
typedef struct {
    double x, y, w, h;
    double x_lo, x_hi, y_lo, y_hi;
} tfm_svg_plot;

/* Frame, grid, ticks with labels, title above, axis labels (either may be NULL). */
void tfm_svg_plot_axes(tfm_svg *s, tfm_svg_plot *p, double x_lo, double x_hi, double y_lo,
                       double y_hi, const char *title, const char *x_label, const char *y_label);
double tfm_svg_plot_x(const tfm_svg_plot *p, double x);
double tfm_svg_plot_y(const tfm_svg_plot *p, double y);
/* A series as polylines: non-finite values break the line; every point also
 * gets a small dot when markers != 0 (sparse series such as validations). */
void tfm_svg_plot_series(tfm_svg *s, const tfm_svg_plot *p, const double *x, const double *y,
                         int64_t n, const char *color, int markers);
/* Legend box in the top-right corner of the plot area (bottom-right when
 * bottom != 0, for curves that rise). */
void tfm_svg_plot_legend(tfm_svg *s, const tfm_svg_plot *p, const char *const *names,
                         const char *const *colors, int n, int bottom);

/* A labelled heatmap: values (rows, cols) drawn as cells shaded from white
 * (0) to dark blue (v_max), column labels above (rotated), row labels on the
 * left, a title above everything, and the axis names. */
typedef struct {
    int64_t rows, cols;
    const float *values;                     /* (rows, cols) */
    const char *const *row_labels;           /* rows entries, or NULL */
    const char *const *col_labels;           /* cols entries, or NULL */
    const char *title, *row_axis, *col_axis; /* may be NULL */
    double cell;                             /* cell size, e.g. 22 */
    double v_max;                            /* value drawn darkest (> 0) */
} tfm_svg_heatmap_spec;

/* The panel's size including labels; tfm_svg_heatmap draws it with its
 * top-left corner at (x, y). */
void tfm_svg_heatmap_extent(const tfm_svg_heatmap_spec *h, double *width, double *height);
void tfm_svg_heatmap(tfm_svg *s, const tfm_svg_heatmap_spec *h, double x, double y);
/* A horizontal color bar from 0 to v_max, w wide, with three tick labels. */
void tfm_svg_colorbar(tfm_svg *s, double x, double y, double w, double v_max, const char *label);
/* The heatmap's color for value v in [0, v_max] as "#rrggbb" (buf >= 8). */
void tfm_svg_heat_color(double v, double v_max, char *buf);

#ifdef __cplusplus
}
#endif

#endif
