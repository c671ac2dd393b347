/* The man page and version the installed program reports: tfm help --roff
 * has one section per subcommand holding every flag its --help lists (both
 * come from the same tables), renders without groff warnings, and
 * tfm --version agrees with the library's tfm_version(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/base.h"
#include "util_test.h"

static char g_out[1 << 18];

static void copy_out(char *dst, size_t cap) {
    size_t n = strlen(g_out);
    if (n >= cap) n = cap - 1;
    memcpy(dst, g_out, n);
    dst[n] = 0;
}

static int run(const char *fmt, const char *arg) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, tfm_test_bin(), arg);
    return tfm_test_run(cmd, g_out, sizeof g_out);
}

START_TEST(version_matches_library) {
    ck_assert_int_eq(run("%s --version%s", ""), 0);
    char want[64];
    snprintf(want, sizeof want, "tfm %s\n", tfm_version());
    ck_assert_msg(!strncmp(g_out, want, strlen(want)), "tfm --version says '%s', library %s", g_out,
                  tfm_version());
    ck_assert_str_eq(tfm_version(), TFM_VERSION);
}
END_TEST

/* "--name" tokens of a help text, space-separated, into out. */
static void help_flags(const char *text, char *out, size_t cap) {
    out[0] = 0;
    for (const char *s = text; (s = strstr(s, "--")) != NULL;) {
        const char *e = s + 2;
        while ((*e >= 'a' && *e <= 'z') || (*e >= '0' && *e <= '9') || *e == '-') e++;
        if (e > s + 2 && (s == text || s[-1] == ' ' || s[-1] == '[' || s[-1] == '\n'))
            snprintf(out + strlen(out), cap - strlen(out), "%.*s ", (int)(e - s), s);
        s = e;
    }
}

START_TEST(man_page_has_every_flag_of_every_command) {
    static char man[1 << 18], top[8192], flags[16384];
    ck_assert_int_eq(run("%s help --roff%s", ""), 0);
    copy_out(man, sizeof man);
    ck_assert_ptr_nonnull(strstr(man, ".TH TFM 1"));
    ck_assert_int_eq(run("%s --help%s", ""), 0);
    copy_out(top, sizeof top);
    int n_cmds = 0, n_flags = 0;
    for (char *line = strtok(top, "\n"); line; line = strtok(NULL, "\n")) {
        char name[32];
        if (strncmp(line, "  ", 2) || line[2] == '-' || sscanf(line, "%31s", name) != 1) continue;
        n_cmds++;
        char head[64], upper[32];
        size_t i = 0;
        for (; name[i]; i++) upper[i] = (char)(name[i] >= 'a' ? name[i] - 32 : name[i]);
        upper[i] = 0;
        snprintf(head, sizeof head, ".SH \"TFM %s\"\n", upper);
        char *sec = strstr(man, head);
        ck_assert_msg(sec != NULL, "no section %s in the man page", head);
        char *end = strstr(sec + 1, "\n.SH \"TFM ");
        if (!end) end = strstr(sec + 1, "\n.SH ENVIRONMENT");
        ck_assert_ptr_nonnull(end);
        run("%s %s --help", name);
        help_flags(g_out, flags, sizeof flags);
        char *save = NULL;
        for (char *fl = strtok_r(flags, " ", &save); fl; fl = strtok_r(NULL, " ", &save)) {
            /* "--steps" is written "\-\-steps" in roff */
            char esc[128] = "";
            for (const char *c = fl; *c && strlen(esc) + 3 < sizeof esc; c++)
                strcat(esc, *c == '-' && (c == fl || c[-1] == '-') ? "\\-" : (char[2]){*c, 0});
            char saved = *end;
            *end = 0;
            int found = strstr(sec, esc) != NULL;
            *end = saved;
            ck_assert_msg(found, "tfm %s --help lists %s, its man section does not", name, fl);
            n_flags++;
        }
    }
    ck_assert_int_ge(n_cmds, 9);
    ck_assert_int_ge(n_flags, 60);
    printf("man page: %d commands, %d flags, all present\n", n_cmds, n_flags);
}
END_TEST

START_TEST(man_page_renders_without_warnings) {
    if (tfm_test_run("command -v groff", g_out, sizeof g_out) != 0)
        tfm_test_skip("no groff (apt-get install groff-base)");
    const char *dir = tfm_test_tmpdir("man");
    char path[300];
    snprintf(path, sizeof path, "%s/tfm.1", dir);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s help --roff > %s && groff -man -ww -z %s", tfm_test_bin(), path,
             path);
    int rc = tfm_test_run(cmd, g_out, sizeof g_out);
    ck_assert_msg(rc == 0 && g_out[0] == 0, "groff warns (exit %d): %s", rc, g_out);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    tfm_test_run(cmd, NULL, 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("man");
    TCase *tc = tcase_create("man");
    tcase_add_test(tc, version_matches_library);
    tcase_add_test(tc, man_page_has_every_flag_of_every_command);
    tcase_add_test(tc, man_page_renders_without_warnings);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
