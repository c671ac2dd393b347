/* make check-layers (tests/check_layers.sh): passes on the tree, and fails,
 * naming file:line and the include, on violations planted in a copy. */
#include <stdio.h>
#include <string.h>

#include "util_test.h"

static char g_out[16384];

/* Copies src/ and include/ of the repository into a fresh directory. */
static const char *copy_tree(const char *tag) {
    const char *dir = tfm_test_tmpdir(tag);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s' '%s/'", tfm_test_path("src"),
             tfm_test_path("include"), dir);
    ck_assert_msg(tfm_test_run(cmd, g_out, sizeof g_out) == 0, "%s", g_out);
    return dir;
}

/* Runs `sed -i SCRIPT` on FILE inside dir, then the checker on dir. */
static int plant_and_check(const char *dir, const char *file, const char *sed_script) {
    char cmd[4096];
    if (file) {
        snprintf(cmd, sizeof cmd, "sed -i '%s' '%s/%s'", sed_script, dir, file);
        ck_assert_msg(tfm_test_run(cmd, g_out, sizeof g_out) == 0, "%s", g_out);
    }
    snprintf(cmd, sizeof cmd, "bash '%s' '%s'", tfm_test_path("tests/check_layers.sh"), dir);
    return tfm_test_run(cmd, g_out, sizeof g_out);
}

#define ck_assert_out_has(s) ck_assert_msg(strstr(g_out, s) != NULL, "no '%s' in:\n%s", s, g_out)

START_TEST(passes_on_the_tree) {
    ck_assert_msg(plant_and_check(tfm_test_path("."), NULL, NULL) == 0, "%s", g_out);
    ck_assert_out_has("check-layers: ok");
}
END_TEST

START_TEST(fails_on_core_including_ops) {
    const char *dir = copy_tree("layers_up");
    ck_assert_msg(plant_and_check(dir, NULL, NULL) == 0, "clean copy: %s", g_out);
    /* line 3 of tensor.c becomes an include of the ops layer */
    ck_assert_int_ne(plant_and_check(dir, "src/core/tensor.c", "3i #include \"tfm/ops.h\""), 0);
    ck_assert_out_has("src/core/tensor.c:3: #include \"tfm/ops.h\" (ops) from core runs up");
    ck_assert_out_has("check-layers: FAILED");
}
END_TEST

START_TEST(fails_on_relative_and_angle_includes_up) {
    const char *dir = copy_tree("layers_rel");
    ck_assert_int_ne(
        plant_and_check(dir, "src/kernels/norm.c", "2i #include \"../nn/../ops/ops_internal.h\""),
        0);
    ck_assert_out_has("src/kernels/norm.c:2: #include \"../nn/../ops/ops_internal.h\" (ops) from "
                      "kernels runs up");
    dir = copy_tree("layers_angle");
    ck_assert_int_ne(plant_and_check(dir, "include/tfm/tensor.h", "2i #  include <tfm/train.h>"),
                     0);
    ck_assert_out_has("include/tfm/tensor.h:2: #include \"tfm/train.h\" (train) from core runs up");
}
END_TEST

START_TEST(fails_on_unknown_or_private_headers) {
    const char *dir = copy_tree("layers_unknown");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "touch '%s/include/tfm/new_thing.h'", dir);
    ck_assert_int_eq(tfm_test_run(cmd, g_out, sizeof g_out), 0);
    ck_assert_int_ne(plant_and_check(dir, NULL, NULL), 0);
    ck_assert_out_has("include/tfm/new_thing.h:1: public header include/tfm/new_thing.h has no "
                      "layer");
    dir = copy_tree("layers_private");
    ck_assert_int_ne(
        plant_and_check(dir, "include/tfm/nn.h", "2i #include \"../../src/util/buf.h\""), 0);
    ck_assert_out_has("include/tfm/nn.h:2: #include \"../../src/util/buf.h\": a public header "
                      "includes a private one");
    dir = copy_tree("layers_missing");
    ck_assert_int_ne(plant_and_check(dir, "src/ops/tape.c", "2i #include \"nowhere.h\""), 0);
    ck_assert_out_has("src/ops/tape.c:2: #include \"nowhere.h\" does not resolve");
}
END_TEST

int main(void) {
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("layers");
    tcase_add_test(tc, passes_on_the_tree);
    tcase_add_test(tc, fails_on_core_including_ops);
    tcase_add_test(tc, fails_on_relative_and_angle_includes_up);
    tcase_add_test(tc, fails_on_unknown_or_private_headers);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
