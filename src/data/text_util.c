/* Line checks shared by BPE and the vocabulary. */
#include "text_util.h"

#include <string.h>

#include "tfm/base.h"
#include "tfm/text.h"

size_t tfm_utf8_bom_len(const char *s, size_t n) {
    return n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3) ? 3 : 0;
}

int tfm_text_check_line(const char *line, size_t len, const char *name, int64_t lineno) {
    size_t bad = 0;
    const char *nul = memchr(line, 0, len);
    if (tfm_utf8_check(line, nul ? (size_t)(nul - line) : len, &bad) != 0) {
        tfm_set_error("%s:%lld: invalid UTF-8 at byte %zu", name, (long long)lineno, bad + 1);
        return -1;
    }
    if (nul) {
        tfm_set_error("%s:%lld: NUL byte at byte %zu", name, (long long)lineno,
                      (size_t)(nul - line) + 1);
        return -1;
    }
    return 0;
}
