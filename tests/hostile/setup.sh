#!/bin/sh
# Fixtures for the hostile-input catalogue (tests/test_hostile.c), made once
# per run in the current directory with $TFM; every case gets its own copy.
#   toy/      a toy (copy task) run directory, 3 steps, checkpoint at step 3
#   toy.tfm   its checkpoint as a lone file
#   crun/     a corpus run (s.de -> t.en, 30 BPE merges), 2 steps
#   exp/      the export of crun
#   s.de t.en v.de v.en   the corpus; codes, voc: `tfm bpe learn/vocab` on it
#   tiny.cfg  the toy settings as a --config file; ctiny.cfg the corpus ones
set -eu
cat >tiny.cfg <<'CFG'
task = copy
d-model = 16
heads = 2
d-ff = 32
layers = 1
vocab = 8
max-len = 5
batch = 8
warmup = 10
threads = 1
eval-n = 1
quiet = true
CFG
"$TFM" train --config tiny.cfg --steps 3 --save toy
cp toy/checkpoint-00000003.tfm toy.tfm
i=1
while [ $i -le 30 ]; do
    echo "ein haus ist $i gross und der hund ist klein" >>s.de
    echo "a house is $i big and the dog is small" >>t.en
    i=$((i + 1))
done
head -n 5 s.de >v.de
head -n 5 t.en >v.en
cat >ctiny.cfg <<'CFG'
src-train = s.de
tgt-train = t.en
bpe-merges = 30
d-model = 16
heads = 2
d-ff = 32
layers = 1
batch-tokens = 256
threads = 1
quiet = true
# the conventions of the runs the export cases below were written against
# (vocabulary 36, ids 0/1 for pad/start); test_export covers today's defaults
decoder-start = bos
exact-vocab = false
CFG
"$TFM" train --config ctiny.cfg --src-valid v.de --tgt-valid v.en --valid-every 1 --steps 2 --save crun
"$TFM" export --model crun --out exp --threads 1 >/dev/null
"$TFM" bpe learn --merges 20 -o codes s.de t.en 2>/dev/null
"$TFM" bpe vocab -c codes -o voc s.de t.en 2>/dev/null
