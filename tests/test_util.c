/* src/util: growable buffers, whole-stream reading, byte hashing, hash maps,
 * line iteration (the private helpers shared by data, io and eval). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../src/util/buf.h"
#include "../src/util/hash.h"
#include "../src/util/lines.h"
#include "tfm/base.h"
#include "tfm/checkpoint.h"
#include "util_test.h"

/* CRC-32C: the standard check value, and the eight-bytes-per-round loop
 * against the bit-at-a-time definition at every length, alignment and split */
static uint32_t crc32c_bitwise(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

/* a context prefixed to the last error, the message read while it is set */
START_TEST(set_error_may_quote_the_last_error) {
    tfm_set_error("l/bpe.codes: cannot open: %s", "No such file or directory");
    tfm_set_error("--init %s: %s", "l/best.tfm", tfm_last_error());
    ck_assert_str_eq(tfm_last_error(),
                     "--init l/best.tfm: l/bpe.codes: cannot open: No such file or directory");
}
END_TEST

START_TEST(crc32c_matches_the_definition) {
    ck_assert_uint_eq(tfm_crc32c(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(tfm_crc32c(0, "", 0), 0u);
    unsigned char buf[300];
    uint64_t s = 12345;
    for (size_t i = 0; i < sizeof buf; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (unsigned char)(s >> 56);
    }
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= sizeof buf; n += 7) {
            uint32_t want = crc32c_bitwise(0, buf + off, n);
            ck_assert_uint_eq(tfm_crc32c(0, buf + off, n), want);
            size_t cut = n / 3; /* continued across calls */
            ck_assert_uint_eq(tfm_crc32c(tfm_crc32c(0, buf + off, cut), buf + off + cut, n - cut),
                              want);
        }
}
END_TEST

START_TEST(bytes_reserve_doubles_and_refuses_overflow) {
    char *p = NULL;
    size_t cap = 0;
    ck_assert_int_eq(tfm_bytes_reserve(&p, &cap, 0, 10), 0);
    ck_assert_uint_eq(cap, 256);
    ck_assert_int_eq(tfm_bytes_reserve(&p, &cap, 250, 6), 0); /* fits exactly */
    ck_assert_uint_eq(cap, 256);
    ck_assert_int_eq(tfm_bytes_reserve(&p, &cap, 250, 7), 0);
    ck_assert_uint_eq(cap, 512);
    char *was = p;
    ck_assert_int_eq(tfm_bytes_reserve(&p, &cap, 100, SIZE_MAX - 50), -1);
    ck_assert_ptr_eq(p, was); /* unchanged on failure */
    ck_assert_uint_eq(cap, 512);
    free(p);
}
END_TEST

START_TEST(grow_keeps_contents_and_reports_overflow) {
    int64_t *a = NULL, cap = 0;
    for (int64_t i = 0; i < 1000; i++) {
        ck_assert_int_eq(tfm_grow((void **)&a, &cap, i + 1, sizeof *a), 0);
        a[i] = i * 3;
    }
    ck_assert_int_ge(cap, 1000);
    for (int64_t i = 0; i < 1000; i++) ck_assert_int_eq(a[i], i * 3);
    ck_assert_int_eq(tfm_grow((void **)&a, &cap, INT64_MAX / 2, 64), -1);
    ck_assert_msg(strstr(tfm_last_error(), "out of memory") != NULL, "%s", tfm_last_error());
    ck_assert_int_eq(a[999], 999 * 3);
    free(a);
}
END_TEST

START_TEST(buf_appends_and_sticks_on_oom) {
    tfm_buf b = {0};
    tfm_buf_add(&b, "hello", 5);
    tfm_buf_put(&b, ' ');
    tfm_buf_add(&b, "world", 5);
    tfm_buf_add(&b, "", 0);
    ck_assert_uint_eq(b.len, 11);
    ck_assert_int_eq(memcmp(b.p, "hello world", 11), 0);
    ck_assert_int_eq(b.oom, 0);
    /* an impossible reservation marks the buffer failed; appends are dropped */
    ck_assert_int_eq(tfm_buf_reserve(&b, SIZE_MAX - 4), -1);
    ck_assert_int_eq(b.oom, 1);
    tfm_buf_add(&b, "more", 4);
    ck_assert_uint_eq(b.len, 11);
    ck_assert_int_eq(tfm_buf_reserve(&b, 1), -1);
    tfm_buf_free(&b);
    ck_assert_ptr_null(b.p);
    ck_assert_int_eq(b.oom, 0);
}
END_TEST

START_TEST(buf_reads_a_whole_stream) {
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    /* larger than one read so the buffer grows while reading */
    for (int i = 0; i < 30000; i++) fprintf(f, "%05d\n", i);
    rewind(f);
    tfm_buf b = {0};
    tfm_buf_add(&b, "x", 1); /* appends after what is there */
    ck_assert_int_eq(tfm_buf_read_all(&b, f), 0);
    ck_assert_uint_eq(b.len, 1 + 30000 * 6);
    ck_assert_int_eq(memcmp(b.p, "x00000\n00001\n", 13), 0);
    ck_assert_int_eq(memcmp(b.p + b.len - 6, "29999\n", 6), 0);
    fclose(f);
    tfm_buf_free(&b);
    /* a stream opened for writing only fails to read */
    char path[512];
    snprintf(path, sizeof path, "%s/wo.txt", tfm_test_tmpdir("util_read"));
    FILE *w = fopen(path, "w");
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(tfm_buf_read_all(&b, w), -1);
    ck_assert_int_eq(b.oom, 0);
    fclose(w);
    tfm_buf_free(&b);
}
END_TEST

START_TEST(hash_bytes_depends_on_every_byte) {
    const char *s = "the quick brown fox jumps"; /* words and a tail */
    size_t n = strlen(s);
    char copy[64];
    memcpy(copy, s, n);
    ck_assert_uint_eq(tfm_hash_bytes(s, n), tfm_hash_bytes(copy, n));
    for (size_t i = 0; i < n; i++) {
        copy[i] ^= 1;
        ck_assert_uint_ne(tfm_hash_bytes(s, n), tfm_hash_bytes(copy, n));
        copy[i] ^= 1;
    }
    /* the length is hashed too: a prefix of zero bytes differs from shorter */
    char zeros[16] = {0};
    for (size_t i = 0; i < 16; i++)
        ck_assert_uint_ne(tfm_hash_bytes(zeros, i), tfm_hash_bytes(zeros, i + 1));
}
END_TEST

START_TEST(strmap_numbers_keys_in_insertion_order) {
    tfm_strmap m = {0};
    char key[32];
    for (int i = 0; i < 5000; i++) {
        int added = 0;
        int len = snprintf(key, sizeof key, "k%d", i * 7);
        ck_assert_int_eq(tfm_strmap_add(&m, key, (size_t)len, &added), i);
        ck_assert_int_eq(added, 1);
    }
    for (int i = 0; i < 5000; i++) {
        int added = 1;
        int len = snprintf(key, sizeof key, "k%d", i * 7);
        ck_assert_int_eq(tfm_strmap_find(&m, key, (size_t)len), i);
        ck_assert_int_eq(tfm_strmap_add(&m, key, (size_t)len, &added), i);
        ck_assert_int_eq(added, 0);
        ck_assert_str_eq(tfm_strmap_key(&m, i), key);
    }
    ck_assert_int_eq(tfm_strmap_find(&m, "k1", 2), -1);
    tfm_strmap_free(&m);
    ck_assert_int_eq(tfm_strmap_find(&m, "k0", 2), -1);

    tfm_u64map u = {0};
    for (uint64_t k = 0; k < 3000; k++) {
        int added = 0;
        int32_t *v = tfm_u64map_put(&u, k * 1000003u, (int32_t)k, &added);
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(added, 1);
    }
    for (uint64_t k = 0; k < 3000; k++) ck_assert_int_eq(tfm_u64map_get(&u, k * 1000003u), k);
    ck_assert_int_eq(tfm_u64map_get(&u, 1), -1);
    tfm_u64map_free(&u);
}
END_TEST

typedef struct {
    char got[512];
    int calls, stop_at;
} line_log;

static int log_line(void *ctx, const char *line, size_t len, const char *name, int64_t lineno) {
    line_log *l = ctx;
    size_t used = strlen(l->got);
    snprintf(l->got + used, sizeof l->got - used, "%s:%lld[%.*s]", name, (long long)lineno,
             (int)len, line);
    return ++l->calls == l->stop_at ? 7 : 0;
}

START_TEST(each_line_mem_and_file) {
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"", ""},          {"\n", "m:1[]"},          {"a", "m:1[a]"},
        {"a\n", "m:1[a]"}, {"a\nb", "m:1[a]m:2[b]"}, {"a\r\n\nb\n", "m:1[a\r]m:2[]m:3[b]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        line_log l = {{0}, 0, 0};
        ck_assert_int_eq(tfm_each_line_mem(cases[i].text, strlen(cases[i].text), "m", log_line, &l),
                         0);
        ck_assert_str_eq(l.got, cases[i].want);
    }
    line_log l = {{0}, 0, 2}; /* the callback's non-zero return stops and comes back */
    ck_assert_int_eq(tfm_each_line_mem("x\ny\nz\n", 6, "m", log_line, &l), 7);
    ck_assert_str_eq(l.got, "m:1[x]m:2[y]");

    char path[512];
    snprintf(path, sizeof path, "%s/lines.txt", tfm_test_tmpdir("util_lines"));
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("one\ntwo\r\nthree", f);
    fclose(f);
    line_log fl = {{0}, 0, 0};
    ck_assert_int_eq(tfm_each_line_file(path, log_line, &fl), 0);
    char want[1600];
    snprintf(want, sizeof want, "%s:1[one]%s:2[two\r]%s:3[three]", path, path, path);
    ck_assert_str_eq(fl.got, want);
    snprintf(path, sizeof path, "%s/missing.txt", tfm_test_tmpdir("util_lines"));
    ck_assert_int_ne(tfm_each_line_file(path, log_line, &fl), 0);
    ck_assert_msg(strstr(tfm_last_error(), "missing.txt: cannot open") != NULL, "%s",
                  tfm_last_error());
}
END_TEST

/* tfm_getline_error: getline's -1 at the end of the file is the end; a -1
 * before it (out of memory for a long line, which sets no stream error) is
 * an error naming the line, not a silent end of the input. tfm_open_regular:
 * a FIFO without a writer is refused at once (it used to block), a file
 * opens, a directory is refused. */
START_TEST(getline_error_and_regular_files) {
    char text[] = "a\nb\n";
    FILE *f = fmemopen(text, strlen(text), "r");
    ck_assert_ptr_nonnull(f);
    char *line = NULL;
    size_t cap = 0;
    ck_assert_int_eq(getline(&line, &cap, f), 2);
    ck_assert_int_eq(tfm_getline_error(f, "in.txt", 2, ENOMEM), 1);
    ck_assert_str_eq(tfm_last_error(), "in.txt:2: cannot read the line: Cannot allocate memory");
    while (getline(&line, &cap, f) >= 0) continue;
    ck_assert_int_eq(tfm_getline_error(f, "in.txt", 3, 0), 0);
    free(line);
    fclose(f);

    const char *dir = tfm_test_tmpdir("util_regular");
    char path[512];
    int not_regular = -1;
    snprintf(path, sizeof path, "%s/file", dir);
    f = fopen(path, "wb");
    fputs("x", f);
    fclose(f);
    f = tfm_open_regular(path, &not_regular);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fgetc(f), 'x');
    fclose(f);
    ck_assert_ptr_null(tfm_open_regular(dir, &not_regular));
    ck_assert_int_eq(not_regular, 1);
    snprintf(path, sizeof path, "%s/missing", dir);
    ck_assert_ptr_null(tfm_open_regular(path, &not_regular));
    ck_assert_int_eq(not_regular, 0);
    ck_assert_int_eq(errno, ENOENT);
    snprintf(path, sizeof path, "%s/fifo", dir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    ck_assert_ptr_null(tfm_open_regular(path, &not_regular)); /* no writer: no wait */
    ck_assert_int_eq(not_regular, 1);
}
END_TEST

START_TEST(strdup_copies_and_terminates) {
    char *a = tfm_strndup("abcdef", 3);
    ck_assert_str_eq(a, "abc");
    char *b = tfm_strndup("a\0b", 3); /* n bytes, NULs included, then a NUL */
    ck_assert_int_eq(memcmp(b, "a\0b\0", 4), 0);
    char *c = tfm_strdup("");
    ck_assert_str_eq(c, "");
    char *d = tfm_strdup("copy");
    ck_assert_str_eq(d, "copy");
    free(a);
    free(b);
    free(c);
    free(d);
}
END_TEST

/* tfm_read_input (base.h) over the byte buffer: whole files, larger than one
 * read, NUL-terminated, and its errors. */
START_TEST(read_input_whole_file) {
    const char *dir = tfm_test_tmpdir("util_input");
    char path[512];
    snprintf(path, sizeof path, "%s/in.txt", dir);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 30000; i++) fprintf(f, "%05d\n", i);
    fclose(f);
    char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(tfm_read_input(path, &text, &len), 0);
    ck_assert_uint_eq(len, 30000 * 6);
    ck_assert_int_eq(text[len], 0);
    ck_assert_int_eq(memcmp(text + len - 6, "29999\n", 6), 0);
    free(text);
    snprintf(path, sizeof path, "%s/empty.txt", dir);
    f = fopen(path, "wb");
    fclose(f);
    ck_assert_int_eq(tfm_read_input(path, &text, &len), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(text, "");
    free(text);
    ck_assert_int_ne(tfm_read_input(dir, &text, &len), 0);
    ck_assert_ptr_null(text);
    ck_assert_msg(strstr(tfm_last_error(), ": is a directory"), "%s", tfm_last_error());
    snprintf(path, sizeof path, "%s/missing.txt", dir);
    ck_assert_int_ne(tfm_read_input(path, &text, &len), 0);
    ck_assert_msg(strstr(tfm_last_error(), "missing.txt: cannot open: "), "%s", tfm_last_error());
}
END_TEST

int main(void) {
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("util");
    tcase_add_test(tc, set_error_may_quote_the_last_error);
    tcase_add_test(tc, bytes_reserve_doubles_and_refuses_overflow);
    tcase_add_test(tc, grow_keeps_contents_and_reports_overflow);
    tcase_add_test(tc, buf_appends_and_sticks_on_oom);
    tcase_add_test(tc, buf_reads_a_whole_stream);
    tcase_add_test(tc, hash_bytes_depends_on_every_byte);
    tcase_add_test(tc, strmap_numbers_keys_in_insertion_order);
    tcase_add_test(tc, each_line_mem_and_file);
    tcase_add_test(tc, getline_error_and_regular_files);
    tcase_add_test(tc, strdup_copies_and_terminates);
    tcase_add_test(tc, read_input_whole_file);
    tcase_add_test(tc, crc32c_matches_the_definition);
    suite_add_tcase(s, tc);
    return tfm_test_main(s);
}
