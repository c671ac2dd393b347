/* The SVG writer (escaping, ticks, colors, well-formed documents) and the
 * commands that use it: tfm plot and tfm attention on small real runs. */
#include <check.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/svg.h"
#include "util_test.h"

/* ---- a tiny XML well-formedness checker ------------------------------------------
 * Enough of XML 1.0 for what we write: prolog, elements with attributes,
 * text, the five entities and numeric references; checks nesting, one root,
 * quoting, no raw '<' or stray '&'. Returns NULL or a description. */
static const char *xml_entity(const char **pp) {
    const char *p = *pp; /* at '&' */
    static const char *const names[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (int i = 0; i < 5; i++)
        if (!strncmp(p, names[i], strlen(names[i]))) {
            *pp = p + strlen(names[i]);
            return NULL;
        }
    if (p[1] == '#') {
        const char *q = p + 2;
        int hex = *q == 'x';
        if (hex) q++;
        const char *start = q;
        while (hex ? isxdigit((unsigned char)*q) : isdigit((unsigned char)*q)) q++;
        if (q > start && *q == ';') {
            *pp = q + 1;
            return NULL;
        }
    }
    return "bad entity";
}

static int name_char(char c) {
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == ':' || c == '.';
}

static const char *xml_check(const char *doc) {
    const char *p = doc;
    char stack[64][32];
    int depth = 0, roots = 0;
    if (!strncmp(p, "<?xml", 5)) {
        p = strstr(p, "?>");
        if (!p) return "unterminated prolog";
        p += 2;
    }
    while (*p) {
        if (*p == '<') {
            if (p[1] == '/') {
                p += 2;
                const char *n = p;
                while (name_char(*p)) p++;
                size_t len = (size_t)(p - n);
                if (!depth || len != strlen(stack[depth - 1]) || strncmp(n, stack[depth - 1], len))
                    return "mismatched end tag";
                depth--;
                while (isspace((unsigned char)*p)) p++;
                if (*p++ != '>') return "bad end tag";
                continue;
            }
            p++;
            const char *n = p;
            while (name_char(*p)) p++;
            size_t len = (size_t)(p - n);
            if (!len || len >= 32) return "bad element name";
            if (depth == 0 && roots++) return "more than one root element";
            for (;;) {
                while (isspace((unsigned char)*p)) p++;
                if (*p == '>' || (*p == '/' && p[1] == '>')) break;
                const char *a = p;
                while (name_char(*p)) p++;
                if (p == a) return "bad attribute name";
                if (*p++ != '=') return "attribute without '='";
                char q = *p++;
                if (q != '"' && q != '\'') return "unquoted attribute";
                while (*p && *p != q) {
                    if (*p == '<') return "'<' in an attribute value";
                    if (*p == '&') {
                        const char *e = xml_entity(&p);
                        if (e) return e;
                    } else {
                        p++;
                    }
                }
                if (*p++ != q) return "unterminated attribute";
            }
            if (*p == '/') {
                p += 2;
            } else {
                if (depth >= 64) return "too deep";
                memcpy(stack[depth], n, len);
                stack[depth++][len] = 0;
                p++;
            }
        } else if (*p == '&') {
            const char *e = xml_entity(&p);
            if (e) return e;
        } else {
            if (depth == 0 && !isspace((unsigned char)*p)) return "text outside the root element";
            p++;
        }
    }
    if (depth) return "unclosed element";
    if (!roots) return "no root element";
    return NULL;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void spit(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static int have_xmllint(void) {
    char out[256];
    return tfm_test_run("command -v xmllint", out, sizeof out) == 0;
}

/* Well-formed by our checker and, when installed, by xmllint. */
static void assert_well_formed(const char *path) {
    char *doc = slurp(path);
    const char *err = xml_check(doc);
    ck_assert_msg(err == NULL, "%s: not well-formed: %s", path, err);
    free(doc);
    if (have_xmllint()) {
        char cmd[1024], out[4096];
        snprintf(cmd, sizeof cmd, "xmllint --noout '%s'", path);
        int rc = tfm_test_run(cmd, out, sizeof out);
        ck_assert_msg(rc == 0, "xmllint rejects %s: %s", path, out);
    }
}

static void assert_contains(const char *doc, const char *what) {
    ck_assert_msg(strstr(doc, what) != NULL, "expected '%s' in the SVG", what);
}

/* ---- unit tests ------------------------------------------------------------------- */

START_TEST(test_checker_catches_errors) {
    /* the checker itself must be able to fail */
    ck_assert_ptr_null(xml_check("<a x=\"1\"><b/>t &amp; &#233;</a>"));
    ck_assert_ptr_nonnull(xml_check("<a><b></a></b>"));
    ck_assert_ptr_nonnull(xml_check("<a>x < y</a>"));
    ck_assert_ptr_nonnull(xml_check("<a>AT&T</a>"));
    ck_assert_ptr_nonnull(xml_check("<a t=\"<\"/>"));
    ck_assert_ptr_nonnull(xml_check("<a/><b/>"));
    ck_assert_ptr_nonnull(xml_check("<a>"));
}
END_TEST

START_TEST(test_escape) {
    char out[256];
    size_t n = tfm_svg_escape("a<b & \"c\" 'd'>", out, sizeof out);
    ck_assert_str_eq(out, "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;");
    ck_assert_uint_eq(n, strlen(out));
    /* UTF-8 stays; control characters and broken bytes become '?' */
    tfm_svg_escape("M\xc3\xa4"
                   "dchen \xe2\x86\x92",
                   out, sizeof out);
    ck_assert_str_eq(out, "M\xc3\xa4"
                          "dchen \xe2\x86\x92");
    tfm_svg_escape("a\x01"
                   "b\xff"
                   "c\xc3",
                   out, sizeof out);
    ck_assert_str_eq(out, "a?b?c?");
    tfm_svg_escape("\xed\xa0\x80", out, sizeof out); /* a surrogate, 3 bytes */
    ck_assert_str_eq(out, "???");
    /* a small buffer gets a whole-piece prefix and the full length back */
    n = tfm_svg_escape("ab&cd", out, 5);
    ck_assert_uint_eq(n, 9);
    ck_assert_str_eq(out, "ab");
    ck_assert_uint_eq(tfm_svg_escape(NULL, out, sizeof out), 0);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_nice_ticks) {
    double t[32], lo, hi, step;
    int n = tfm_svg_nice_ticks(0, 600, 6, t, 32, &lo, &hi, &step);
    ck_assert_int_eq(n, 7);
    ck_assert(step == 100 && lo == 0 && hi == 600 && t[3] == 300);
    n = tfm_svg_nice_ticks(0.3, 4.2, 4, t, 32, &lo, &hi, &step);
    ck_assert(step == 1 && lo == 0 && hi == 5);
    ck_assert_int_eq(n, 6);
    n = tfm_svg_nice_ticks(0, 0.0125, 3, t, 32, &lo, &hi, &step);
    ck_assert_msg(fabs(step - 0.005) < 1e-15 && n == 4 && fabs(hi - 0.015) < 1e-15, "step %g n %d",
                  step, n);
    n = tfm_svg_nice_ticks(20, 20, 5, t, 32, &lo, &hi, &step); /* degenerate: widened */
    ck_assert(lo < 20 && hi > 20 && n >= 2);
    n = tfm_svg_nice_ticks(NAN, 3, 5, t, 32, &lo, &hi, &step);
    ck_assert(lo == 0 && hi == 1 && n >= 2);
    n = tfm_svg_nice_ticks(-0.3, 0.3, 6, t, 32, &lo, &hi, &step);
    for (int i = 0; i < n; i++) ck_assert(!signbit(t[i]) || t[i] != 0); /* no -0 */
    n = tfm_svg_nice_ticks(0, 1e6, 5, t, 3, &lo, &hi, &step);           /* capped */
    ck_assert_int_eq(n, 3);
    /* spans of subnormals gave a step of 0 and NaN ticks (2026-11-30) */
    static const double tiny[][2] = {{0, 5e-324},
                                     {5e-324, 1e-323},
                                     {-5e-324, 5e-324},
                                     {5e-324, 5e-324},
                                     {1e-300, 1.0000001e-300}};
    for (int k = 0; k < 5; k++) {
        n = tfm_svg_nice_ticks(tiny[k][0], tiny[k][1], 5, t, 32, &lo, &hi, &step);
        ck_assert_msg(n >= 2 && step > 0 && isfinite(lo) && isfinite(hi) && lo <= tiny[k][0] &&
                          hi >= tiny[k][1],
                      "[%g, %g]: n %d step %g lo %g hi %g", tiny[k][0], tiny[k][1], n, step, lo,
                      hi);
    }
    char buf[32];
    tfm_svg_format_tick(0.5, 0.5, buf, sizeof buf);
    ck_assert_str_eq(buf, "0.5");
    tfm_svg_format_tick(1200, 200, buf, sizeof buf);
    ck_assert_str_eq(buf, "1200");
    tfm_svg_format_tick(0.25, 0.25, buf, sizeof buf);
    ck_assert_str_eq(buf, "0.25");
    tfm_svg_format_tick(0.01, 0.005, buf, sizeof buf);
    ck_assert_str_eq(buf, "0.010");
    tfm_svg_format_tick(2e-5, 1e-5, buf, sizeof buf);
    ck_assert_str_eq(buf, "2e-05");
    tfm_svg_format_tick(0, 1e-5, buf, sizeof buf);
    ck_assert_str_eq(buf, "0");
}
END_TEST

START_TEST(test_heat_color) {
    char c[8];
    tfm_svg_heat_color(0, 1, c);
    ck_assert_str_eq(c, "#ffffff");
    tfm_svg_heat_color(1, 1, c);
    ck_assert_str_eq(c, "#08306b");
    tfm_svg_heat_color(5, 1, c); /* clamped */
    ck_assert_str_eq(c, "#08306b");
    tfm_svg_heat_color(NAN, 1, c);
    ck_assert_str_eq(c, "#ffffff");
    tfm_svg_heat_color(0.5, 1, c);
    ck_assert_str_eq(c, "#6baed6");
}
END_TEST

START_TEST(test_document) {
    const char *dir = tfm_test_tmpdir("svg");
    char path[512];
    snprintf(path, sizeof path, "%s/doc.svg", dir);
    tfm_svg s;
    tfm_svg_init(&s, 640, 700);
    tfm_svg_plot p = {.x = 70, .y = 40, .w = 520, .h = 250};
    tfm_svg_plot_axes(&s, &p, 0, 575, 0, 4.3, "loss <&>", "step", "nats");
    ck_assert(p.x_hi == 600 && p.y_hi >= 4.3 && p.y_lo == 0);
    ck_assert(fabs(tfm_svg_plot_x(&p, 600) - (p.x + p.w)) < 1e-9);
    ck_assert(fabs(tfm_svg_plot_y(&p, p.y_lo) - (p.y + p.h)) < 1e-9);
    double x[5] = {0, 100, 200, 300, 400}, y[5] = {4, 3, NAN, 2, 1.5};
    tfm_svg_plot_series(&s, &p, x, y, 5, "#1f77b4", 0);
    const char *names[2] = {"train \"loss\"", "valid & co"}, *colors[2] = {"#1f77b4", "#d62728"};
    tfm_svg_plot_legend(&s, &p, names, colors, 2, 0);
    float v[6] = {0.9f, 0.1f, 0, 0.2f, 0.5f, 0.3f};
    const char *rows[2] = {"<s>", "a&b"}, *cols[3] = {"\"q\"", "Mäd@@", "</s>"};
    tfm_svg_heatmap_spec h = {.rows = 2,
                              .cols = 3,
                              .values = v,
                              .row_labels = rows,
                              .col_labels = cols,
                              .title = "head 0",
                              .row_axis = "output",
                              .col_axis = "source",
                              .cell = 22,
                              .v_max = 1};
    double hw, hh;
    tfm_svg_heatmap_extent(&h, &hw, &hh);
    ck_assert(hw > 3 * 22 && hh > 2 * 22);
    tfm_svg_heatmap(&s, &h, 20, 330);
    tfm_svg_colorbar(&s, 20, 660, 160, 1, "weight");
    ck_assert_int_eq(tfm_svg_save(&s, path), 0);
    tfm_svg_free(&s);
    assert_well_formed(path);
    char *doc = slurp(path);
    assert_contains(doc, "loss &lt;&amp;&gt;");
    assert_contains(doc, "train &quot;loss&quot;");
    assert_contains(doc, "valid &amp; co");
    assert_contains(doc, "&lt;s&gt;");
    assert_contains(doc, "a&amp;b");
    assert_contains(doc, "&quot;q&quot;");
    assert_contains(doc, "Mäd@@");
    assert_contains(doc, ">600</text>");      /* x tick label */
    assert_contains(doc, "fill=\"#6baed6\""); /* the 0.5 cell */
    /* the NaN splits the series into a two-point polyline and a two-point one */
    const char *first = strstr(doc, "<polyline");
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_nonnull(strstr(first + 1, "<polyline"));
    free(doc);
}
END_TEST

/* ---- tfm plot ---------------------------------------------------------------------- */

static const char *METRICS = "step,epoch,loss,lr,grad_norm,tokens_per_s,valid_loss,valid_bleu\n"
                             "50,,3.5,0.0025,1.2,1000.0,,\n"
                             "100,,2.5,0.005,1.0,1000.0,,\n"
                             "100,3,2.5,0.005,1.0,1000.0,2.1,12.5\n"
                             "150,,2.0,0.004,0.9,1000.0,,\n"
                             "200,,1.5,0.0035,0.8,1000.0,,\n"
                             "200,6,1.5,0.0035,0.8,1000.0,1.6,31.25\n";

START_TEST(test_plot) {
    const char *dir = tfm_test_tmpdir("plot");
    char path[512], cmd[2048], out[8192];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    spit(path, METRICS);
    snprintf(cmd, sizeof cmd, "%s plot %s -o %s/curves.svg", tfm_test_bin(), dir, dir);
    int rc = tfm_test_run(cmd, out, sizeof out);
    ck_assert_msg(rc == 0, "tfm plot failed: %s", out);
    ck_assert_msg(strstr(out, "(6 rows") != NULL, "%s", out);
    snprintf(path, sizeof path, "%s/curves.svg", dir);
    assert_well_formed(path);
    char *doc = slurp(path);
    assert_contains(doc, ">training loss</text>");
    assert_contains(doc, ">validation loss</text>");
    assert_contains(doc, ">validation BLEU</text>");
    assert_contains(doc, ">learning rate</text>");
    assert_contains(doc, ">Validation BLEU</text>");
    assert_contains(doc, ">200</text>");   /* step tick */
    assert_contains(doc, ">0.004</text>"); /* lr tick */
    assert_contains(doc, ">step</text>");
    /* two validations: dots for the loss and for BLEU */
    int circles = 0;
    for (const char *p = doc; (p = strstr(p, "<circle")); p++) circles++;
    ck_assert_int_eq(circles, 4);
    free(doc);

    /* the default output goes into the run directory */
    snprintf(cmd, sizeof cmd, "%s plot %s", tfm_test_bin(), dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    snprintf(path, sizeof path, "%s/curves.svg", dir);
    assert_well_formed(path);
}
END_TEST

START_TEST(test_plot_errors) {
    const char *dir = tfm_test_tmpdir("plot-err");
    char path[512], cmd[2048], out[8192];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    snprintf(cmd, sizeof cmd, "%s plot %s -o %s/c.svg", tfm_test_bin(), dir, dir);
    /* missing file */
    ck_assert_int_ne(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "metrics.csv") != NULL, "%s", out);
    /* a row with a field missing, named by line */
    spit(path, "step,loss,lr\n10,2.0,0.001\n20,1.5\n");
    ck_assert_int_ne(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "metrics.csv:3: 2 fields, the header has 3") != NULL, "%s", out);
    ck_assert_msg(strchr(out, '\n') == strrchr(out, '\n'), "one line: %s", out);
    /* not a number */
    spit(path, "step,loss,lr\n10,2.0,0.001\n20,abc,0.001\n");
    ck_assert_int_ne(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "metrics.csv:3: column 'loss': 'abc' is not a number") != NULL, "%s",
                  out);
    /* no step column, empty file, header only */
    spit(path, "loss,lr\n1,2\n");
    ck_assert_int_ne(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "metrics.csv:1:") && strstr(out, "'step'"), "%s", out);
    spit(path, "");
    ck_assert_int_ne(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "empty") != NULL, "%s", out);
    spit(path, "step,loss\n");
    ck_assert_int_ne(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "no rows") != NULL, "%s", out);
    /* a resumed run repeats steps: the later rows replace the earlier ones; CRLF is fine */
    spit(path, "step,loss,lr\r\n10,3,0.001\r\n20,2,0.002\r\n30,1.5,0.003\r\n20,2.1,0.002\r\n30,1.4,"
               "0.003\r\n");
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "(4 rows") != NULL, "%s", out);
    /* usage errors */
    snprintf(cmd, sizeof cmd, "%s plot", tfm_test_bin());
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s plot %s -o", tfm_test_bin(), dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
}
END_TEST

/* ---- tfm attention ----------------------------------------------------------------- */

START_TEST(test_attention_toy) {
    const char *dir = tfm_test_tmpdir("attn-toy");
    char cmd[4096], out[16384], path[512];
    snprintf(
        cmd, sizeof cmd,
        "%s train --task copy --steps 40 --save %s/run --d-model 16 --heads 2 --d-ff 32 "
        "--layers 2 --vocab 8 --max-len 5 --batch 16 --warmup 20 --threads 1 --eval-n 10 --quiet",
        tfm_test_bin(), dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s attention --model %s/run --src '3 4 5 6' --head all -o %s/a.svg",
             tfm_test_bin(), dir, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(path, sizeof path, "%s/a.svg", dir);
    assert_well_formed(path);
    char *doc = slurp(path);
    assert_contains(doc, "dec.1.cross_attn, head 0");
    assert_contains(doc, "dec.1.cross_attn, head 1");
    assert_contains(doc, ">3</text>");
    assert_contains(doc, ">6</text>");
    assert_contains(doc, ">&lt;/s&gt;</text>");
    assert_contains(doc, ">source</text>");
    free(doc);
    /* the mean over heads, layer 0; and the encoder self-attention */
    snprintf(cmd, sizeof cmd, "%s attention --model %s/run --src '7 3' --layer 0 -o %s/b.svg",
             tfm_test_bin(), dir, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(path, sizeof path, "%s/b.svg", dir);
    assert_well_formed(path);
    doc = slurp(path);
    assert_contains(doc, "dec.0.cross_attn, mean of 2 heads");
    free(doc);
    snprintf(cmd, sizeof cmd,
             "%s attention --model %s/run --src '7 3 4' --self --head 1 -o %s/c.svg",
             tfm_test_bin(), dir, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(path, sizeof path, "%s/c.svg", dir);
    assert_well_formed(path);
    doc = slurp(path);
    assert_contains(doc, "enc.1.self_attn, head 1");
    assert_contains(doc, ">query (source)</text>");
    /* a self-attention map is square: 4 x 4 cells (3 symbols + </s>) of 22 units */
    int cells = 0;
    for (const char *p = doc; (p = strstr(p, "width=\"22.0\" height=\"22.0\"")); p++) cells++;
    ck_assert_int_eq(cells, 16);
    free(doc);
    /* errors name the flag */
    snprintf(cmd, sizeof cmd, "%s attention --model %s/run --src '3 4' --head 2 -o %s/d.svg",
             tfm_test_bin(), dir, dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "--head 2") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd, "%s attention --model %s/run --src '3 4' --layer 2 -o %s/d.svg",
             tfm_test_bin(), dir, dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "--layer 2: the decoder has layers 0..1") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd, "%s attention --model %s/run --src '3 9' -o %s/d.svg", tfm_test_bin(),
             dir, dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "symbol 9 is outside 3..7") != NULL, "%s", out);
    snprintf(cmd, sizeof cmd, "%s attention --model %s/run -o %s/d.svg", tfm_test_bin(), dir, dir);
    ck_assert_int_eq(tfm_test_run(cmd, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "--src") != NULL, "%s", out);
    snprintf(path, sizeof path, "%s/d.svg", dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f == NULL, "no SVG after an error");
}
END_TEST

/* A text model whose subwords hold the characters XML escapes. */
START_TEST(test_attention_text_escaping) {
    const char *dir = tfm_test_tmpdir("attn-text");
    char src[512], tgt[512], cmd[4096], out[16384], path[512];
    snprintf(src, sizeof src, "%s/train.src", dir);
    snprintf(tgt, sizeof tgt, "%s/train.tgt", dir);
    FILE *fs = fopen(src, "w"), *ft = fopen(tgt, "w");
    ck_assert(fs && ft);
    for (int i = 0; i < 40; i++) {
        fprintf(fs, "x<y & \"z\" %d\n", i % 5);
        fprintf(ft, "a<b & \"c\" %d\n", i % 5);
    }
    fclose(fs);
    fclose(ft);
    snprintf(
        cmd, sizeof cmd,
        "%s train --src-train %s --tgt-train %s --save %s/run --bpe-merges 10 --batch-tokens 256 "
        "--steps 20 --d-model 16 --heads 2 --d-ff 32 --layers 1 --warmup 10 --share-emb "
        "--threads 1 --quiet",
        tfm_test_bin(), src, tgt, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(cmd, sizeof cmd,
             "%s attention --model %s/run --src 'x<y & \"z\" 3' --max-len 6 -o %s/a.svg",
             tfm_test_bin(), dir, dir);
    ck_assert_msg(tfm_test_run(cmd, out, sizeof out) == 0, "%s", out);
    snprintf(path, sizeof path, "%s/a.svg", dir);
    assert_well_formed(path);
    char *doc = slurp(path);
    assert_contains(doc, "&amp;");
    assert_contains(doc, "&quot;");
    assert_contains(doc, "&lt;");
    assert_contains(doc, "x&lt;y &amp; &quot;z&quot; 3"); /* the sentence in the subtitle */
    assert_contains(doc, ">&amp;</text>");                /* the subword "&" as a column label */
    free(doc);
}
END_TEST

Suite *svg_suite(void) {
    Suite *s = suite_create("svg");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_checker_catches_errors);
    tcase_add_test(tc, test_escape);
    tcase_add_test(tc, test_nice_ticks);
    tcase_add_test(tc, test_heat_color);
    tcase_add_test(tc, test_document);
    tcase_add_test(tc, test_plot);
    tcase_add_test(tc, test_plot_errors);
    tcase_add_test(tc, test_attention_toy);
    tcase_add_test(tc, test_attention_text_escaping);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tfm_test_main(svg_suite()); }
