"""A task kind is declared once, in its own module, and everything else is derived from that declaration.

The acceptance test registers a throw-away kind (the "module" below, plus its one line in `KINDS`) with a
made-up task-config key, and shows that config parsing accepts that key on its tasks and refuses it on others,
and that the workspace loads the model class and processor it declares, builds its tasks and scores them with
its `predict`, end to end through a search run, with no other change. The rest checks every registered kind's
declaration is complete and that each way a task config can get its kind wrong is one clear line.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
import transformers
import yaml

from enmp.config import TaskConfig, load_config, parse_config
from enmp.engine.loading.model import build_task
from enmp.engine.loading.workspace import build_workspace
from enmp.errors import EnmpError
from enmp.evaluation import KINDS, Head, PreparedSplit, TaskKind, available_kinds, correct, get_kind, model_class_for
from enmp.evaluation.kinds import PROCESSORS, Required
from enmp.evaluation.kinds.base import length_batches
from enmp.options import Option, Options
from tiny_runs import make_run

# ------------------------------------------------------------------ the throw-away kind (one "module")
ANSWER = Option("answer", int, 0, "the class every example is predicted as", low=0)


class ConstantTask(TaskKind):
    """Runs the model, then predicts one class for every example: the task config's own `answer` key."""

    kind = "constant"
    options = Options(ANSWER)
    model_class = "AutoModel"
    processor = "tokenizer"

    def __init__(self, name, head, *, answer: int):
        super().__init__(name, head)
        self.answer = answer

    @classmethod
    def check_config(cls, tc, options, where):
        if not tc.labels:
            raise EnmpError("constant tasks need labels", where=f"{where}.labels", fix="list the class names")

    @classmethod
    def from_config(cls, tc, adapter_dir, extra):
        head = Head(torch.zeros(len(tc.labels), 1), None, list(tc.labels))
        return cls(tc.name, head, answer=tc.kind_options()["answer"])

    def prepare(self, ex, tokenizer, *, batch_size, max_length):
        enc = tokenizer(ex.texts, truncation=True, max_length=max_length)
        batches, labels, order = [], [], []
        for idx in length_batches([len(ids) for ids in enc["input_ids"]], batch_size):
            batches.append(dict(tokenizer.pad([{k: enc[k][i] for k in enc.keys()} for i in idx], return_tensors="pt")))
            labels.append(torch.tensor([ex.labels[i] for i in idx]))
            order += idx
        return PreparedSplit(batches, labels, order)

    def predict(self, model, batch):
        hidden = model(**batch).last_hidden_state  # the AutoModel it declared
        return torch.full((hidden.shape[0],), self.answer, device=hidden.device)


@pytest.fixture()
def constant(monkeypatch):
    monkeypatch.setitem(KINDS, "constant", ConstantTask)  # what its one line in registry.KINDS does


def _data(**task) -> dict:
    return {"base": "base", "tasks": [{"name": "a", "adapter": "a", "data": {"hub": "x"}, **task}]}


def _parse(tmp_path, **task):
    return parse_config(_data(**task), where="run.yaml", root=tmp_path)


# ------------------------------------------------------------------ acceptance
def test_a_new_kind_and_its_key_are_checked_from_its_declaration(constant, tmp_path):
    assert "constant" in available_kinds() and get_kind("constant") is ConstantTask
    tc = _parse(tmp_path, kind="constant", answer=1, labels=["x", "y"]).tasks[0]
    assert tc.kind_options() == {"answer": 1} and tc.model_dump()["answer"] == 1
    assert _parse(tmp_path, kind="constant", labels=["x"]).tasks[0].kind_options() == {"answer": 0}  # its default
    with pytest.raises(EnmpError, match=re.escape("run.yaml: task 'a'.answer: classification tasks take no answer "
                                                  "— answer is for constant tasks (classification takes: pooling)")):
        _parse(tmp_path, answer=1)
    with pytest.raises(EnmpError, match=re.escape("task 'a'.pooling: constant tasks take no pooling — pooling is "
                                                  "for classification tasks (constant takes: answer)")):
        _parse(tmp_path, kind="constant", labels=["x"], pooling="last")
    with pytest.raises(EnmpError, match=re.escape("task 'a'.answer: answer must be an integer ≥ 0, got -1")):
        _parse(tmp_path, kind="constant", labels=["x"], answer=-1)
    with pytest.raises(EnmpError, match=re.escape("task 'a'.labels: constant tasks need labels")):
        _parse(tmp_path, kind="constant")
    with pytest.raises(EnmpError, match="unknown task kind 'constnat' — choose one of: .*constant"):
        _parse(tmp_path, kind="constnat")
    # it shares a run with kinds that load the same model, and no other
    assert model_class_for({"constant", "classification"}) == "AutoModel"
    with pytest.raises(EnmpError, match="constant tasks cannot be mixed with clip_zero_shot tasks in one run"):
        model_class_for({"constant", "clip_zero_shot"})


def test_a_new_kind_runs_through_the_workspace_and_a_search(constant, tmp_path):
    from enmp.api import run_search

    path = make_run(tmp_path, "bert", n_tasks=2, n_val=10, n_test=6, strategy="none", random_repeats=0)
    data = yaml.safe_load(path.read_text())
    for t in data["tasks"]:
        t.update(kind="constant", answer=2, labels=["c0", "c1", "c2"])
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_config(path)
    ws = build_workspace(cfg)
    assert isinstance(ws.model, transformers.BertModel)  # AutoModel, as it declared
    assert isinstance(ws.processors["constant"], transformers.PreTrainedTokenizerBase)
    for t, task in enumerate(ws.tasks):
        assert isinstance(task, ConstantTask) and task.answer == 2
        built = build_task(cfg.tasks[t], Path(cfg.tasks[t].adapter), {})
        assert isinstance(built, ConstantTask) and built.head.labels == ["c0", "c1", "c2"]
        for split in ("val", "test"):
            labels = torch.tensor(ws.examples[split][t].labels)
            assert torch.equal(correct(task, ws.model, ws.splits[split][t]), labels == 2)
    report = run_search(cfg, tmp_path / "run", show_progress=False, print_table=False, workspace=ws)
    saved = load_config(tmp_path / "run" / "config.yaml")  # the run directory replays it, the kind's key included
    assert [t.kind_options() for t in saved.tasks] == [{"answer": 2}] * 2
    for t, name in enumerate(report.tasks):  # every merge predicts `answer`: its accuracy is the share of 2s
        labels = ws.examples["test"][t].labels
        assert report.base.test.raw[name] == pytest.approx(100 * labels.count(2) / len(labels))


# ------------------------------------------------------------------ every registered kind
@pytest.mark.parametrize("name", list(KINDS))
def test_every_kind_declares_everything(name):
    cls = KINDS[name]
    assert issubclass(cls, TaskKind) and cls.kind == name and cls.__doc__
    assert isinstance(cls.options, Options)
    for key, option in cls.options.items():
        assert option.help and key not in TaskConfig.model_fields, key  # a kind's key never shadows a common one
        assert not isinstance(option, Required) or option.example, key
    for model_class in (cls.model_class, *cls.also_runs_on):
        assert isinstance(getattr(transformers, model_class, None), type), model_class
    assert cls.processor in PROCESSORS
    assert cls.prepare is not TaskKind.prepare and cls.predict is not TaskKind.predict
    assert model_class_for({name}) == cls.model_class


def test_the_kinds_of_earlier_versions():
    assert {"causal_lm", "classification", "clip_zero_shot"} <= set(available_kinds())  # (and lm_eval since)
    assert model_class_for({"classification", "causal_lm"}) == "AutoModelForCausalLM"  # one run, as before
    with pytest.raises(EnmpError, match="clip_zero_shot tasks cannot be mixed with classification tasks in one run"):
        model_class_for({"classification", "clip_zero_shot", "causal_lm"})
    assert get_kind("clip_zero_shot").unit_head_rows and not get_kind("classification").unit_head_rows


def test_nulls_saved_by_earlier_versions_still_load(tmp_path):
    """Earlier run directories saved every kind's keys on every task, null where unused."""
    tc = _parse(tmp_path, pooling="last", prompt=None, label_words=None).tasks[0]
    assert tc.kind_options() == {"pooling": "last"} and "prompt" not in tc.model_dump()
    lm = _parse(tmp_path, kind="causal_lm", pooling=None, prompt="{text}", label_words=[" a", " b"]).tasks[0]
    assert lm.kind_options() == {"prompt": "{text}", "label_words": [" a", " b"]}


BAD = {  # task keys → (error line pieces)
    "unknown kind": ({"kind": "regression"},
                     ("task 'a'.kind", "unknown task kind 'regression'", "causal_lm, classification, clip_zero_shot")),
    "misplaced prompt": ({"prompt": "{text}"},
                         ("task 'a'.prompt", "classification tasks take no prompt", "prompt is for causal_lm tasks")),
    "pooling on clip": ({"kind": "clip_zero_shot", "pooling": "cls"},
                        ("task 'a'.pooling", "clip_zero_shot tasks take no pooling", "no keys of its own")),
    "missing both": ({"kind": "causal_lm"}, ("task 'a'.prompt", "causal_lm tasks need prompt and label_words",
                                             "e.g. prompt:")),
    "missing label words": ({"kind": "causal_lm", "prompt": "{text}"},
                            ("task 'a'.label_words", "causal_lm tasks need label_words", 'e.g. label_words: [" yes"')),
    "one label word": ({"kind": "causal_lm", "prompt": "{text}", "label_words": " yes"},
                       ("task 'a'.label_words", "must be a non-empty list", "got ' yes'")),
    "labels vs label words": ({"kind": "causal_lm", "prompt": "{text}", "label_words": [" a", " b"], "labels": ["a"]},
                              ("task 'a'.labels", "labels and label_words differ in length", "one label per")),
    "bad pooling": ({"pooling": "max"}, ("task 'a'.pooling", "one of mean, cls, last or null", "'max'")),
    "unknown key": ({"poolin": "last"}, ("task 'a'.poolin", "unknown key 'poolin'", "classification takes: pooling")),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_wrong_kind_or_key_is_one_clear_line(case, tmp_path):
    task, pieces = BAD[case]
    with pytest.raises(EnmpError) as err:
        _parse(tmp_path, **task)
    line = err.value.line()
    assert line.startswith("run.yaml: ") and "\n" not in line and " — " in line, line
    for piece in pieces:
        assert piece in line, (piece, line)


def test_assignment_is_checked_too(tmp_path):
    tc = copy.deepcopy(_parse(tmp_path, kind="causal_lm", prompt="{text}", label_words=[" a", " b"]).tasks[0])
    with pytest.raises(EnmpError, match="labels and label_words differ in length"):
        tc.labels = ["a", "b", "c"]
