#!/usr/bin/python3
"""Writes the PyTorch reference fixtures under tests/fixtures/.

    /usr/bin/python3 tests/gen_fixtures.py            # every group
    /usr/bin/python3 tests/gen_fixtures.py --only ops # ops_*.bin only

Run by hand when a fixture changes; never at test time. Each fixture file is
"TFMFIX01", u32 version 1, u32 count, then per tensor: u32 name_len, name,
u32 dtype (0 f32, 1 i32), u32 ndim, i64 shape[ndim], little-endian data
(tests/util_test.h).

Op fixtures (ops_<op>.bin) hold one or more cases. A case named C has its
inputs (C.a, C.x, ...; generated here in float32 with torch's generator and
stored, so the C test reads the very same values), its parameters (C.trans,
C.alpha, ...), the upstream gradient C.dy, the output C.y and one gradient
per float input (C.d<input>). The reference is computed in float64 from the
float32 inputs, then rounded to float32.

Conventions (those of the C ops): F.cross_entropy(..., ignore_index,
label_smoothing, reduction='mean'); layer norm eps 1e-5; attention =
softmax(Q K^T / sqrt(dh), masked) V per head, heads = consecutive channel
groups, key padding nonzero = pad, a row with no visible key outputs 0;
embedding times a scale with padding_idx; dropout only on its eval path.
"""
import argparse
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")


# ---- file format ----------------------------------------------------------------

def write_fixture(path, tensors):
    """tensors: list of (name, torch tensor); float -> f32, integer -> i32."""
    out = [b"TFMFIX01", struct.pack("<II", 1, len(tensors))]
    names = set()
    for name, t in tensors:
        assert name not in names, name
        names.add(name)
        t = t.detach().cpu()
        if t.dtype.is_floating_point:
            dtype, data = 0, t.to(torch.float32).contiguous().numpy().astype("<f4")
        else:
            dtype, data = 1, t.to(torch.int32).contiguous().numpy().astype("<i4")
        assert t.dim() <= 4, name
        raw = name.encode()
        assert len(raw) < 128, name
        out.append(struct.pack("<I", len(raw)) + raw)
        out.append(struct.pack("<II", dtype, t.dim()))
        out.append(struct.pack("<%dq" % t.dim(), *t.shape))
        out.append(data.tobytes())
    blob = b"".join(out)
    with open(path, "wb") as f:
        f.write(blob)
    return len(blob)


class Gen:
    """Inputs in float32 from one seeded torch generator per fixture."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def uniform(self, *shape, lo=-1.0, hi=1.0):
        return (torch.rand(*shape, generator=self.g, dtype=torch.float32) * (hi - lo) + lo)

    def ints(self, lo, hi, *shape):
        return torch.randint(lo, hi, shape, generator=self.g, dtype=torch.int64)


def run_case(name, fn, inputs, params=(), extra=(), dy=None, gen=None):
    """inputs: list of (short name, float32 tensor) that get gradients;
    extra: (name, tensor) stored as they are (ids, masks); params likewise.
    fn(*float64 inputs) -> output. Returns the fixture entries of the case."""
    xs = [x.double().requires_grad_(True) for _, x in inputs]
    y = fn(*xs)
    if dy is None:
        dy = gen.uniform(*y.shape)
    y.backward(dy.double().reshape(y.shape))
    entries = [("%s.%s" % (name, n), x) for n, x in inputs]
    entries += [("%s.%s" % (name, n), v) for n, v in list(params) + list(extra)]
    entries.append(("%s.dy" % name, dy.reshape(y.shape) if y.dim() else dy.reshape(1)))
    entries.append(("%s.y" % name, (y if y.dim() else y.reshape(1)).float()))
    for (n, _), x in zip(inputs, xs):
        entries.append(("%s.d%s" % (name, n), x.grad.float()))
    return entries


def i32(*v):
    return torch.tensor(v, dtype=torch.int32)


def f32(*v):
    return torch.tensor(v, dtype=torch.float32)


# ---- one function per op fixture ------------------------------------------------------

def op_matmul(g):
    M, K, N = 3, 4, 5
    cases = []
    for ta in (0, 1):
        for tb in (0, 1):
            ash = (K, M) if ta else (M, K)
            bsh = (N, K) if tb else (K, N)

            def mm(a, b, ta=ta, tb=tb):
                return (a.transpose(-1, -2) if ta else a) @ (b.transpose(-1, -2) if tb else b)

            tr = [("trans", i32(ta, tb))]
            cases += run_case("m%d%d" % (ta, tb), mm, [("a", g.uniform(*ash)), ("b", g.uniform(*bsh))], tr, gen=g)
            cases += run_case("batched%d%d" % (ta, tb), mm,
                              [("a", g.uniform(2, *ash)), ("b", g.uniform(2, *bsh))], tr, gen=g)
            cases += run_case("shared%d%d" % (ta, tb), mm,
                              [("a", g.uniform(2, *ash)), ("b", g.uniform(*bsh))], tr, gen=g)
    cases += run_case("heads01", lambda a, b: a @ b.transpose(-1, -2),
                      [("a", g.uniform(2, 2, 3, 4)), ("b", g.uniform(2, 2, 6, 4))],
                      [("trans", i32(0, 1))], gen=g)
    return cases


def op_linear(g):
    x, w, b = g.uniform(2, 3, 6), g.uniform(5, 6), g.uniform(5)
    cases = run_case("bias", lambda x, w, b: F.linear(x, w, b), [("x", x), ("W", w), ("b", b)], gen=g)
    cases += run_case("nobias", lambda x, w: F.linear(x, w), [("x", g.uniform(7, 6)), ("W", w)], gen=g)
    return cases


def op_add(g):
    return run_case("add", lambda a, b: a + b, [("a", g.uniform(2, 3, 4)), ("b", g.uniform(2, 3, 4))], gen=g)


def op_add_bias(g):
    return run_case("add_bias", lambda x, b: x + b, [("x", g.uniform(2, 3, 5)), ("b", g.uniform(5))], gen=g)


def op_mul(g):
    return run_case("mul", lambda a, b: a * b, [("a", g.uniform(3, 7)), ("b", g.uniform(3, 7))], gen=g)


def op_scale(g):
    return run_case("scale", lambda x: -0.37 * x, [("x", g.uniform(2, 9))],
                    [("alpha", f32(-0.37))], gen=g)


def op_relu(g):
    return run_case("relu", F.relu, [("x", g.uniform(4, 6))], gen=g)


def op_softmax(g):
    return run_case("softmax", lambda x: torch.softmax(x, -1), [("x", g.uniform(2, 3, 7, lo=-4, hi=4))], gen=g)


def op_layernorm(g):
    x = g.uniform(2, 3, 8, lo=-2, hi=3)
    return run_case("layernorm", lambda x, w, b: F.layer_norm(x, (8,), w, b, 1e-5),
                    [("x", x), ("gamma", g.uniform(8, lo=0.5, hi=1.5)), ("beta", g.uniform(8))],
                    [("eps", f32(1e-5))], gen=g)


def op_embedding(g):
    V, D = 10, 6
    ids = torch.tensor([[3, 1, 7, 3], [1, 1, 0, 9]])  # 3 and 1 repeated, pad id 1
    scale = math.sqrt(D)
    cases = run_case("pad", lambda t: F.embedding(ids, t, padding_idx=1) * scale,
                     [("table", g.uniform(V, D))], [("scale", f32(scale)), ("pad", i32(1))],
                     [("ids", ids)], gen=g)
    cases += run_case("nopad", lambda t: F.embedding(ids, t) * 0.5,
                      [("table", g.uniform(V, D))], [("scale", f32(0.5)), ("pad", i32(-1))],
                      [("ids", ids)], gen=g)
    return cases


def op_dropout(g):
    # Training-mode masks come from our counter RNG, not torch's: only the
    # eval path (identity) is compared; the training path is checked by
    # statistics and gradcheck in C.
    cases = run_case("eval", lambda x: F.dropout(x, 0.25, training=False), [("x", g.uniform(3, 5))],
                     [("p", f32(0.25)), ("training", i32(0))], gen=g)
    cases += run_case("p0", lambda x: F.dropout(x, 0.0, training=True), [("x", g.uniform(2, 3, 4))],
                      [("p", f32(0.0)), ("training", i32(1))], gen=g)
    return cases


def split(x, H):
    B, T, D = x.shape
    return x.reshape(B, T, H, D // H).transpose(1, 2)


def merge(x):
    B, H, T, dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * dh)


def op_split_heads(g):
    return run_case("split", lambda x: split(x, 2), [("x", g.uniform(2, 3, 8))],
                    [("heads", i32(2))], gen=g)


def op_merge_heads(g):
    return run_case("merge", merge, [("x", g.uniform(2, 4, 3, 2))], gen=g)


def op_sum(g):
    return run_case("sum", lambda x: x.sum(), [("x", g.uniform(3, 4, 5))], dy=f32(0.7))


def op_mean(g):
    return run_case("mean", lambda x: x.mean(), [("x", g.uniform(3, 4, 5))], dy=f32(-1.3))


def op_cross_entropy(g):
    B, T, V = 2, 4, 7
    cases = []
    for name, eps, ignore in (("eps0", 0.0, 0), ("eps01", 0.1, 0), ("eps01_noignore", 0.1, -100)):
        tgt = g.ints(1, V, B, T)
        if ignore == 0:
            tgt[0, 3] = 0
            tgt[1, 2] = 0
            tgt[1, 3] = 0

        def ce(x, tgt=tgt, eps=eps, ignore=ignore):
            return F.cross_entropy(x.reshape(-1, V), tgt.reshape(-1), ignore_index=ignore,
                                   label_smoothing=eps, reduction="mean")

        cases += run_case(name, ce, [("logits", g.uniform(B, T, V, lo=-3, hi=3))],
                          [("smoothing", f32(eps)), ("ignore", i32(ignore))], [("targets", tgt)],
                          dy=f32(0.8))
    return cases


def attention_ref(q, k, v, H, key_pad, causal):
    B, Tq, D = q.shape
    Tk = k.shape[1]
    dh = D // H
    s = split(q, H) @ split(k, H).transpose(-1, -2) / math.sqrt(dh)  # (B, H, Tq, Tk)
    visible = torch.ones(B, 1, Tq, Tk, dtype=torch.bool)
    if key_pad is not None:
        visible &= (key_pad == 0).reshape(B, 1, 1, Tk)
    if causal:
        visible &= torch.ones(Tq, Tk, dtype=torch.bool).tril().reshape(1, 1, Tq, Tk)
    s = s.masked_fill(~visible, float("-inf"))
    # softmax over visible keys; a row with none gives 0 (not NaN)
    m = s.amax(-1, keepdim=True).detach().clamp_min(-1e30)
    e = torch.exp(s - m)
    p = e / e.sum(-1, keepdim=True).clamp_min(1e-300)
    return merge(p @ split(v, H))


def op_attention(g):
    cases = []
    specs = [
        ("plain", 2, 3, 3, 8, 2, None, 0),
        ("causal", 2, 4, 4, 8, 2, None, 1),
        ("keypad", 2, 3, 5, 8, 2, [[0, 0, 0, 1, 1], [0, 0, 0, 0, 1]], 0),
        # batch 1, query 0: causal with key 0 padded -> fully masked row
        ("causal_pad_empty_row", 2, 4, 4, 12, 3, [[0, 0, 0, 1], [1, 0, 0, 0]], 1),
        ("cross", 2, 2, 5, 8, 4, [[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]], 0),
    ]
    for name, B, Tq, Tk, D, H, pad, causal in specs:
        kp = torch.tensor(pad, dtype=torch.int32) if pad is not None else None
        extra = [("key_pad", kp)] if kp is not None else []
        cases += run_case(name, lambda q, k, v, H=H, kp=kp, causal=causal: attention_ref(q, k, v, H, kp, causal),
                          [("q", g.uniform(B, Tq, D, lo=-1.5, hi=1.5)),
                           ("k", g.uniform(B, Tk, D, lo=-1.5, hi=1.5)),
                           ("v", g.uniform(B, Tk, D))],
                          [("heads", i32(H)), ("causal", i32(causal))], extra, gen=g)
    return cases


OPS = [
    ("matmul", op_matmul), ("linear", op_linear), ("add", op_add), ("add_bias", op_add_bias),
    ("mul", op_mul), ("scale", op_scale), ("relu", op_relu), ("softmax", op_softmax),
    ("layernorm", op_layernorm), ("embedding", op_embedding), ("dropout", op_dropout),
    ("split_heads", op_split_heads), ("merge_heads", op_merge_heads), ("sum", op_sum),
    ("mean", op_mean), ("cross_entropy", op_cross_entropy), ("attention", op_attention),
]


def gen_ops(outdir):
    total = 0
    for i, (name, fn) in enumerate(OPS):
        path = os.path.join(outdir, "ops_%s.bin" % name)
        n = write_fixture(path, fn(Gen(1000 + i)))
        total += n
        print("  %-40s %6d bytes" % (os.path.relpath(path, os.path.dirname(HERE)), n))
    return total


# Groups of fixture files; the model fixtures get their own entry here.
GROUPS = {"ops": gen_ops}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=sorted(GROUPS), action="append",
                    help="write only this group (repeatable); default: all")
    ap.add_argument("--out", default=FIXTURES, help="output directory (default tests/fixtures)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for group in args.only or sorted(GROUPS):
        print("%s:" % group)
        total += GROUPS[group](args.out)
    print("total %d bytes" % total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
