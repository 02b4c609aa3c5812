#!/usr/bin/env python3
"""make_metric_vectors.py - write BLEU/chrF test vectors with the real sacrebleu.

tests/test_metrics.c checks src/metrics.c against these files:

  tests/data/metrics/tok13a.in        one line per case (no newline inside)
  tests/data/metrics/tok13a.out       sacrebleu's 13a tokenization of each line
                                      (after rstrip, as BLEU applies it)
  tests/data/metrics/NAME.hyp         hypothesis lines of corpus NAME
  tests/data/metrics/NAME.ref1 ...    reference sets 1..nrefs of corpus NAME
  tests/data/metrics/expected.txt     one line per corpus, whitespace separated:
      NAME NREFS NLINES BLEU BP RATIO SYS_LEN REF_LEN C1..C4 T1..T4 P1..P4
      CHRF then 18 ints: hyp ref match for char orders 1..6
    lines starting with '#' are comments; 'sacrebleu VERSION' records the version.

Every file is UTF-8, one segment per '\\n'-terminated line; segments never hold
'\\n' or '\\r' so any line reader that splits on '\\n' reads them back exactly.

Usage (needs sacrebleu 2.x, e.g. in a venv):
  python3 -m venv /tmp/sbvenv && /tmp/sbvenv/bin/pip install sacrebleu
  /tmp/sbvenv/bin/python scripts/make_metric_vectors.py [OUTDIR]
The corpora are fixed or drawn from a seeded RNG, so reruns give the same files.
"""
import os
import random
import sys

import sacrebleu
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.utils import sum_of_lists

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "metrics")

# --------------------------------------------------------------------------
# hand-written corpora: (name, hyps, [refset1, refset2, ...])

CORPORA = []


def corpus(name, hyps, *refsets):
    for r in refsets:
        assert len(r) == len(hyps), name
    CORPORA.append((name, list(hyps), [list(r) for r in refsets]))


corpus("punct", [
    'He said: "It\'s 3,000.50 dollars, not 3.000,50!"',
    "The U.S.A. (and others) agreed -- reluctantly -- on 1990-1995 terms.",
    "E-mail me at john.doe@example.com, or call 555-1234.",
    "Prices rose 5.5% in Q3; analysts [mostly] expected 4.2%.",
    "&quot;Quoted&quot; &amp; escaped &lt;tags&gt; here &amp;amp; there.",
    "Wait... what?! Really?? Yes.",
    "Numbers: 1,2,3 and 4.5.6 and .5 and 5. and ,7",
    "It was a well-known fact - or so they said - in the 1980s.",
    "<skipped> The rest of the line <skipped>survives.",
    "Path /usr/bin/env and C:\\Windows\\System32 and ~user/{a,b}",
    "Ratio 3:2, time 10:30pm, score 2-1, range 10-20.",
    "'single quotes' and `backticks` and ^carets^ and _under_score_",
],
    [
    'He said: "It\'s 3,000.50 dollars, not 3.000,50."',
    "The U.S.A. (and others) agreed - reluctantly - on 1990-1995 terms.",
    "Email me at john.doe@example.com or call 555-1234.",
    "Prices rose 5.5 % in Q3; analysts (mostly) expected 4.2%.",
    '"Quoted" & escaped <tags> here &amp; there.',
    "Wait ... what ?! Really ?? Yes .",
    "Numbers: 1, 2, 3 and 4.5.6 and 0.5 and 5. and ,7",
    "It was a well-known fact -- or so they said -- in the 1980s.",
    "The rest of the line survives.",
    "Path /usr/bin/env and C:\\Windows\\System32 and ~user/{a,b}",
    "Ratio 3:2, time 10:30 pm, score 2-1, range 10 - 20.",
    "'single quotes' and `backticks` and ^carets^ and _under_score_",
])

corpus("spanish", [
    "¿Dónde está la estación de tren?",
    "¡Qué día tan bonito hace hoy!",
    "El niño comió pingüino asado, según él.",
    "La reunión será el 12.05.2024 a las 18,30 h.",
    "«No lo sé», respondió María —con una sonrisa—.",
    "Años después, el señor Núñez volvió a Córdoba.",
],
    [
    "¿Dónde está la estación del tren?",
    "¡Qué día más bonito hace hoy!",
    "El niño comió pingüino asado, según dijo él.",
    "La reunión será el 12.05.2024 a las 18,30 h.",
    "«No lo sé», contestó María, con una sonrisa.",
    "Años más tarde, el señor Núñez regresó a Córdoba.",
])

corpus("empty_hyp", [
    "",
    "the cat sat on the mat",
    "",
    "   ",
    "a quick brown fox jumps over the lazy dog",
],
    [
    "there is nothing here",
    "the cat sat on the mat",
    "",
    "an empty hypothesis again",
    "a quick brown fox jumped over the lazy dog",
])

corpus("shorter", [
    "the cat",
    "this is short",
    "only four words here",
    "tiny",
],
    [
    "the cat sat on the mat near the door",
    "this is a much longer reference sentence than the hypothesis",
    "only four words here, but the reference keeps going on",
    "tiny hypothesis versus a long reference",
])

corpus("longer", [
    "the cat sat on the mat near the door and then it went away to sleep",
    "this is a much longer hypothesis than the reference sentence is",
    "words words words words words words words words words",
],
    [
    "the cat sat on the mat",
    "this is short",
    "words",
])

corpus("multiref", [
    "It is a guide to action which ensures that the military always obeys the commands of the party.",
    "It is to insure the troops forever hearing the activity guidebook that party direct.",
    "The weather is nice today.",
    "He went home early",
    "same length ties",
],
    [
    "It is a guide to action that ensures that the military will forever heed Party commands.",
    "It is a guide to action that ensures that the military will forever heed Party commands.",
    "Today the weather is fine.",
    "He left for home early",
    "ties of length",
],
    [
    "It is the guiding principle which guarantees the military forces always being under the command of the Party.",
    "It is the guiding principle which guarantees the military forces always being under the command of the Party.",
    "It is nice weather today.",
    "He went home early.",
    "the same length ties here",
],
    [
    "It is the practical guide for the army always to heed the directions of the party.",
    "It is the practical guide for the army always to heed the directions of the party.",
    "The weather is good today",
    "",
    "same length",
])

corpus("zero_match", [
    "alpha beta gamma",
    "delta epsilon",
],
    [
    "one two three four",
    "five six",
])

corpus("no_4grams", [
    "a b c",
    "x y",
    "q",
],
    [
    "a b c d",
    "x y z",
    "q r",
])

corpus("smoothing", [
    "the cat the dog the bird",
    "one two three four five six seven",
    "red green blue",
],
    [
    "the dog the cat the fish",
    "seven six five four three two one",
    "blue green red",
])

corpus("unicode", [
    "东京是日本的首都。",
    "Emoji 😀 test 🎉🎉 done",
    "Cafe\u0301 and café differ",
    "non\u00a0breaking\u3000spaces\u2009thin",
    "zero\u200bwidth joiner",
    "Ελληνικά και русский текст",
    "tab\tseparated\ttokens",
    "line\x0bwith\x0cform feeds\x1cand\x1dseps\x85nel",
],
    [
    "东京是日本的首都",
    "Emoji 😀 test 🎉 done",
    "Café and café differ",
    "non breaking spaces thin",
    "zero width joiner",
    "Ελληνικά και русский текст.",
    "tab separated tokens",
    "line with form feeds and seps nel",
])

corpus("all_empty", ["", "", ""], ["", "", ""])

corpus("single", ["Hello, world!"], ["Hello world!"])

# --------------------------------------------------------------------------
# realistic sentences with seeded perturbations

SENTENCES = """The government announced on Tuesday that it would raise the minimum wage by 4.5% next year.
Scientists have discovered a new species of frog in the rainforests of Ecuador.
"We are very pleased with the results," said the company's chief executive, Anna Schmidt.
The match ended 2-1 after a late goal in the 89th minute.
More than 1,200 people attended the concert, despite the heavy rain.
The bridge, built in 1887, will be closed for repairs until March.
According to the report, unemployment fell to 5.2 percent in the third quarter.
She has lived in Paris for twenty years but still speaks with a Spanish accent.
The new law, which takes effect on 1 January, bans single-use plastic bags.
Police said the suspect was arrested at 10:30 p.m. near the train station.
The museum's collection includes more than 3,000 paintings and sculptures.
Oil prices rose sharply after the announcement, reaching $85.40 a barrel.
The children were playing in the park when the storm began.
He told reporters that the negotiations had been "difficult but constructive".
The company plans to hire 500 new employees by the end of the year.
Heavy snowfall disrupted flights across northern Europe on Monday.
The study, published in Nature, followed 10,000 patients over a decade.
Voters will go to the polls on Sunday to elect a new parliament.
The old library was converted into a community center last spring.
Experts warn that the drought could affect crop yields for years to come.
The festival, which attracts visitors from all over the world, starts next week.
Researchers at the university developed a cheaper way to produce solar panels.
The minister resigned on Friday amid allegations of corruption.
Tickets cost between 15 and 40 euros and can be bought online.
It was the warmest summer on record in many parts of the country.
The train from Berlin to Munich was delayed by almost three hours.
A spokesperson for the hospital said the patient was in stable condition.
The price of a cup of coffee has doubled since 2010.
Local residents protested against the construction of a new highway.
The team's coach said he was proud of the players' performance.
Firefighters worked through the night to bring the blaze under control.
The book has been translated into more than 40 languages.
Inflation remained stable at around 2% for most of the year.
The president is expected to visit Japan and South Korea in May.
Several roads were flooded after the river burst its banks.
The app, launched in 2019, now has over 5 million users.
Students will return to school on 4 September after the summer break.
The exhibition explores the history of photography from 1839 to today.
Negotiators reached an agreement early on Saturday morning.
The airline cancelled dozens of flights because of the strike.""".split("\n")

SPANISH = """El gobierno anunció el martes que subirá el salario mínimo un 4,5% el próximo año.
¿Cuántas personas asistieron al concierto a pesar de la lluvia?
«Estamos muy satisfechos con los resultados», dijo la directora ejecutiva.
¡El partido terminó 2-1 tras un gol en el minuto 89!
El puente, construido en 1887, permanecerá cerrado hasta marzo.
Según el informe, el desempleo bajó al 5,2 por ciento en el tercer trimestre.
Los niños jugaban en el parque cuando empezó la tormenta.
La compañía contratará a 500 nuevos empleados antes de fin de año.""".split("\n")

SYNONYMS = {
    "announced": "said", "raise": "increase", "new": "novel", "said": "stated",
    "very": "really", "results": "outcome", "people": "persons", "despite": "in spite of",
    "closed": "shut", "until": "till", "fell": "dropped", "percent": "%",
    "lived": "resided", "arrested": "detained", "near": "close to", "includes": "contains",
    "rose": "increased", "sharply": "strongly", "playing": "games", "began": "started",
    "difficult": "hard", "plans": "intends", "hire": "recruit", "disrupted": "affected",
    "followed": "tracked", "elect": "choose", "converted": "turned", "warn": "caution",
    "cheaper": "less expensive", "resigned": "stepped down", "cost": "are priced",
    "warmest": "hottest", "delayed": "late", "stable": "steady", "doubled": "risen twofold",
    "protested": "demonstrated", "proud": "happy", "worked": "fought", "translated": "rendered",
    "expected": "due", "flooded": "under water", "users": "customers", "return": "go back",
    "explores": "examines", "reached": "struck", "cancelled": "canceled",
    "subirá": "aumentará", "terminó": "acabó", "cerrado": "clausurado", "bajó": "descendió",
    "jugaban": "estaban jugando", "contratará": "empleará",
}


def perturb(rng, sent, strength):
    words = sent.split(" ")
    out = []
    for w in words:
        core = w.strip(".,;:!?\"'«»¿¡")
        r = rng.random()
        if r < 0.08 * strength:
            continue  # drop
        if r < 0.25 * strength and core in SYNONYMS:
            w = w.replace(core, SYNONYMS[core])
        elif r < 0.30 * strength:
            w = w.lower() if rng.random() < 0.5 else w.upper()
        out.append(w)
    if len(out) > 3 and rng.random() < 0.3 * strength:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    s = " ".join(out)
    if rng.random() < 0.2 * strength:
        s = s.rstrip(".") if s.endswith(".") else s + "."
    if rng.random() < 0.1 * strength:
        s = s.replace(",", "")
    return s


rng = random.Random(12345)
refs = SENTENCES + SPANISH
corpus("realistic", [perturb(rng, s, 1.0) for s in refs], refs)
hyp2 = [perturb(rng, s, 1.5) for s in refs]
corpus("realistic_multiref", hyp2, refs, [perturb(rng, s, 0.7) for s in refs])

# --------------------------------------------------------------------------
# fuzz: random strings over an alphabet of tokenizer edge cases

PIECES = [
    "a", "b", "c", "the", "Ab", "1", "2", "0", "9", ".", ",", "-", "'", "&quot;", "&amp;",
    "&lt;", "&gt;", "&", ";", "<skipped>", "<", ">", "skipped", " ", " ", " ", "  ", "\t",
    "\u00a0", "\u3000", "\u2009", "\x0b", "\x1c", "\x85", "é", "ñ", "¿", "¡", "«", "»",
    "—", "–", "“", "”", "…", "$", "%", "/", "(", ")", "[", "]", "{", "}", "_", "`", "^", "~",
    "|", "\\", "@", "#", "!", "?", ":", "=", "+", "*", "\u200b", "😀", "e\u0301", "中",
    "\u200a", "\u2028", "\u205f", "\x1f", "\u1680",
]


def fuzz_line(rng, n):
    return "".join(rng.choice(PIECES) for _ in range(n))


rng = random.Random(777)
fz_h, fz_r1, fz_r2 = [], [], []
for _ in range(150):
    base = fuzz_line(rng, rng.randrange(0, 30))
    fz_h.append(base)
    # references share material with the hypothesis so that there are matches
    cut = rng.randrange(0, len(base) + 1)
    fz_r1.append(base[:cut] + fuzz_line(rng, rng.randrange(0, 10)) + base[cut:])
    fz_r2.append(fuzz_line(rng, rng.randrange(0, 20)) + base[: len(base) // 2])
corpus("fuzz", fz_h, fz_r1, fz_r2)

TOK_CASES = [
    "Hello, world!", "It's 3,000.50 dollars.", "1,000,000 and 3.14 and 3. and .5",
    "a.b,c", "a..b", "a,,b", "1.,2", ".,", "5-6", "a-b", "5--6", "-5", "x5-",
    "U.S.A.", "e.g. i.e., etc.", "&quot;hi&quot;", "&amp;quot;", "&amp;lt;", "&lt;&gt;",
    "&quot", "<skipped>", "<skip<skipped>ped>", "a<skipped>b", "  leading and trailing  ",
    "tabs\tand\u00a0nbsp\u3000ideographic", "trailing nbsp\u00a0", "trailing vt\x0b",
    "¿Qué? ¡Sí!", "«comillas» —raya—", "50%", "$5", "#tag @user", "(a)[b]{c}",
    "a/b\\c", "x:y;z", "2:30", "3.5-4.5", "1-2-3", "a—b", "don't", "'quoted'",
    "\u200bzero", "😀.", "é.", "中,文", "9.", ".9", ",9", "9,", "a9.b", "...", "..9",
    "9..", "-\u0301", "\x1c\x1d\x1e\x1f", "\x85", "",
    # every character Python's str.split() splits on (except \n, \r), between letters
    "x".join(["", *(chr(c) for c in range(0x110000) if chr(c).isspace() and c not in (10, 13)), ""]),
    "x\u180ey\u200bz\u2060w\ufeffv",  # look like spaces but are not
]
for _ in range(200):
    TOK_CASES.append(fuzz_line(rng, rng.randrange(0, 25)))

# --------------------------------------------------------------------------


def check_line(s):
    assert "\n" not in s and "\r" not in s, repr(s)
    return s


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(check_line(line) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    bleu = BLEU()
    chrf = CHRF()
    tok = bleu.tokenizer
    write_lines(os.path.join(OUT, "tok13a.in"), TOK_CASES)
    write_lines(os.path.join(OUT, "tok13a.out"), [tok(s.rstrip()) for s in TOK_CASES])

    name0, hyps0, refs0 = CORPORA[0]
    bleu.corpus_score(hyps0, refs0)
    chrf.corpus_score(hyps0, refs0)
    rows = [
        "# generated by scripts/make_metric_vectors.py; do not edit",
        f"# BLEU signature ({name0}): {bleu.get_signature()}",
        f"# chrF signature ({name0}): {chrf.get_signature()}",
        "# NAME NREFS NLINES BLEU BP RATIO SYS_LEN REF_LEN C1..C4 T1..T4 P1..P4 CHRF "
        "(hyp ref match) x 6",
        f"sacrebleu {sacrebleu.__version__}",
    ]
    for name, hyps, refsets in CORPORA:
        write_lines(os.path.join(OUT, f"{name}.hyp"), hyps)
        for k, r in enumerate(refsets):
            write_lines(os.path.join(OUT, f"{name}.ref{k + 1}"), r)
        b = BLEU().corpus_score(hyps, refsets)
        c = CHRF().corpus_score(hyps, refsets)
        cst = sum_of_lists(CHRF()._extract_corpus_statistics(hyps, refsets))
        assert len(cst) == 18
        f = [name, len(refsets), len(hyps), repr(b.score), repr(b.bp), repr(b.ratio),
             b.sys_len, b.ref_len, *b.counts, *b.totals, *map(repr, b.precisions),
             repr(c.score), *cst]
        rows.append(" ".join(str(x) for x in f))
        print(f"{name:20s} {b}  {c}")
    with open(os.path.join(OUT, "expected.txt"), "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(rows) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, p)) for p in os.listdir(OUT))
    print(f"sacrebleu {sacrebleu.__version__}: wrote {len(CORPORA)} corpora, "
          f"{len(TOK_CASES)} tokenizer cases, {total} bytes to {OUT}")
    assert total < 200 * 1024


if __name__ == "__main__":
    main()
