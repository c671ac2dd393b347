/* Hugging Face tokenizers "tokenizer.json" for a BPE model and vocabulary,
 * written with the JSON writer. What each part does and why is in tfm/text.h
 * (tfm_bpe_hf_tokenizer_json); the semantics of HF's BPE model it relies on
 * (tokenizers/src/models/bpe/{model,word}.rs) are:
 *   - a word's characters are looked up one by one, the last with the
 *     end-of-word suffix appended; a character missing from the vocab becomes
 *     the unk token's id (fuse_unk false: one per character);
 *   - merges are keyed by the ids of their two symbols, (rank, id of the
 *     concatenation); a repeated key keeps the LAST merge listed, so
 *     duplicates are left out here (ours keep the first, like apply_bpe.py);
 *   - the lowest (rank, position) merge is applied until none applies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"  /* tfm_grow */
#include "../util/hash.h" /* tfm_strmap */
#include "tfm/atomic_file.h"
#include "tfm/base.h"
#include "tfm/json.h"
#include "tfm/text.h"

/* Regular expressions (Oniguruma, HF's engine) for our word rules: words are
 * runs of non-whitespace, whitespace being ASCII space, \t \n \v \f \r only
 * (HF's WhitespaceSplit would also split at U+00A0, U+2003, ...). */
#define HF_WS "[\\t\\n\\x0B\\x0C\\r ]"
const char *const TFM_HF_SPLIT_REGEX = HF_WS "+";
/* The '~' escape of words ending in "@@~*" (tfm/text.h): one more '~'. */
const char *const TFM_HF_ESCAPE_REGEX = "@@(?=~*(?:" HF_WS "|\\z))";
/* Decoding: undo it on the detokenised text (one '~' after the "@@"). */
const char *const TFM_HF_UNESCAPE_REGEX = "(?<=@@)~(?=~*(?: |\\z))";

/* The HF form of one of our tokens: "X@@" -> "X", word-final "Y" -> "Y</w>";
 * specials unchanged. Writes into *buf (grown), returns the length. */
static int64_t hf_form(const char *t, size_t tl, int special, char **buf, int64_t *cap) {
    int eow = 0;
    if (!special) {
        if (tl >= 2 && t[tl - 2] == '@' && t[tl - 1] == '@')
            tl -= 2;
        else
            eow = 1;
    }
    if (tfm_grow((void **)buf, cap, (int64_t)tl + 5, 1)) return -1;
    memcpy(*buf, t, tl);
    if (eow) memcpy(*buf + tl, TFM_BPE_EOW, 4);
    return (int64_t)tl + (eow ? 4 : 0);
}

static void write_regex(tfm_json_writer *w, const char *key, const char *regex) {
    tfm_jw_key(w, key);
    tfm_jw_begin_object(w);
    tfm_jw_key(w, "Regex");
    tfm_jw_string(w, regex);
    tfm_jw_end_object(w);
}

static void write_replace(tfm_json_writer *w, const char *regex, const char *content) {
    tfm_jw_begin_object(w);
    tfm_jw_key(w, "type");
    tfm_jw_string(w, "Replace");
    write_regex(w, "pattern", regex);
    tfm_jw_key(w, "content");
    tfm_jw_string(w, content);
    tfm_jw_end_object(w);
}

static void write_seq(tfm_json_writer *w, const char *id) {
    tfm_jw_begin_object(w);
    tfm_jw_key(w, "Sequence");
    tfm_jw_begin_object(w);
    tfm_jw_key(w, "id");
    tfm_jw_string(w, id);
    tfm_jw_key(w, "type_id");
    tfm_jw_int(w, 0);
    tfm_jw_end_object(w);
    tfm_jw_end_object(w);
}

static void write_eos(tfm_json_writer *w) {
    tfm_jw_begin_object(w);
    tfm_jw_key(w, "SpecialToken");
    tfm_jw_begin_object(w);
    tfm_jw_key(w, "id");
    tfm_jw_string(w, TFM_EOS_TOKEN);
    tfm_jw_key(w, "type_id");
    tfm_jw_int(w, 0);
    tfm_jw_end_object(w);
    tfm_jw_end_object(w);
}

/* tfm's <pad> (id 0) in a pad-last file, where "<pad>" is the last id */
const char *const TFM_HF_TFM_PAD = "<tfm_pad>";

static void write_added(tfm_json_writer *w, int64_t id, const char *content) {
    tfm_jw_begin_object(w);
    tfm_jw_key(w, "id");
    tfm_jw_int(w, id);
    tfm_jw_key(w, "content");
    tfm_jw_string(w, content);
    const char *flags[] = {"single_word", "lstrip", "rstrip", "normalized"};
    for (int f = 0; f < 4; f++) {
        tfm_jw_key(w, flags[f]);
        tfm_jw_bool(w, 0);
    }
    tfm_jw_key(w, "special");
    tfm_jw_bool(w, 1);
    tfm_jw_end_object(w);
}

static void write_fixed_parts(tfm_json_writer *w, const tfm_vocab *v, int pad_last) {
    tfm_jw_key(w, "version");
    tfm_jw_string(w, "1.0");
    tfm_jw_key(w, "truncation");
    tfm_jw_null(w);
    tfm_jw_key(w, "padding");
    tfm_jw_null(w);
    tfm_jw_key(w, "added_tokens");
    tfm_jw_begin_array(w);
    for (int i = 0; i < TFM_N_SPECIALS; i++)
        write_added(w, i, pad_last && i == TFM_PAD_ID ? TFM_HF_TFM_PAD : tfm_vocab_token(v, i));
    if (pad_last) write_added(w, tfm_vocab_size(v), TFM_PAD_TOKEN);
    tfm_jw_end_array(w);
    /* our escape of words ending in "@@", before the words are split */
    tfm_jw_key(w, "normalizer");
    write_replace(w, TFM_HF_ESCAPE_REGEX, "@@~");
    tfm_jw_key(w, "pre_tokenizer");
    tfm_jw_begin_object(w);
    tfm_jw_key(w, "type");
    tfm_jw_string(w, "Split");
    write_regex(w, "pattern", TFM_HF_SPLIT_REGEX);
    tfm_jw_key(w, "behavior");
    tfm_jw_string(w, "Removed");
    tfm_jw_key(w, "invert");
    tfm_jw_bool(w, 0);
    tfm_jw_end_object(w);
    /* our encoder input ends with </s> */
    tfm_jw_key(w, "post_processor");
    tfm_jw_begin_object(w);
    tfm_jw_key(w, "type");
    tfm_jw_string(w, "TemplateProcessing");
    tfm_jw_key(w, "single");
    tfm_jw_begin_array(w);
    write_seq(w, "A");
    write_eos(w);
    tfm_jw_end_array(w);
    tfm_jw_key(w, "pair"); /* as MarianTokenizer: A B </s> */
    tfm_jw_begin_array(w);
    write_seq(w, "A");
    write_seq(w, "B");
    write_eos(w);
    tfm_jw_end_array(w);
    tfm_jw_key(w, "special_tokens");
    tfm_jw_begin_object(w);
    tfm_jw_key(w, TFM_EOS_TOKEN);
    tfm_jw_begin_object(w);
    tfm_jw_key(w, "id");
    tfm_jw_string(w, TFM_EOS_TOKEN);
    tfm_jw_key(w, "ids");
    tfm_jw_begin_array(w);
    tfm_jw_int(w, TFM_EOS_ID);
    tfm_jw_end_array(w);
    tfm_jw_key(w, "tokens");
    tfm_jw_begin_array(w);
    tfm_jw_string(w, TFM_EOS_TOKEN);
    tfm_jw_end_array(w);
    tfm_jw_end_object(w);
    tfm_jw_end_object(w);
    tfm_jw_end_object(w);
    /* tfm_vocab_decode: <pad> <s> </s> dropped, <unk> a word of its own,
     * word-final pieces end a word, single spaces, no trailing space, the
     * '~' escape undone. (HF's BPEDecoder would leave a trailing space when
     * the last token is a dropped special.) */
    tfm_jw_key(w, "decoder");
    tfm_jw_begin_object(w);
    tfm_jw_key(w, "type");
    tfm_jw_string(w, "Sequence");
    tfm_jw_key(w, "decoders");
    tfm_jw_begin_array(w);
    write_replace(w, "\\A<unk>\\z", "<unk></w>");
    write_replace(w, pad_last ? "\\A(?:<pad>|<tfm_pad>|<s>|</s>)\\z" : "\\A(?:<pad>|<s>|</s>)\\z",
                  "");
    write_replace(w, "</w>\\z", " ");
    tfm_jw_begin_object(w);
    tfm_jw_key(w, "type");
    tfm_jw_string(w, "Fuse");
    tfm_jw_end_object(w);
    write_replace(w, " \\z", "");
    write_replace(w, TFM_HF_UNESCAPE_REGEX, "");
    tfm_jw_end_array(w);
    tfm_jw_end_object(w);
}

static char *hf_json(const tfm_bpe *bpe, const tfm_vocab *v, int pad_last, size_t *len_out,
                     tfm_hf_tokenizer_info *info) {
    if (tfm_bpe_version(bpe) != 2) {
        tfm_set_error("only version 0.2 codes can be exported as tokenizer.json (these are 0.1)");
        return NULL;
    }
    tfm_hf_tokenizer_info st = {0};
    tfm_strmap hf, pairs;
    memset(&hf, 0, sizeof hf);
    memset(&pairs, 0, sizeof pairs);
    int32_t *hf_id = NULL;
    int64_t hf_cap = 0, buf_cap = 0, keep_cap = 0;
    char *buf = NULL, *result = NULL;
    uint8_t *keep = NULL; /* per merge: 1 when written (first of its pair) */
    tfm_json_writer w;
    tfm_jw_init(&w, 1);
    int32_t size = tfm_vocab_size(v);
    int64_t n_merges = tfm_bpe_n_merges(bpe);
    /* Our tokens in id order (the lowest id keeps a string two tokens share,
     * which needs "</w>" inside the text), then the merge symbols we lack:
     * HF requires every merge's inputs and result in the vocab; ours maps
     * such a piece to <unk>, so they get <unk>'s id. */
    for (int64_t i = 0; i <= size; i++) {
        if (i == size && !pad_last) break;
        /* pad-last: ours is renamed, "<pad>" becomes the id after ours */
        const char *t = i == size                     ? TFM_PAD_TOKEN
                        : pad_last && i == TFM_PAD_ID ? TFM_HF_TFM_PAD
                                                      : tfm_vocab_token(v, (int32_t)i);
        int64_t kl = hf_form(t, strlen(t), i < TFM_N_SPECIALS || i == size, &buf, &buf_cap);
        int added;
        int64_t e = kl < 0 ? -1 : tfm_strmap_add(&hf, buf, (size_t)kl, &added);
        if (e < 0 || tfm_grow((void **)&hf_id, &hf_cap, e + 1, sizeof *hf_id)) goto fail;
        if (added) hf_id[e] = (int32_t)i;
        if (!added && i == size) {
            tfm_set_error("a token of the vocabulary has the Hugging Face form %s, which a "
                          "pad-last tokenizer.json needs for its last id",
                          TFM_PAD_TOKEN);
            goto fail;
        }
    }
    if (tfm_grow((void **)&keep, &keep_cap, n_merges + 1, 1)) goto fail;
    for (int64_t m = 0; m < n_merges; m++) {
        const char *l = tfm_bpe_merge_left(bpe, m), *r = tfm_bpe_merge_right(bpe, m);
        size_t ll = strlen(l), rl = strlen(r);
        if (tfm_grow((void **)&buf, &buf_cap, (int64_t)(ll + rl + 2), 1)) goto fail;
        memcpy(buf, l, ll);
        buf[ll] = ' ';
        memcpy(buf + ll + 1, r, rl);
        int added;
        if (tfm_strmap_add(&pairs, buf, ll + rl + 1, &added) < 0) goto fail;
        keep[m] = (uint8_t)added;
        if (!added) {
            st.n_duplicate_merges++;
            continue;
        }
        int from_unk = 0;
        for (int which = 0; which < 3; which++) {
            const char *s = which == 0 ? l : which == 1 ? r : buf;
            size_t sl = which == 0 ? ll : which == 1 ? rl : ll + rl;
            if (which == 2) memmove(buf + ll, buf + ll + 1, rl); /* "l r" -> "lr" */
            int64_t e = tfm_strmap_add(&hf, s, sl, &added);
            if (e < 0 || tfm_grow((void **)&hf_id, &hf_cap, e + 1, sizeof *hf_id)) goto fail;
            if (added) {
                hf_id[e] = TFM_UNK_ID;
                st.n_symbols_unk++;
            }
            if (which < 2 && hf_id[e] == TFM_UNK_ID) from_unk = 1;
        }
        st.n_merges_from_unk += from_unk;
    }
    st.n_tokens = hf.n;

    tfm_jw_begin_object(&w);
    write_fixed_parts(&w, v, pad_last);
    tfm_jw_key(&w, "model");
    tfm_jw_begin_object(&w);
    tfm_jw_key(&w, "type");
    tfm_jw_string(&w, "BPE");
    tfm_jw_key(&w, "dropout");
    tfm_jw_null(&w);
    tfm_jw_key(&w, "unk_token");
    tfm_jw_string(&w, TFM_UNK_TOKEN);
    tfm_jw_key(&w, "continuing_subword_prefix");
    tfm_jw_null(&w);
    tfm_jw_key(&w, "end_of_word_suffix");
    tfm_jw_string(&w, TFM_BPE_EOW);
    tfm_jw_key(&w, "fuse_unk");
    tfm_jw_bool(&w, 0);
    tfm_jw_key(&w, "byte_fallback");
    tfm_jw_bool(&w, 0);
    tfm_jw_key(&w, "ignore_merges");
    tfm_jw_bool(&w, 0);
    tfm_jw_key(&w, "vocab");
    tfm_jw_begin_object(&w);
    for (int64_t e = 0; e < hf.n; e++) {
        tfm_jw_key_n(&w, tfm_strmap_key(&hf, e), hf.key_len[e]);
        tfm_jw_int(&w, hf_id[e]);
    }
    tfm_jw_end_object(&w);
    tfm_jw_key(&w, "merges");
    tfm_jw_begin_array(&w);
    for (int64_t m = 0; m < n_merges; m++) {
        if (!keep[m]) continue;
        const char *l = tfm_bpe_merge_left(bpe, m), *r = tfm_bpe_merge_right(bpe, m);
        size_t ll = strlen(l), rl = strlen(r);
        memcpy(buf, l, ll);
        buf[ll] = ' ';
        memcpy(buf + ll + 1, r, rl);
        tfm_jw_string_n(&w, buf, ll + rl + 1);
    }
    tfm_jw_end_array(&w);
    tfm_jw_end_object(&w);
    tfm_jw_end_object(&w);
    if (tfm_jw_finish(&w)) goto fail;
    result = w.data;
    if (len_out) *len_out = w.len;
    w.data = NULL;
    if (info) *info = st;
fail:
    tfm_jw_free(&w);
    tfm_strmap_free(&hf);
    tfm_strmap_free(&pairs);
    free(hf_id);
    free(buf);
    free(keep);
    return result;
}

char *tfm_bpe_hf_tokenizer_json(const tfm_bpe *bpe, const tfm_vocab *v, size_t *len_out,
                                tfm_hf_tokenizer_info *info) {
    return hf_json(bpe, v, 0, len_out, info);
}

char *tfm_bpe_hf_tokenizer_json_pad_last(const tfm_bpe *bpe, const tfm_vocab *v, size_t *len_out,
                                         tfm_hf_tokenizer_info *info) {
    return hf_json(bpe, v, 1, len_out, info);
}

int tfm_bpe_write_hf_tokenizer(const tfm_bpe *bpe, const tfm_vocab *v, const char *path,
                               tfm_hf_tokenizer_info *info) {
    size_t len;
    char *json = tfm_bpe_hf_tokenizer_json(bpe, v, &len, info);
    if (!json) return -1;
    int rc = tfm_write_file_atomic(path, json, len);
    free(json);
    return rc ? -1 : 0;
}
