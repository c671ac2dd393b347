#!/usr/bin/env python3
"""The transformers side of `bash train/bench.sh translate-hf`: times
MarianMTModel.generate on a `tfm export` (greedy, then beam 5) on CPU.

  bench_hf.py EXPORT_DIR IDS_FILE OUT_PREFIX THREADS

IDS_FILE holds the source subword ids, one sentence per line, as
`tfm bpe encode` writes them (</s> is appended here, as tfm's encoder input
has it). The sentences go in batches of 64 in order of length (tfm sorts the
same way), each batch allowed 2 x its longest source (with </s>) + 10
subwords, tfm's limit for the batch (beam search; its greedy decoding cuts
each line to its own). Writes OUT_PREFIX.1 and OUT_PREFIX.5 (the
output ids, one line per sentence, input order) and prints
`hf beam=K seconds=S` for each search: model loading is not timed.

Loads the weights itself (safetensors is a plain header + raw float32), so
that it runs with transformers versions that cannot read model.safetensors
and without the safetensors package. Tested with transformers 4.9.0.dev0 only."""
import json
import struct
import sys
import time

import numpy as np
import torch
import transformers
from transformers import MarianConfig, MarianMTModel

exp, ids_f, out_prefix, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        if v["dtype"] != "F32":
            sys.exit(f"bench_hf.py: {path}: tensor {name} is {v['dtype']}, expected F32")
        s, e = v["data_offsets"]
        a = np.frombuffer(data[8 + n + s:8 + n + e], dtype="<f4").reshape(v["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out


cfg = json.load(open(exp + "/config.json"))
gen = json.load(open(exp + "/generation_config.json"))
model = MarianMTModel(MarianConfig(**{k: v for k, v in cfg.items() if k != "tfm"}))
res = model.load_state_dict(read_safetensors(exp + "/model.safetensors"), strict=False)
# The sinusoidal position tables are not stored: the model computes them.
# Check that it did (Marian's layout: the sines of all pairs, then the cosines).
missing = [k for k in res.missing_keys if "embed_positions" not in k]
if missing or res.unexpected_keys:
    sys.exit(f"bench_hf.py: {exp}: missing weights {missing}, unexpected {res.unexpected_keys}")
for part in (model.model.encoder, model.model.decoder):
    table = part.embed_positions.weight.detach().double().numpy()
    pos, d = np.arange(table.shape[0])[:, None], table.shape[1]
    angle = pos / np.power(10000.0, 2 * np.arange(d // 2)[None, :] / d)
    want = np.concatenate([np.sin(angle), np.cos(angle)], axis=1)
    if np.abs(table - want).max() > 1e-5:
        sys.exit(f"bench_hf.py: {exp}: the model's position table is not Marian's sinusoid")
model.eval()
print(f"# transformers {transformers.__version__}, torch {torch.__version__}, "
      f"{torch.get_num_threads()} threads", flush=True)

eos, pad = cfg["eos_token_id"], cfg["pad_token_id"]
src = [[int(t) for t in line.split()] + [eos] for line in open(ids_f)]
order = sorted(range(len(src)), key=lambda i: len(src[i]))


def translate(beams, batch=64):
    out = [None] * len(src)
    t0 = time.perf_counter()
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        rows = [src[j] for j in idx]
        S = max(len(r) for r in rows)
        ids = torch.tensor([r + [pad] * (S - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (S - len(r)) for r in rows])
        # max_length counts the start token, and a forced </s> takes the
        # last place: 2S + 10 subwords, then </s>
        with torch.no_grad():
            g = model.generate(input_ids=ids, attention_mask=mask, num_beams=beams,
                               do_sample=False, max_length=2 * S + 12,
                               bad_words_ids=gen.get("bad_words_ids"), forced_eos_token_id=eos,
                               decoder_start_token_id=gen.get("decoder_start_token_id"))
        for j, r in zip(idx, g.tolist()):
            out[j] = [t for t in r[1:] if t not in (eos, pad)]
    return out, time.perf_counter() - t0


for beams in (1, 5):
    hyp, secs = translate(beams)
    with open(f"{out_prefix}.{beams}", "w") as f:
        f.writelines(" ".join(map(str, h)) + "\n" for h in hyp)
    print(f"hf beam={beams} seconds={secs:.3f}", flush=True)
