#!/usr/bin/env python3
"""update_results.py - replace the generated blocks of a hand-written markdown file.

A generated block is everything between two marker lines of the same NAME:

    <!-- bench:begin NAME -->
    ... (replaced) ...
    <!-- bench:end NAME -->

    python3 bench/update_results.py --doc docs/RESULTS.md --blocks DIR [--out PATH]
    python3 bench/update_results.py --doc docs/RESULTS.md --list     # the block names
    python3 bench/update_results.py --self-test                       # checks itself (make test)

For every block of DOC, DIR/NAME.md (when it exists) becomes the block's new content;
a block without a DIR/NAME.md is left as it was, with a note on stderr. Everything
outside the blocks is copied byte for byte. The result is written to OUT (default: DOC)
through a temporary file in OUT's directory and a rename, so a reader never sees half a
file and a failed run leaves OUT as it was. Unbalanced, nested or repeated markers are
an error (exit 1, nothing written). Standard library only (bench/report.sh runs it).
"""
import argparse
import os
import re
import sys
import tempfile

BEGIN = re.compile(r"^<!-- bench:begin ([A-Za-z0-9_.-]+) -->[ \t]*$")
END = re.compile(r"^<!-- bench:end ([A-Za-z0-9_.-]+) -->[ \t]*$")


class MarkerError(Exception):
    pass


def parse(text):
    """Split text into ("text", str) and ("block", name, inner) parts, checking the markers."""
    parts, buf, seen = [], [], set()
    name, inner = None, []
    for no, line in enumerate(text.splitlines(keepends=True), 1):
        bare = line.rstrip("\r\n")
        b, e = BEGIN.match(bare), END.match(bare)
        if b:
            if name is not None:
                raise MarkerError("line %d: begin of %r inside block %r" % (no, b.group(1), name))
            if b.group(1) in seen:
                raise MarkerError("line %d: block %r appears twice" % (no, b.group(1)))
            buf.append(line)
            parts.append(("text", "".join(buf)))
            buf, name, inner = [], b.group(1), []
        elif e:
            if name is None:
                raise MarkerError("line %d: end of %r without its begin" % (no, e.group(1)))
            if e.group(1) != name:
                raise MarkerError("line %d: end of %r inside block %r" % (no, e.group(1), name))
            parts.append(("block", name, "".join(inner)))
            seen.add(name)
            name = None
            buf.append(line)
        elif name is not None:
            inner.append(line)
        else:
            buf.append(line)
    if name is not None:
        raise MarkerError("block %r has no end marker" % name)
    parts.append(("text", "".join(buf)))
    return parts


def blocks(text):
    return [p[1] for p in parse(text) if p[0] == "block"]


def replace(text, new, log=None):
    """new: {name: content}. Returns (text, replaced names, kept names)."""
    out, done, kept = [], [], []
    for p in parse(text):
        if p[0] == "text":
            out.append(p[1])
        elif p[1] in new:
            c = new[p[1]]
            if c and not c.endswith("\n"):
                c += "\n"
            out.append(c)
            done.append(p[1])
        else:
            out.append(p[2])
            kept.append(p[1])
    return "".join(out), done, kept


def write_atomic(path, text):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def update(doc, blocks_dir, out, log=sys.stderr):
    with open(doc, encoding="utf-8", newline="") as f:
        text = f.read()
    names = blocks(text)
    new = {}
    for n in names:
        p = os.path.join(blocks_dir, n + ".md")
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                new[n] = f.read()
    res, done, kept = replace(text, new)
    for n in kept:
        print("update_results.py: %s: block %s left as it was (no %s/%s.md: its inputs are missing)"
              % (doc, n, blocks_dir, n), file=log)
    if os.path.isdir(blocks_dir):
        for fn in sorted(os.listdir(blocks_dir)):
            if fn.endswith(".md") and fn[:-3] not in names:
                print("update_results.py: %s has no block %s (markers <!-- bench:begin %s --> ... "
                      "<!-- bench:end %s -->): %s/%s not used" % (doc, fn[:-3], fn[:-3], fn[:-3], blocks_dir, fn),
                      file=log)
    write_atomic(out, res)
    for n in done:
        print("update_results.py: %s: block %s replaced" % (out, n), file=log)
    return done, kept


def self_test():
    import io
    doc = ("# Title\r\n\nprose before\n"
           "<!-- bench:begin a -->\nold a\n<!-- bench:end a -->\n"
           "middle prose, kept: <!-- bench:begin not-a-marker -->\n"
           "<!-- bench:begin b -->\nold b 1\nold b 2\n<!-- bench:end b -->\n"
           "<!-- bench:begin empty -->\n<!-- bench:end empty -->\ntail without newline")
    assert blocks(doc) == ["a", "b", "empty"], blocks(doc)
    res, done, kept = replace(doc, {"a": "new a\n| t |", "empty": "filled\n"})
    want = doc.replace("old a\n", "new a\n| t |\n").replace(
        "<!-- bench:begin empty -->\n", "<!-- bench:begin empty -->\nfilled\n")
    assert res == want, repr(res)
    assert done == ["a", "empty"] and kept == ["b"], (done, kept)
    assert replace(res, {"a": "new a\n| t |", "empty": "filled\n"})[0] == res  # idempotent
    assert replace(doc, {})[0] == doc                                          # nothing new: unchanged
    assert replace(doc, {"b": ""})[0] == doc.replace("old b 1\nold b 2\n", "")  # emptied
    for bad in ("<!-- bench:begin a -->\nx\n",                                 # no end
                "<!-- bench:end a -->\n",                                       # end without begin
                "<!-- bench:begin a -->\n<!-- bench:begin b -->\n<!-- bench:end b -->\n<!-- bench:end a -->\n",
                "<!-- bench:begin a -->\n<!-- bench:end b -->\n",
                "<!-- bench:begin a -->\n<!-- bench:end a -->\n<!-- bench:begin a -->\n<!-- bench:end a -->\n"):
        try:
            replace(bad, {"a": "x"})
        except MarkerError:
            continue
        raise AssertionError("accepted bad markers: %r" % bad)
    # files: a block with content is replaced, one without is kept; the write is atomic
    with tempfile.TemporaryDirectory() as d:
        p, bd = os.path.join(d, "R.md"), os.path.join(d, "blocks")
        os.mkdir(bd)
        with open(p, "w", encoding="utf-8", newline="") as f:
            f.write(doc)
        with open(os.path.join(bd, "b.md"), "w") as f:
            f.write("new b\n")
        with open(os.path.join(bd, "zzz.md"), "w") as f:
            f.write("unused\n")
        log = io.StringIO()
        out = os.path.join(d, "copy.md")
        update(p, bd, out, log=log)
        with open(out, encoding="utf-8", newline="") as f:
            got = f.read()
        assert got == doc.replace("old b 1\nold b 2\n", "new b\n"), repr(got)
        with open(p, encoding="utf-8", newline="") as f:
            assert f.read() == doc                                  # --out leaves DOC alone
        assert "block a left as it was" in log.getvalue() and "no block zzz" in log.getvalue(), log.getvalue()
        update(p, bd, p, log=io.StringIO())                         # in place
        with open(p, encoding="utf-8", newline="") as f:
            assert f.read() == got
        assert sorted(os.listdir(d)) == ["R.md", "blocks", "copy.md"], os.listdir(d)  # no temp file left
        with open(p, "w") as f:
            f.write("<!-- bench:begin a -->\n")
        try:
            update(p, bd, p, log=io.StringIO())
            raise AssertionError("no error on a missing end marker")
        except MarkerError:
            pass
        with open(p) as f:
            assert f.read() == "<!-- bench:begin a -->\n"          # unchanged after the error
    print("update_results.py: self-test passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--doc", help="the markdown file with the markers (e.g. docs/RESULTS.md)")
    ap.add_argument("--blocks", help="directory of NAME.md files, one per block")
    ap.add_argument("--out", help="where to write (default: --doc itself)")
    ap.add_argument("--list", action="store_true", help="print the block names of --doc")
    ap.add_argument("--self-test", action="store_true", help="run the built-in checks")
    a = ap.parse_args()
    if a.self_test:
        self_test()
        return 0
    if not a.doc:
        ap.error("--doc is required")
    try:
        if a.list:
            with open(a.doc, encoding="utf-8") as f:
                print("\n".join(blocks(f.read())))
            return 0
        if not a.blocks:
            ap.error("--blocks is required")
        update(a.doc, a.blocks, a.out or a.doc)
    except MarkerError as e:
        print("update_results.py: %s: %s (nothing written)" % (a.doc, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
