/* Hugging Face tokenizers "tokenizer.json" for a BPE model and vocabulary.
 * The mapping from our "@@ " subwords to HF's end-of-word form is described
 * in tfm/text.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text_util.h"
#include "tfm/base.h"
#include "tfm/text.h"

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 1 << 16;
        while (c < b->len + n + 1) c *= 2;
        char *p = realloc(b->s, c);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = c;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal: quotes, backslashes and control characters are
 * escaped; other UTF-8 is written as is (valid JSON). */
static void sb_json(sbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        sb_put(b, s + run, i - run);
        char esc[8];
        if (c == '"' || c == '\\')
            snprintf(esc, sizeof esc, "\\%c", c);
        else
            snprintf(esc, sizeof esc, "\\u%04x", c);
        sb_str(b, esc);
        run = i + 1;
    }
    sb_put(b, s + run, n - run);
    sb_put(b, "\"", 1);
}

static void sb_int(sbuf *b, long long v) {
    char num[32];
    snprintf(num, sizeof num, "%lld", v);
    sb_str(b, num);
}

char *tfm_bpe_hf_tokenizer_json(const tfm_bpe *bpe, const tfm_vocab *v, size_t *len_out) {
    if (tfm_bpe_version(bpe) != 2) {
        tfm_set_error("only version 0.2 codes can be exported as tokenizer.json (these are 0.1)");
        return NULL;
    }
    tfm_strmap hf;
    memset(&hf, 0, sizeof hf);
    int32_t *hf_id = NULL;
    int64_t hf_cap = 0;
    char *tmp = NULL;
    int64_t tmp_cap = 0;
    sbuf b = {0};
    int32_t size = tfm_vocab_size(v);
    int64_t next_id = size;
    /* Our tokens in id order, then merge symbols HF needs and we lack. */
    for (int64_t i = 0; i < size + 3 * tfm_bpe_n_merges(bpe); i++) {
        const char *t;
        size_t tl;
        int eow = 0;
        if (i < size) {
            t = tfm_vocab_token(v, (int32_t)i);
            tl = strlen(t);
            if (i >= TFM_N_SPECIALS) {
                if (tl >= 2 && t[tl - 2] == '@' && t[tl - 1] == '@')
                    tl -= 2;
                else
                    eow = 1;
            }
        } else {
            int64_t m = (i - size) / 3, which = (i - size) % 3;
            const char *l = tfm_bpe_merge_left(bpe, m), *r = tfm_bpe_merge_right(bpe, m);
            if (which == 0)
                t = l, tl = strlen(l);
            else if (which == 1)
                t = r, tl = strlen(r);
            else {
                size_t ll = strlen(l), rl = strlen(r);
                if (tfm_grow((void **)&tmp, &tmp_cap, (int64_t)(ll + rl), 1)) goto fail;
                memcpy(tmp, l, ll);
                memcpy(tmp + ll, r, rl);
                t = tmp;
                tl = ll + rl;
            }
        }
        const char *key = t;
        size_t kl = tl;
        if (eow) {
            if (tfm_grow((void **)&tmp, &tmp_cap, (int64_t)tl + 4, 1)) goto fail;
            memmove(tmp, t, tl);
            memcpy(tmp + tl, TFM_BPE_EOW, 4);
            key = tmp;
            kl = tl + 4;
        }
        int added;
        int64_t e = tfm_strmap_add(&hf, key, kl, &added);
        if (e < 0) goto fail;
        if (!added) continue; /* first (lowest) id keeps the string */
        if (tfm_grow((void **)&hf_id, &hf_cap, e + 1, sizeof *hf_id)) goto fail;
        hf_id[e] = (int32_t)(i < size ? i : next_id++);
    }

    sb_str(&b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
               "  \"added_tokens\": [");
    for (int i = 0; i < TFM_N_SPECIALS; i++) {
        const char *t = tfm_vocab_token(v, i);
        sb_str(&b, i ? ",\n    {\"id\": " : "\n    {\"id\": ");
        sb_int(&b, i);
        sb_str(&b, ", \"content\": ");
        sb_json(&b, t, strlen(t));
        sb_str(&b, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                   "\"normalized\": false, \"special\": true}");
    }
    sb_str(&b, "\n  ],\n  \"normalizer\": null,\n"
               "  \"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"},\n"
               "  \"post_processor\": null,\n"
               "  \"decoder\": {\"type\": \"BPEDecoder\", \"suffix\": \"</w>\"},\n"
               "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n"
               "    \"unk_token\": \"<unk>\",\n    \"continuing_subword_prefix\": null,\n"
               "    \"end_of_word_suffix\": \"</w>\",\n    \"fuse_unk\": false,\n"
               "    \"byte_fallback\": false,\n    \"vocab\": {");
    for (int64_t e = 0; e < hf.n; e++) {
        sb_str(&b, e ? ",\n      " : "\n      ");
        sb_json(&b, tfm_strmap_key(&hf, e), hf.key_len[e]);
        sb_str(&b, ": ");
        sb_int(&b, hf_id[e]);
    }
    sb_str(&b, "\n    },\n    \"merges\": [");
    for (int64_t m = 0; m < tfm_bpe_n_merges(bpe); m++) {
        const char *l = tfm_bpe_merge_left(bpe, m), *r = tfm_bpe_merge_right(bpe, m);
        size_t ll = strlen(l), rl = strlen(r);
        if (tfm_grow((void **)&tmp, &tmp_cap, (int64_t)(ll + rl + 1), 1)) goto fail;
        memcpy(tmp, l, ll);
        tmp[ll] = ' ';
        memcpy(tmp + ll + 1, r, rl);
        sb_str(&b, m ? ",\n      " : "\n      ");
        sb_json(&b, tmp, ll + rl + 1);
    }
    sb_str(&b, "\n    ]\n  }\n}\n");
    if (b.oom) {
        tfm_set_error("out of memory writing tokenizer.json");
        goto fail;
    }
    tfm_strmap_free(&hf);
    free(hf_id);
    free(tmp);
    if (len_out) *len_out = b.len;
    return b.s;
fail:
    tfm_strmap_free(&hf);
    free(hf_id);
    free(tmp);
    free(b.s);
    return NULL;
}

int tfm_bpe_write_hf_tokenizer(const tfm_bpe *bpe, const tfm_vocab *v, const char *path) {
    size_t len;
    char *json = tfm_bpe_hf_tokenizer_json(bpe, v, &len);
    if (!json) return -1;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(json);
        tfm_set_error("%s: cannot open for writing", path);
        return -1;
    }
    size_t put = fwrite(json, 1, len, f);
    free(json);
    if (fclose(f) != 0 || put != len) {
        tfm_set_error("%s: write error", path);
        return -1;
    }
    return 0;
}
