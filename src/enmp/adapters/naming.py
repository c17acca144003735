"""Layer index and projection name of an adapted module, parsed from its dotted path.

ENMP prunes and searches per (layer, projection), so every target must map to one. Built-in patterns
cover the common families; anything else needs a user regex (``--layer-regex``) with a named group
``layer`` and, optionally, ``proj``.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..errors import EnmpError

# (family, pattern). Searched in order against the full module path; the first match wins. Projection
# names are what users write in target_modules ("query", "q_proj", "attention.output.dense").
BUILTIN_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("bert/roberta", re.compile(
        r"(?:^|\.)layer\.(?P<layer>\d+)\.attention\.self\.(?P<proj>query|key|value)$")),
    ("vit", re.compile(
        r"(?:^|\.)layer\.(?P<layer>\d+)\.attention\.attention\.(?P<proj>query|key|value)$")),
    ("bert/roberta/vit", re.compile(
        r"(?:^|\.)layer\.(?P<layer>\d+)\.(?P<proj>attention\.output\.dense|intermediate\.dense|output\.dense)$")),
    ("llama/mistral/qwen/clip", re.compile(
        r"(?:^|\.)layers\.(?P<layer>\d+)\.(?:self_attn|mlp)\."
        r"(?P<proj>q_proj|k_proj|v_proj|o_proj|out_proj|gate_proj|up_proj|down_proj|fc1|fc2)$")),
    ("gpt-neox/falcon", re.compile(
        r"(?:^|\.)(?:layers|h)\.(?P<layer>\d+)\.(?:attention|self_attention)\.(?P<proj>query_key_value|dense)$")),
    # Fallback for other stacks (DistilBERT "transformer.layer.N.attention.q_lin", T5 "block.N...", ...):
    # the projection is everything after the layer index.
    ("generic", re.compile(r"(?:^|\.)(?:layer|layers|h|blocks|block)\.(?P<layer>\d+)\.(?P<proj>.+)$")),
]

_FIX = ("pass --layer-regex with a named group 'layer' (and optionally 'proj'), "
        r"e.g. 'blocks\.(?P<layer>\d+)\.(?P<proj>\w+)$'")


@lru_cache(maxsize=64)
def compile_layer_regex(regex: str) -> re.Pattern:
    """Compile and check a user layer regex (cached: it is applied to every module)."""
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise EnmpError(f"invalid layer regex {regex!r} ({exc})", where="--layer-regex", fix=_FIX) from exc
    if "layer" not in pattern.groupindex:
        raise EnmpError(f"layer regex {regex!r} has no named group 'layer'", where="--layer-regex", fix=_FIX)
    return pattern


def _from_match(module: str, m: re.Match, source: str) -> tuple[int, str]:
    try:
        layer = int(m.group("layer"))
    except (TypeError, ValueError):
        raise EnmpError(f"{source} matched module '{module}' but group 'layer' is {m.group('layer')!r}, "
                        "not an integer", where="--layer-regex", fix=_FIX) from None
    proj = m.groupdict().get("proj")
    if not proj:
        rest = module[m.end("layer"):].lstrip(".")
        proj = rest or module.rsplit(".", 1)[-1]
    return layer, proj


def parse_module(module: str, layer_regex: str | None = None) -> tuple[int, str]:
    """(layer index, projection) of a module path; a user regex replaces the built-in patterns."""
    if layer_regex:
        m = compile_layer_regex(layer_regex).search(module)
        if m is None:
            raise EnmpError(f"layer regex {layer_regex!r} does not match module '{module}'",
                            where="--layer-regex", fix="make the regex match every adapted module")
        return _from_match(module, m, f"layer regex {layer_regex!r}")
    for family, pattern in BUILTIN_PATTERNS:
        m = pattern.search(module)
        if m:
            return _from_match(module, m, f"built-in {family} pattern")
    raise EnmpError(f"cannot tell the layer index of adapted module '{module}'", fix=_FIX)
