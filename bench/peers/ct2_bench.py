#!/usr/bin/env python3
"""ct2_bench.py - the CTranslate2 side of the peer comparison (bench/peers/run.sh pairs it
with build/bench_s2s on the same checkpoint, inputs, batches, beam and threads).

  .venv-peers/bin/python bench/peers/ct2_bench.py --ct2 build/peers/ct2-teacher \
      (-i SRC.ids | --text SRC.txt [--expect-ids SRC.ids]) [--threads 1] [--beam 4] \
      [--batch 1,32] [--max-len N] [--limit N] [--compute-type float32|int8] \
      [--no-greedy] [--outputs greedy.ids] [--beam-outputs beam.ids]

Inputs, limits and JSON lines are bench/bench_s2s.c's, with "impl": "ct2" and
"compute_type" added:
  - -i SRC.ids: one sentence per line as space-separated s2s source ids (bench_s2s
    --dump-ids); --text SRC.txt: raw text tokenized here exactly as s2s does (char and
    symbol tokenizers: bench/peers/s2s_ckpt.py; a tab ends the line, as in dump-ids; at most
    max_len - 1 tokens), and with --expect-ids the result must equal s2s's ids (exit 1 if
    not). Ids become CTranslate2 tokens through our vocabulary (the model's
    s2s_export.json), and </s> is appended unless the line ends with it (bench_s2s
    src_seq).
  - decoding: batches of consecutive lines (one translate_batch call each, so CTranslate2
    neither sorts nor regroups them), greedy (beam_size 1) and beam K, length penalty 1,
    min_decoding_length 0 (s2s may emit </s> first), max_decoding_length = --max-len
    (default: the checkpoint's max_len - 1, as bench_s2s), no length-ratio limit.
  - tokens = generated target tokens incl. </s> (return_end_token tells whether a
    hypothesis ended with </s>; one that hit the limit did not), as bench_s2s counts.
  - warm-up: the first max(batch, 4) sentences once, then the timed run over all of them.
  - threads: intra_threads = T, inter_threads = 1, and OMP_NUM_THREADS = T (CTranslate2's
    own OpenMP runtime; set before ctranslate2 is imported).
  - --outputs / --beam-outputs: output ids without </s>, one line per input, from the
    smallest batch size.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import s2s_ckpt  # noqa: E402

EOS = s2s_ckpt.EOS


def fail(msg):
    print("ct2_bench: %s" % msg, file=sys.stderr)
    sys.exit(1)


def read_ids(path):
    out = []
    with open(path) as f:
        for k, line in enumerate(f, 1):
            try:
                out.append([int(x) for x in line.split()])
            except ValueError:
                fail("%s line %d: not a line of integer ids" % (path, k))
    return out


def tokenize_text(path, tok, maxl, limit):
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if limit > 0 and len(out) >= limit:
                break
            line = line.rstrip("\r\n").split("\t", 1)[0]
            out.append(tok.encode(line)[:maxl])
    return out


def main():
    ap = argparse.ArgumentParser(description="CTranslate2 decoding benchmark on an exported s2s model.")
    ap.add_argument("--ct2", required=True, help="CTranslate2 model directory (export_ct2.py)")
    ap.add_argument("-i", "--input", help="source ids, one sentence per line")
    ap.add_argument("--text", help="source text, tokenized here as s2s does")
    ap.add_argument("--expect-ids", help="with --text: s2s's ids of the same lines, must match")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--batch", default="1,32")
    ap.add_argument("--max-len", type=int, default=0)
    ap.add_argument("--length-penalty", type=float, default=1.0)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--compute-type", default="float32", help="float32, int8, ... (CTranslate2 compute_type)")
    ap.add_argument("--no-greedy", action="store_true")
    ap.add_argument("--outputs")
    ap.add_argument("--beam-outputs")
    a = ap.parse_args()
    if (a.input is None) == (a.text is None):
        fail("give exactly one of -i SRC.ids and --text SRC.txt")
    if a.threads < 1:
        a.threads = 1
    os.environ["OMP_NUM_THREADS"] = str(a.threads)  # before CTranslate2 loads its OpenMP runtime
    try:
        import ctranslate2
    except ImportError:
        fail("cannot import ctranslate2 (run: bash scripts/install-deps.sh peers, then use .venv-peers/bin/python)")

    try:
        with open(os.path.join(a.ct2, "s2s_export.json"), encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        fail("%s: not a model written by export_ct2.py (%s)" % (a.ct2, e))
    cfg = info["config"]
    src_pieces, tgt_pieces = info["src_pieces"], info["tgt_pieces"]
    tgt_index = {p: i for i, p in enumerate(tgt_pieces)}
    maxl = cfg["max_len"] - 1

    if a.text:
        try:
            tok = s2s_ckpt.Tokenizer(info["src_tokenizer"], src_pieces, "source vocabulary")
        except s2s_ckpt.CheckpointError as e:
            fail(str(e))
        try:
            srcs = tokenize_text(a.text, tok, maxl, a.limit)
        except s2s_ckpt.CheckpointError as e:
            fail(str(e))
        if a.expect_ids:
            ref = read_ids(a.expect_ids)
            n = min(len(ref), len(srcs))
            if len(ref) < len(srcs) and not (a.limit and len(ref) >= a.limit):
                fail("%s has %d lines, %s %d" % (a.expect_ids, len(ref), a.text, len(srcs)))
            for k in range(n):
                if srcs[k] != ref[k]:
                    fail("line %d: tokenized here as %s, s2s gives %s" % (k + 1, srcs[k], ref[k]))
            print("ct2_bench: tokenization of %d lines equals s2s's" % n, file=sys.stderr)
    else:
        srcs = read_ids(a.input)
        if a.limit > 0:
            srcs = srcs[:a.limit]
    for k, s in enumerate(srcs):
        if not s or s[-1] != EOS:
            s.append(EOS)
        if len(s) > cfg["max_len"]:
            fail("line %d has %d tokens, the model's max_len is %d" % (k + 1, len(s), cfg["max_len"]))
        if any(x < 0 or x >= len(src_pieces) for x in s):
            fail("line %d: id outside the source vocabulary [0, %d)" % (k + 1, len(src_pieces)))
    if not srcs:
        fail("no input lines")
    toks = [[src_pieces[x] for x in s] for s in srcs]
    lim = a.max_len if a.max_len > 0 else maxl
    if lim > maxl:
        print("ct2_bench: --max-len %d capped at the checkpoint's max_len - 1 = %d" % (lim, maxl), file=sys.stderr)
        lim = maxl
    try:
        batches = sorted({int(x) for x in a.batch.split(",") if x.strip() and int(x) > 0})
    except ValueError:
        fail("bad --batch %s" % a.batch)

    try:
        tr = ctranslate2.Translator(a.ct2, device="cpu", compute_type=a.compute_type,
                                    inter_threads=1, intra_threads=a.threads)
    except (RuntimeError, ValueError) as e:
        fail("%s: %s" % (a.ct2, e))
    ctype = tr.compute_type

    def decode(n, bs, k):
        hyps = []
        for i in range(0, n, bs):
            res = tr.translate_batch(toks[i:min(i + bs, n)], beam_size=k, num_hypotheses=1,
                                     length_penalty=a.length_penalty, max_decoding_length=lim,
                                     min_decoding_length=0, return_end_token=True, max_batch_size=0)
            hyps.extend(r.hypotheses[0] for r in res)
        return hyps

    n = len(toks)
    for run, k in enumerate((1, a.beam)):
        if (run == 0 and a.no_greedy) or (run == 1 and k <= 1):
            continue
        for bi, bs in enumerate(batches):
            decode(min(n, max(bs, 4)), bs, k)  # warm-up
            t0 = time.perf_counter()
            hyps = decode(n, bs, k)
            dt = time.perf_counter() - t0
            ids, ntok = [], 0
            for h in hyps:
                ended = bool(h) and h[-1] == "</s>"
                body = h[:-1] if ended else h
                ntok += len(body) + (1 if ended else 0)
                ids.append([tgt_index[p] for p in body])
            print(json.dumps({"impl": "ct2", "compute_type": ctype, "threads": a.threads, "device": "cpu",
                              "mode": "greedy" if run == 0 else "beam", "batch": bs, "beam": k,
                              "sentences": n, "tokens": ntok, "seconds": round(dt, 6),
                              "tok_per_s": round(ntok / dt, 3)}), flush=True)
            out = a.outputs if run == 0 else a.beam_outputs
            if bi == 0 and out:
                with open(out, "w") as f:
                    for h in ids:
                        f.write(" ".join(str(x) for x in h) + "\n")


if __name__ == "__main__":
    main()
