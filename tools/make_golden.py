#!/usr/bin/python3
"""Write the golden test vectors tests/data/golden_tiny*.safetensors for the C engine.

  /usr/bin/python3 tools/make_golden.py [--outdir tests/data]

Each file holds a tiny random model (all weights under their docs/MODEL.md names, F32),
a batch, the reference forward results, gradients and a 10-step AdamW trajectory, all
computed in float32 with tools/torch_ref.py (and cross-checked against float64).

Tensors (B=3 sentences, Ts=5, Tt=6):
  <weights>               F32   every model weight, initial values
  golden.src              I32 [B,Ts]   source ids, padded with 0, each ends with </s>=2
  golden.src_len          I32 [B]      5,3,4
  golden.tgt_in           I32 [B,Tt]   <s>=1 t1 .. tn, padded with 0
  golden.tgt_out          I32 [B,Tt]   t1 .. tn </s>=2, padded with 0
  golden.enc_out          F32 [B,Ts,D] encoder output after enc.ln (pad rows included)
  golden.logits           F32 [B,Tt,Vt] decoder logits (pad rows included)
  golden.loss             F32 [1]      label-smoothed loss (eps 0.1) at the initial weights
  golden.grad_norm        F32 [1]      global L2 norm of all gradients (before clipping)
  grad.<name>             F32          d loss / d weight at the initial weights (NOT clipped)
  golden.train_losses     F32 [10]     loss of training steps 1..10 (before each update)
  golden.train_grad_norms F32 [10]     pre-clipping gradient norm of steps 1..10
  golden.train_lr         F32 [10]     learning rate used by steps 1..10
  golden.final_tgt_emb    F32 [Vt,D]   tgt_emb.weight after the 10 updates
__metadata__: s2s.config (JSON, MODEL.md keys), s2s.format_version "1",
              golden.hparams (JSON: lr, warmup, weight_decay, clip, label_smoothing, betas,
              eps, steps, dropout, init), golden.tolerance (JSON: float64-vs-float32 diffs).
"""
import argparse
import copy
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref as R  # noqa: E402

HP = {"lr": 1e-3, "warmup": 4, "weight_decay": 0.01, "clip": 1.0, "label_smoothing": 0.1,
      "betas": [0.9, 0.98], "eps": 1e-9, "steps": 10, "dropout": 0.0}

VARIANTS = [
    ("golden_tiny.safetensors", 1234,
     {"d_model": 12, "n_heads": 2, "d_ff": 20, "enc_layers": 2, "dec_layers": 2,
      "src_vocab": 13, "tgt_vocab": 11, "activation": "relu", "share_src_emb": 0,
      "max_len": 16, "decoder": "transformer"}),
    ("golden_tiny_gelu_shared.safetensors", 4321,
     {"d_model": 12, "n_heads": 3, "d_ff": 20, "enc_layers": 2, "dec_layers": 2,
      "src_vocab": 11, "tgt_vocab": 11, "activation": "gelu", "share_src_emb": 1,
      "max_len": 16, "decoder": "transformer"}),
]

SRC_LENS = [5, 3, 4]   # incl. </s>
TGT_LENS = [4, 2, 5]   # content tokens; Tt = max + 1 = 6


def make_batch(g, cfg):
    src = [[int(x) for x in torch.randint(3, cfg["src_vocab"], (n - 1,), generator=g)] + [R.EOS]
           for n in SRC_LENS]
    tgt = [[int(x) for x in torch.randint(3, cfg["tgt_vocab"], (n,), generator=g)] for n in TGT_LENS]
    s, sl = R.make_src_batch(src)
    tin, tout = R.make_tgt_batch(tgt)
    return s, sl, tin, tout


def compute(model, batch, hp):
    """All golden quantities for `model` (its dtype) -> dict of tensors (same dtype)."""
    model = copy.deepcopy(model)
    model.train()  # dropout is 0: identical to eval
    src, sl, tin, tout = batch
    out = {}
    enc, kmask = model.encode(src, sl)
    logits = model.decode(tin, enc, kmask)
    loss = R.s2s_loss(logits, tout, hp["label_smoothing"])
    model.zero_grad(set_to_none=True)
    loss.backward()
    out["enc_out"] = enc.detach()
    out["logits"] = logits.detach()
    out["loss"] = loss.detach().reshape(1)
    out["grads"] = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    out["grad_norm"] = torch.norm(torch.stack([g.norm() for g in out["grads"].values()])).reshape(1)
    # hand-written loss, to pin down torch's label-smoothing convention
    lp = torch.log_softmax(logits, -1)
    m = tout != R.PAD
    nll = -lp.gather(-1, tout[..., None])[..., 0]
    smooth = -lp.mean(-1)
    eps = hp["label_smoothing"]
    manual = (((1 - eps) * nll + eps * smooth) * m).sum() / m.sum()
    out["manual_loss"] = manual.detach().reshape(1)
    # training trajectory
    model.zero_grad(set_to_none=True)
    opt, sched = R.make_optimizer(model, hp["lr"], hp["warmup"], hp["weight_decay"],
                                  tuple(hp["betas"]), hp["eps"], foreach=False)
    losses, norms, lrs = [], [], []
    for _ in range(hp["steps"]):
        lrs.append(opt.param_groups[0]["lr"])
        l, gn = R.train_step(model, opt, sched, batch, hp["label_smoothing"], hp["clip"])
        losses.append(l)
        norms.append(gn)
    out["train_losses"] = torch.stack(losses)
    out["train_grad_norms"] = torch.stack(norms)
    out["train_lr"] = torch.tensor(lrs, dtype=torch.float64)
    out["final_tgt_emb"] = model.tgt_emb.weight.detach().clone()
    out["final"] = {n: p.detach().clone() for n, p in model.named_parameters()}
    return out


def maxdiff(a, b):
    return (a.double() - b.double()).abs().max().item()


def build(outdir, fname, seed, cfg, hp):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = R.S2STransformer(cfg, dropout=hp["dropout"])
    R.random_init_(model, g, emb_std=0.3)
    batch = make_batch(g, cfg)
    src, sl, tin, tout = batch

    r32 = compute(model, batch, hp)
    r64 = compute(copy.deepcopy(model).double(), batch, hp)

    # expected lr schedule
    exp_lr = [hp["lr"] * R.lr_factor(s, hp["warmup"]) for s in range(1, hp["steps"] + 1)]
    assert all(abs(a - b) < 1e-15 for a, b in zip(r32["train_lr"].tolist(), exp_lr)), r32["train_lr"]
    assert abs(r32["manual_loss"].item() - r32["loss"].item()) < 1e-6, (r32["manual_loss"], r32["loss"])

    tol = {
        "enc_out": maxdiff(r32["enc_out"], r64["enc_out"]),
        "logits": maxdiff(r32["logits"], r64["logits"]),
        "loss": maxdiff(r32["loss"], r64["loss"]),
        "grad": max(maxdiff(r32["grads"][n], r64["grads"][n]) for n in r32["grads"]),
        "train_losses": maxdiff(r32["train_losses"], r64["train_losses"]),
        "final_tgt_emb": maxdiff(r32["final_tgt_emb"], r64["final_tgt_emb"]),
        # attention key biases get an analytically zero gradient (softmax is shift-invariant),
        # so their fp32 gradient is rounding noise that Adam amplifies to +-lr steps; they do
        # not influence any output. Checked separately.
        "final_all_but_k_bias": max(maxdiff(r32["final"][n], r64["final"][n]) for n in r32["final"]
                                    if not n.endswith(".k.bias")),
        "grad_k_bias": max(r32["grads"][n].abs().max().item() for n in r32["grads"] if n.endswith(".k.bias")),
        "grad_rel_but_k_bias": max(maxdiff(r32["grads"][n], r64["grads"][n]) /
                                   max(r64["grads"][n].abs().max().item(), 1e-30)
                                   for n in r32["grads"] if not n.endswith(".k.bias")),
    }
    print("== %s  (seed %d)" % (fname, seed))
    print("config:", json.dumps(cfg))
    print("float32 vs float64 max |diff|:", json.dumps({k: float("%.3g" % v) for k, v in tol.items()}))
    bad = [k for k in ("enc_out", "logits", "loss", "grad", "train_losses", "final_tgt_emb", "final_all_but_k_bias",
                                "grad_k_bias")
           if tol[k] > 1e-5]
    if bad:
        raise SystemExit("float32 golden is dominated by rounding: %s" % bad)

    tensors = {}
    for n, p in model.state_dict().items():
        tensors[n] = p.detach().float()
    tensors["golden.src"] = src.to(torch.int32)
    tensors["golden.src_len"] = sl.to(torch.int32)
    tensors["golden.tgt_in"] = tin.to(torch.int32)
    tensors["golden.tgt_out"] = tout.to(torch.int32)
    tensors["golden.enc_out"] = r32["enc_out"].float()
    tensors["golden.logits"] = r32["logits"].float()
    tensors["golden.loss"] = r32["loss"].float()
    tensors["golden.grad_norm"] = r32["grad_norm"].float()
    for n, gr in r32["grads"].items():
        tensors["grad." + n] = gr.float()
    tensors["golden.train_losses"] = r32["train_losses"].float()
    tensors["golden.train_grad_norms"] = r32["train_grad_norms"].float()
    tensors["golden.train_lr"] = r32["train_lr"].float()
    tensors["golden.final_tgt_emb"] = r32["final_tgt_emb"].float()

    hpj = dict(hp)
    hpj["init"] = "torch_ref.random_init_(emb_std=0.3), seed %d" % seed
    meta = {"s2s.config": json.dumps({k: cfg[k] for k in R.CONFIG_KEYS}),
            "s2s.format_version": "1",
            "golden.hparams": json.dumps(hpj),
            "golden.tolerance": json.dumps({k: float("%.3g" % v) for k, v in tol.items()})}
    path = os.path.join(outdir, fname)
    R.save_safetensors(path, tensors, meta)

    # ---- read back and verify ----
    back, bmeta = R.load_safetensors(path)
    assert set(back) == set(tensors), set(back) ^ set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    assert bmeta == meta
    m2, cfg2, tok = R.load_checkpoint(path)
    assert cfg2 == cfg and tok == {}
    with torch.no_grad():
        lg = m2(back["golden.src"].long(), back["golden.src_len"].long(), back["golden.tgt_in"].long())
    assert maxdiff(lg, back["golden.logits"]) == 0.0

    size = os.path.getsize(path)
    print("wrote %s: %d bytes, %d tensors" % (path, size, len(tensors)))
    print("src     ", src.tolist(), "len", sl.tolist())
    print("tgt_in  ", tin.tolist())
    print("tgt_out ", tout.tolist())
    for k in ("enc_out", "logits"):
        t = r32[k]
        print("%-8s min %.5f max %.5f mean|.| %.5f" % (k, t.min(), t.max(), t.abs().mean()))
    gall = torch.cat([g.reshape(-1) for g in r32["grads"].values()])
    print("grads    min %.6g max %.6g  grad_norm %.6f" % (gall.min(), gall.max(), r32["grad_norm"].item()))
    print("loss     %.7f" % r32["loss"].item())
    print("train_losses", " ".join("%.6f" % x for x in r32["train_losses"].tolist()))
    print("train_grad_norms", " ".join("%.4f" % x for x in r32["train_grad_norms"].tolist()))
    print("train_lr", " ".join("%.6g" % x for x in r32["train_lr"].tolist()))
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outdir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data"))
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    torch.set_num_threads(1)
    for fname, seed, cfg in VARIANTS:
        build(a.outdir, fname, seed, cfg, HP)


if __name__ == "__main__":
    main()
