"""Architecture tasks: the architecture.toml format, the loader and the data generators."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from daedalus.agent.profile import architecture_card
from daedalus.tasks import TaskError, load_task
from daedalus.tasks.architecture import ARCHITECTURES_DIR, list_architectures, load_architecture_dir
from daedalus.tasks.architectures import data
from daedalus.tasks.architectures.data import IGNORE

SHIPPED = ("mqar", "selective_copy", "digits", "char_lm")


def test_every_shipped_task_loads_with_objectives_and_designs() -> None:
    names = {p.name for p in list_architectures()}
    assert set(SHIPPED) <= names
    for name in SHIPPED:
        task = load_task(name)
        assert task.kind == "architecture" and task.key == name
        assert [o.name for o in task.objectives][1:] == ["params", "latency_ms"]
        assert task.objectives[0].name in ("accuracy", "bpc")
        assert "class ModelNew" in task.source
        assert task.settings["references"], name
        for file_name in task.settings["references"].values():
            assert "class ModelNew" in task.files[file_name]
    mqar = load_task("mqar")
    assert "elu(q) + 1" in mqar.source.replace("F.elu", "elu")  # the linear-attention seed
    assert mqar.settings["checks"]["subquadratic"] is True
    assert load_task("char_lm").objectives[0].direction == "min"


def test_tasks_load_by_folder_and_by_toml_path() -> None:
    folder = ARCHITECTURES_DIR / "digits"
    assert load_task(str(folder)).name == "digits"
    assert load_task(str(folder / "architecture.toml")).name == "digits"


def test_overrides_are_typed_validated_and_part_of_the_key() -> None:
    task = load_task("mqar", {"full_steps": "200", "lr": 0.01, "subquadratic": "false"})
    assert task.settings["budget"]["full_steps"] == 200
    assert task.settings["budget"]["lr"] == 0.01
    assert task.settings["checks"]["subquadratic"] is False
    assert task.key == "mqar[full_steps=200,lr=0.01,subquadratic=False]"
    with pytest.raises(TaskError, match=r"not a numeric setting.*full_steps"):
        load_task("mqar", {"bogus": 1})
    with pytest.raises(TaskError, match="must be a int"):
        load_task("mqar", {"full_steps": 1.5})
    with pytest.raises(TaskError, match="proxy_steps"):
        load_task("mqar", {"proxy_steps": 5000})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: 'surprise = 1\n' + t, "unknown key 'surprise'"),
        (lambda t: t.replace('interface = "classifier"', 'interface = "transformer"'),
         "interface = 'transformer' is not one of"),
        (lambda t: t.replace("batch_size = 64", "batch_size = 'many'"), "must be a int"),
        (lambda t: t.replace('seed_design = "../designs/mlp_classifier.py"',
                             'seed_design = "missing.py"'), "does not exist"),
        (lambda t: t.replace('latency_reference = "cnn"', 'latency_reference = "vit"'),
         "is not a reference design"),
        (lambda t: t.replace("[budget]", "[budget]\nwarp = 9"), "unknown key \\[budget\\] 'warp'"),
        (lambda t: t.replace('generator = "digits"', 'generator = "imagenet"'),
         "generator = 'imagenet' is not one of"),
    ],
)
def test_broken_task_files_name_the_problem(tmp_path: Path, edit, message: str) -> None:
    root = tmp_path / "architectures"
    shutil.copytree(ARCHITECTURES_DIR / "designs", root / "designs")
    task_dir = root / "digits"
    task_dir.mkdir()
    text = (ARCHITECTURES_DIR / "digits" / "architecture.toml").read_text()
    (task_dir / "architecture.toml").write_text(edit(text))
    with pytest.raises(TaskError, match=message):
        load_architecture_dir(task_dir)


def test_a_design_without_model_new_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "architectures"
    (root / "designs").mkdir(parents=True)
    (root / "designs" / "mlp_classifier.py").write_text("class Net:\n    pass\n")
    (root / "designs" / "cnn_classifier.py").write_text("class ModelNew:\n    pass\n")
    (root / "digits").mkdir()
    shutil.copy(ARCHITECTURES_DIR / "digits" / "architecture.toml", root / "digits")
    with pytest.raises(TaskError, match="must define `class ModelNew"):
        load_architecture_dir(root / "digits")


def test_mqar_labels_are_the_values_of_the_queried_keys() -> None:
    ds = data.mqar(3, seq_len=16, num_pairs=3, num_keys=8, num_values=8, train_size=50,
                   val_size=10, test_size=10)
    for x, y in zip(ds.train_x, ds.train_y, strict=True):
        pairs = dict(zip(x[0:6:2].tolist(), x[1:6:2].tolist(), strict=True))
        assert (y[:6] == IGNORE).all()
        for token, label in zip(x[6:].tolist(), y[6:].tolist(), strict=True):
            assert pairs[token] == label
    again = data.mqar(3, seq_len=16, num_pairs=3, num_keys=8, num_values=8, train_size=50,
                      val_size=10, test_size=10)
    assert torch.equal(ds.test_x, again.test_x)  # seeded: reproducible


def test_selective_copy_labels_are_the_data_tokens_in_order() -> None:
    ds = data.selective_copy(5, seq_len=20, num_tokens=4, num_symbols=8, train_size=40,
                             val_size=5, test_size=5)
    for x, y in zip(ds.train_x, ds.train_y, strict=True):
        body = x[:16]
        assert body[body > 0].tolist() == y[16:].tolist()
        assert x[16] == 9 and (x[17:] == 10).all()


def test_digits_and_char_lm_splits() -> None:
    digits = data.digits(1)
    total = len(digits.train_x) + len(digits.val_x) + len(digits.test_x)
    assert total == 1797 and digits.train_x.shape[1:] == (1, 8, 8)
    assert float(digits.train_x.min()) >= 0.0 and float(digits.train_x.max()) <= 1.0
    text = data.char_lm(2, seq_len=16, chars=4000)
    assert torch.equal(text.train_x[:, 1:], text.train_y[:, :-1])  # next-character targets
    assert text.vocab == len(set(data.grammar_text(2, chars=4000)))


def test_the_task_card_states_interface_checks_and_score() -> None:
    card = architecture_card(load_task("mqar"))
    for phrase in ("ModelNew(d_model=32)", "Causality", "Sub-quadratic time", "Pareto front",
                   "latency of the reference design `softmax_attention`"):
        assert phrase in card, phrase
    digits = architecture_card(load_task("digits"))
    assert "ModelNew(num_classes=10)" in digits and "Causality" not in digits


def test_tasks_show_lists_the_overridable_settings() -> None:
    from daedalus.tasks import constants_of

    settings = constants_of(load_task("mqar", {"full_steps": 300}))
    assert settings["full_steps"] == "300" and settings["subquadratic"] == "True"
    assert "generator" not in settings and "metric" not in settings
