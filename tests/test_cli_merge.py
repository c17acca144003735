"""`enmp merge` / `enmp inspect` end to end on the tiny BERT, Llama and CLIP-vision families.

Almost every case calls the CLI in-process (`enmp.cli.main.main`, exactly what the console script runs) so
the suite stays fast; one real subprocess proves the installed `enmp` script works. Outputs are checked
against the base checkpoint and against PEFT's own merge_and_unload, never against enmp itself.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from enmp.tiny import FAMILIES, load_tiny_model, make_lora_adapter, make_task_set, peft_merged_state
from tiny_runs import cli

# Per family: the adapted projections' leaf names used by rank_pattern / alpha_pattern adapters.
PATTERN_KEYS = {"bert": ("query", "value"), "llama": ("q_proj", "v_proj"), "clip": ("q_proj", "v_proj")}
METHODS = {  # test id → CLI flags
    "ta": ["--method", "ta", "--lam", "0.7"],
    "ties": ["--method", "ties", "--top-k", "60"],
    "dare": ["--method", "dare", "--drop-rate", "0.3", "--seed", "3"],
    "dare_ties": ["--method", "dare_ties", "--drop-rate", "0.2", "--top-k", "70"],
    "tsv": ["--method", "tsv"],
    "knots-ties": ["--method", "knots", "--inner", "ties"],
    "knots-ta": ["--method", "knots", "--inner", "ta", "--lam", "0.5"],
    "core_space-tsv": ["--method", "core_space", "--inner", "tsv"],
    "core_space-ta": ["--method", "core_space", "--inner", "ta"],
    "core_space-ties": ["--method", "core_space", "--inner", "ties"],
    "core_space-iso_c": ["--method", "core_space", "--inner", "iso_c"],
    "iso_c": ["--method", "iso_c", "--lam", "0.4"],
    "core_space-iso": ["--method", "core_space", "--iso"],
}


# ----------------------------------------------------------------------------------------------- helpers


def ok(*args) -> str:
    code, out, err = cli(*args)
    assert code == 0, f"enmp {' '.join(map(str, args))} failed ({code}):\n{err}"
    assert "Traceback" not in err
    return out + err


def tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}


def adapter_flags(adapters: dict[str, Path], names=None) -> list[str]:
    return [x for n in (names or adapters) for x in ("--adapter", f"{n}={adapters[n]}")]


def adapted_weights(adapter_dir: Path) -> set[str]:
    """Base tensor names an adapter changes, read from PEFT's own key names (adapters are trained on the
    base's class, so `base_model.model.<module>.lora_A.weight` ↔ `<module>.weight`)."""
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as fh:
        keys = list(fh.keys())
    return {k[len("base_model.model."):-len(".lora_A.weight")] + ".weight" for k in keys if ".lora_A." in k}


def model_class(model_dir: Path):
    import transformers

    arch = json.loads((model_dir / "config.json").read_text())["architectures"][0]
    return getattr(transformers, arch), arch


def load_model(model_dir: Path):
    cls, _ = model_class(model_dir)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return cls.from_pretrained(str(model_dir)).eval()


def forward(model, family: str) -> torch.Tensor:
    """A fixed input through the model; returns its main output tensor."""
    with torch.no_grad():
        if family == "clip":
            x = torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32)
            return model(pixel_values=x).image_embeds
        ids = torch.tensor([[5, 12, 20, 31, 7, 44, 9]])
        out = model(input_ids=ids)
        return out.logits if family == "llama" else out.last_hidden_state


class FamilySets:
    """Per family, built on first use: base + task0..2 (ranks 4/2/6, α 8/4/12, task2 rsLoRA) + an adapter
    with rank_pattern/alpha_pattern; PEFT references are cached too."""

    def __init__(self, root: Path):
        self.root, self._sets, self._refs = root, {}, {}

    def __call__(self, family: str) -> tuple[Path, dict[str, Path]]:
        if family not in self._sets:
            base, adapters = make_task_set(self.root / family, family)
            q, v = PATTERN_KEYS[family]
            adapters["pattern"] = make_lora_adapter(base, self.root / family / "pattern", family=family, r=4,
                                                    alpha=8, seed=200, rank_pattern={q: 8},
                                                    alpha_pattern={v: 3, q: 5})
            self._sets[family] = (base, adapters)
        return self._sets[family]

    def peft(self, family: str, name: str) -> dict[str, torch.Tensor]:
        if (family, name) not in self._refs:
            base, adapters = self(family)
            self._refs[family, name] = peft_merged_state(base, adapters[name], family)
        return self._refs[family, name]


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> FamilySets:
    return FamilySets(tmp_path_factory.mktemp("families"))


TASKS = ["task0", "task1", "task2"]


# ------------------------------------------------------------------------------------ every method, family
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("family", FAMILIES)
def test_merge_writes_loadable_hf_model_dir(sets, tmp_path, family, method):
    base, adapters = sets(family)
    out = tmp_path / "merged"
    log = ok("merge", "--base", base, *adapter_flags(adapters, TASKS), *METHODS[method], "--out", out)
    assert f"wrote {out}" in log

    # a Hugging Face model dir: config, weights with exactly the base's tensor names, tokenizer files
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert json.loads((out / "config.json").read_text()) == json.loads((base / "config.json").read_text())
    side = {p.name for p in base.iterdir()} - {"config.json", "model.safetensors"}
    assert side, "tiny bases ship tokenizer / processor files"
    for name in side:
        assert (out / name).read_bytes() == (base / name).read_bytes(), name
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temp dirs left next to --out"

    merged, ref = tensors(out / "model.safetensors"), tensors(base / "model.safetensors")
    assert set(merged) == set(ref)
    adapted = adapted_weights(adapters["task0"])
    assert adapted and adapted <= set(ref)
    for name, w in merged.items():
        assert w.dtype == ref[name].dtype and w.shape == ref[name].shape, name
        if name in adapted:
            assert torch.isfinite(w).all() and not torch.equal(w, ref[name]), f"{name} unchanged"
        else:
            assert torch.equal(w, ref[name]), f"{name} changed but is not adapted"

    # from_pretrained loads it as the base's class, with nothing missing or unexpected
    cls, arch = model_class(base)
    model = load_model(out)
    assert type(model) is cls and type(model).__name__ == arch
    state = model.state_dict()
    for name in adapted:
        assert torch.equal(state[name], merged[name])


# ------------------------------------------------------------------------------- exactness against PEFT
@pytest.mark.parametrize("adapter", ["task0", "task2", "pattern"], ids=["lora", "rslora", "rank_alpha_pattern"])
@pytest.mark.parametrize("family", FAMILIES)
def test_ta_of_one_adapter_equals_peft_merge_and_unload(sets, tmp_path, family, adapter):
    base, adapters = sets(family)
    out = tmp_path / "ta"
    ok("merge", "--base", base, "--adapter", f"{adapter}={adapters[adapter]}", "--method", "ta", "--lam", "1",
       "--out", out)
    ref = sets.peft(family, adapter)
    merged = tensors(out / "model.safetensors")
    changed = [n for n, w in tensors(base / "model.safetensors").items() if not torch.equal(w, ref[n])]
    assert set(changed) == adapted_weights(adapters[adapter])
    for name, w in merged.items():
        torch.testing.assert_close(w, ref[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("family", FAMILIES)
def test_adapters_of_different_ranks_merge_to_sum_of_peft_updates(sets, tmp_path, family):
    """TA (λ=1) of ranks 4, 2, 6 (one rsLoRA) and a rank/alpha-pattern adapter = base + Σ PEFT updates."""
    base, adapters = sets(family)
    names = [*TASKS, "pattern"]
    out = tmp_path / "sum"
    ok("merge", "--base", base, *adapter_flags(adapters, names), "--method", "ta", "--lam", "1", "--out", out)
    ref = tensors(base / "model.safetensors")
    merged = tensors(out / "model.safetensors")
    for name, w in merged.items():
        expected = ref[name] + sum(sets.peft(family, n)[name] - ref[name] for n in names)
        torch.testing.assert_close(w, expected, atol=2e-6, rtol=1e-5, msg=name)


# ------------------------------------------------------------------------------------------------- masks
def write_mask(path: Path, tasks: list[str], keep_rows: dict[str, list[int]], layers=(0, 1)) -> Path:
    path.write_text(json.dumps({"tasks": tasks, "layers": list(layers), "keep": [keep_rows[t] for t in tasks]}))
    return path


@pytest.mark.parametrize("method", ["ties", "dare_ties", "core_space"])
@pytest.mark.parametrize("family", FAMILIES)
def test_mask_pruning_a_task_everywhere_equals_merging_without_it(sets, tmp_path, family, method):
    base, adapters = sets(family)
    # task order in the file differs from the --adapter order: the mask is matched by name
    mask = write_mask(tmp_path / "mask.json", ["task2", "task1", "task0"],
                      {"task0": [1, 1], "task1": [0, 0], "task2": [1, 1]})
    ok("merge", "--base", base, *adapter_flags(adapters, TASKS), "--method", method, "--seed", "5",
       "--mask", mask, "--out", tmp_path / "masked")
    ok("merge", "--base", base, *adapter_flags(adapters, ["task0", "task2"]), "--method", method, "--seed", "5",
       "--out", tmp_path / "without")
    masked, without = tensors(tmp_path / "masked/model.safetensors"), tensors(tmp_path / "without/model.safetensors")
    assert set(masked) == set(without)
    for name in masked:
        assert torch.equal(masked[name], without[name]), name
    saved = json.loads((tmp_path / "masked/mask.json").read_text())
    assert saved["keep"][saved["tasks"].index("task1")] == [0, 0]


@pytest.mark.parametrize("family", FAMILIES)
def test_all_zero_mask_gives_the_base_weights_bit_identically(sets, tmp_path, family):
    base, adapters = sets(family)
    mask = write_mask(tmp_path / "none.json", TASKS, {t: [0, 0] for t in TASKS})
    log = ok("merge", "--base", base, *adapter_flags(adapters, TASKS), "--method", "tsv", "--mask", mask,
             "--out", tmp_path / "out")
    assert "6 module(s) pruned" in log
    merged, ref = tensors(tmp_path / "out/model.safetensors"), tensors(base / "model.safetensors")
    assert set(merged) == set(ref)
    for name in ref:
        assert torch.equal(merged[name], ref[name]), name


# ------------------------------------------------------------------------------------- --save-adapter
@pytest.mark.parametrize("family", FAMILIES)
def test_saved_adapter_loads_with_peft_and_reproduces_the_merge(sets, tmp_path, family):
    from peft import PeftModel

    base, adapters = sets(family)
    out = tmp_path / "merged"
    log = ok("merge", "--base", base, *adapter_flags(adapters, TASKS), "--method", "ties", "--save-adapter",
             "--out", out)
    assert "reconstruction error" not in log  # the default rank is exact
    cfg = json.loads((out / "adapter/adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] <= 32

    merged_model = load_model(out)
    peft_model = PeftModel.from_pretrained(load_tiny_model(base, family), str(out / "adapter")).eval()
    torch.testing.assert_close(forward(peft_model, family), forward(merged_model, family), atol=1e-4, rtol=1e-4)
    unloaded = peft_model.merge_and_unload().state_dict()
    for name, w in tensors(out / "model.safetensors").items():
        torch.testing.assert_close(unloaded[name], w, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_low_rank_adapter_prints_its_reconstruction_error_and_still_loads(sets, tmp_path, family):
    from peft import PeftModel

    base, adapters = sets(family)
    out = tmp_path / "merged"
    log = ok("merge", "--base", base, *adapter_flags(adapters, TASKS), "--method", "ta", "--save-adapter",
             "--adapter-rank", "1", "--out", out)
    errors = json.loads((out / "adapter" / "reconstruction_error.json").read_text())
    reported = {m: e["relative_error"] for m, e in errors.items()}
    assert all(e["rank"] == 1 for e in errors.values())
    adapted = {w[: -len(".weight")] for w in adapted_weights(adapters["task0"])}
    assert set(reported) == adapted  # every matrix: ranks 4+2+6 never fit in rank 1
    worst = max(reported.values())
    assert re.search(rf"adapter: {len(adapted)}/{len(adapted)} matrices truncated to rank ≤ 1; .* max {worst:.2e}", log)
    with safe_open(str(out / "adapter/adapter_model.safetensors"), framework="pt") as fh:
        assert all(fh.get_slice(k).get_shape()[0 if "lora_A" in k else 1] == 1 for k in fh.keys())

    model = PeftModel.from_pretrained(load_tiny_model(base, family), str(out / "adapter")).merge_and_unload()
    approx, merged, ref = model.state_dict(), tensors(out / "model.safetensors"), tensors(base / "model.safetensors")
    for module, err in reported.items():
        w = module + ".weight"
        delta = merged[w] - ref[w]
        actual = float(torch.linalg.matrix_norm(approx[w] - merged[w]) / torch.linalg.matrix_norm(delta))
        assert math.isclose(actual, err, rel_tol=0.02, abs_tol=1e-4), (module, actual, err)
        assert 0 < err < 1


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtype_writes_model_and_adapter_in_that_dtype(sets, tmp_path, dtype):
    from peft import PeftModel

    base, adapters = sets("bert")
    out = tmp_path / "merged"
    ok("merge", "--base", base, *adapter_flags(adapters, TASKS), "--method", "ties", "--dtype", dtype,
       "--save-adapter", "--out", out)
    want = getattr(torch, dtype)
    merged, ref = tensors(out / "model.safetensors"), tensors(base / "model.safetensors")
    assert set(merged) == set(ref)
    assert all(t.dtype == want for t in merged.values() if t.is_floating_point())
    for name in set(ref) - adapted_weights(adapters["task0"]):
        assert torch.equal(merged[name], ref[name].to(want)), name
    assert json.loads((out / "config.json").read_text())["dtype"] == dtype
    assert load_model(out).dtype == want
    assert all(t.dtype == want for t in tensors(out / "adapter/adapter_model.safetensors").values())
    PeftModel.from_pretrained(load_tiny_model(base, "bert"), str(out / "adapter")).merge_and_unload()


# -------------------------------------------------------------------------------------------- determinism
def test_dare_is_deterministic_per_seed(sets, tmp_path):
    base, adapters = sets("llama")

    def run(name: str, seed: int) -> bytes:
        ok("merge", "--base", base, *adapter_flags(adapters, TASKS), "--method", "dare", "--drop-rate", "0.5",
           "--seed", seed, "--out", tmp_path / name)
        return (tmp_path / name / "model.safetensors").read_bytes()

    first, again, other = run("a", 11), run("b", 11), run("c", 12)
    assert first == again
    assert first != other


# ------------------------------------------------------------------------------------------------ inspect
@pytest.mark.parametrize("family", FAMILIES)
def test_inspect_prints_tasks_ranks_and_scales(sets, family):
    base, adapters = sets(family)
    code, out, err = cli("inspect", "--base", base, *adapter_flags(adapters, TASKS))
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    expected = {"task0": ("4", "2.0"), "task1": ("2", "2.0"), "task2": ("6", f"{12 / math.sqrt(6):.6f}")}
    assert set(expected) <= set(rows), out
    for task, (rank, scale) in expected.items():
        cells = [c.strip() for c in rows[task].split("│")]
        assert rank in cells and scale in cells, rows[task]
        assert str(adapters[task]) in cells  # paths are never truncated, even when piped
    assert "2 layers" in out and "8 matrices" in out
    for proj in PATTERN_KEYS[family]:
        assert proj in out


# ---------------------------------------------------------------------------------------------- overwrite
def test_existing_out_needs_overwrite_and_is_then_replaced(sets, tmp_path):
    base, adapters = sets("bert")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "model.safetensors").write_bytes(b"old weights")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}

    code, _, err = cli("merge", "--base", base, *adapter_flags(adapters, TASKS), "--out", out)
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--overwrite" in errors[0] and str(out) in errors[0]
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    ok("merge", "--base", base, *adapter_flags(adapters, TASKS), "--out", out, "--overwrite")
    assert not (out / "notes.txt").exists()
    assert set(tensors(out / "model.safetensors")) == set(tensors(base / "model.safetensors"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp or moved-aside dirs left


# ----------------------------------------------------------------------------------------- real process
def test_console_script_end_to_end(sets, tmp_path):
    """The installed `enmp` script: CoreSpace + TSV + Iso-C (the paper's vision setting) with an adapter."""
    base, adapters = sets("clip")
    script = Path(sys.executable).with_name("enmp")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-c", "from enmp.cli.main import main; main()"]
    out = tmp_path / "merged"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, "merge", "--base", str(base), *adapter_flags(adapters, TASKS),
                           "--method", "core_space", "--inner", "tsv", "--iso", "--save-adapter", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and f"wrote {out}" in proc.stderr
    assert (out / "adapter/adapter_model.safetensors").is_file()
    assert torch.isfinite(forward(load_model(out), "clip")).all()
