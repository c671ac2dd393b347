#!/usr/bin/python3
"""PyTorch twin of tfm's Transformer, for the parity fixture tests/fixtures/model_parity.bin.

Builds the same small post-LN encoder-decoder (d_model 32, 2 heads, d_ff 64, 2+2 layers,
vocabulary 11, Marian-layout sinusoids, tied target embedding, LN eps 1e-5), writes its
initial weights under tfm's parameter names and a fixed padded batch, then trains 5 steps
(dropout 0, label smoothing 0.1, Adam 0.9/0.98/1e-9, Noam schedule) and writes every step's
loss, the final weights, and the greedy decode of the trained model.

Run with Debian's interpreter: /usr/bin/python3 tests/gen_model_fixtures.py
(tests/gen_fixtures.py calls it too). Tests never run Python.
"""
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
PAD, BOS, EOS = 0, 1, 2


def write_fixture(path, tensors):
    """TFMFIX01 format (see tests/util_test.h)."""
    with open(path, "wb") as f:
        f.write(b"TFMFIX01")
        f.write(struct.pack("<II", 1, len(tensors)))
        for name, t in tensors:
            t = t.detach().contiguous()
            is_int = t.dtype in (torch.int32, torch.int64)
            t = t.to(torch.int32) if is_int else t.to(torch.float32)
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)))
            f.write(nb)
            f.write(struct.pack("<II", 1 if is_int else 0, t.dim()))
            for s in t.shape:
                f.write(struct.pack("<q", s))
            f.write(t.numpy().astype("<i4" if is_int else "<f4").tobytes())


class Attn(nn.Module):
    def __init__(s, d, h):
        super().__init__()
        s.h, s.dh = h, d // h
        s.q, s.k, s.v, s.o = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(s, xq, xkv, keep):  # keep: [B,1,Tq|1,Tk] bool
        B, Tq, D = xq.shape
        Tk = xkv.shape[1]
        q = s.q(xq).view(B, Tq, s.h, s.dh).transpose(1, 2)
        k = s.k(xkv).view(B, Tk, s.h, s.dh).transpose(1, 2)
        v = s.v(xkv).view(B, Tk, s.h, s.dh).transpose(1, 2)
        sc = q @ k.transpose(-1, -2) / math.sqrt(s.dh)
        sc = sc.masked_fill(~keep, float("-inf"))
        p = torch.softmax(sc, -1)
        return s.o((p @ v).transpose(1, 2).reshape(B, Tq, D))


class Layer(nn.Module):
    def __init__(s, d, h, f, dec, eps):
        super().__init__()
        s.dec = dec
        s.self_attn = Attn(d, h)
        s.ln1 = nn.LayerNorm(d, eps=eps)
        if dec:
            s.cross_attn = Attn(d, h)
            s.ln2 = nn.LayerNorm(d, eps=eps)
        s.fc1, s.fc2 = nn.Linear(d, f), nn.Linear(f, d)
        s.ln_ffn = nn.LayerNorm(d, eps=eps)

    def forward(s, x, self_keep, mem=None, cross_keep=None):
        x = s.ln1(x + s.self_attn(x, x, self_keep))
        if s.dec:
            x = s.ln2(x + s.cross_attn(x, mem, cross_keep))
        return s.ln_ffn(x + s.fc2(F.relu(s.fc1(x))))


class Model(nn.Module):
    def __init__(s, V, d, h, f, n_enc, n_dec, eps=1e-5, max_len=64):
        super().__init__()
        s.d = d
        s.src_emb = nn.Embedding(V, d, padding_idx=PAD)
        s.tgt_emb = nn.Embedding(V, d, padding_idx=PAD)
        s.enc = nn.ModuleList([Layer(d, h, f, False, eps) for _ in range(n_enc)])
        s.dec = nn.ModuleList([Layer(d, h, f, True, eps) for _ in range(n_dec)])
        pe = torch.zeros(max_len, d, dtype=torch.float64)
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]
        i = torch.arange(d // 2, dtype=torch.float64)[None]
        ang = pos / torch.pow(10000.0, 2 * i / d)
        pe[:, : d // 2], pe[:, d // 2:] = torch.sin(ang), torch.cos(ang)
        s.register_buffer("pe", pe.float())
        g = torch.Generator().manual_seed(1234)
        for name, p in s.named_parameters():
            with torch.no_grad():
                if p.dim() == 2:
                    b = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
                    p.copy_((torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1) * b)
                elif name.endswith("bias"):
                    p.zero_()

    def embed(s, emb, ids):
        return emb(ids) * math.sqrt(s.d) + s.pe[: ids.shape[1]]

    def forward(s, src, tgt_in):
        src_keep = (src != PAD)[:, None, None, :]
        T = tgt_in.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        tgt_keep = (tgt_in != PAD)[:, None, None, :] & causal[None, None]
        x = s.embed(s.src_emb, src)
        for L in s.enc:
            x = L(x, src_keep)
        y = s.embed(s.tgt_emb, tgt_in)
        for L in s.dec:
            y = L(y, tgt_keep, x, src_keep)
        return F.linear(y, s.tgt_emb.weight)


def tfm_names(model):
    """(tfm name, tensor) in any order; tfm loads by name."""
    out = [("tgt_emb.weight", model.tgt_emb.weight), ("src_emb.weight", model.src_emb.weight)]
    for stack, layers in (("enc", model.enc), ("dec", model.dec)):
        for i, L in enumerate(layers):
            attns = [("self_attn", L.self_attn)] + ([("cross_attn", L.cross_attn)] if L.dec else [])
            for an, a in attns:
                for pn in "qkvo":
                    lin = getattr(a, pn)
                    out.append(("%s.%d.%s.%s.weight" % (stack, i, an, pn), lin.weight))
                    out.append(("%s.%d.%s.%s.bias" % (stack, i, an, pn), lin.bias))
            lns = [("ln1", L.ln1)] + ([("ln2", L.ln2)] if L.dec else []) + \
                  [("ln3" if L.dec else "ln2", L.ln_ffn)]
            for ln_name, ln in lns:
                out.append(("%s.%d.%s.weight" % (stack, i, ln_name), ln.weight))
                out.append(("%s.%d.%s.bias" % (stack, i, ln_name), ln.bias))
            out.append(("%s.%d.ffn.fc1.weight" % (stack, i), L.fc1.weight))
            out.append(("%s.%d.ffn.fc1.bias" % (stack, i), L.fc1.bias))
            out.append(("%s.%d.ffn.fc2.weight" % (stack, i), L.fc2.weight))
            out.append(("%s.%d.ffn.fc2.bias" % (stack, i), L.fc2.bias))
    return out


def noam(step, d, warmup, factor):
    return factor * d ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def greedy(model, src, max_out):
    model.eval()
    with torch.no_grad():
        B = src.shape[0]
        ys = torch.full((B, 1), BOS, dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        out = torch.zeros(B, max_out, dtype=torch.long)
        for t in range(max_out):
            logits = model(src, ys)[:, -1]
            logits[:, :EOS] = float("-inf")  # never pad or <s>
            nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
            out[:, t] = nxt
            done |= nxt == EOS
            ys = torch.cat([ys, nxt[:, None]], 1)
            if done.all():
                break
    return out


def main():
    torch.manual_seed(0)
    V, D, H, FF, NL = 11, 32, 2, 64, 2
    warmup, factor, eps_ls, steps = 4, 1.0, 0.1, 5
    model = Model(V, D, H, FF, NL, NL)
    src = torch.tensor([[3, 4, 5, 6, 7, 8, 2],
                        [9, 3, 3, 10, 2, 0, 0],
                        [5, 2, 0, 0, 0, 0, 0],
                        [10, 9, 8, 7, 6, 5, 2]])
    tgt = torch.tensor([[1, 8, 7, 6, 5, 4, 3, 2],
                        [1, 10, 3, 3, 9, 2, 0, 0],
                        [1, 5, 2, 0, 0, 0, 0, 0],
                        [1, 5, 6, 7, 8, 9, 10, 2]])
    tgt_in = tgt.clone()
    tgt_in[tgt_in == EOS] = PAD  # decoder input: <s> y (no </s>)
    tgt_out = torch.cat([tgt[:, 1:], torch.zeros(4, 1, dtype=torch.long)], 1)
    tensors = [("cfg", torch.tensor([V, D, H, FF, NL, NL, warmup, steps], dtype=torch.int32)),
               ("src", src), ("tgt_in", tgt_in), ("tgt_out", tgt_out)]
    tensors += [("init." + n, p.clone()) for n, p in tfm_names(model)]
    opt = torch.optim.Adam(model.parameters(), lr=0.0, betas=(0.9, 0.98), eps=1e-9)
    losses = []
    model.train()
    for step in range(1, steps + 1):
        for g in opt.param_groups:
            g["lr"] = noam(step, D, warmup, factor)
        opt.zero_grad()
        logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, V), tgt_out.reshape(-1), ignore_index=PAD,
                               label_smoothing=eps_ls, reduction="mean")
        loss.backward()
        if step == 1:  # Adam is scale-invariant per element: check raw gradients too
            tensors += [("grad1." + n, p.grad.clone()) for n, p in tfm_names(model)]
        opt.step()
        losses.append(loss.item())
    tensors.append(("losses", torch.tensor(losses)))
    tensors += [("final." + n, p.clone()) for n, p in tfm_names(model)]
    tensors.append(("greedy", greedy(model, src, 8)))
    path = os.path.join(HERE, "fixtures", "model_parity.bin")
    write_fixture(path, tensors)
    print("wrote %s (losses %s)" % (path, " ".join("%.5f" % x for x in losses)))


if __name__ == "__main__":
    sys.exit(main())
