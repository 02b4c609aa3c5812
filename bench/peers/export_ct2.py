#!/usr/bin/env python3
"""export_ct2.py - export an s2s Transformer checkpoint to a CTranslate2 model directory.

  .venv-peers/bin/python bench/peers/export_ct2.py -m models/g2p-teacher.safetensors -o build/peers/ct2-teacher

The s2s model (docs/MODEL.md) is exactly CTranslate2's TransformerSpec.from_config(
(Le, Ld), H, pre_norm=True, activation=relu|gelu):
  - embeddings scaled by sqrt(D) (CTranslate2's scale_embeddings, the default), then the
    sinusoidal position table added: we pass s2s's own table ([max_len, D], sin | cos
    halves, src/model.c) so both add the same floats;
  - pre-LayerNorm layers: self-attention LN (s2s ln1), cross-attention LN (ln2), FFN LN
    (ln3 in the decoder, ln2 in the encoder); final encoder / decoder LayerNorms
    (enc.ln, dec.ln); epsilon 1e-5 (config layer_norm_epsilon);
  - attention softmax(q k^T / sqrt(Dh)) (CTranslate2's default query scale); self-attention
    projections fused [q; k; v], cross-attention q then fused [k; v], then the output one;
  - relu (or exact-erf gelu) FFN;
  - tied embeddings: the decoder embedding and the output projection (no bias) are both
    tgt_emb.weight; the encoder embedding is src_emb.weight (tgt_emb.weight if shared);
  - vocabularies: our pieces in id order, so the ids agree (0 <pad>, 1 <s>, 2 </s>, 3 <unk>
    = CTranslate2's unk/bos/eos tokens and decoder start token <s>).
fp16 (or bf16) checkpoints are widened to fp32 (exact); the model is saved in float32
(compute_type int8 quantizes it when loaded). The softmax Transformer decoder only: a
recurrent (ssru/gru/lstm) or T2R decoder has no CTranslate2 equivalent and is refused.
Also writes s2s_export.json (source checkpoint, config, tokenizer kinds) beside the model.
"""
import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import s2s_ckpt  # noqa: E402


def fail(msg):
    print("export_ct2: %s" % msg, file=sys.stderr)
    sys.exit(1)


def build_spec(ck):
    import numpy as np
    from ctranslate2.specs import common_spec, transformer_spec

    c = ck.cfg
    if c.get("decoder", "transformer") != "transformer" or c.get("dec_attn", "softmax") != "softmax":
        fail("%s: decoder '%s' (dec_attn %s): only the softmax Transformer decoder has a CTranslate2 equivalent"
             % (ck.path, c.get("decoder"), c.get("dec_attn", "softmax")))
    if "enc_heads" in c or "enc_ff" in c:
        fail("%s: per-layer encoder widths (a NASH-pruned model): CTranslate2's spec has one width per "
             "model; padding the pruned heads/units back with zeros is not implemented here" % ck.path)
    if c.get("multi_exit"):
        fail("%s: a multi-exit (DEED) model: exporting its full-depth path is not implemented" % ck.path)
    act = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU}.get(c["activation"])
    if act is None:
        fail("activation %s" % c["activation"])
    D, H = c["d_model"], c["n_heads"]
    spec = transformer_spec.TransformerSpec.from_config(
        (c["enc_layers"], c["dec_layers"]), H, pre_norm=True, activation=act)
    t = ck.t
    pe = s2s_ckpt.position_table(c["max_len"], D)

    def lin(s, name, bias=True):
        s.weight = t(name + ".weight")
        if bias:
            s.bias = t(name + ".bias")

    def ln(s, name):
        s.gamma = t(name + ".weight")
        s.beta = t(name + ".bias")

    def fused(s, names):
        s.weight = np.concatenate([t(n + ".weight") for n in names], axis=0)
        s.bias = np.concatenate([t(n + ".bias") for n in names], axis=0)

    tgt_emb = t("tgt_emb.weight")
    src_emb = tgt_emb if c.get("share_src_emb", 0) else t("src_emb.weight")

    enc = spec.encoder
    enc.embeddings[0].weight = src_emb
    enc.scale_embeddings = True  # * sqrt(D)
    enc.position_encodings.encodings = pe
    ln(enc.layer_norm, "enc.ln")
    for i, L in enumerate(enc.layer):
        p = "enc.%d." % i
        ln(L.self_attention.layer_norm, p + "ln1")
        fused(L.self_attention.linear[0], [p + "attn.q", p + "attn.k", p + "attn.v"])
        lin(L.self_attention.linear[1], p + "attn.o")
        ln(L.ffn.layer_norm, p + "ln2")
        lin(L.ffn.linear_0, p + "fc1")
        lin(L.ffn.linear_1, p + "fc2")

    dec = spec.decoder
    dec.embeddings.weight = tgt_emb
    dec.scale_embeddings = True
    dec.position_encodings.encodings = pe
    ln(dec.layer_norm, "dec.ln")
    dec.projection.weight = tgt_emb  # tied output projection, no bias
    for i, L in enumerate(dec.layer):
        p = "dec.%d." % i
        ln(L.self_attention.layer_norm, p + "ln1")
        fused(L.self_attention.linear[0], [p + "self.q", p + "self.k", p + "self.v"])
        lin(L.self_attention.linear[1], p + "self.o")
        ln(L.attention.layer_norm, p + "ln2")
        lin(L.attention.linear[0], p + "cross.q")
        fused(L.attention.linear[1], [p + "cross.k", p + "cross.v"])
        lin(L.attention.linear[2], p + "cross.o")
        ln(L.ffn.layer_norm, p + "ln3")
        lin(L.ffn.linear_0, p + "fc1")
        lin(L.ffn.linear_1, p + "fc2")

    # every weight of the checkpoint must have been used (a tensor left over means a
    # config this exporter does not understand)
    used = {"tgt_emb.weight", "src_emb.weight"}
    for pre, n in (("enc", c["enc_layers"]), ("dec", c["dec_layers"])):
        used |= {"%s.ln.weight" % pre, "%s.ln.bias" % pre}
        subs = ["ln1", "ln2", "fc1", "fc2"] + (["attn.q", "attn.k", "attn.v", "attn.o"] if pre == "enc" else
                                              ["ln3", "self.q", "self.k", "self.v", "self.o",
                                               "cross.q", "cross.k", "cross.v", "cross.o"])
        for i in range(n):
            for s in subs:
                used |= {"%s.%d.%s.weight" % (pre, i, s), "%s.%d.%s.bias" % (pre, i, s)}
    extra = sorted(set(ck.tensors) - used)
    if extra:
        fail("%s: tensors not mapped to CTranslate2: %s" % (ck.path, ", ".join(extra[:5])))

    spec.config.layer_norm_epsilon = 1e-5
    spec.register_source_vocabulary(ck.src_tok.pieces)
    spec.register_target_vocabulary(ck.tgt_tok.pieces)
    return spec


def main():
    ap = argparse.ArgumentParser(description="Export an s2s Transformer checkpoint to CTranslate2.")
    ap.add_argument("-m", "--model", required=True, help="s2s .safetensors checkpoint")
    ap.add_argument("-o", "--out", required=True, help="CTranslate2 model directory to write (replaced)")
    a = ap.parse_args()
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        fail("cannot import ctranslate2 (run: bash scripts/install-deps.sh peers, then use .venv-peers/bin/python)")
    try:
        ck = s2s_ckpt.load(a.model)
    except (OSError, s2s_ckpt.CheckpointError, KeyError, ValueError) as e:
        fail(str(e))
    spec = build_spec(ck)
    try:
        spec.validate()
    except ValueError as e:
        fail("CTranslate2 rejected the spec: %s" % e)
    spec.optimize(quantization="float32")
    # write into a temporary directory, then rename: a half-written model never has the final name
    tmp = a.out.rstrip("/") + ".tmp.%d" % os.getpid()
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    spec.save(tmp)
    c = ck.cfg
    info = {"source": os.path.abspath(a.model), "config": c,
            "dtypes": sorted(set(v for k, v in ck.dtypes.items() if not k.startswith("tokenizer."))),
            "src_tokenizer": ck.src_tok.kind, "tgt_tokenizer": ck.tgt_tok.kind,
            "src_pieces": ck.src_tok.pieces, "tgt_pieces": ck.tgt_tok.pieces}
    with open(os.path.join(tmp, "s2s_export.json"), "w") as f:
        json.dump(info, f, ensure_ascii=False, indent=1)
    if os.path.isdir(a.out):
        shutil.rmtree(a.out)
    os.rename(tmp, a.out)
    print("export_ct2: wrote %s (D=%d H=%d F=%d, %d+%d layers, vocab %d/%d, weights %s -> float32)"
          % (a.out, c["d_model"], c["n_heads"], c["d_ff"], c["enc_layers"], c["dec_layers"], c["src_vocab"],
             c["tgt_vocab"], "/".join(info["dtypes"])), file=sys.stderr)


if __name__ == "__main__":
    main()
