#!/usr/bin/python3
"""Checks a `tfm export` directory against an independent PyTorch model.

    tfm export --model RUN --out EXPORT --dump-logits logits.bin
    python3 tests/verify_export.py EXPORT logits.bin

1. Reads EXPORT/model.safetensors with its own strict reader (header length,
   UTF-8 JSON without duplicate keys, "__metadata__" {"format": "pt"}, F32
   tensors whose byte sizes match their shapes, tiling the data buffer from
   offset 0 with no gap, overlap or trailing bytes, header padded to 8).
2. Builds the MarianMT architecture from EXPORT/config.json in plain PyTorch,
   following Hugging Face's Marian conventions (written here, no
   `transformers` needed): token embeddings * sqrt(d_model) plus sinusoidal
   positions with sin in the first half of the channels and cos in the second,
   queries scaled by head_dim**-0.5, post-LN layers with PyTorch's default
   LayerNorm epsilon, ReLU FFN, no final layer norm, output projection tied to
   the decoder embedding plus final_logits_bias.
3. Loads the weights with load_state_dict(strict=True): every key matched, no
   missing and no unexpected ones (tied copies must be equal).
4. Compares its teacher-forced logits on the batch stored in logits.bin (the
   fixture format of tests/util_test.h, written by tfm) with tfm's logits
   (max |diff| <= 1e-4), and its greedy decoding with tfm's tokens.
   The batch is fed as a Hugging Face user would: padded with pad_token_id,
   the decoder starting from decoder_start_token_id (logits.bin holds tfm's
   ids: <pad> 0 and <s> 1 there). A zero-start export ("tfm" section
   decoder_start "zero") has one id more than the model, the last: its
   embedding row must be zero, and it is the pad and start id. The logits
   compared are the lm_head's on tfm's ids; final_logits_bias must be 0 on
   every id tfm can emit (>= </s>, below tfm's vocabulary) and 0 or <= -1e8
   elsewhere. Greedy decoding takes the argmax over every id of lm_head +
   final_logits_bias with generation_config.json's bad_words_ids banned, as
   transformers' generate() does.
Exits 0 when everything matches, 1 otherwise.
"""
import json
import math
import struct
import sys

import numpy as np
import torch
from torch import nn

TOLERANCE = 1e-4
MAX_HEADER = 100_000_000


class ExportError(Exception):
    pass


def no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ExportError(f"duplicate key {k!r} in the safetensors header")
        out[k] = v
    return out


def read_safetensors(path):
    """name -> float32 numpy array, validating the whole file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ExportError(f"{path}: {len(data)} bytes, too short for the header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER:
        raise ExportError(f"{path}: header length {n} exceeds {MAX_HEADER}")
    if 8 + n > len(data):
        raise ExportError(f"{path}: header length {n} runs past the end of the file")
    if n % 8:
        raise ExportError(f"{path}: header length {n} is not padded to a multiple of 8")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise ExportError(f"{path}: bad header: {e}")
    if not isinstance(header, dict):
        raise ExportError(f"{path}: header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or meta.get("format") != "pt":
        raise ExportError(f"{path}: __metadata__ must be an object with \"format\": \"pt\", got {meta!r}")
    buffer = data[8 + n:]
    spans = []
    tensors = {}
    for name, e in header.items():
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise ExportError(f"{path}: tensor {name}: malformed entry {e!r}")
        if e["dtype"] != "F32":
            raise ExportError(f"{path}: tensor {name}: dtype {e['dtype']}, expected F32")
        shape = e["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ExportError(f"{path}: tensor {name}: bad shape {shape!r}")
        off = e["data_offsets"]
        if (not isinstance(off, list) or len(off) != 2 or not all(isinstance(x, int) for x in off)
                or not 0 <= off[0] <= off[1] <= len(buffer)):
            raise ExportError(f"{path}: tensor {name}: bad data_offsets {off!r}")
        if off[1] - off[0] != 4 * math.prod(shape):
            raise ExportError(f"{path}: tensor {name}: {off[1] - off[0]} bytes for shape {shape}")
        spans.append((off[0], off[1], name))
        tensors[name] = np.frombuffer(buffer, dtype="<f4", count=math.prod(shape),
                                      offset=off[0]).reshape(shape)
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise ExportError(f"{path}: tensor {name} starts at {begin}, expected {end} (gap or overlap)")
        end = stop
    if end != len(buffer):
        raise ExportError(f"{path}: {len(buffer) - end} bytes after the last tensor")
    return tensors


def read_fixture(path):
    """The TFMFIX01 format of tests/util_test.h: name -> numpy array."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"TFMFIX01":
        raise ExportError(f"{path}: bad magic")
    version, count = struct.unpack_from("<II", data, 8)
    if version != 1:
        raise ExportError(f"{path}: version {version}")
    pos, out = 16, {}
    for _ in range(count):
        (ln,) = struct.unpack_from("<I", data, pos)
        name = data[pos + 4:pos + 4 + ln].decode()
        pos += 4 + ln
        dtype, ndim = struct.unpack_from("<II", data, pos)
        pos += 8
        shape = struct.unpack_from(f"<{ndim}q", data, pos)
        pos += 8 * ndim
        count_el = math.prod(shape)
        arr = np.frombuffer(data, dtype="<f4" if dtype == 0 else "<i4", count=count_el, offset=pos)
        out[name] = arr.reshape(shape).copy()
        pos += 4 * count_el
    if pos != len(data):
        raise ExportError(f"{path}: {len(data) - pos} trailing bytes")
    return out


# ---- the Marian architecture ---------------------------------------------------

def sinusoids(n_pos, dim):
    """Marian's table: angle pos / 10000^(2i/dim); sin in channels [0, dim/2),
    cos of the same angles in [dim/2, dim) (not interleaved)."""
    pos = np.arange(n_pos, dtype=np.float64)[:, None]
    i = np.arange(dim // 2, dtype=np.float64)[None, :]
    angle = pos / np.power(10000.0, 2.0 * i / dim)
    return torch.from_numpy(np.concatenate([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32))


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, kv, mask):  # x (B, Tq, D), kv (B, Tk, D), mask (B or 1, 1, Tq or 1, Tk) additive
        B, Tq, D = x.shape
        Tk = kv.shape[1]
        q = (self.q_proj(x) * self.head_dim ** -0.5).view(B, Tq, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(kv).view(B, Tk, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(kv).view(B, Tk, self.heads, self.head_dim).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(2, 3) + mask, dim=-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(B, Tq, D))


class EncoderLayer(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.self_attn = Attention(d, heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x, mask):
        x = self.self_attn_layer_norm(x + self.self_attn(x, x, mask))
        return self.final_layer_norm(x + self.fc2(torch.relu(self.fc1(x))))


class DecoderLayer(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.self_attn = Attention(d, heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = Attention(d, heads)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x, self_mask, memory, cross_mask):
        x = self.self_attn_layer_norm(x + self.self_attn(x, x, self_mask))
        x = self.encoder_attn_layer_norm(x + self.encoder_attn(x, memory, cross_mask))
        return self.final_layer_norm(x + self.fc2(torch.relu(self.fc1(x))))


class Stack(nn.Module):
    def __init__(self, cfg, embed, layer, n):
        super().__init__()
        self.embed_tokens = embed
        self.layers = nn.ModuleList([layer(cfg["d_model"], cfg["heads"], cfg["ffn"]) for _ in range(n)])
        # not in the state dict: Hugging Face neither saves nor expects it
        self.register_buffer("positions", sinusoids(cfg["max_pos"], cfg["d_model"]), persistent=False)
        self.scale = math.sqrt(cfg["d_model"]) if cfg["scale_embedding"] else 1.0

    def embed(self, ids):
        return self.embed_tokens(ids) * self.scale + self.positions[: ids.shape[1]]


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        V, D = cfg["vocab"], cfg["d_model"]
        if cfg["shared"]:
            self.shared = nn.Embedding(V, D, padding_idx=cfg["pad"])
            enc_emb = dec_emb = self.shared
        else:
            enc_emb = nn.Embedding(V, D, padding_idx=cfg["pad"])
            dec_emb = nn.Embedding(V, D, padding_idx=cfg["pad"])
        self.encoder = Stack(cfg, enc_emb, EncoderLayer, cfg["enc_layers"])
        self.decoder = Stack(cfg, dec_emb, DecoderLayer, cfg["dec_layers"])


class MarianMT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Model(cfg)
        self.lm_head = nn.Linear(cfg["d_model"], cfg["vocab"], bias=False)
        self.lm_head.weight = self.model.decoder.embed_tokens.weight  # tie_word_embeddings
        self.register_buffer("final_logits_bias", torch.zeros(1, cfg["vocab"]))

    def encode(self, src):
        neg = torch.finfo(torch.float32).min
        key_mask = torch.where(src == self.cfg["pad"], neg, 0.0)[:, None, None, :]  # (B, 1, 1, S)
        x = self.model.encoder.embed(src)
        for layer in self.model.encoder.layers:
            x = layer(x, key_mask)
        return x, key_mask

    def decode(self, memory, key_mask, tgt, bias=True):
        """The logits, lm_head(x) + final_logits_bias; without the bias when
        asked (subtracting a -1e9 bias afterwards would lose the digits)."""
        T = tgt.shape[1]
        neg = torch.finfo(torch.float32).min
        causal = torch.triu(torch.full((T, T), neg), diagonal=1)[None, None]
        x = self.model.decoder.embed(tgt)
        for layer in self.model.decoder.layers:
            x = layer(x, causal, memory, key_mask)
        return self.lm_head(x) + self.final_logits_bias if bias else self.lm_head(x)


def config_from_json(path):
    with open(path) as f:
        c = json.load(f)

    def need(cond, what):
        if not cond:
            raise ExportError(f"{path}: {what}")

    need(c.get("model_type") == "marian", "model_type is not marian")
    need(c.get("architectures") == ["MarianMTModel"], "architectures is not [MarianMTModel]")
    need(c.get("activation_function") == "relu", "activation_function is not relu")
    need(c.get("normalize_before") is False, "normalize_before is not false")
    need(c.get("encoder_attention_heads") == c.get("decoder_attention_heads"), "head counts differ")
    need(c.get("encoder_ffn_dim") == c.get("decoder_ffn_dim"), "FFN sizes differ")
    need(c.get("vocab_size") == c.get("decoder_vocab_size"), "vocab sizes differ")
    need(c.get("tie_word_embeddings") is True, "tie_word_embeddings is not true")
    eps = c.get("tfm", {}).get("ln_eps")
    need(eps is not None and abs(eps - nn.LayerNorm(1).eps) <= 1e-12,
         f"tfm.ln_eps {eps} is not PyTorch's LayerNorm default {nn.LayerNorm(1).eps}")
    start = c.get("tfm", {}).get("decoder_start", "bos")  # absent: an export before the setting
    ours = c.get("tfm", {}).get("vocab")
    need(start in ("bos", "zero"), f"tfm.decoder_start {start!r} is not bos or zero")
    if start == "zero":
        need(c["vocab_size"] == ours + 1, f"vocab_size {c['vocab_size']} is not tfm.vocab {ours} + 1")
        need(c["decoder_start_token_id"] == ours and c["pad_token_id"] == ours,
             "a zero-start export starts from and pads with its last id")
    else:
        need(c["vocab_size"] == ours, f"vocab_size {c['vocab_size']} is not tfm.vocab {ours}")
    try:
        with open(path.rsplit("/", 1)[0] + "/generation_config.json") as f:
            bad = json.load(f).get("bad_words_ids") or []
    except FileNotFoundError:
        bad = []
    need(all(isinstance(b, list) and len(b) == 1 for b in bad), "bad_words_ids of one id each")
    return {
        "ours": ours, "bad": [b[0] for b in bad],
        "vocab": c["vocab_size"], "d_model": c["d_model"], "heads": c["encoder_attention_heads"],
        "ffn": c["encoder_ffn_dim"], "enc_layers": c["encoder_layers"], "dec_layers": c["decoder_layers"],
        "max_pos": c["max_position_embeddings"], "scale_embedding": c["scale_embedding"],
        "shared": c["share_encoder_decoder_embeddings"], "pad": c["pad_token_id"],
        "eos": c["eos_token_id"], "start": c["decoder_start_token_id"],
    }


def load_weights(model, tensors):
    expected = set(model.state_dict().keys())
    have = set(tensors)
    missing, unexpected = sorted(expected - have), sorted(have - expected)
    if missing or unexpected:
        raise ExportError(f"keys do not match: missing {missing}, unexpected {unexpected}")
    # tied parameters appear under several names: the copies must agree, or
    # which one wins would depend on the load order
    by_param = {}
    for name, p in model.state_dict(keep_vars=True).items():
        by_param.setdefault(id(p), []).append(name)
    for names in by_param.values():
        for other in names[1:]:
            if not np.array_equal(tensors[names[0]], tensors[other]):
                raise ExportError(f"tied tensors {names[0]} and {other} differ")
    result = model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()}, strict=True)
    if result.missing_keys or result.unexpected_keys:
        raise ExportError(f"load_state_dict: {result}")
    return len(expected)


def greedy(model, src, steps, start, eos, bad, fill):
    """Batch greedy decoding as generate(num_beams=1) does it: argmax over
    every id of the logits (bias included) with bad_words_ids banned; rows
    stop after </s> and are filled with `fill` (tfm's pad, to compare)."""
    memory, key_mask = model.encode(src)
    B = src.shape[0]
    out = torch.full((B, steps), fill, dtype=torch.long)
    tokens = torch.full((B, 1), start, dtype=torch.long)
    done = torch.zeros(B, dtype=torch.bool)
    for step in range(steps):
        logits = model.decode(memory, key_mask, tokens)[:, -1].clone()
        logits[:, bad] = -math.inf
        best = torch.argmax(logits, dim=-1)
        best = torch.where(done, torch.full_like(best, fill), best)
        out[:, step] = best
        done = done | (best == eos)
        tokens = torch.cat([tokens, best[:, None]], dim=1)
        if bool(done.all()):
            break
    return out


def main(argv):
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    export_dir, fixture = argv[1], argv[2]
    torch.set_num_threads(1)
    try:
        cfg = config_from_json(f"{export_dir}/config.json")
        tensors = read_safetensors(f"{export_dir}/model.safetensors")
        model = MarianMT(cfg).eval()
        n_keys = load_weights(model, tensors)
        fx = read_fixture(fixture)
    except ExportError as e:
        print(f"verify_export: {e}", file=sys.stderr)
        return 1
    print(f"{export_dir}: {n_keys} keys loaded strictly (none missing, none unexpected)")
    # tfm's ids in the fixture: <pad> 0 after each source, <s> 1 first in the
    # decoder; fed with the export's own pad and start ids
    TFM_PAD, TFM_BOS = 0, 1
    src = torch.from_numpy(fx["src"].astype(np.int64))
    src = torch.where(src == TFM_PAD, cfg["pad"], src)
    tgt = torch.from_numpy(fx["tgt_in"].astype(np.int64))
    if not bool((tgt[:, 0] == TFM_BOS).all()):
        print("verify_export: the fixture's decoder inputs do not start with <s>", file=sys.stderr)
        return 1
    tgt[:, 0] = cfg["start"]
    V, eos = cfg["ours"], cfg["eos"]
    bias = model.final_logits_bias[0].numpy()
    emb = model.model.decoder.embed_tokens.weight.detach().numpy()
    checks = []
    if cfg["vocab"] > V:
        checks.append((not np.any(emb[V:]), f"embedding rows {V}.. (the decoder start) are zero"))
    checks.append((not np.any(bias[eos:V]), f"final_logits_bias is 0 on ids {eos}..{V - 1}"))
    rest = np.concatenate([bias[:eos], bias[V:]])
    checks.append((bool(np.all((rest == 0) | (rest <= -1e8))),
                   f"final_logits_bias is 0 or <= -1e8 elsewhere: {rest.tolist()}"))
    with torch.no_grad():
        memory, key_mask = model.encode(src)
        logits = model.decode(memory, key_mask, tgt, bias=False).numpy()[..., :V]
        want = fx["greedy"].astype(np.int64)
        got = greedy(model, src, want.shape[1], cfg["start"], eos, cfg["bad"], TFM_PAD).numpy()
    for good, what in checks:
        print(f"{what}: {'ok' if good else 'WRONG'}")
        if not good:
            return 1
    diff = float(np.max(np.abs(logits - fx["logits"])))
    ok = diff <= TOLERANCE
    print(f"logits {tuple(logits.shape)}: max |PyTorch - tfm| = {diff:.3g} (tolerance {TOLERANCE:g})"
          f" {'ok' if ok else 'MISMATCH'}")
    same = np.array_equal(got, want)
    for b in range(want.shape[0]):
        print(f"  greedy row {b}: tfm {want[b].tolist()} PyTorch {got[b].tolist()}")
    print(f"greedy tokens: {'identical' if same else 'DIFFERENT'}")
    return 0 if ok and same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
