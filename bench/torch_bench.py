#!/usr/bin/python3
"""PyTorch baseline benchmark for s2s checkpoints (eager torch, tools/torch_ref.py).

  /usr/bin/python3 bench/torch_bench.py -m MODEL.safetensors -i SRC.ids \
      [--threads 4] [--beam 4] [--batch 1,32] [--outputs greedy.ids] \
      [--train-src S.ids --train-tgt T.ids --tokens-per-batch 4096] [--device cuda]

Input files hold one sentence per line as space-separated token ids. A source line gets
</s> (2) appended unless it already ends with 2; a target line may carry a leading <s>
and/or trailing </s>, which are stripped (tgt_in = <s> t1..tn, tgt_out = t1..tn </s>).

One JSON line per measurement on stdout:
  {"impl":"torch","mode":"greedy"|"beam"|"train","batch":B,"beam":K,"threads":T,
   "tokens":N,"seconds":S,"tok_per_s":N/S, ...extra fields}
decode tokens = generated target tokens incl. </s>; train tokens = non-pad target tokens
(tgt_out, incl. </s>) processed by the timed steps (forward + backward + clip + AdamW).
Decoding batches are consecutive input lines in file order (no sorting); decoding stops
at </s> or after --max-len generated tokens (default: the checkpoint's max_len).
--outputs / --beam-outputs write the decoded ids (no <s>/</s>), one line per input line,
from the run with the smallest batch size.
"""
import argparse
import json
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import torch_ref as R  # noqa: E402


def read_ids(path):
    out = []
    with open(path) as f:
        for line in f:
            out.append([int(x) for x in line.split()])
    return out


def src_seq(ids):
    return list(ids) if ids and ids[-1] == R.EOS else list(ids) + [R.EOS]


def tgt_seq(ids):
    ids = list(ids)
    if ids and ids[0] == R.BOS:
        ids = ids[1:]
    if ids and ids[-1] == R.EOS:
        ids = ids[:-1]
    return ids


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def decode_all(model, srcs, batch, beam, max_len, lp, dev):
    hyps = []
    for i in range(0, len(srcs), batch):
        s, sl = R.make_src_batch(srcs[i:i + batch], dev)
        if beam <= 1:
            hyps.extend(R.greedy_decode(model, s, sl, max_len=max_len))
        else:
            hyps.extend(R.beam_decode(model, s, sl, beam=beam, max_len=max_len, length_penalty=lp))
    return hyps


def n_generated(hyps, max_len):
    # a hypothesis shorter than max_len ended with </s> (which is not returned)
    return sum(len(h) + (1 if len(h) < max_len else 0) for h in hyps)


def write_ids(path, hyps):
    with open(path, "w") as f:
        for h in hyps:
            f.write(" ".join(str(t) for t in h) + "\n")


def make_train_batches(srcs, tgts, tokens_per_batch, seed=1):
    """Sort by length, pack while B * max(Ts, Tt) <= tokens_per_batch, shuffle the batches."""
    order = sorted(range(len(srcs)), key=lambda i: (len(srcs[i]), len(tgts[i]) + 1))
    batches, cur, mx = [], [], 0
    for i in order:
        m = max(mx, len(srcs[i]), len(tgts[i]) + 1)
        if cur and (len(cur) + 1) * m > tokens_per_batch:
            batches.append(cur)
            cur, m = [], max(len(srcs[i]), len(tgts[i]) + 1)
        cur.append(i)
        mx = m
    if cur:
        batches.append(cur)
    random.Random(seed).shuffle(batches)
    return batches


def emit(rec):
    print(json.dumps(rec), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True, help="s2s safetensors checkpoint")
    ap.add_argument("-i", "--input", help="source id file for decoding")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--beam", type=int, default=4, help="beam size for the beam measurements (0: skip)")
    ap.add_argument("--batch", default="1,32", help="comma-separated decoding batch sizes")
    ap.add_argument("--max-len", type=int, default=0, help="max generated tokens incl. </s> (0: config max_len)")
    ap.add_argument("--length-penalty", type=float, default=1.0)
    ap.add_argument("--limit", type=int, default=0, help="decode only the first N input lines")
    ap.add_argument("--no-greedy", action="store_true")
    ap.add_argument("--outputs", help="write greedy outputs (ids) here")
    ap.add_argument("--beam-outputs", help="write beam outputs (ids) here")
    ap.add_argument("--train-src")
    ap.add_argument("--train-tgt")
    ap.add_argument("--tokens-per-batch", type=int, default=4096)
    ap.add_argument("--train-steps", type=int, default=10, help="timed training steps")
    ap.add_argument("--train-warmup", type=int, default=2, help="untimed training steps before")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=4000, help="LR warmup steps")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.manual_seed(0)
    model, cfg, _ = R.load_checkpoint(a.model, device=dev)
    max_len = a.max_len or int(cfg.get("max_len", 256))
    base = {"impl": "torch", "threads": a.threads, "device": str(dev) if dev.type != "cuda"
            else torch.cuda.get_device_name(dev)}

    if a.input:
        srcs = [src_seq(x) for x in read_ids(a.input)]
        if a.limit:
            srcs = srcs[:a.limit]
        batches = sorted({int(x) for x in a.batch.split(",") if x.strip()})
        runs = []
        if not a.no_greedy:
            runs.append(("greedy", 1))
        if a.beam and a.beam > 1:
            runs.append(("beam", a.beam))
        for mode, k in runs:
            for bs in batches:
                # warm-up: one batch (at least a few sentences)
                decode_all(model, srcs[:max(bs, 4)], bs, k, max_len, a.length_penalty, dev)
                sync(dev)
                t0 = time.perf_counter()
                hyps = decode_all(model, srcs, bs, k, max_len, a.length_penalty, dev)
                sync(dev)
                dt = time.perf_counter() - t0
                ntok = n_generated(hyps, max_len)
                emit(dict(base, mode=mode, batch=bs, beam=k, sentences=len(srcs), tokens=ntok,
                          seconds=round(dt, 6), tok_per_s=round(ntok / dt, 3)))
                if bs == batches[0]:
                    out = a.outputs if mode == "greedy" else a.beam_outputs
                    if out:
                        write_ids(out, hyps)

    if a.train_src or a.train_tgt:
        if not (a.train_src and a.train_tgt):
            ap.error("--train-src and --train-tgt go together")
        ts = [src_seq(x) for x in read_ids(a.train_src)]
        tt = [tgt_seq(x) for x in read_ids(a.train_tgt)]
        if len(ts) != len(tt):
            ap.error("train files differ in line count")
        bidx = make_train_batches(ts, tt, a.tokens_per_batch)
        data = []
        for b in bidx:
            s, sl = R.make_src_batch([ts[i] for i in b], dev)
            tin, tout = R.make_tgt_batch([tt[i] for i in b], dev)
            data.append(((s, sl, tin, tout), sum(len(tt[i]) + 1 for i in b),
                         sum(len(ts[i]) for i in b), len(b)))
        model.dropout = a.dropout
        opt, sched = R.make_optimizer(model, a.lr, a.warmup, a.weight_decay,
                                      foreach=(dev.type == "cuda") or None)
        step = 0

        def one():
            nonlocal step
            d = data[step % len(data)]
            step += 1
            l, _ = R.train_step(model, opt, sched, d[0], a.label_smoothing, a.clip)
            return d, l

        for _ in range(a.train_warmup):
            one()
        sync(dev)
        ntok = nsrc = nsent = 0
        t0 = time.perf_counter()
        last = None
        for _ in range(a.train_steps):
            d, last = one()
            ntok += d[1]
            nsrc += d[2]
            nsent += d[3]
        sync(dev)
        dt = time.perf_counter() - t0
        emit(dict(base, mode="train", batch=round(nsent / max(a.train_steps, 1)), beam=0, tokens=ntok,
                  seconds=round(dt, 6), tok_per_s=round(ntok / dt, 3), src_tokens=nsrc,
                  steps=a.train_steps, tokens_per_batch=a.tokens_per_batch,
                  last_loss=round(float(last), 5) if last is not None else None))


if __name__ == "__main__":
    main()
