"""Engine: applies merges to a live model and runs searches, in rooms that follow the data path.

* `loading` — the validated base and adapters (`inputs`), the live model and task heads (`model`), and the
  prepared data of each split (`workspace`);
* `scoring` — the evaluator contract and its cache, cost accounting and back-ends (in-process, Ray), with the
  live patcher, merge cache and prefix cache they use;
* `outputs` — merged models, merged adapters, model cards and `enmp merge`'s output directory;
* `run` — one search in one run directory: journal, rounds, the ask/tell loop, baselines, the report;
* `dry_run` — a config checked offline on a tiny stand-in model.

Each room imports only the rooms listed before it (tests/test_layers.py).
"""
