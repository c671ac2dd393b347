/* tfm export: write a trained model in the Hugging Face MarianMT layout
 * (model.safetensors, config.json, generation_config.json) with its
 * tokenizer (bpe.codes, vocab.txt, tokenizer.json, tokenizer_config.json)
 * for text models. Toy models have no tokenizer: their inputs are ids.
 *
 * --dump-logits FILE loads the export back and writes the logits and greedy
 * tokens of a fixed built-in batch in the test fixture format (TFMFIX01),
 * for tests/verify_export.py to compare with its PyTorch model. */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "flags.h"
#include "tfm/atomic_file.h"
#include "tfm/export.h"
#include "tfm/json.h"
#include "tfm/train.h"

static const char *USAGE =
    "tfm export --model RUN_DIR_OR_CHECKPOINT --out EXPORT_DIR [--format hf|marian] [--force] "
    "[--dump-logits FILE]";

/* 1 when dir has entries other than . and .., 0 when empty, -1 on error;
 * *checkpoints = 1 when one of them is a checkpoint (a run directory). */
static int dir_nonempty(const char *dir, int *checkpoints) {
    DIR *d = opendir(dir);
    if (!d) return tfm_set_error("--out %s: %s", dir, strerror(errno)), -1;
    struct dirent *e;
    int found = 0;
    *checkpoints = 0;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) found = 1;
        if (n > 4 && !strcmp(e->d_name + n - 4, ".tfm")) *checkpoints = 1;
    }
    closedir(d);
    return found;
}

/* The directories one export created for --out, so that a failed export
 * removes exactly those: path (--out without trailing slashes) cut at each
 * dirs[i].end names one, outermost first; leaf: --out itself is one of them.
 * Created one by one, not by `mkdir -p`: with "new/.." or "new/../old" the
 * path's last directory exists though a prefix of it did not. */
typedef struct {
    char *path;
    struct {
        size_t end;
        dev_t dev;
        ino_t ino;
    } dirs[64];
    int n, leaf;
} made_dirs;

static void made_dirs_free(made_dirs *m) {
    free(m->path);
    m->path = NULL;
    m->n = m->leaf = 0;
}

/* Removes what m records, innermost first (rmdir: only while empty); the
 * files in --out only when this command created it. */
static void remove_made(made_dirs *m) {
    if (!m->path) return;
    if (m->leaf) {
        DIR *d = opendir(m->path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char *p = tfm_path_join(m->path, e->d_name);
                if (p) unlink(p);
                free(p);
            }
            closedir(d);
        }
    }
    for (int i = m->n - 1; i >= 0; i--) {
        size_t end = m->dirs[i].end;
        char c = m->path[end];
        m->path[end] = 0;
        rmdir(m->path);
        m->path[end] = c;
    }
}

static int make_out_dirs(const char *out, made_dirs *m) {
    memset(m, 0, sizeof *m);
    m->path = tfm_format("%s", out);
    if (!m->path) return 1;
    size_t len = strlen(m->path);
    while (len > 1 && m->path[len - 1] == '/') m->path[--len] = 0;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && (m->path[i] != '/' || m->path[i - 1] == '/')) continue;
        char c = m->path[i];
        m->path[i] = 0;
        int made = mkdir(m->path, 0777) == 0, err = errno;
        m->path[i] = c;
        if (!made && err != EEXIST) {
            remove_made(m);
            made_dirs_free(m);
            return tfm_set_error("--out %s: cannot create: %s", out, strerror(err)), 1;
        }
        if (made && m->n == (int)(sizeof m->dirs / sizeof m->dirs[0])) {
            m->path[i] = 0; /* no room to record it: removed at once */
            rmdir(m->path);
            m->path[i] = c;
            remove_made(m);
            made_dirs_free(m);
            return tfm_set_error("--out %s: more than 64 directories to create", out), 1;
        }
        if (made) {
            struct stat st;
            m->path[i] = 0;
            int ok = stat(m->path, &st) == 0;
            m->path[i] = c;
            m->dirs[m->n].end = i;
            m->dirs[m->n].dev = ok ? st.st_dev : 0;
            m->dirs[m->n].ino = ok ? st.st_ino : 0;
            m->n++;
        }
        if (i == len) m->leaf = made;
    }
    /* "new/." or "new/x/..": --out names a directory made here, though its
     * own mkdir found it existing */
    struct stat st;
    for (int k = 0; !m->leaf && k < m->n && stat(m->path, &st) == 0; k++)
        if (m->dirs[k].ino && st.st_dev == m->dirs[k].dev && st.st_ino == m->dirs[k].ino)
            m->leaf = 1;
    return 0;
}

/* An existing --out: a directory, empty unless force, never a run's. */
static int check_existing_out(const char *out, int force) {
    struct stat st;
    if (stat(out, &st) != 0) return tfm_set_error("--out %s: %s", out, strerror(errno)), 1;
    if (!S_ISDIR(st.st_mode))
        return tfm_set_error("--out %s: exists and is not a directory", out), 1;
    int run_dir;
    int ne = dir_nonempty(out, &run_dir);
    if (ne < 0) return 1;
    /* a run's bpe.codes and vocab.txt are its only copies: an export
     * must never replace or remove them, even with --force */
    if (run_dir)
        return tfm_set_error("--out %s: holds checkpoints (a run directory); export into a "
                             "directory of its own",
                             out),
               1;
    if (ne && !force)
        return tfm_set_error("--out %s: exists and is not empty (use --force to write into it)",
                             out),
               1;
    return 0;
}

/* --out ready to write: the directories it needs are created (recorded in
 * *made for remove_made), and an --out that existed is checked. */
static int prepare_out(const char *out, int force, made_dirs *made) {
    struct stat st;
    memset(made, 0, sizeof *made);
    if (stat(out, &st) == 0) return check_existing_out(out, force);
    if (errno != ENOENT) return tfm_set_error("--out %s: %s", out, strerror(errno)), 1;
    if (make_out_dirs(out, made)) return 1;
    if (!made->leaf && check_existing_out(out, force)) {
        remove_made(made);
        made_dirs_free(made);
        return 1;
    }
    return 0;
}

static int write_tokenizer_config(const tfm_model_config *c, const char *path) {
    tfm_json_writer w;
    tfm_jw_init(&w, 1);
    tfm_jw_begin_object(&w);
    tfm_jw_key(&w, "tokenizer_class");
    tfm_jw_string(&w, "PreTrainedTokenizerFast");
    /* our detokenizer joins subwords exactly; HF's clean-up would alter spacing */
    tfm_jw_key(&w, "clean_up_tokenization_spaces");
    tfm_jw_bool(&w, 0);
    tfm_jw_key(&w, "model_max_length");
    tfm_jw_int(&w, c->max_len - 1);
    tfm_jw_key(&w, "pad_token");
    tfm_jw_string(&w, "<pad>");
    tfm_jw_key(&w, "bos_token");
    tfm_jw_string(&w, "<s>");
    tfm_jw_key(&w, "eos_token");
    tfm_jw_string(&w, "</s>");
    tfm_jw_key(&w, "unk_token");
    tfm_jw_string(&w, "<unk>");
    tfm_jw_end_object(&w);
    int rc = tfm_jw_save(&w, path);
    tfm_jw_free(&w);
    return rc;
}

/* Everything a text model's export copies or derives from the run's
 * bpe.codes and vocab.txt, read and checked before the first file is
 * written (a missing or bad vocabulary then leaves --out untouched). */
typedef struct {
    char *file[2]; /* bpe.codes, vocab.txt: their bytes */
    size_t len[2];
    char *json; /* tokenizer.json, NULL when Hugging Face cannot reproduce it */
    size_t json_len;
    tfm_hf_tokenizer_info info;
} tokenizer_files;

static const char *const TOKENIZER_COPIES[] = {"bpe.codes", "vocab.txt"};

static void tokenizer_free(tokenizer_files *tf) {
    for (int i = 0; i < 2; i++) free(tf->file[i]);
    free(tf->json);
    memset(tf, 0, sizeof *tf);
}

/* keep (may be NULL) receives the loaded text model on success (the Marian
 * layout writes its vocabulary from it). */
static int tokenizer_prepare(const char *run_dir, const tfm_model_config *c, int hf,
                             tokenizer_files *tf, tfm_text_model *keep) {
    memset(tf, 0, sizeof *tf);
    tfm_text_model tm;
    if (tfm_text_model_load(run_dir, &tm)) return 1;
    int rc = 1;
    if (tfm_vocab_size(tm.vocab) != c->vocab) {
        tfm_set_error("%s/vocab.txt: %d tokens, but the model's vocabulary has %lld", run_dir,
                      (int)tfm_vocab_size(tm.vocab), (long long)c->vocab);
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        char *from = tfm_path_join(run_dir, TOKENIZER_COPIES[i]);
        int bad = !from || tfm_read_regular(from, &tf->file[i], &tf->len[i]);
        free(from);
        if (bad) goto done;
    }
    /* tokenizer.json only when Hugging Face's BPE reproduces our encoder
     * exactly: it needs every merge's symbols in its vocabulary and keys
     * merges by their ids, so merges that start from a symbol our vocabulary
     * lacks (it would have <unk>'s id) cannot be represented. */
    if (hf) {
        /* zero-start models: the pad-last layout of the model files (tfm/export.h) */
        tf->json =
            c->decoder_start == TFM_START_ZERO
                ? tfm_bpe_hf_tokenizer_json_pad_last(tm.bpe, tm.vocab, &tf->json_len, &tf->info)
                : tfm_bpe_hf_tokenizer_json(tm.bpe, tm.vocab, &tf->json_len, &tf->info);
        if (!tf->json) goto done;
        if (tf->info.n_merges_from_unk) {
            free(tf->json);
            tf->json = NULL;
        }
    }
    rc = 0;
done:
    if (!rc && keep)
        *keep = tm;
    else
        tfm_text_model_free(&tm);
    if (rc) tokenizer_free(tf);
    return rc;
}

/* n: how many of TOKENIZER_COPIES to write (the Marian layout takes only
 * bpe.codes), then tokenizer.json and tokenizer_config.json for hf. */
static int tokenizer_write(const tokenizer_files *tf, int n, int hf, const char *run_dir,
                           const char *out, const tfm_model_config *c) {
    char to[4096];
    for (int i = 0; i < n; i++)
        if (tfm_join_into(to, sizeof to, out, TOKENIZER_COPIES[i]) ||
            tfm_write_file_atomic(to, tf->file[i], tf->len[i]))
            return 1;
    if (!hf) return 0;
    const char *hf_files[] = {"tokenizer.json", "tokenizer_config.json"};
    if (!tf->json) {
        fprintf(stderr,
                "tfm: note: %s/vocab.txt lacks %lld symbols of bpe.codes' merges that %lld later "
                "merges start from; Hugging Face's BPE cannot reproduce tfm's segmentation with "
                "it, so tokenizer.json and tokenizer_config.json are not written (a vocabulary "
                "with every merge symbol, which tfm train builds unless --exact-vocab=false, "
                "avoids this)\n",
                run_dir, (long long)tf->info.n_symbols_unk, (long long)tf->info.n_merges_from_unk);
        for (int i = 0; i < 2; i++) /* drop stale ones from an earlier --force export */
            if (!tfm_join_into(to, sizeof to, out, hf_files[i])) unlink(to);
        return 0;
    }
    if (tfm_join_into(to, sizeof to, out, hf_files[0]) ||
        tfm_write_file_atomic(to, tf->json, tf->json_len))
        return 1;
    return tfm_join_into(to, sizeof to, out, hf_files[1]) || write_tokenizer_config(c, to);
}

static int export_marian(const tfm_model *m, const char *kind, const char *run_dir, const char *out,
                         int force) {
    tfm_text_model tm = {0};
    tokenizer_files tf = {0};
    int text = !strcmp(kind, "text"), rc = 1;
    made_dirs created = {0};
    if (text && tokenizer_prepare(run_dir, &m->cfg, 0, &tf, &tm)) goto done;
    if (prepare_out(out, force, &created)) goto done;
    if (tfm_export_marian_save(m, text ? tm.vocab : NULL, out)) goto done;
    if (text && tokenizer_write(&tf, 1, 0, run_dir, out, &m->cfg)) goto done;
    rc = 0;
done:
    if (rc) remove_made(&created);
    made_dirs_free(&created);
    if (text) tfm_text_model_free(&tm);
    tokenizer_free(&tf);
    return rc ? tfm_cli_fail(1, "%s", tfm_last_error()) : 0;
}

/* ---- --dump-logits ----------------------------------------------------------- */

static int fx_tensor(FILE *f, const char *name, int dtype, int ndim, const int64_t *shape,
                     const void *data) {
    uint32_t len = (uint32_t)strlen(name), dt = (uint32_t)dtype, nd = (uint32_t)ndim;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return fwrite(&len, 4, 1, f) != 1 || fwrite(name, 1, len, f) != len ||
           fwrite(&dt, 4, 1, f) != 1 || fwrite(&nd, 4, 1, f) != 1 ||
           fwrite(shape, 8, (size_t)ndim, f) != (size_t)ndim ||
           fwrite(data, 4, (size_t)n, f) != (size_t)n;
}

/* A fixed batch of 3 sentences of different lengths (the shorter ones
 * padded), ids from a small LCG so every vocabulary size gets valid ones.
 * Writes src (B, S) i32, tgt_in (B, T) i32 (<s> then symbols), logits
 * (B, T, V) f32 of the teacher-forced decoder, and greedy (B, G) i32: the
 * greedy decoder's tokens after <s>, </s> included, then pad. */
static int dump_logits(const char *export_dir, const char *path) {
    tfm_model m;
    if (tfm_export_load(export_dir, &m, NULL)) return 1;
    int64_t V = m.cfg.vocab, B = 3, L = m.cfg.max_len;
    int64_t S = L < 7 ? L : 7, T = L < 6 ? L : 6, G = L - 1 < 12 ? L - 1 : 12;
    int32_t *src = calloc((size_t)(B * S), sizeof(int32_t)),
            *tgt = calloc((size_t)(B * T), sizeof(int32_t));
    int32_t *greedy = calloc((size_t)(B * G), sizeof(int32_t));
    uint8_t *src_pad = calloc((size_t)(B * S), 1), *tgt_pad = calloc((size_t)(B * T), 1);
    int64_t *lens = calloc((size_t)B, sizeof(int64_t));
    tfm_tape t;
    int rc = 1, tape = 0;
    if (!src || !tgt || !greedy || !src_pad || !tgt_pad || !lens) {
        tfm_set_error("out of memory");
        goto done;
    }
    uint64_t state = 12345;
    for (int64_t b = 0; b < B; b++) {
        int64_t n_sym = S - 1 - 2 * b; /* 0 padding, then 2, then 4 */
        if (n_sym < 1) n_sym = 1;
        for (int64_t i = 0; i < S; i++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            int32_t sym = (int32_t)(3 + (int64_t)((state >> 33) % (uint64_t)(V - 3)));
            int32_t v = i < n_sym ? sym : i == n_sym ? TFM_EOS_ID : TFM_PAD_ID;
            src[b * S + i] = v;
            src_pad[b * S + i] = v == TFM_PAD_ID;
        }
        for (int64_t i = 0; i < T; i++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            tgt[b * T + i] =
                i == 0 ? TFM_BOS_ID : (int32_t)(3 + (int64_t)((state >> 33) % (uint64_t)(V - 3)));
        }
    }
    if (tfm_tape_init(&t, tfm_model_activation_bytes(&m.cfg, B, S, T), 1 << 10)) goto done;
    tape = 1;
    t.no_grad = 1;
    t.training = 0;
    tfm_tensor *mem = tfm_model_encode(&m, &t, src, src_pad, B, S);
    tfm_tensor *logits = tfm_model_decode(&m, &t, mem, src_pad, tgt, tgt_pad, T);
    if (!logits) goto done;
    if (tfm_greedy_decode(&m, &t, src, src_pad, B, S, G, greedy, lens)) goto done;
    tfm_atomic_file af;
    if (tfm_atomic_open(&af, path)) {
        tfm_set_error("--dump-logits %s", tfm_last_error()); /* "<path>: ..." */
        goto done;
    }
    FILE *f = af.f;
    uint32_t version = 1, count = 4;
    int err = fwrite("TFMFIX01", 1, 8, f) != 8 || fwrite(&version, 4, 1, f) != 1 ||
              fwrite(&count, 4, 1, f) != 1 || fx_tensor(f, "src", 1, 2, (int64_t[]){B, S}, src) ||
              fx_tensor(f, "tgt_in", 1, 2, (int64_t[]){B, T}, tgt) ||
              fx_tensor(f, "logits", 0, 3, (int64_t[]){B, T, V}, logits->data) ||
              fx_tensor(f, "greedy", 1, 2, (int64_t[]){B, G}, greedy);
    if (err) {
        tfm_atomic_abort(&af);
        tfm_set_error("--dump-logits %s: write error", path);
        goto done;
    }
    if (tfm_atomic_commit(&af)) {
        tfm_set_error("--dump-logits %s", tfm_last_error()); /* "<path>: ..." */
        goto done;
    }
    rc = 0;
done:
    if (tape) tfm_tape_free(&t);
    free(src);
    free(tgt);
    free(greedy);
    free(src_pad);
    free(tgt_pad);
    free(lens);
    tfm_model_free(&m);
    return rc;
}

/* 1 when dir holds checkpoint-<step>.tfm files: a run directory. */
static int is_run_dir(const char *dir) {
    char *newest = NULL;
    int found = tfm_run_newest_checkpoints(dir, 1, &newest) == 0;
    free(newest);
    return found;
}

/* --dump-logits must not replace one of the files of the export it reads
 * back, nor an existing file of a run (its vocab.txt), and must name a file
 * in a directory that exists: checked before the export is written. A
 * symlink is judged by its target, which is what the atomic writer
 * replaces. */
static int dump_path_check(const char *dump, const char *out) {
    static const char *const export_files[] = {
        "model.safetensors", "config.json",    "generation_config.json", "bpe.codes",
        "vocab.txt",         "tokenizer.json", "tokenizer_config.json"};
    char *target = tfm_atomic_target(dump);
    const char *path = target ? target : dump;
    char *dir_copy = tfm_format("%s", path), *base_copy = tfm_format("%s", path);
    int rc = 0;
    if (!dir_copy || !base_copy) {
        rc = 1;
        goto done;
    }
    const char *dir = dirname(dir_copy), *base = basename(base_copy);
    struct stat at, dir_st, out_st;
    int exists = stat(path, &at) == 0, ours = 0;
    for (size_t i = 0; i < sizeof export_files / sizeof *export_files; i++)
        ours |= !strcmp(base, export_files[i]);
    if (exists && S_ISDIR(at.st_mode))
        rc = 1, tfm_set_error("--dump-logits %s: is a directory", dump);
    else if (stat(dir, &dir_st) != 0)
        rc = 1, tfm_set_error("--dump-logits %s: %s: %s", dump, dir, strerror(errno));
    else if (!S_ISDIR(dir_st.st_mode))
        rc = 1, tfm_set_error("--dump-logits %s: %s: not a directory", dump, dir);
    else if (ours && stat(out, &out_st) == 0 && out_st.st_dev == dir_st.st_dev &&
             out_st.st_ino == dir_st.st_ino)
        rc = 1, tfm_set_error("--dump-logits %s: would replace the export's %s in --out %s; write "
                              "it elsewhere",
                              dump, base, out);
    else if (exists && S_ISREG(at.st_mode) && is_run_dir(dir))
        rc = 1, tfm_set_error("--dump-logits %s: exists in a run directory (%s holds "
                              "checkpoint-*.tfm); write it elsewhere",
                              dump, dir);
done:
    free(dir_copy);
    free(base_copy);
    free(target);
    return rc;
}

/* The Hugging Face layout: the tokenizer is read and checked first, and a
 * directory this command created is removed again when a write fails. */
static int export_hf(const tfm_model *m, const char *kind, const char *run_dir, const char *out,
                     int force, const char *dump) {
    tokenizer_files tf = {0};
    int text = !strcmp(kind, "text");
    made_dirs created = {0};
    int rc = (text && tokenizer_prepare(run_dir, &m->cfg, 1, &tf, NULL)) ||
             prepare_out(out, force, &created) || (dump && dump_path_check(dump, out)) ||
             tfm_export_save(m, kind, out) ||
             (text && tokenizer_write(&tf, 2, 1, run_dir, out, &m->cfg));
    if (rc) remove_made(&created);
    made_dirs_free(&created);
    tokenizer_free(&tf);
    return rc;
}

int tfm_cmd_export(int argc, char **argv) {
    const char *model_path = NULL, *out = NULL, *dump = NULL, *format = "hf";
    int force = 0;
    int64_t threads = 1;
    flag_def flags[] = {
        {"model", FLAG_STR, &model_path, "run directory or checkpoint file", 0},
        {"out", FLAG_STR, &out, "export directory (created; must be empty unless --force)", 0},
        {"format", FLAG_STR, &format,
         "hf: Hugging Face MarianMT layout; marian: marian-dev's model.npz, vocab.yml, decoder.yml",
         0},
        {"force", FLAG_BOOL, &force, "write into an existing non-empty directory", 0},
        {"dump-logits", FLAG_STR, &dump,
         "also write the export's logits on a fixed batch to FILE (for tests/verify_export.py)", 0},
        {"threads", FLAG_INT, &threads, "OpenMP threads for --dump-logits (0: all cores)", 0},
    };
    int n_flags = (int)(sizeof flags / sizeof flags[0]);
    int rc = flags_parse(flags, n_flags, argc, argv, USAGE, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (!model_path) return tfm_cli_fail(2, "export: --model RUN_DIR is required");
    if (!out) return tfm_cli_fail(2, "export: --out EXPORT_DIR is required");
    if (threads < 0 || threads > TFM_MAX_THREADS)
        return tfm_cli_fail(2, "--threads: must be between 0 and %d", TFM_MAX_THREADS);
    if (strcmp(format, "hf") && strcmp(format, "marian"))
        return tfm_cli_fail(2, "--format: '%s' is not hf or marian", format);
    if (threads > 0) tfm_set_num_threads((int)threads);

    tfm_model m;
    tfm_kv meta;
    tfm_kv_init(&meta);
    if (tfm_load_model(model_path, &m, &meta)) {
        tfm_kv_free(&meta);
        return tfm_cli_fail(1, "%s", tfm_last_error());
    }
    const char *kind_meta = tfm_kv_get(&meta, "data.kind");
    const char *kind = kind_meta && !strcmp(kind_meta, "toy") ? "toy" : "text";
    char *run_dir = tfm_model_text_dir(model_path);
    if (!run_dir) {
        tfm_kv_free(&meta);
        tfm_model_free(&m);
        return tfm_cli_fail(1, "%s", tfm_last_error());
    }
    rc = 0;
    /* tokenizer files left by an earlier export are removed for a toy model
     * (below); files in a directory that held no export are never touched */
    char *probe = tfm_path_join(out, "model.safetensors");
    int earlier_export = probe && access(probe, F_OK) == 0;
    free(probe);
    if (!strcmp(format, "marian")) {
        if (tfm_export_marian_check(&m.cfg))
            rc = tfm_cli_fail(1, "%s: cannot export to Marian: %s", model_path, tfm_last_error());
        else
            rc = export_marian(&m, kind, run_dir, out, force);
        if (!rc) printf("exported %s (%s model) to %s for marian-decoder\n", model_path, kind, out);
    } else if (tfm_export_check(&m.cfg)) {
        rc = tfm_cli_fail(1, "%s: cannot export: %s", model_path, tfm_last_error());
    } else if (export_hf(&m, kind, run_dir, out, force, dump)) {
        rc = tfm_cli_fail(1, "%s", tfm_last_error());
    } else {
        if (!strcmp(kind, "toy") && earlier_export) {
            /* a toy model has no tokenizer; drop one left by an earlier export (--force) */
            const char *stale[] = {"bpe.codes", "vocab.txt", "tokenizer.json",
                                   "tokenizer_config.json"};
            for (int i = 0; i < 4; i++) {
                char *p = tfm_path_join(out, stale[i]);
                if (p) unlink(p);
                free(p);
            }
        }
        printf("exported %s (%s model, %lld parameters) to %s\n", model_path, kind,
               (long long)tfm_model_param_count(&m.cfg), out);
        if (dump) {
            if (dump_logits(out, dump))
                rc = tfm_cli_fail(1, "%s", tfm_last_error());
            else
                printf("wrote the logits of the fixed batch to %s\n", dump);
        }
    }
    free(run_dir);
    tfm_kv_free(&meta);
    tfm_model_free(&m);
    return rc;
}
