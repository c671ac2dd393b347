/* examples/char_lm.c: a decoder-only, character-level language model
 * (GPT-style: token + learned position embeddings, pre-LN blocks of causal
 * self-attention and a ReLU MLP, a final layer norm, the output projection
 * tied to the token embedding), written only with the public ops
 * (tfm/ops.h) and trained by the library trainer (tfm/train.h) through its
 * hooks: a batch source of random text windows, a loss hook that runs the
 * model, a validation hook that reports perplexity.
 *
 *     build/examples/char_lm FILE [--steps N] [--threads T] [--sample N] [--save DIR]
 *
 * Characters are bytes; the last 5% of the file is held out for validation.
 * The defaults (128 wide, 4 heads, 3 layers, context 64, batch 32, 1500
 * steps) are sized for about a minute on 2 idle cores (60 steps took 4.7 s
 * of CPU time on one thread; the whole run has not been timed on an idle
 * machine). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfm/train.h"

enum { D = 128, HEADS = 4, LAYERS = 3, FF = 4 * D, CTX = 64, BATCH = 32 };

typedef struct {
    tfm_tensor *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    tfm_tensor *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} block;

typedef struct {
    tfm_params params;
    tfm_tensor *tok_emb, *pos_emb, *lnf_w, *lnf_b;
    block blocks[LAYERS];
    int64_t vocab;
    int32_t pos_ids[BATCH * CTX]; /* 0 1 2 .. CTX-1 per row */
    int32_t targets[BATCH * CTX];
} model;

static tfm_tensor *param(model *m, const char *name, int64_t rows, int64_t cols) {
    int64_t shape[2] = {rows, cols};
    return tfm_params_add(&m->params, name, cols ? 2 : 1, shape);
}

static int model_init(model *m, int64_t vocab, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->vocab = vocab;
    tfm_params_init(&m->params);
    m->tok_emb = param(m, "tok_emb", vocab, D);
    m->pos_emb = param(m, "pos_emb", CTX, D);
    for (int l = 0; l < LAYERS; l++) {
        block *b = &m->blocks[l];
        char n[64];
#define P(field, name, r, c)                                                                       \
    (snprintf(n, sizeof n, "h.%d.%s", l, name), b->field = param(m, n, r, c))
        P(ln1_w, "ln1.w", D, 0), P(ln1_b, "ln1.b", D, 0);
        P(q_w, "q.w", D, D), P(q_b, "q.b", D, 0), P(k_w, "k.w", D, D), P(k_b, "k.b", D, 0);
        P(v_w, "v.w", D, D), P(v_b, "v.b", D, 0), P(o_w, "o.w", D, D), P(o_b, "o.b", D, 0);
        P(ln2_w, "ln2.w", D, 0), P(ln2_b, "ln2.b", D, 0);
        P(fc1_w, "fc1.w", FF, D), P(fc1_b, "fc1.b", FF, 0);
        P(fc2_w, "fc2.w", D, FF), P(fc2_b, "fc2.b", D, 0);
#undef P
    }
    m->lnf_w = param(m, "lnf.w", D, 0);
    m->lnf_b = param(m, "lnf.b", D, 0);
    if (tfm_params_alloc(&m->params)) return 1;
    /* normal-ish (uniform, std 0.02) weights, zero biases, layer norms at 1 */
    tfm_rng rng;
    tfm_rng_seed(&rng, seed);
    for (int64_t i = 0; i < m->params.count; i++) {
        tfm_tensor *t = m->params.items[i];
        int is_ln_w = strstr(t->name, "ln") && strstr(t->name, ".w");
        for (int64_t j = 0; j < t->n; j++)
            t->data[j] = t->ndim == 2 ? (float)((tfm_rng_double(&rng) * 2 - 1) * 0.0346)
                                      : (is_ln_w ? 1.0f : 0.0f);
    }
    for (int64_t i = 0; i < BATCH * CTX; i++) m->pos_ids[i] = (int32_t)(i % CTX);
    return 0;
}

/* logits (B, T, V) for ids (B, T), T <= CTX */
static tfm_tensor *forward(model *m, tfm_tape *t, const int32_t *ids, int64_t B, int64_t T) {
    int64_t bt[3] = {B, T, D};
    tfm_tensor *x = tfm_add(t, tfm_embedding(t, m->tok_emb, ids, 3, bt, 1.0f, -1),
                            tfm_embedding(t, m->pos_emb, m->pos_ids, 3, bt, 1.0f, -1));
    for (int l = 0; l < LAYERS; l++) {
        block *b = &m->blocks[l];
        tfm_tensor *h = tfm_layernorm(t, x, b->ln1_w, b->ln1_b, 1e-5f);
        tfm_tensor *a =
            tfm_attention(t, tfm_linear(t, h, b->q_w, b->q_b), tfm_linear(t, h, b->k_w, b->k_b),
                          tfm_linear(t, h, b->v_w, b->v_b), HEADS, NULL, 1, 0.0f, NULL);
        x = tfm_add(t, x, tfm_linear(t, a, b->o_w, b->o_b));
        h = tfm_layernorm(t, x, b->ln2_w, b->ln2_b, 1e-5f);
        h = tfm_linear(t, tfm_relu(t, tfm_linear(t, h, b->fc1_w, b->fc1_b)), b->fc2_w, b->fc2_b);
        x = tfm_add(t, x, h);
    }
    x = tfm_layernorm(t, x, m->lnf_w, m->lnf_b, 1e-5f);
    return tfm_linear(t, x, m->tok_emb, NULL); /* tied output projection */
}

/* ---- data: random windows of the training text ------------------------------------- */
typedef struct {
    const unsigned char *text;
    int64_t train_len, valid_len; /* valid text follows the training text */
    int32_t byte_id[256];
    unsigned char id_byte[256];
    uint64_t seed;
    int32_t in[BATCH * CTX], out[BATCH * CTX];
    uint8_t pad[BATCH * CTX];
} corpus;

/* the batch of step s depends only on (seed, s): resumable without saved state */
static int next_batch(void *ctx, int64_t step, tfm_seq_batch *b, int64_t *n_tokens) {
    corpus *c = ctx;
    tfm_rng rng;
    tfm_rng_seed(&rng, c->seed * 1000003u + (uint64_t)step);
    for (int64_t r = 0; r < BATCH; r++) {
        int64_t at = (int64_t)tfm_rng_below(&rng, (uint64_t)(c->train_len - CTX - 1));
        for (int64_t i = 0; i < CTX; i++) {
            c->in[r * CTX + i] = c->byte_id[c->text[at + i]];
            c->out[r * CTX + i] = c->byte_id[c->text[at + i + 1]];
        }
    }
    *b = (tfm_seq_batch){
        .B = BATCH, .T = CTX, .tgt_in = c->in, .tgt_out = c->out, .tgt_pad = c->pad};
    *n_tokens = BATCH * CTX;
    return 0;
}

typedef struct {
    model *m;
    corpus *c;
} task;

static tfm_tensor *loss_hook(void *ctx, tfm_trainer *tr, const tfm_seq_batch *b, int64_t *n) {
    model *m = ((task *)ctx)->m;
    memcpy(m->targets, b->tgt_out, (size_t)(b->B * b->T) * sizeof(int32_t));
    tfm_tensor *logits = forward(m, &tr->tape, b->tgt_in, b->B, b->T);
    return tfm_cross_entropy(&tr->tape, logits, m->targets, -1, 0.0f, n);
}

/* mean cross-entropy over consecutive windows of the held-out text */
static int validate_hook(void *ctx, tfm_trainer *tr, tfm_valid_result *out) {
    task *k = ctx;
    corpus *c = k->c;
    double sum = 0;
    int64_t count = 0;
    const unsigned char *v = c->text + c->train_len;
    for (int64_t at = 0; at + BATCH * CTX + 1 <= c->valid_len && count < 64 * BATCH * CTX;
         at += BATCH * CTX) {
        for (int64_t i = 0; i < BATCH * CTX; i++) {
            c->in[i] = c->byte_id[v[at + i]];
            k->m->targets[i] = c->byte_id[v[at + i + 1]];
        }
        tfm_trainer_eval_mode(tr, 1);
        int64_t n = 0;
        tfm_tensor *loss = tfm_cross_entropy(&tr->tape, forward(k->m, &tr->tape, c->in, BATCH, CTX),
                                             k->m->targets, -1, 0.0f, &n);
        if (!loss) return 1;
        sum += loss->data[0] * (double)n;
        count += n;
    }
    double nll = count ? sum / (double)count : NAN;
    out->loss = nll;
    out->metric = -nll;
    snprintf(out->text, sizeof out->text, "loss %.4f perplexity %.3f", nll, exp(nll));
    return 0;
}

/* Continues prompt by n characters, sampling with temperature 0.8. */
static void sample(model *m, const corpus *c, const char *prompt, int64_t n, uint64_t seed) {
    tfm_tape t;
    if (tfm_tape_init(&t, 64 << 20, 4096)) return;
    t.no_grad = 1;
    int32_t ids[CTX];
    int64_t len = 0;
    for (const char *p = prompt; *p && len < CTX; p++) ids[len++] = c->byte_id[(unsigned char)*p];
    tfm_rng rng;
    tfm_rng_seed(&rng, seed);
    printf("%s", prompt);
    for (int64_t k = 0; k < n; k++) {
        tfm_tape_reset(&t);
        tfm_tensor *logits = forward(m, &t, ids, 1, len);
        if (!logits) break;
        const float *row = logits->data + (len - 1) * m->vocab;
        double total = 0, p[256];
        float top = row[1];
        for (int64_t i = 1; i < m->vocab; i++) top = row[i] > top ? row[i] : top;
        for (int64_t i = 1; i < m->vocab; i++) total += p[i] = exp((row[i] - top) / 0.8);
        double u = tfm_rng_double(&rng) * total;
        int32_t next = (int32_t)m->vocab - 1;
        for (int64_t i = 1; i < m->vocab; i++)
            if ((u -= p[i]) <= 0) {
                next = (int32_t)i;
                break;
            }
        putchar(c->id_byte[next]);
        if (len == CTX) memmove(ids, ids + 1, (CTX - 1) * sizeof(int32_t)), len--;
        ids[len++] = next;
    }
    printf("\n");
    tfm_tape_free(&t);
}

int main(int argc, char **argv) {
    const char *path = NULL, *save = NULL;
    int64_t steps = 1500, threads = 0, n_sample = 300;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--sample") && i + 1 < argc)
            n_sample = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--save") && i + 1 < argc)
            save = argv[++i];
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else {
            fprintf(stderr,
                    "usage: char_lm FILE [--steps N] [--threads T] [--sample N] [--save DIR]\n");
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr,
                "usage: char_lm FILE [--steps N] [--threads T] [--sample N] [--save DIR]\n");
        return 2;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    corpus c = {0};
    unsigned char *text = malloc((size_t)size + 1);
    if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "char_lm: %s: cannot read\n", path);
        return 1;
    }
    fclose(f);
    c.text = text;
    c.valid_len = size / 20;
    c.train_len = size - c.valid_len;
    if (c.train_len < 4 * CTX || c.valid_len < BATCH * CTX + 1) {
        fprintf(stderr, "char_lm: %s: need at least %d bytes of text\n", path,
                20 * (BATCH * CTX + 1));
        return 1;
    }
    int64_t vocab = 1; /* id 0 unused */
    for (long i = 0; i < size; i++)
        if (!c.byte_id[text[i]]) c.id_byte[vocab] = text[i], c.byte_id[text[i]] = (int32_t)vocab++;

    tfm_train_opts o;
    tfm_train_opts_default(&o);
    o.steps = steps;
    o.threads = (int)threads;
    o.schedule = (tfm_schedule){.kind = TFM_SCHEDULE_INVERSE_SQRT, .lr = 2e-3, .warmup = 100};
    o.clip_norm = 1.0f;
    o.valid_every = steps >= 5 ? steps / 5 : 1;
    o.log_every = o.valid_every;
    o.arena_bytes = (size_t)256 << 20;
    o.run_dir = save;
    o.resume = save != NULL;
    c.seed = o.seed;
    model m;
    if (model_init(&m, vocab, o.seed)) {
        fprintf(stderr, "char_lm: %s\n", tfm_last_error());
        return 1;
    }
    task k = {&m, &c};
    tfm_batch_source source = {
        .ctx = &c, .next = next_batch, .max_b = BATCH, .max_t = CTX, .kind = "char_lm"};
    tfm_train_hooks hooks = {.ctx = &k, .loss = loss_hook, .validate = validate_hook};
    tfm_trainer tr;
    if (tfm_trainer_init_params(&tr, &o, &m.params, &source, &hooks)) {
        fprintf(stderr, "char_lm: %s\n", tfm_last_error());
        return 1;
    }
    printf("%s: %lld training bytes, %lld held out, %lld symbols; %lld parameters; %d threads\n",
           path, (long long)c.train_len, (long long)c.valid_len, (long long)vocab - 1,
           (long long)tr.n_params, tfm_num_threads());
    int rc = tfm_train(&tr);
    if (rc)
        fprintf(stderr, "char_lm: %s\n", tfm_last_error());
    else if (n_sample > 0)
        sample(&m, &c, "A man ", n_sample, o.seed);
    tfm_trainer_free(&tr);
    tfm_params_free(&m.params);
    free(text);
    return rc;
}
