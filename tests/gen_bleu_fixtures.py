#!/usr/bin/env python3
"""Writes tests/fixtures/bleu/{tokenize,corpus}{,_none}.txt from our BLEU reference,
/work/shared/tools/bleu.py (override with BLEU_PY=...), for tests/test_bleu.c.

  /usr/bin/python3 tests/gen_bleu_fixtures.py

tokenize.txt: random strings (ASCII symbols, numbers, entities, Greek sigma
  contexts, whitespace of every kind, random code points of all planes) and
  their 13a tokens as bleu.py prepares a segment, without and with
  lowercasing:   s <input>  /  t <tokens>  /  l <lowercased tokens>
corpus.txt: random corpora (1-4 references, corrupted copies of the
  reference as hypotheses) with everything bleu.py computes:
    case <id> lines <n> refs <r> lc <0|1> width <w>
    h <hyp>  then  r <ref> x r       (n times)
    want <score> <p1..p4> <bp> <ratio> <hyp_len> <ref_len> <correct1..4> <total1..4>
    out <the text bleu.py prints after "... = " on its first line>
  The counts (correct/total) are read from bleu.py's own corpus_bleu frame
  when it returns; the printed line comes from running bleu.py as a program
  on files holding the case.
tokenize_none.txt, corpus_none.txt: the same records for bleu.py -tok none
  (whitespace split only); the corpora mix the random text above with
  tokenized, lowercased text like Multi30k's *.lc.norm.tok files whose
  hypotheses sometimes glue punctuation to words (where 13a and none differ).

Strings are escaped so every record is one line: backslash as \\\\, control
characters (and a leading or trailing space) as \\xHH; UTF-8 is kept as is.
"""
import importlib.util
import os
import random
import subprocess
import sys
import tempfile

BLEU_PY = os.environ.get('BLEU_PY', '/work/shared/tools/bleu.py')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'tests', 'fixtures', 'bleu')

spec = importlib.util.spec_from_file_location('bleu_ref', BLEU_PY)
bleu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bleu)


def esc(s):
    out = []
    for i, ch in enumerate(s):
        o = ord(ch)
        if ch == '\\':
            out.append('\\\\')
        elif o < 0x20 or o == 0x7F or (ch == ' ' and (i == 0 or i == len(s) - 1)):
            out.append('\\x%02X' % o)
        else:
            out.append(ch)
    return ''.join(out)


WORDS = ['the', 'The', 'THE', 'cat', 'Cat', 'sat', 'on', 'mat', 'a', 'an', 'dog', 'runs',
         'quickly', 'house', 'Haus', 'Mädchen', 'MÄDCHEN', 'straße', 'STRASSE', 'naïve',
         'café', 'Café', 'CAFÉ', 'ΟΔΟΣ', 'οδος', 'Σίσυφος', 'ΣΊΣΥΦΟΣ', 'ΑΣ', 'İstanbul',
         'istanbul', 'ǅemal', 'ﬁne', '日本語', '東京', '😀', 'e-mail', 'U.S.', 'Dr.', "don't",
         "it's", "'s", 'co-operate', 'x', 'y', 'z', 'is', 'was', 'of', 'to', 'and']
PUNCT = ['.', ',', '!', '?', ';', ':', '-', '—', '–', '…', '"', "'", '“', '”', '‘', '’',
         '«', '»', '(', ')', '[', ']', '{', '}', '/', '\\', '@', '#', '$', '%', '&', '*',
         '+', '=', '<', '>', '|', '~', '^', '_', '`', '&amp;', '&quot;', '&lt;', '&gt;',
         '&amp;lt;', '<skipped>', '...', '--', '.,', ',.', '¿', '¡', '€', '°', '·', '•']
SPACES = [' '] * 12 + ['  ', '\t', '\u00a0', '\u3000', '\u2009', '\u202f', '\x1f', '\x0b']


def number(rng):
    pick = rng.randrange(9)
    d = lambda: str(rng.randrange(1000))
    return [lambda: d() + ',' + '%03d' % rng.randrange(1000),
            lambda: d() + '.' + d(),
            lambda: '19%02d-20%02d' % (rng.randrange(100), rng.randrange(100)),
            lambda: '-' + d(),
            lambda: d() + '-',
            lambda: d() + '.',
            lambda: '.' + d(),
            lambda: ',' + d(),
            lambda: d() + ',' + d() + ',' + d()][pick]()


def token(rng):
    r = rng.random()
    if r < 0.6:
        return rng.choice(WORDS)
    if r < 0.85:
        return rng.choice(PUNCT)
    return number(rng)


def join(rng, toks):
    """Tokens glued with random whitespace, sometimes none (so punctuation
    sticks to words and numbers, which is what 13a has to split)."""
    out = ''
    for i, t in enumerate(toks):
        if i:
            out += '' if rng.random() < 0.25 else rng.choice(SPACES)
        out += t
    if rng.random() < 0.1:
        out = rng.choice(SPACES) + out
    if rng.random() < 0.1:
        out += rng.choice(SPACES + ['\r', ' \r'])
    return out


def corrupt(rng, toks):
    toks = list(toks)
    for _ in range(rng.randrange(4)):
        op = rng.randrange(7)
        if op == 0 and toks:
            del toks[rng.randrange(len(toks))]
        elif op == 1:
            toks.insert(rng.randrange(len(toks) + 1), token(rng))
        elif op == 2 and len(toks) > 1:
            i = rng.randrange(len(toks) - 1)
            toks[i], toks[i + 1] = toks[i + 1], toks[i]
        elif op == 3 and toks:
            toks[rng.randrange(len(toks))] = token(rng)
        elif op == 4 and toks:
            i = rng.randrange(len(toks))
            toks[i] = toks[i].upper() if rng.random() < 0.5 else toks[i].lower()
        elif op == 5 and toks:
            toks = toks[:rng.randrange(len(toks) + 1)]
        elif op == 6 and toks:
            i = rng.randrange(len(toks))
            toks.insert(i, toks[i])
    return toks


def sentence_pair(rng, n_refs):
    base = [token(rng) for _ in range(rng.randrange(16))]
    refs = [join(rng, base)] + [join(rng, corrupt(rng, base)) for _ in range(n_refs - 1)]
    r = rng.random()
    if r < 0.05:
        hyp = ''
    elif r < 0.1:
        hyp = join(rng, [token(rng) for _ in range(rng.randrange(5))])
    elif r < 0.2:
        hyp = join(rng, base)
    else:
        hyp = join(rng, corrupt(rng, base))
    if rng.random() < 0.03:
        refs[rng.randrange(n_refs)] = ''
    return hyp, refs


def random_codepoint(rng):
    while True:
        r = rng.random()
        if r < 0.3:
            c = rng.randrange(0x20, 0x7F)
        elif r < 0.5:
            c = rng.randrange(0x80, 0x800)
        elif r < 0.8:
            c = rng.randrange(0x800, 0x10000)
        else:
            c = rng.randrange(0x10000, 0x110000)
        if not 0xD800 <= c < 0xE000:
            return chr(c)


SIGMA_BITS = ['Σ', 'ς', 'σ', 'Α', 'α', 'a', 'A', '1', ' ', '\u0301', '\u00ad', "'", '.',
              ':', '\u02b0', '\u0345', 'ǅ', 'ǆ', 'İ', '\u200d', 'ᾼ', 'ⓐ', 'Ⓐ', '\u0660']


def tokenize_input(rng):
    kind = rng.randrange(6)
    if kind == 0:   # ASCII only, symbol heavy
        return ''.join(rng.choice('abcAB01 .,-\'"&;<>/\\()[]{}:@!?*+=|~^_`$%#\t\n')
                       for _ in range(rng.randrange(40)))
    if kind == 1:   # corpus-like
        return join(rng, [token(rng) for _ in range(rng.randrange(12))])
    if kind == 2:   # final sigma contexts
        return ''.join(rng.choice(SIGMA_BITS) for _ in range(rng.randrange(12)))
    if kind == 3:   # random code points of every plane with some whitespace
        return ''.join(rng.choice(SPACES + ['\u2028', '\x85', '\u1680', '\u180e', '\u200b'])
                       if rng.random() < 0.15 else random_codepoint(rng)
                       for _ in range(rng.randrange(20)))
    if kind == 4:   # entities and skipped markers, including nested ones
        return ''.join(rng.choice(['&amp;', '&quot;', '&lt;', '&gt;', '&', 'amp;', 'lt;',
                                   '<skipped>', '<skip', 'ped>', '-\n', '\n', '-', 'x', ' ',
                                   '1', '.', ','])
                       for _ in range(rng.randrange(12)))
    # numbers and separators
    return ''.join(rng.choice(['1', '2', '.', ',', '-', ' ', 'a', '\u0663', '\u00a0', '\x00'])
                   for _ in range(rng.randrange(16)))


def tokenized_text(rng, toks):
    """Multi30k-style: 13a tokens, lowercased, one space apart."""
    return ' '.join(bleu.tokenize_13a(join(rng, toks))).lower()


def tok_sentence_pair(rng, n_refs):
    base = [token(rng) for _ in range(rng.randrange(16))]
    refs = [tokenized_text(rng, base)] + [tokenized_text(rng, corrupt(rng, base))
                                          for _ in range(n_refs - 1)]
    hyp_toks = corrupt(rng, base) if rng.random() < 0.8 else base
    r = rng.random()
    if r < 0.5:
        hyp = tokenized_text(rng, hyp_toks)
    elif r < 0.8:   # untokenized output: punctuation glued to words
        hyp = join(rng, hyp_toks).lower()
    else:
        hyp = join(rng, hyp_toks)
    return hyp, refs


def tokenize_none_fixture(rng, path, count):
    fixed = ['', ' ', 'a man in a blue shirt .', 'a\u00a0b\u3000c\u2028d\x85e\u200bf',
             '\x1c\x1d\x1e\x1fx\x0b\x0cy', 'Hello, world!', 'ΟΔΟΣ  ΑΣ\u0301Α', '\x00a \x00']
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write('# generated by tests/gen_bleu_fixtures.py from tools/bleu.py; see there\n')
        for i in range(count):
            s = fixed[i] if i < len(fixed) else tokenize_input(rng)
            f.write('s %s\n' % esc(s))
            f.write('t %s\n' % esc(' '.join(bleu.tokenize_none(s.rstrip()))))
            f.write('l %s\n' % esc(' '.join(bleu.tokenize_none(s.lower().rstrip()))))


def tokenize_fixture(rng, path, count):
    fixed = ['', ' ', '\n', 'Hello, world!', 'ΟΔΟΣ ΟΔΟΣ. ΑΣ\u0301Α', 'İ', 'a\u00a0b\u3000c',
             '1,000.50 1990-2000 -5 5- .5 ,7', '&amp;lt;skipped&amp;gt; <skip<skipped>ped>',
             'x-\ny', '  padded \t\r', '\x00a\x00', 'e-mail U.S. don\'t', '“Mädchen”—„Straße“']
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write('# generated by tests/gen_bleu_fixtures.py from tools/bleu.py; see there\n')
        for i in range(count):
            s = fixed[i] if i < len(fixed) else tokenize_input(rng)
            f.write('s %s\n' % esc(s))
            f.write('t %s\n' % esc(' '.join(bleu.tokenize_13a(s.rstrip()))))
            f.write('l %s\n' % esc(' '.join(bleu.tokenize_13a(s.lower().rstrip()))))


def corpus_stats(hyps, refsets, lc, tokenize='13a'):
    """bleu.corpus_bleu's result plus its match and total counts, taken from
    its frame as it returns."""
    seen = {}

    def prof(frame, event, arg):
        if event == 'return' and frame.f_code is bleu.corpus_bleu.__code__:
            seen['matches'] = list(frame.f_locals['matches'])
            seen['totals'] = list(frame.f_locals['totals'])
    sys.setprofile(prof)
    try:
        res = bleu.corpus_bleu(hyps, refsets, lc, tokenize)
    finally:
        sys.setprofile(None)
    return res, seen['matches'], seen['totals']


def run_cli(tmp, hyps, refsets, lc, width, tokenize='13a'):
    paths = []
    for r, refs in enumerate(refsets):
        p = os.path.join(tmp, 'ref%d.txt' % r)
        with open(p, 'w', encoding='utf-8', newline='\n') as f:
            f.write(''.join(x + '\n' for x in refs))
        paths.append(p)
    args = [sys.executable, BLEU_PY] + (['-lc'] if lc else []) + ['-w', str(width)]
    if tokenize != '13a':
        args += ['-tok', tokenize]
    args += paths
    out = subprocess.run(args, input=''.join(h + '\n' for h in hyps).encode('utf-8'),
                         capture_output=True, check=True).stdout.decode('utf-8')
    first = out.split('\n')[0]
    return first.split(' = ', 1)[1]


def corpus_fixture(rng, path, count, tokenize='13a'):
    with tempfile.TemporaryDirectory() as tmp, \
            open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write('# generated by tests/gen_bleu_fixtures.py from tools/bleu.py; see there\n')
        for case in range(count):
            n_lines = 0 if case == 0 else (rng.randrange(30, 60) if case % 50 == 1
                                           else rng.randrange(1, 9))
            n_refs = rng.choice([1, 1, 1, 2, 2, 3, 4])
            lc = int(rng.random() < 0.3)
            width = rng.choice([1, 1, 1, 2, 4])
            hyps, refsets = [], [[] for _ in range(n_refs)]
            for _ in range(n_lines):
                if tokenize == 'none' and case % 3:
                    h, rs = tok_sentence_pair(rng, n_refs)
                else:
                    h, rs = sentence_pair(rng, n_refs)
                # lines of a file: bleu.py strips them when reading
                hyps.append(h.rstrip())
                for r in range(n_refs):
                    refsets[r].append(rs[r].rstrip())
            (score, prec, bp, c, r), matches, totals = corpus_stats(hyps, refsets, bool(lc),
                                                                    tokenize)
            ratio = c / r if r else 0.0
            f.write('case %d lines %d refs %d lc %d width %d\n' % (case, n_lines, n_refs, lc,
                                                                  width))
            for i in range(n_lines):
                f.write('h %s\n' % esc(hyps[i]))
                for refs in refsets:
                    f.write('r %s\n' % esc(refs[i]))
            f.write('want %r %s %r %r %d %d %s %s\n' % (
                score, ' '.join(repr(p) for p in prec), bp, float(ratio), c, r,
                ' '.join(map(str, matches)), ' '.join(map(str, totals))))
            f.write('out %s\n' % run_cli(tmp, hyps, refsets, lc, width, tokenize))


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(20261124)
    tokenize_fixture(rng, os.path.join(OUT, 'tokenize.txt'), 500)
    corpus_fixture(rng, os.path.join(OUT, 'corpus.txt'), 300)
    # after the 13a fixtures, so that those stay as they were
    tokenize_none_fixture(rng, os.path.join(OUT, 'tokenize_none.txt'), 300)
    corpus_fixture(rng, os.path.join(OUT, 'corpus_none.txt'), 300, 'none')


if __name__ == '__main__':
    main()
