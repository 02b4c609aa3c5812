#!/usr/bin/python3
"""prepare_data.py - build the s2s data sets from Debian packages (standard library only).

Usage: /usr/bin/python3 scripts/prepare_data.py [--out DIR] [--force] [bible] [g2p]

  bible  English KJV -> Spanish Reina-Valera 1909 verse pairs, exported with diatheke
         (packages diatheke, sword-text-kjv, sword-text-sparv) -> DIR/bible/
  g2p    CMUdict 0.4 from festlex-cmu (grapheme -> phoneme)   -> DIR/g2p/

With no task names both are built. A task is skipped when all its outputs exist and are
newer than its inputs (the package files and this script); --force rebuilds anyway.
Outputs are deterministic: the same packages give the same bytes. See docs/DATA.md.
Needs only python3-minimal (no argparse, html, ... from libpython3-stdlib).
"""
import hashlib
import math
import os
import re
import subprocess
import sys
import time
import unicodedata

SCRIPT = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(SCRIPT))
PROG = "prepare_data"


class DataError(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# ----------------------------------------------------------------------------- utils

def write_lines(path, lines):
    """Write lines (no newlines inside) atomically as UTF-8 with '\n' endings."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            if "\n" in line or "\r" in line:
                raise DataError("internal error: newline inside a line for %s" % path)
            f.write(line)
            f.write("\n")
    os.replace(tmp, path)


def count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def up_to_date(outputs, inputs):
    """True when every output exists and is newer than every input."""
    try:
        oldest_out = min(os.path.getmtime(p) for p in outputs)
    except OSError:
        return False
    newest_in = max(os.path.getmtime(p) for p in inputs)
    return oldest_out >= newest_in


def md5_bucket(word):
    """Stable split bucket: first 8 hex digits of md5(UTF-8 word) as an integer, mod 100."""
    return int(hashlib.md5(word.encode("utf-8")).hexdigest()[:8], 16) % 100


def split_of_bucket(b):
    return "train" if b < 90 else ("dev" if b < 95 else "test")


# ----------------------------------------------------------------------------- bible

SWORD_DIR = "/usr/share/sword"
# diatheke's English book names (KJV versification, in canonical order) -> our names.
DIATHEKE_BOOKS = [
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth",
    "I Samuel", "II Samuel", "I Kings", "II Kings", "I Chronicles", "II Chronicles", "Ezra",
    "Nehemiah", "Esther", "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon",
    "Isaiah", "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos",
    "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah",
    "Malachi", "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "I Corinthians",
    "II Corinthians", "Galatians", "Ephesians", "Philippians", "Colossians", "I Thessalonians",
    "II Thessalonians", "I Timothy", "II Timothy", "Titus", "Philemon", "Hebrews", "James",
    "I Peter", "II Peter", "I John", "II John", "III John", "Jude", "Revelation of John",
]


def book_name(diatheke_name):
    n = re.sub(r"^III ", "3 ", diatheke_name)
    n = re.sub(r"^II ", "2 ", n)
    n = re.sub(r"^I ", "1 ", n)
    return "Revelation" if n == "Revelation of John" else n


BOOKS = [book_name(b) for b in DIATHEKE_BOOKS]
BIBLE_DEV = {"Joel", "Micah", "Habakkuk", "Philippians"}
BIBLE_TEST = {"Ruth", "Esther", "Jonah", "Titus", "James", "1 Peter"}
SPLITS = ("train", "dev", "test")


def bible_split(book):
    if book in BIBLE_DEV:
        return "dev"
    if book in BIBLE_TEST:
        return "test"
    return "train"


# "Genesis 1:1: " at the start of a line or after the pre-verse markup (headings).
REF_RE = re.compile(r"(?:^|(?<=\s))(%s) (\d+):(\d+): " %
                    "|".join(re.escape(b) for b in sorted(DIATHEKE_BOOKS, key=len, reverse=True)))
NOTE_RE = re.compile(r"<note\b[^>]*/>|<note\b.*?</note>", re.S)  # footnotes / cross-refs
TITLE_RE = re.compile(r"<title\b[^>]*>.*?</title>", re.S)
CANON_TITLE_RE = re.compile(r"<title\b[^>]*\bcanonical=\"true\"[^>]*>(.*?)</title>", re.S)
EMPTY_TAG_RE = re.compile(r"<[^<>]*/>")     # milestones (<lb/>, <l sID=../>, <div eID=../>): a break
TAG_RE = re.compile(r"</?[A-Za-z][^<>]*>")  # inline markup (<w savlm=strong:..>, <transChange>..)
STRONGS_RE = re.compile(r"[<\[{(]\s*[GH]\d{1,5}[a-z]?\s*[>\]})]")  # literal <G5547>, [H1234], ...
USFM_RE = re.compile(r"\\[a-z]+[0-9]*\*?")  # stray USFM markers (KJV has "\\nd LORD")
TRAILER_RE = re.compile(r"\s*\((?:KJV|RV1909|SpaRV|engKJV2006eb|spaRV1909eb)\)\s*$")  # "(KJV)"
ENTITY_RE = re.compile(r"&(#[0-9]+|#x[0-9a-fA-F]+|amp|lt|gt|quot|apos|nbsp);")
ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'", "nbsp": " "}
JOIN = "\x00"                               # where inline tags were removed
JOIN_RE = re.compile(r"(\w*)\x00+(?=(\w*))")
# Spanish: words that the RV1909 markup splits off a verb ("oyéndo<transChange>lo") and
# that are glued back; after the words in ES_NOT_VERB they are separate words ("no lo").
ES_ENCLITICS = {"me", "te", "se", "nos", "os", "lo", "la", "le", "los", "las", "les"}
ES_NOT_VERB = {"y", "e", "é", "o", "ó", "u", "que", "os", "no", "ni", "ellos", "ellas", "como",
               "cómo", "cuanto", "cuánto", "dios", "gentes", "josué", "jehová", "él", "ella",
               "yo", "tú", "se", "me", "te", "nos", "lo", "la", "le", "los", "las", "les", "mas",
               "más", "si", "sí", "ya", "a", "á", "de", "en", "con", "por", "para"}
# RV1909 Psalm 119 has the Hebrew letter of each 8-verse stanza inside the verse text.
PS119_LETTERS = ("ALEPH BETH GIMEL DALETH HE VAU ZAIN CHETH TETH JOD CAPH LAMED MEM NUN "
                 "SAMECH AIN PE TZADDI COPH RESH SIN TAU").split()
PS119_RE = re.compile(r"^(?:%s)\.?\s+" % "|".join(PS119_LETTERS))
# RV1909 prints the first word of a chapter in capitals ("EN el principio", "¡OH Jehová").
CAPS_WORD_RE = re.compile(r"\b([A-ZÁÉÍÓÚÑÜÂÊÎÔÛ]{2,})\b(\W*[A-ZÁÉÍÓÚÑÜÂÊÎÔÛ]{2,}\b)?")
# RV1909 appends the traditional subscriptions to the last verse of Romans..Hebrews
# ("Amén. Fué escrita de Corinto á los Romanos, ..."); the KJV module has none.
SUBSCRIPTION_BOOKS = BOOKS[BOOKS.index("Romans"):BOOKS.index("Hebrews") + 1]
SUBSCRIPTION_RE = re.compile(r"(Amén\.)\s+\S.*$")


def unescape(s):
    def rep(m):
        e = m.group(1)
        if e.startswith("#x"):
            return chr(int(e[2:], 16))
        if e.startswith("#"):
            return chr(int(e[1:]))
        return ENTITIES[e]
    return ENTITY_RE.sub(rep, s)


def join_es(m):
    prev, nxt = m.group(1), m.group(2)
    if not prev or not nxt:
        return prev
    if nxt.lower() in ES_ENCLITICS and prev.lower() not in ES_NOT_VERB:
        return prev
    return prev + " "


def clean_verse(raw, lang):
    """Markup -> plain text.  Inline tags are dropped; where one sat between two letters it
    joined the words (English: the KJV splits words, "in</w>asmuch") or separated them
    (Spanish: "<w>siempre</w><transChange>es</transChange>", except verb+enclitic)."""
    s = NOTE_RE.sub(" ", raw)
    s = TITLE_RE.sub(" ", s)        # non-canonical headings inside a verse, if any
    s = EMPTY_TAG_RE.sub(" ", s)
    s = TAG_RE.sub(JOIN, s)
    s = JOIN_RE.sub(join_es, s) if lang == "es" else s.replace(JOIN, "")
    s = unescape(s)
    s = STRONGS_RE.sub(" ", s)
    s = USFM_RE.sub(" ", s)
    s = s.replace("\u00b6", " ")    # pilcrow paragraph marks
    s = unicodedata.normalize("NFC", s)
    s = " ".join(s.split())         # collapse all whitespace (incl. NBSP) to single spaces
    s = re.sub(r" ([,;:.!?)\]])", r"\1", s)  # space left before punctuation by a removed tag
    return s


def fix_spanish(verses, order):
    """RV1909-specific text fixes (see the regexes above); returns counts."""
    n = {"ps119": 0, "caps": 0, "subscriptions": 0}
    last = {}
    for k in order:
        if verses[k]:
            last[k[0]] = k
    freq = {}
    for k in order:
        for w in re.findall(r"\w+", verses[k]):
            freq[w] = freq.get(w, 0) + 1
    for k in order:
        s = verses[k]
        if k[0] == "Psalms" and k[1] == 119 and k[2] % 8 == 1:
            s, c = PS119_RE.subn("", s)
            n["ps119"] += c
        if k[2] == 1:
            m = CAPS_WORD_RE.search(s)
            if m and not m.group(2):  # "JEHOVÁ, JUSTICIA NUESTRA" stays
                w = m.group(1)
                cap, low = w[0] + w[1:].lower(), w.lower()
                before = s[:m.start()].rstrip()
                # sentence-initial ("EN el", "¡OH", "David. JEHOVÁ") -> "En"; after "Y " the
                # form more frequent in the text: "Y FUÉ" -> "Y fué", "Y EZECHÎAS" -> "Y Ezechîas"
                if before and before[-1] not in ".:;!?¡¿" and freq.get(low, 0) >= freq.get(cap, 0):
                    cap = low
                s = s[:m.start()] + cap + s[m.end(1):]
                n["caps"] += 1
        if k[0] in SUBSCRIPTION_BOOKS and last.get(k[0]) == k:
            s, c = SUBSCRIPTION_RE.subn(r"\1", s)
            n["subscriptions"] += c
        verses[k] = s
    return n


def sword_modules():
    """name -> description, from `diatheke -b system -k modulelist`."""
    try:
        out = subprocess.run(["diatheke", "-b", "system", "-k", "modulelist"], check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise DataError("cannot run diatheke (%s); install the Debian package diatheke" % e)
    mods = {}
    for line in out.decode("utf-8", "replace").splitlines():
        m = re.match(r"^(\S+) : (.*)$", line)
        if m:
            mods[m.group(1)] = m.group(2).strip()
    return mods


def find_module(mods, desc_re, package):
    hits = sorted(n for n, d in mods.items() if re.search(desc_re, d + " " + n, re.I))
    if not hits:
        raise DataError("SWORD module matching /%s/ not found (diatheke modulelist: %s); "
                        "install the Debian package %s" % (desc_re, ", ".join(sorted(mods)) or "none",
                                                           package))
    return hits[0]


def module_files(mod):
    """The module's .conf and data files (for up-to-date checks)."""
    files = []
    confdir = os.path.join(SWORD_DIR, "mods.d")
    for fn in sorted(os.listdir(confdir)) if os.path.isdir(confdir) else []:
        p = os.path.join(confdir, fn)
        with open(p, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if re.search(r"^\[%s\]" % re.escape(mod), text, re.M):
            files.append(p)
            m = re.search(r"^DataPath=\s*(\S+)", text, re.M)
            if m:
                d = os.path.normpath(os.path.join(SWORD_DIR, m.group(1)))
                if os.path.isdir(d):
                    files += [os.path.join(d, x) for x in sorted(os.listdir(d))]
    return files


def start_export(mod):
    cmd = ["diatheke", "-b", mod, "-f", "internal", "-e", "UTF8", "-l", "en",
           "-k", "Genesis 1:1-Revelation 22:21"]
    # cwd=/: SWORD also looks for modules in ./mods.d
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")


def parse_export(mod, proc, lang):
    """Parse diatheke's raw output: one line per verse, '<pre-verse headings> Book C:V: text'.

    Returns ({(book, chapter, verse): text}, order, stats).  diatheke repeats a verse's
    pre-verse block (e.g. a psalm title) on every following verse until the next one, so a
    block counts only when it differs from the previous verse's block (blocks carry unique
    sIDs).  A new block's canonical <title> (the psalm superscriptions) is prepended to the
    verse: the Spanish RV1909 has the superscriptions inside verse 1, the KJV as a title."""
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise DataError("diatheke -b %s failed (exit %d): %s" %
                        (mod, proc.returncode, err.decode("utf-8", "replace").strip()[:200]))
    try:
        text = out.decode("utf-8")  # UTF-8 requested with -e UTF8
    except UnicodeDecodeError as e:
        raise DataError("diatheke -b %s: output is not UTF-8 (%s)" % (mod, e))
    verses, order = {}, []
    stats = {"titles": 0, "continuations": 0}
    prev_pre, cur = None, None
    for line in text.split("\n"):
        if not line.strip():
            continue
        m = REF_RE.search(line)
        if not m:
            if TRAILER_RE.fullmatch(line) or line.strip() == "(%s)" % mod:
                continue        # module-name trailer "(engKJV2006eb)"
            if cur is None:
                raise DataError("diatheke -b %s: unexpected output line: %r" % (mod, line[:80]))
            verses[cur] += " " + line  # a verse spanning lines (not seen with -f internal)
            stats["continuations"] += 1
            continue
        pre = line[:m.start()]
        key = (book_name(m.group(1)), int(m.group(2)), int(m.group(3)))
        body = line[m.end():]
        if pre.strip() and pre != prev_pre:
            titles = [clean_verse(t, lang) for t in CANON_TITLE_RE.findall(pre)]
            titles = [t for t in titles if t]
            if titles:
                body = " ".join(titles) + " " + body
                stats["titles"] += 1
        prev_pre = pre
        if key in verses:
            raise DataError("diatheke -b %s: verse %s %d:%d appears twice" % ((mod,) + key))
        verses[key] = body
        order.append(key)
        cur = key
    for k in order:
        verses[k] = clean_verse(TRAILER_RE.sub("", verses[k]), lang)
    books = {k[0] for k in order}
    if len(books) != 66:
        raise DataError("diatheke -b %s: expected 66 books, got %d (output not understood)" %
                        (mod, len(books)))
    return verses, order, stats


def ref_str(key):
    return "%s %d:%d" % key


MERGE_COST = 6.0   # per verse beyond one on either side of an aligned group
MAX_GROUP = 4      # largest group on either side (more where a book lacks more verses)
BAND = 10          # search band around the diagonal, in verses


def align_book(ekeys, en, skeys, es, c, s2):
    """Monotone alignment of a book's non-empty English verses to its non-empty Spanish slots.

    The Spanish module is stored in KJV versification although RV1909 divides some chapters
    and verses differently: SWORD leaves the slots past the end of a shorter Spanish chapter
    empty and appends what is past the end of a longer one to its last slot, and where a
    verse is split differently the following verses sit one slot away from the English.
    This is Gale & Church's length-based sentence alignment on verses: groups of a English
    verses to b Spanish slots (1-1, n-1, 1-n), cost = d*d/2 + MERGE_COST per extra verse with
    d = (ls - c*le) / sqrt(s2 * (le + ls/c) / 2) over the groups' character lengths
    le, ls.  Returns [(english keys, spanish keys)]."""
    n, m = len(ekeys), len(skeys)
    le = [0]
    for k in ekeys:
        le.append(le[-1] + len(en[k]) + 1)
    ls = [0]
    for k in skeys:
        ls.append(ls[-1] + len(es[k]) + 1)
    moves = [(1, 1)] + [(x, 1) for x in range(2, max(MAX_GROUP, n - m + 1) + 1)] \
        + [(1, x) for x in range(2, max(MAX_GROUP, m - n + 1) + 1)]
    band = BAND + abs(n - m)
    best = {(0, 0): 0.0}
    back = {}
    for i in range(n + 1):
        mid = i * m // n if n else 0
        for j in range(max(0, mid - band), min(m, mid + band) + 1):
            if i == 0 and j == 0:
                continue
            bc, bm = None, None
            for a, b in moves:
                prev = best.get((i - a, j - b))
                if prev is None:
                    continue
                l1, l2 = le[i] - le[i - a] - 1, ls[j] - ls[j - b] - 1
                d = (l2 - c * l1) / math.sqrt(s2 * (l1 + l2 / c) / 2 + 1e-9)
                cost = prev + d * d / 2 + (a + b - 2) * MERGE_COST
                if bc is None or cost < bc:
                    bc, bm = cost, (a, b)
            if bm is not None:
                best[(i, j)] = bc
                back[(i, j)] = bm
    if (n, m) not in best:
        raise DataError("cannot align the verses of %s" % ekeys[0][0])
    path, i, j = [], n, m
    while i or j:
        a, b = back[(i, j)]
        path.append((ekeys[i - a:i], skeys[j - b:j]))
        i, j = i - a, j - b
    return path[::-1]


def align_bible(en, es, keys):
    """-> [(key, english, spanish)] one-verse pairs (the English reference), stats."""
    books = {}
    for k in keys:
        books.setdefault(k[0], []).append(k)
    # length model from the books whose verses all pair up by reference
    same = [k for ks in books.values()
            if [bool(en.get(x)) for x in ks] == [bool(es.get(x)) for x in ks]
            for k in ks if en.get(k) and es.get(k)]
    c = sum(len(es[k]) for k in same) / sum(len(en[k]) for k in same)
    s2 = sum((len(es[k]) - c * len(en[k])) ** 2 / ((len(en[k]) + len(es[k]) / c) / 2)
             for k in same) / len(same)
    pairs = []
    st = {"realigned": 0, "groups": 0, "group_en": 0, "group_es": 0, "books": [],
          "empty_en": 0, "empty_es": 0}
    for b, ks in books.items():
        ek = [k for k in ks if en.get(k)]
        sk = [k for k in ks if es.get(k)]
        st["empty_en"] += len(ks) - len(ek)
        st["empty_es"] += len(ks) - len(sk)
        changed = False
        for eks, sks in align_book(ek, en, sk, es, c, s2):
            if len(eks) > 1 or len(sks) > 1:
                st["groups"] += 1
                st["group_en"] += len(eks)
                st["group_es"] += len(sks)
                changed = True
                continue
            if eks[0] != sks[0]:
                st["realigned"] += 1
                changed = True
            pairs.append((eks[0], en[eks[0]], es[sks[0]]))
        if changed:
            st["books"].append(b)
    return pairs, st


def do_bible(out, force):
    t0 = time.time()
    odir = os.path.join(out, "bible")
    outputs = [os.path.join(odir, "%s.%s" % (s, e))
               for s in SPLITS for e in ("en", "es", "src", "tgt", "ref")]
    mods = sword_modules()
    en_mod = find_module(mods, r"King James", "sword-text-kjv")
    es_mod = find_module(mods, r"Reina.?Valera.*1909|sparv", "sword-text-sparv")
    inputs = [SCRIPT] + module_files(en_mod) + module_files(es_mod)
    if not force and up_to_date(outputs, inputs):
        n = {s: count_lines(os.path.join(odir, s + ".en")) for s in SPLITS}
        log("bible: up to date in %s (train %d, dev %d, test %d verse pairs); --force rebuilds"
            % (odir, n["train"], n["dev"], n["test"]))
        return
    log("bible: exporting %s (English) and %s (Spanish) with diatheke ..." % (en_mod, es_mod))
    pe, ps = start_export(en_mod), start_export(es_mod)  # the two exports run in parallel
    es, es_order, es_stats = parse_export(es_mod, ps, "es")
    en, en_order, en_stats = parse_export(en_mod, pe, "en")
    fx = fix_spanish(es, es_order)
    log("bible: %s: %d verses (%d psalm titles moved into verse 1); %s: %d verses "
        "(%d stanza letters removed from Psalm 119, %d chapter-initial capitals lowered, "
        "%d subscriptions removed)"
        % (en_mod, len(en), en_stats["titles"], es_mod, len(es), fx["ps119"], fx["caps"],
           fx["subscriptions"]))
    for name, st in ((en_mod, en_stats), (es_mod, es_stats)):
        if st["continuations"]:
            log("bible: note: %s: %d continuation lines joined to their verse"
                % (name, st["continuations"]))
    rank = {b: i for i, b in enumerate(BOOKS)}
    keys = sorted(set(en) | set(es), key=lambda k: (rank[k[0]], k[1], k[2]))
    pairs, st = align_bible(en, es, keys)
    rows = {s: [] for s in SPLITS}
    for k, e, s in pairs:
        rows[bible_split(k[0])].append((ref_str(k), e, s))
    os.makedirs(odir, exist_ok=True)
    for sp in SPLITS:
        r = rows[sp]
        write_lines(os.path.join(odir, sp + ".ref"), [x[0] for x in r])
        for ext, col in (("en", 1), ("src", 1), ("es", 2), ("tgt", 2)):
            write_lines(os.path.join(odir, "%s.%s" % (sp, ext)), [x[col] for x in r])
    nbooks = {sp: len({x[0].rsplit(" ", 1)[0] for x in rows[sp]}) for sp in SPLITS}
    log("bible: %d references; empty: %d English, %d Spanish; verse alignment differs from "
        "the references in %d books (%s): %d verses paired with a shifted Spanish slot, "
        "%d many-to-one groups dropped (%d English verses, %d Spanish slots)"
        % (len(keys), st["empty_en"], st["empty_es"], len(st["books"]),
           ", ".join(st["books"]) or "none", st["realigned"], st["groups"], st["group_en"],
           st["group_es"]))
    log("bible: wrote %d verse pairs to %s: train %d (%d books), dev %d (%d books), "
        "test %d (%d books) [%.1fs]"
        % (len(pairs), odir, len(rows["train"]), nbooks["train"], len(rows["dev"]), nbooks["dev"],
           len(rows["test"]), nbooks["test"], time.time() - t0))


# ----------------------------------------------------------------------------- g2p

CMUDICT = "/usr/share/festival/dicts/cmu/cmudict-0.4.out"
# Festival's CMU phone set: these carry the syllable's stress digit.
VOWELS = set("aa ae ah ao aw ax axr ay eh er ey ih ix iy ow oy uh uw".split())
ENTRY_RE = re.compile(r'^\("((?:[^"\\]|\\.)*)" (\S+) \((.*)\)\)$')
SYL_RE = re.compile(r"\(\(([^()]*)\) ([0-9])\)")
WORD_OK_RE = re.compile(r"^[a-z']+$")


def parse_pron(body, where):
    syls = SYL_RE.findall(body)
    if " ".join("((%s) %s)" % s for s in syls) != body:
        raise DataError("%s: cannot parse pronunciation %r" % (where, body[:60]))
    phones = []
    for ph, stress in syls:
        for p in ph.split():
            phones.append(p + stress if p in VOWELS else p)
    return " ".join(phones)


def do_g2p(out, force):
    t0 = time.time()
    odir = os.path.join(out, "g2p")
    outputs = [os.path.join(odir, "%s.%s" % (s, e)) for s in SPLITS for e in ("src", "tgt")]
    if not os.path.exists(CMUDICT):
        raise DataError("%s not found; install the Debian package festlex-cmu" % CMUDICT)
    if not force and up_to_date(outputs, [SCRIPT, CMUDICT]):
        n = {s: count_lines(os.path.join(odir, s + ".src")) for s in SPLITS}
        log("g2p: up to date in %s (train %d pairs, dev %d words, test %d words); --force rebuilds"
            % (odir, n["train"], n["dev"], n["test"]))
        return
    prons = {}       # word -> [distinct pronunciations, in file order]
    n_entries = n_skipped = n_dup = 0
    stressless = 0   # stressed (1) syllables without a vowel to carry the digit
    with open(CMUDICT, encoding="ascii") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.startswith("("):
                continue                      # the "MNCL" header
            m = ENTRY_RE.match(line)
            if not m:
                raise DataError("%s:%d: cannot parse %r" % (CMUDICT, lineno, line[:60]))
            n_entries += 1
            word = m.group(1).lower()
            if not WORD_OK_RE.match(word):
                n_skipped += 1
                continue
            body = m.group(3)
            for ph, st in SYL_RE.findall(body):
                if st != "0" and not any(p in VOWELS for p in ph.split()):
                    stressless += 1
            pron = parse_pron(body, "%s:%d" % (CMUDICT, lineno))
            lst = prons.setdefault(word, [])
            if pron in lst:
                n_dup += 1
            else:
                lst.append(pron)
    words = sorted(prons)
    by_split = {s: [w for w in words if split_of_bucket(md5_bucket(w)) == s] for s in SPLITS}
    os.makedirs(odir, exist_ok=True)
    train = [(w, p) for w in by_split["train"] for p in prons[w]]
    write_lines(os.path.join(odir, "train.src"), [w for w, _ in train])
    write_lines(os.path.join(odir, "train.tgt"), [p for _, p in train])
    for sp in ("dev", "test"):
        write_lines(os.path.join(odir, sp + ".src"), by_split[sp])
        write_lines(os.path.join(odir, sp + ".tgt"), ["\t".join(prons[w]) for w in by_split[sp]])
    multi = {s: sum(1 for w in by_split[s] if len(prons[w]) > 1) for s in SPLITS}
    npairs = sum(len(v) for v in prons.values())
    log("g2p: %s: %d entries, %d skipped (characters other than a-z and '), %d duplicate "
        "(word, pronunciation) pairs removed -> %d words, %d (word, pronunciation) pairs, "
        "%d words with several pronunciations"
        % (os.path.basename(CMUDICT), n_entries, n_skipped, n_dup, len(words), npairs,
           sum(multi.values())))
    if stressless:
        log("g2p: note: %d stressed syllables have no vowel (digit dropped)" % stressless)
    log("g2p: wrote %s: train %d words / %d pairs (%d multi), dev %d words (%d multi, %d prons), "
        "test %d words (%d multi, %d prons) [%.1fs]"
        % (odir, len(by_split["train"]), len(train), multi["train"],
           len(by_split["dev"]), multi["dev"], sum(len(prons[w]) for w in by_split["dev"]),
           len(by_split["test"]), multi["test"], sum(len(prons[w]) for w in by_split["test"]),
           time.time() - t0))


# ----------------------------------------------------------------------------- main

TASKS = {"bible": do_bible, "g2p": do_g2p}


USAGE = "usage: prepare_data.py [--out DIR] [--force] [bible] [g2p]"


def main(argv):
    # no argparse: it needs gettext/shutil, which python3-minimal lacks
    out, force, tasks = os.path.join(ROOT, "data"), False, []
    args = list(argv)
    while args:
        a = args.pop(0)
        if a in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        if a == "--force":
            force = True
        elif a == "--out" and args:
            out = args.pop(0)
        elif a.startswith("--out="):
            out = a[len("--out="):]
        elif a in TASKS:
            if a not in tasks:
                tasks.append(a)
        else:
            print("%s\n%s: error: bad argument %r (tasks: bible, g2p)" % (USAGE, PROG, a),
                  file=sys.stderr)
            return 2
    try:
        for t in tasks or list(TASKS):
            TASKS[t](out, force)
    except DataError as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
