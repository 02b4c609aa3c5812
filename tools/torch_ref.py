#!/usr/bin/python3
"""PyTorch reference implementation of the s2s Transformer (docs/MODEL.md).

Run with Debian's interpreter (/usr/bin/python3, python3-torch 1.13, CPU or CUDA).

  model = S2STransformer(config)           # parameter names == safetensors names
  model, config, tok = load_checkpoint(p)  # s2s safetensors checkpoint
  save_safetensors(path, {name: tensor}, {key: str})
  loss = s2s_loss(logits, tgt_out, label_smoothing)
  opt, sched = make_optimizer(model, lr, warmup, weight_decay)
  loss, gnorm = train_step(model, opt, sched, batch, label_smoothing, clip)
  greedy_decode(model, src, src_len, max_len)      -> list of id lists
  beam_decode(model, src, src_len, beam, max_len)  -> list of id lists

`python3 tools/torch_ref.py` runs the self tests (incremental vs. full decoding,
beam 1 == greedy, safetensors round trip).

Decoding conventions (the C side must match them for output comparisons):
  * generation starts from <s> (1) at position 0 and stops at </s> (2) or after
    `max_len` generated tokens (</s> included); returned sequences contain neither
    <s> nor </s>.
  * greedy: argmax of the logits, ties -> lowest id.
  * beam: scores are sums of log_softmax(logits); per step the top 2K candidates of
    the K*V (beam x vocab) expansions are taken; a </s> candidate among the first K
    of them is finished with score / (length incl. </s>) ** length_penalty; the first K
    non-</s> candidates form the next beam; a sentence is done when it has K finished
    hypotheses (or at max_len, when the live beams are finished without </s>).
    The result is the finished hypothesis with the best normalized score.
"""
import json
import math
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, BOS, EOS, UNK = 0, 1, 2, 3
CONFIG_KEYS = ("d_model", "n_heads", "d_ff", "enc_layers", "dec_layers", "src_vocab",
               "tgt_vocab", "activation", "share_src_emb", "max_len", "decoder")

# ----------------------------------------------------------------------------
# safetensors (by hand; no dependency on the `safetensors` package)
# ----------------------------------------------------------------------------
_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}


def save_safetensors(path, tensors, metadata=None):
    """Write {name: tensor} (+ metadata {str: str}) as safetensors.
    Tensors are laid out by element size (largest first), then in dict order; the header is padded with spaces so
    that the data buffer starts at a multiple of 8."""
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("safetensors metadata must be str -> str (%r)" % (k,))
        header["__metadata__"] = dict(metadata)
    blobs = []
    off = 0
    # lay out by element size, largest first (stable), so every tensor is aligned to its
    # element size (like the official writer and src/safetensors.c)
    items = sorted(tensors.items(), key=lambda kv: -kv[1].element_size())
    for name, t in items:
        t = t.detach().to("cpu").contiguous()
        if t.dtype not in _ST_NAMES:
            raise TypeError("unsupported dtype %s for %s" % (t.dtype, name))
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[name] = {"dtype": _ST_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """Read a safetensors file -> (dict name -> tensor (CPU), metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: too short for safetensors" % path)
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError("%s: header length %d out of range" % (path, n))
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    buf = data[8 + n:]
    out = {}
    for name, info in header.items():
        dt = _ST_DTYPES[info["dtype"]]
        a, b = info["data_offsets"]
        if not (0 <= a <= b <= len(buf)):
            raise ValueError("%s: bad data_offsets for %s" % (path, name))
        shape = info["shape"]
        raw = bytearray(buf[a:b])
        if dt == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16) if raw else torch.empty(0, dtype=dt)
        else:
            t = torch.frombuffer(raw, dtype=dt) if raw else torch.empty(0, dtype=dt)
        numel = 1
        for s in shape:
            numel *= s
        if t.numel() != numel:
            raise ValueError("%s: size mismatch for %s" % (path, name))
        out[name] = t.reshape(shape).clone()
    return out, meta


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------
def sinusoidal_pe(n, d, dtype=torch.float32, device=None):
    """PE[pos, j] = sin(pos*w_j) (j < D/2), cos(pos*w_{j-D/2}) (j >= D/2),
    w_j = exp(-j ln(10000) / (D/2 - 1)); computed in float64, then cast."""
    half = d // 2
    j = torch.arange(half, dtype=torch.float64)
    w = torch.exp(-j * math.log(10000.0) / (half - 1))
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    pe = torch.cat([torch.sin(pos * w), torch.cos(pos * w)], dim=1)
    return pe.to(dtype=dtype, device=device)


class MHA(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.dh = d // h
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)

    def split(self, x):  # [B, T, D] -> [B, H, T, Dh]
        b, t, _ = x.shape
        return x.view(b, t, self.h, self.dh).transpose(1, 2)

    def attend(self, q, k, v, mask):
        """q [B,H,Tq,Dh], k/v [B,H,Tk,Dh]; mask: bool, True = masked, broadcastable to
        [B,H,Tq,Tk] (or None). Returns [B, Tq, D] after the output projection."""
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.dh))
        if mask is not None:
            s = s.masked_fill(mask, float("-inf"))
        p = torch.softmax(s, dim=-1)
        a = torch.matmul(p, v)
        b, h, tq, dh = a.shape
        return self.o(a.transpose(1, 2).reshape(b, tq, h * dh))

    def forward(self, a, b, mask):
        return self.attend(self.split(self.q(a)), self.split(self.k(b)), self.split(self.v(b)), mask)


class EncLayer(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = MHA(d, h)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, f)
        self.fc2 = nn.Linear(f, d)


class DecLayer(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.self = MHA(d, h)          # safetensors name dec.{i}.self.*
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.cross = MHA(d, h)
        self.ln3 = nn.LayerNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, f)
        self.fc2 = nn.Linear(f, d)


class S2STransformer(nn.Module):
    """state_dict() names are exactly the safetensors names of docs/MODEL.md."""

    def __init__(self, config, dropout=0.0):
        super().__init__()
        cfg = dict(config)
        if cfg.get("decoder", "transformer") != "transformer":
            raise ValueError("torch_ref supports decoder=transformer only, got %r" % cfg.get("decoder"))
        self.config = cfg
        d, h, f = cfg["d_model"], cfg["n_heads"], cfg["d_ff"]
        if d % h != 0 or d % 2 != 0 or d < 4:
            raise ValueError("bad d_model/n_heads")
        self.d, self.h, self.f = d, h, f
        self.share_src_emb = int(cfg.get("share_src_emb", 0))
        if self.share_src_emb and cfg["src_vocab"] != cfg["tgt_vocab"]:
            raise ValueError("share_src_emb needs src_vocab == tgt_vocab")
        act = cfg.get("activation", "relu")
        if act == "relu":
            self.act = F.relu
        elif act == "gelu":
            self.act = lambda x: F.gelu(x)  # exact erf GELU
        else:
            raise ValueError("activation %r" % act)
        self.dropout = dropout
        self.tgt_emb = nn.Embedding(cfg["tgt_vocab"], d)
        if not self.share_src_emb:
            self.src_emb = nn.Embedding(cfg["src_vocab"], d)
        enc = {str(i): EncLayer(d, h, f) for i in range(cfg["enc_layers"])}
        enc["ln"] = nn.LayerNorm(d, eps=1e-5)
        self.enc = nn.ModuleDict(enc)
        dec = {str(i): DecLayer(d, h, f) for i in range(cfg["dec_layers"])}
        dec["ln"] = nn.LayerNorm(d, eps=1e-5)
        self.dec = nn.ModuleDict(dec)
        self.n_enc = cfg["enc_layers"]
        self.n_dec = cfg["dec_layers"]
        self.max_len = int(cfg.get("max_len", 256))
        self._pe = None
        self.reset_parameters()

    # MODEL.md init: Linear/embedding weights N(0, 0.02), biases 0, LN weight 1 / bias 0.
    def reset_parameters(self, std=0.02):
        for name, p in self.named_parameters():
            with torch.no_grad():
                if p.dim() == 2:
                    p.normal_(0.0, std)
                elif name.endswith(".weight"):  # LayerNorm gain
                    p.fill_(1.0)
                else:
                    p.zero_()

    def pe(self, n, like):
        if self._pe is None or self._pe.shape[0] < n or self._pe.dtype != like.dtype or self._pe.device != like.device:
            self._pe = sinusoidal_pe(max(n, self.max_len), self.d, like.dtype, like.device)
        return self._pe[:n]

    def src_embedding(self):
        return self.tgt_emb if self.share_src_emb else self.src_emb

    def _drop(self, x):
        return F.dropout(x, self.dropout, self.training) if self.dropout > 0 else x

    def _ffn(self, layer, x):
        return layer.fc2(self.act(layer.fc1(x)))

    @staticmethod
    def src_pad_mask(src_len, ts):
        """[B, Ts] bool, True at padded key positions (pos >= src_len)."""
        return torch.arange(ts, device=src_len.device)[None, :] >= src_len[:, None]

    # ---- batched forward -------------------------------------------------
    def encode(self, src, src_len):
        """src [B,Ts] (long), src_len [B] -> (enc [B,Ts,D], key mask [B,1,1,Ts] bool)."""
        ts = src.shape[1]
        kmask = self.src_pad_mask(src_len.to(src.device), ts)[:, None, None, :]
        emb = self.src_embedding().weight
        x = F.embedding(src, emb) * math.sqrt(self.d) + self.pe(ts, emb)
        x = self._drop(x)
        for i in range(self.n_enc):
            L = self.enc[str(i)]
            a = L.ln1(x)
            x = x + self._drop(L.attn(a, a, kmask))
            x = x + self._drop(self._ffn(L, L.ln2(x)))
        return self.enc["ln"](x), kmask

    def decode(self, tgt_in, enc, kmask):
        """Teacher-forced decoder: tgt_in [B,Tt] -> logits [B,Tt,Vt]."""
        tt = tgt_in.shape[1]
        w = self.tgt_emb.weight
        y = F.embedding(tgt_in, w) * math.sqrt(self.d) + self.pe(tt, w)
        y = self._drop(y)
        causal = torch.ones(tt, tt, dtype=torch.bool, device=y.device).triu(1)  # True above diag
        for i in range(self.n_dec):
            L = self.dec[str(i)]
            a = L.ln1(y)
            y = y + self._drop(L.self(a, a, causal))
            y = y + self._drop(L.cross(L.ln2(y), enc, kmask))
            y = y + self._drop(self._ffn(L, L.ln3(y)))
        return F.linear(self.dec["ln"](y), w)

    def forward(self, src, src_len, tgt_in):
        enc, kmask = self.encode(src, src_len)
        return self.decode(tgt_in, enc, kmask)

    # ---- incremental decoding ---------------------------------------------
    def init_cache(self, enc, kmask):
        """Cross-attention K/V are computed once; self-attention K/V grow per step."""
        cache = {"kmask": kmask, "layers": []}
        for i in range(self.n_dec):
            L = self.dec[str(i)]
            cache["layers"].append({
                "ck": L.cross.split(L.cross.k(enc)), "cv": L.cross.split(L.cross.v(enc)),
                "sk": None, "sv": None})
        return cache

    @staticmethod
    def reorder_cache(cache, idx):
        """Select rows `idx` (LongTensor) of every cached tensor."""
        cache["kmask"] = cache["kmask"].index_select(0, idx)
        for c in cache["layers"]:
            for k in ("ck", "cv", "sk", "sv"):
                if c[k] is not None:
                    c[k] = c[k].index_select(0, idx)

    @staticmethod
    def reorder_self_cache(cache, idx):
        for c in cache["layers"]:
            c["sk"] = c["sk"].index_select(0, idx)
            c["sv"] = c["sv"].index_select(0, idx)

    def decode_step(self, tok, pos, cache):
        """tok [N] (long) at position `pos` -> logits [N, Vt]; appends to the cache."""
        w = self.tgt_emb.weight
        y = (F.embedding(tok, w) * math.sqrt(self.d) + self.pe(pos + 1, w)[pos])[:, None, :]
        for i in range(self.n_dec):
            L = self.dec[str(i)]
            c = cache["layers"][i]
            a = L.ln1(y)
            q = L.self.split(L.self.q(a))
            k = L.self.split(L.self.k(a))
            v = L.self.split(L.self.v(a))
            if c["sk"] is not None:
                k = torch.cat([c["sk"], k], dim=2)
                v = torch.cat([c["sv"], v], dim=2)
            c["sk"], c["sv"] = k, v
            y = y + L.self.attend(q, k, v, None)
            q = L.cross.split(L.cross.q(L.ln2(y)))
            y = y + L.cross.attend(q, c["ck"], c["cv"], cache["kmask"])
            y = y + self._ffn(L, L.ln3(y))
        return F.linear(self.dec["ln"](y[:, 0]), w)


# ----------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------
def load_checkpoint(path, device="cpu", dtype=torch.float32):
    """-> (model (eval mode), config dict, {"src": bytes, "tgt": bytes} tokenizer blobs).
    Tensors that are not model weights (tokenizer.*, golden.*, grad.*) are ignored."""
    tensors, meta = load_safetensors(path)
    if "s2s.config" not in meta:
        raise ValueError("%s: no s2s.config in __metadata__" % path)
    config = json.loads(meta["s2s.config"])
    model = S2STransformer(config)
    sd = model.state_dict()
    missing = [k for k in sd if k not in tensors]
    if missing:
        raise ValueError("%s: missing tensors %s" % (path, missing[:5]))
    new = {}
    for k, v in sd.items():
        t = tensors[k]
        if tuple(t.shape) != tuple(v.shape):
            raise ValueError("%s: %s has shape %s, expected %s" % (path, k, list(t.shape), list(v.shape)))
        new[k] = t.to(torch.float32)
    model.load_state_dict(new)
    model.to(device=device, dtype=dtype).eval()
    tok = {}
    for side in ("src", "tgt"):
        t = tensors.get("tokenizer." + side)
        if t is not None:
            tok[side] = bytes(t.to(torch.uint8).numpy().tobytes())
    return model, config, tok


def save_checkpoint(path, model, tokenizers=None, train_info=None):
    tensors = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    for side, blob in (tokenizers or {}).items():
        tensors["tokenizer." + side] = torch.tensor(list(blob), dtype=torch.uint8)
    meta = {"s2s.config": json.dumps({k: model.config[k] for k in CONFIG_KEYS if k in model.config}),
            "s2s.format_version": "1"}
    if train_info is not None:
        meta["s2s.train"] = json.dumps(train_info)
    save_safetensors(path, tensors, meta)


# ----------------------------------------------------------------------------
# Loss and optimizer
# ----------------------------------------------------------------------------
def s2s_loss(logits, tgt_out, label_smoothing=0.1):
    """Label-smoothed CE, pad (0) ignored, mean over non-pad tokens. The smoothing mass
    eps is spread uniformly over ALL Vt classes (pad included):
    loss_t = (1-eps) * -logp[y_t] + eps/Vt * sum_j -logp[j]."""
    v = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, v), tgt_out.reshape(-1), ignore_index=PAD,
                           label_smoothing=label_smoothing)


def lr_factor(step, warmup):
    """step is 1-based."""
    if warmup <= 0:
        return 1.0
    return min(step / warmup, math.sqrt(warmup / step))


def make_optimizer(model, lr, warmup, weight_decay, betas=(0.9, 0.98), eps=1e-9, foreach=None):
    decay = [p for _, p in model.named_parameters() if p.dim() == 2]
    nodecay = [p for _, p in model.named_parameters() if p.dim() != 2]
    kw = {} if foreach is None else {"foreach": foreach}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=lr, betas=betas, eps=eps, **kw)
    # LambdaLR calls the lambda with 0 for the first optimizer step -> 1-based s = e + 1.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(e + 1, warmup))
    return opt, sched


def train_step(model, opt, sched, batch, label_smoothing=0.1, clip=1.0):
    """batch = (src, src_len, tgt_in, tgt_out). Returns (loss before the update, grad norm
    before clipping), both python floats."""
    src, src_len, tgt_in, tgt_out = batch
    model.train()
    opt.zero_grad(set_to_none=True)
    logits = model(src, src_len, tgt_in)
    loss = s2s_loss(logits, tgt_out, label_smoothing)
    loss.backward()
    if clip and clip > 0:
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    else:
        gnorm = torch.norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
    opt.step()
    sched.step()
    return loss.detach(), gnorm.detach()


# ----------------------------------------------------------------------------
# Batching helpers
# ----------------------------------------------------------------------------
def make_src_batch(seqs, device="cpu"):
    """seqs: list of id lists (already ending with </s>) -> (src [B,Ts] long, src_len [B])."""
    ts = max(len(s) for s in seqs)
    src = torch.zeros(len(seqs), ts, dtype=torch.long)
    for i, s in enumerate(seqs):
        src[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return src.to(device), torch.tensor([len(s) for s in seqs], dtype=torch.long, device=device)


def make_tgt_batch(seqs, device="cpu"):
    """seqs: list of target id lists (no <s>/</s>) -> (tgt_in, tgt_out) [B, Tt], Tt = max len + 1."""
    tt = max(len(s) for s in seqs) + 1
    tin = torch.zeros(len(seqs), tt, dtype=torch.long)
    tout = torch.zeros(len(seqs), tt, dtype=torch.long)
    for i, s in enumerate(seqs):
        tin[i, :len(s) + 1] = torch.tensor([BOS] + list(s), dtype=torch.long)
        tout[i, :len(s) + 1] = torch.tensor(list(s) + [EOS], dtype=torch.long)
    return tin.to(device), tout.to(device)


# ----------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------
@torch.no_grad()
def greedy_decode(model, src, src_len, max_len=None, return_logits=False):
    """Batched greedy decoding with a KV cache; finished rows are dropped from the batch.
    Returns a list of B id lists (without <s>/</s>); with return_logits, also the list of
    per-sentence [n_steps, Vt] logits tensors."""
    model.eval()
    max_len = max_len or model.max_len
    b = src.shape[0]
    dev = src.device
    enc, kmask = model.encode(src, src_len)
    cache = model.init_cache(enc, kmask)
    rows = torch.arange(b, device=dev)          # sentence id of each live row
    tok = torch.full((b,), BOS, dtype=torch.long, device=dev)
    out = [[] for _ in range(b)]
    lg = [[] for _ in range(b)] if return_logits else None
    for pos in range(max_len):
        logits = model.decode_step(tok, pos, cache)
        nxt = logits.argmax(dim=-1)
        nl = nxt.tolist()
        rl = rows.tolist()
        for r, t in zip(rl, nl):
            out[r].append(t)
        if return_logits:
            for j, r in enumerate(rl):
                lg[r].append(logits[j].clone())
        live = nxt != EOS
        if not bool(live.all()):
            keep = live.nonzero(as_tuple=True)[0]
            if keep.numel() == 0:
                break
            model.reorder_cache(cache, keep)
            rows = rows.index_select(0, keep)
            nxt = nxt.index_select(0, keep)
        tok = nxt
    res = [[t for t in s if t != EOS] for s in out]
    if return_logits:
        return res, [torch.stack(x) for x in lg]
    return res


@torch.no_grad()
def beam_decode(model, src, src_len, beam=4, max_len=None, length_penalty=1.0, return_scores=False):
    """Batched beam search with a KV cache (see the module docstring for the rules).
    Returns a list of B id lists (without <s>/</s>)."""
    model.eval()
    max_len = max_len or model.max_len
    b = src.shape[0]
    k = beam
    dev = src.device
    enc, kmask = model.encode(src, src_len)
    # replicate every sentence k times: row = sentence * k + beam
    rep = torch.arange(b, device=dev).repeat_interleave(k)
    cache = model.init_cache(enc.index_select(0, rep), kmask.index_select(0, rep))
    sents = torch.arange(b, device=dev)                        # live sentence ids
    scores = torch.full((b, k), float("-inf"), device=dev, dtype=enc.dtype)
    scores[:, 0] = 0.0                                         # only beam 0 at step 0
    hist = torch.full((b * k, 0), BOS, dtype=torch.long, device=dev)
    tok = torch.full((b * k,), BOS, dtype=torch.long, device=dev)
    finished = [[] for _ in range(b)]                          # (norm score, ids)
    for pos in range(max_len):
        nb = sents.shape[0]
        logits = model.decode_step(tok, pos, cache)
        logp = torch.log_softmax(logits.float(), dim=-1)
        v = logp.shape[-1]
        cand = (scores.float().reshape(nb * k, 1) + logp).reshape(nb, k * v)
        top_s, top_i = cand.topk(2 * k, dim=1)                 # [nb, 2k], sorted desc
        top_beam = torch.div(top_i, v, rounding_mode="floor")
        top_tok = top_i % v
        is_eos = top_tok == EOS
        # finish </s> candidates among the first k (and with a finite score)
        fin = is_eos[:, :k] & torch.isfinite(top_s[:, :k])
        done_now = []
        if bool(fin.any()):
            for si, ci in fin.nonzero().tolist():
                sid = int(sents[si])
                if len(finished[sid]) >= k:
                    continue
                row = si * k + int(top_beam[si, ci])
                ids = hist[row].tolist()
                finished[sid].append((float(top_s[si, ci]) / float(pos + 1) ** length_penalty, ids))
        # next beam: first k non-</s> candidates
        rank = torch.arange(2 * k, device=dev).expand(nb, 2 * k) + is_eos.long() * (4 * k)
        sel = rank.topk(k, dim=1, largest=False).indices.sort(dim=1).values  # [nb, k]
        new_scores = top_s.gather(1, sel)
        new_beam = top_beam.gather(1, sel)
        new_tok = top_tok.gather(1, sel)
        src_rows = (torch.arange(nb, device=dev)[:, None] * k + new_beam).reshape(-1)
        hist = torch.cat([hist.index_select(0, src_rows), new_tok.reshape(-1, 1)], dim=1)
        model.reorder_self_cache(cache, src_rows)
        scores = new_scores
        tok = new_tok.reshape(-1)
        # sentences that are done
        sl = sents.tolist()
        for si, sid in enumerate(sl):
            if len(finished[sid]) >= k:
                done_now.append(si)
        if pos == max_len - 1:
            for si, sid in enumerate(sl):
                if si in done_now:
                    continue
                for j in range(k):
                    s = float(scores[si, j])
                    if math.isfinite(s):
                        finished[sid].append((s / float(pos + 1) ** length_penalty, hist[si * k + j].tolist()))
            break
        if done_now:
            keep_s = [si for si in range(nb) if si not in set(done_now)]
            if not keep_s:
                break
            ks = torch.tensor(keep_s, dtype=torch.long, device=dev)
            rows = (ks[:, None] * k + torch.arange(k, device=dev)[None, :]).reshape(-1)
            model.reorder_cache(cache, rows)
            hist = hist.index_select(0, rows)
            tok = tok.index_select(0, rows)
            scores = scores.index_select(0, ks)
            sents = sents.index_select(0, ks)
    res, sc = [], []
    for sid in range(b):
        best = max(finished[sid], key=lambda x: x[0])  # first (earliest) wins ties
        res.append([t for t in best[1] if t != EOS])
        sc.append(best[0])
    return (res, sc) if return_scores else res


# ----------------------------------------------------------------------------
# Self tests
# ----------------------------------------------------------------------------
def random_init_(model, gen=None, emb_std=0.3):
    """A 'lively' random init (used by tests/golden): all weights, biases and LN params
    random so that every term of the forward pass matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("emb.weight"):
                p.copy_(torch.randn(p.shape, generator=gen) * emb_std)
            elif p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            elif ".ln" in name or name.startswith("enc.ln") or name.startswith("dec.ln"):
                if name.endswith(".weight"):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def _toy_batch(g, n, vs, vt, maxn=8):
    """copy-with-offset toy task: target = reversed source ids mapped into the target vocab."""
    lens = torch.randint(1, maxn + 1, (n,), generator=g).tolist()
    s = [[int(x) for x in torch.randint(4, vs, (L,), generator=g)] for L in lens]
    t = [[4 + (x - 4) % (vt - 4) for x in reversed(y)] for y in s]
    src, sl = make_src_batch([x + [EOS] for x in s])
    tin, tout = make_tgt_batch(t)
    return src, sl, tin, tout


def _check_decoding(m, seqs, ml, tag):
    ok = True
    src, src_len = make_src_batch(seqs)
    hyps, step_logits = greedy_decode(m, src, src_len, max_len=ml, return_logits=True)
    max_diff = 0.0
    for i in range(len(seqs)):
        # full (teacher-forced) forward on the decoded prefix
        gen_ids = step_logits[i].argmax(-1).tolist()
        tin = torch.tensor([[BOS] + gen_ids[:-1]])
        s1, l1 = make_src_batch([seqs[i]])
        full = m(s1, l1, tin)[0]
        max_diff = max(max_diff, (full - step_logits[i]).abs().max().item())
        if full.argmax(-1).tolist() != gen_ids:
            print("FAIL: greedy tokens differ from full forward", i); ok = False
        # and inside the padded batch
        fb = m(src[i:i + 1].expand(2, -1), src_len[i:i + 1].expand(2), tin.expand(2, -1))[0]
        max_diff = max(max_diff, (fb - step_logits[i]).abs().max().item())
        if greedy_decode(m, s1, l1, max_len=ml)[0] != hyps[i]:
            print("FAIL: batched greedy != single", i); ok = False
    print("[%s] incremental vs full-forward max |logit diff| = %.3g" % (tag, max_diff))
    if max_diff > 1e-5:
        print("FAIL: logits differ"); ok = False
    b1 = beam_decode(m, src, src_len, beam=1, max_len=ml)
    if b1 != hyps:
        print("FAIL: beam 1 != greedy", b1, hyps); ok = False
    b4, sc = beam_decode(m, src, src_len, beam=4, max_len=ml, return_scores=True)
    for i in range(len(seqs)):
        s1, l1 = make_src_batch([seqs[i]])
        if beam_decode(m, s1, l1, beam=4, max_len=ml)[0] != b4[i]:
            print("FAIL: batched beam != single", i); ok = False
        # the reported score is the real length-normalized log-prob of the hypothesis
        ids = b4[i]
        full_ids = ids + ([EOS] if len(ids) < ml else [])
        tin = torch.tensor([[BOS] + full_ids[:-1]])
        lp = torch.log_softmax(m(s1, l1, tin)[0], -1)
        tot = sum(lp[t, x].item() for t, x in enumerate(full_ids)) / len(full_ids)
        if abs(tot - sc[i]) > 1e-4:
            print("FAIL: beam score", i, tot, sc[i]); ok = False
    print("[%s] greedy %s" % (tag, hyps))
    print("[%s] beam4  %s" % (tag, b4))
    return ok


def _selftest():
    import os
    import tempfile
    torch.manual_seed(0)
    ok = True
    for act, share in (("relu", 0), ("gelu", 1)):
        vs = 23 if not share else 29
        cfg = {"d_model": 32, "n_heads": 4, "d_ff": 48, "enc_layers": 2, "dec_layers": 3,
               "src_vocab": vs, "tgt_vocab": 29, "activation": act,
               "share_src_emb": share, "max_len": 24, "decoder": "transformer"}
        tag = "%s share=%d" % (act, share)
        g = torch.Generator().manual_seed(1 + share)
        m = S2STransformer(cfg)
        names = list(m.state_dict().keys())
        assert ("src_emb.weight" in names) == (not share)
        lens = [7, 3, 9, 5, 1, 12]
        seqs = [[int(x) for x in torch.randint(4, vs, (n - 1,), generator=g)] + [EOS] for n in lens]
        # random model (degenerate outputs, runs to max_len)
        random_init_(m, g, emb_std=0.02)
        ok &= _check_decoding(m, seqs, 10, tag + " random")
        # briefly trained on a toy task: varied lengths, </s> emitted
        m.reset_parameters()
        batch = _toy_batch(g, 32, vs, 29)
        ref = F.cross_entropy(m(*batch[:3]).reshape(-1, 29), batch[3].reshape(-1),
                              ignore_index=0, label_smoothing=0.1)
        opt, sched = make_optimizer(m, 3e-3, 20, 0.01)
        first = train_step(m, opt, sched, batch)[0].item()
        if abs(first - ref.item()) > 1e-6:
            print("FAIL: train_step loss", first, ref.item()); ok = False
        for _ in range(150):
            last = train_step(m, opt, sched, _toy_batch(g, 32, vs, 29))[0].item()
        print("[%s] toy train loss %.4f -> %.4f" % (tag, first, last))
        if not last < first - 0.5:
            print("FAIL: training did not reduce the loss"); ok = False
        ok &= _check_decoding(m, seqs, 10, tag + " trained")
        # safetensors round trip
        with tempfile.TemporaryDirectory() as td:
            p = os.path.join(td, "m.safetensors")
            save_checkpoint(p, m, {"src": b"abc", "tgt": b"xyz\x00"}, {"steps": 151})
            m2, cfg2, tok = load_checkpoint(p)
            assert cfg2 == cfg, (cfg2, cfg)
            assert tok == {"src": b"abc", "tgt": b"xyz\x00"}
            for kk, vv in m.state_dict().items():
                assert torch.equal(vv, m2.state_dict()[kk]), kk
            with open(p, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
            assert n % 8 == 0
    print("selftest:", "OK" if ok else "FAILED")
    return ok


if __name__ == "__main__":
    sys.exit(0 if _selftest() else 1)
