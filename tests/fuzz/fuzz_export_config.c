/* libFuzzer target: the export loader's config.json (tfm_export_load), which
 * has no checksum: a crafted max_position_embeddings once overflowed
 * max_len * d_model and crashed. The input is config.json; model.safetensors
 * beside it is a real tiny export (vocab 8, d_model 8, 1+1 layers) written
 * once at start-up, so a config that matches it loads completely and one
 * that does not must be refused with a one-line error naming the file.
 * Nothing in the config may make the loader allocate more than the bounds
 * of tfm_model_config_check allow (libFuzzer's -rss_limit_mb catches that).
 * Seeds: tests/fuzz/corpus_export_config/ (the tiny export's config.json). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tfm/base.h"
#include "tfm/checkpoint.h"
#include "tfm/export.h"
#include "tfm/nn.h"

static char dir[256], config_path[300];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/fuzz-export-config-%ld", (long)getpid());
    tfm_model_config c;
    tfm_model_config_default(&c);
    c.vocab = 8, c.d_model = 8, c.n_heads = 2, c.d_ff = 16, c.enc_layers = 1, c.dec_layers = 1;
    c.max_len = 16;
    tfm_model m;
    if (mkdir(dir, 0700) != 0 || tfm_model_init(&m, &c) || tfm_export_save(&m, "toy", dir)) {
        fprintf(stderr, "fuzz_export_config: setup failed: %s\n", tfm_last_error());
        abort();
    }
    tfm_model_free(&m);
    snprintf(config_path, sizeof config_path, "%s/config.json", dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) setup();
    FILE *f = fopen(config_path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    tfm_model m;
    tfm_kv meta;
    tfm_kv_init(&meta);
    tfm_clear_error();
    if (tfm_export_load(dir, &m, &meta)) {
        const char *e = tfm_last_error();
        /* a real, one-line message that names the directory's file */
        if (!e || !strcmp(e, "unknown error") || strchr(e, '\n') || !strstr(e, dir)) abort();
    } else {
        /* loaded: the configuration must be one the model code accepts, and
         * every size product within the declared bounds */
        if (tfm_model_config_check(&m.cfg)) abort();
        if (m.cfg.max_len > TFM_MAX_POSITIONS || tfm_model_param_count(&m.cfg) < 0) abort();
        const char *kind = tfm_kv_get(&meta, "data.kind");
        if (!kind || (strcmp(kind, "toy") && strcmp(kind, "text"))) abort();
        tfm_model_free(&m);
    }
    tfm_kv_free(&meta);
    return 0;
}
