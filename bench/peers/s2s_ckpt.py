"""s2s_ckpt.py - read an s2s checkpoint (.safetensors) and its tokenizers in Python, for the
peer comparison (bench/peers/export_ct2.py, ct2_bench.py). numpy only: the safetensors file
is parsed here (8-byte little-endian header length, JSON header, raw tensor bytes), so the
exporter needs nothing s2s-specific from the safetensors package.

Format: docs/MODEL.md (tensor names, config JSON in __metadata__["s2s.config"]) and
src/tokenizer.c (s2s_tok_serialize: the "s2s-tokenizer 1" text blob of the U8 tensors
tokenizer.src / tokenizer.tgt).

  ck = load("models/g2p-teacher.safetensors")   # ck.cfg, ck.tensors (fp32 numpy), ck.src_tok, ck.tgt_tok
  ids = ck.src_tok.encode("hello")               # = s2s_tok_encode (char and symbol kinds)
"""
import json
import re
import struct

import numpy as np

PAD, BOS, EOS, UNK, NSPECIAL = 0, 1, 2, 3, 4
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
SPACE_PIECE = "\u2581"  # "▁": a space between words of a char tokenizer
_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "U8": np.uint8}
_WS = re.compile(r"[ \t\n\v\f\r]+")  # src/tokenizer.c is_ws: ASCII whitespace only


class CheckpointError(Exception):
    pass


def _fnv1a64(b):
    h = 0xCBF29CE484222325
    for x in b:
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _unescape(s):
    """sb_piece_escaped's inverse: \\\\ -> \\, \\n -> newline, \\xHH -> byte."""
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c != 0x5C:  # backslash
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(s):
            raise CheckpointError("tokenizer: dangling escape")
        n = s[i + 1]
        if n == 0x5C:
            out.append(0x5C)
            i += 2
        elif n == ord("n"):
            out.append(0x0A)
            i += 2
        elif n == ord("x") and i + 3 < len(s):
            out.append(int(bytes(s[i + 2:i + 4]).decode(), 16))
            i += 4
        else:
            raise CheckpointError("tokenizer: bad escape")
    return bytes(out)


class Tokenizer:
    """An s2s tokenizer: its kind and pieces in id order; encode() for the char and symbol kinds."""

    def __init__(self, kind, pieces, name="tokenizer"):
        if list(pieces[:NSPECIAL]) != SPECIALS:
            raise CheckpointError("%s: the first pieces are not %s" % (name, SPECIALS))
        if len(set(pieces)) != len(pieces):
            raise CheckpointError("%s: duplicate pieces" % name)
        self.kind = kind
        self.pieces = list(pieces)
        self.index = {p: i for i, p in enumerate(self.pieces)}
        sp = self.index.get(SPACE_PIECE, UNK)
        self.space_id = sp if sp >= NSPECIAL else UNK

    @classmethod
    def from_blob(cls, blob, name):
        """Parse s2s_tok_serialize's blob (header, escaped pieces, merges, FNV-1a checksum)."""
        if not blob.endswith(b"\n"):
            raise CheckpointError("%s: truncated tokenizer blob" % name)
        lines = blob[:-1].split(b"\n")
        if len(lines) < 6 or lines[0] != b"s2s-tokenizer 1":
            raise CheckpointError("%s: not an s2s tokenizer blob (version 1)" % name)
        try:
            kind = lines[1].decode().split(" ", 1)[1]
            n_pieces = int(lines[2].split(b" ")[1])
            n_merges = int(lines[4].split(b" ")[1])
        except (IndexError, ValueError):
            raise CheckpointError("%s: malformed tokenizer header" % name)
        if len(lines) != 5 + n_pieces + n_merges + 1 or not lines[-1].startswith(b"end "):
            raise CheckpointError("%s: tokenizer blob has %d lines, expected %d" % (name, len(lines), 6 + n_pieces + n_merges))
        body = blob[:blob.rindex(b"end ")]
        if "%016x" % _fnv1a64(body) != lines[-1][4:].decode():
            raise CheckpointError("%s: tokenizer checksum mismatch" % name)
        return cls(kind, [_unescape(bytearray(x)).decode("utf-8") for x in lines[5:5 + n_pieces]], name)

    def _piece_id(self, p):
        i = self.index.get(p, UNK)
        return i if i >= NSPECIAL else UNK  # a literal "<s>" in the text is <unk>, as in s2s

    def encode(self, text):
        """s2s_tok_encode for CHAR and SYMBOL tokenizers (no </s> added)."""
        words = [w for w in _WS.split(text) if w]
        if self.kind == "symbol":
            return [self._piece_id(w) for w in words]
        if self.kind == "char":
            ids = []
            for k, w in enumerate(words):
                if k:
                    ids.append(self.space_id)
                ids.extend(self._piece_id(c) for c in w)
            return ids
        raise CheckpointError("tokenizer kind '%s': encode() handles char and symbol only "
                              "(use bench_s2s --dump-ids for BPE)" % self.kind)


class Checkpoint:
    def __init__(self, path):
        with open(path, "rb") as f:
            raw = f.read()
        if len(raw) < 8:
            raise CheckpointError("%s: too short for a safetensors file" % path)
        (n,) = struct.unpack("<Q", raw[:8])
        if n > len(raw) - 8:
            raise CheckpointError("%s: header length %d beyond the file" % (path, n))
        try:
            header = json.loads(raw[8:8 + n])
        except ValueError as e:
            raise CheckpointError("%s: bad safetensors header: %s" % (path, e))
        meta = header.pop("__metadata__", {}) or {}
        if meta.get("s2s.format_version") != "1":
            raise CheckpointError("%s: not an s2s model of format version 1" % path)
        self.cfg = json.loads(meta["s2s.config"])
        self.path = path
        self.tensors = {}
        data = memoryview(raw)[8 + n:]
        self.dtypes = {}
        for name, h in header.items():
            dt, shape, (a, b) = h["dtype"], h["shape"], h["data_offsets"]
            if dt not in _DTYPES:
                raise CheckpointError("%s: tensor %s has dtype %s" % (path, name, dt))
            if not 0 <= a <= b <= len(data):
                raise CheckpointError("%s: tensor %s lies beyond the end of the file (truncated?)" % (path, name))
            buf = bytes(data[a:b])
            if dt == "BF16":
                v = (np.frombuffer(buf, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                v = np.frombuffer(buf, _DTYPES[dt])
            v = v.reshape(shape)
            self.dtypes[name] = dt
            # fp16 / bf16 -> fp32 is exact: the same values as s2s computes with
            self.tensors[name] = v if dt == "U8" else v.astype(np.float32)
        self.src_tok = Tokenizer.from_blob(bytes(self.tensors.pop("tokenizer.src")), "tokenizer.src")
        self.tgt_tok = Tokenizer.from_blob(bytes(self.tensors.pop("tokenizer.tgt")), "tokenizer.tgt")
        if len(self.src_tok.pieces) != self.cfg["src_vocab"] or len(self.tgt_tok.pieces) != self.cfg["tgt_vocab"]:
            raise CheckpointError("%s: tokenizer sizes do not match the config" % path)

    def t(self, name):
        if name not in self.tensors:
            raise CheckpointError("%s: missing tensor %s" % (self.path, name))
        return self.tensors[name]


def tensor_dtypes(path):
    """The dtypes of a checkpoint's weights (not its tokenizers), read from the header only."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        h = json.loads(f.read(n))
    return sorted({v["dtype"] for k, v in h.items() if k != "__metadata__" and not k.startswith("tokenizer.")})


def load(path):
    return Checkpoint(path)


def position_table(max_len, d):
    """src/model.c s2s_model_new_empty: sin | cos halves (tensor2tensor / CTranslate2),
    computed in double and rounded to float32 exactly as the C code does."""
    half = d // 2
    inc = np.log(10000.0) / float(half - 1 if half > 1 else 1)
    pos = np.arange(max_len, dtype=np.float64)[:, None]
    a = pos * np.exp(-np.arange(half, dtype=np.float64) * inc)[None, :]
    return np.concatenate([np.sin(a), np.cos(a)], axis=1).astype(np.float32)
