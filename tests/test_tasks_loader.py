"""The task loader: shipped library, upstream KernelBench files, sidecars, overrides, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from daedalus.tasks import LIBRARY_DIR, Task, TaskError, list_tasks, load_task, parse_overrides
from daedalus.tasks.metadata import guess_category
from daedalus.tasks.source import apply_overrides

DATA = Path(__file__).parent / "data" / "kernelbench"
RELU = DATA / "19_ReLU.py"

REQUIRED_CATEGORIES = {
    "activation",
    "normalization",
    "reduction",
    "matmul",
    "convolution",
    "pooling",
    "loss",
    "fusion",
    "attention",
    "indexing",
    "resize",
    "math",
    "optimizer",
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """\
import torch
import torch.nn as nn

class Model(nn.Module):
    def forward(self, x):
        return x * 2.0 + 1.0

size = 64

def get_inputs():
    return [torch.randn(size)]

def get_init_inputs():
    return []
"""


# --- the shipped library -------------------------------------------------------------


def test_every_shipped_task_loads_with_metadata() -> None:
    tasks = list_tasks()
    assert len(tasks) >= 24
    names = [t.name for t in tasks]
    assert len(names) == len(set(names))
    for task in tasks:
        assert task.kind == "kernel"
        assert task.path.parent == LIBRARY_DIR
        assert task.path.with_suffix(".toml").is_file(), f"{task.name} has no sidecar"
        assert task.category in REQUIRED_CATEGORIES, (task.name, task.category)
        assert task.description and len(task.description) < 120, task.name
        assert task.source == task.path.read_text()
        assert load_task(task.name) == task


def test_library_covers_every_category_and_eight_fusions() -> None:
    tasks = list_tasks()
    assert {t.category for t in tasks} >= REQUIRED_CATEGORIES
    assert sum(t.category == "fusion" for t in tasks) >= 8
    swish = load_task("swish_scale")
    assert swish.category == "fusion"
    assert "sigmoid" in swish.source


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(
        TaskError, match=r"no shipped task named 'swish_scal'.*swish_scale.*tasks list"
    ):
        load_task("swish_scal")


def test_empty_name_is_an_error() -> None:
    with pytest.raises(TaskError, match="no task given"):
        load_task("  ")


# --- upstream KernelBench / MultiKernelBench files, as they are -------------------------


def test_upstream_kernelbench_file_loads_as_is() -> None:
    task = load_task(str(RELU))
    assert task.name == "19_ReLU"
    assert task.category == "activation"  # guessed from the KernelBench file name
    assert task.description == "Applies a ReLU activation element by element."
    assert task.source == RELU.read_text()
    assert task.overrides == {}
    assert task.key == "19_ReLU"


def test_size_override_is_validated_recorded_and_applied() -> None:
    from daedalus.tasks import materialise

    task = load_task(str(RELU), parse_overrides(["dim=1024", "batch_size=4"]))
    assert task.overrides == {"dim": 1024, "batch_size": 4}
    assert task.key == "19_ReLU[batch_size=4,dim=1024]"
    assert task.source == RELU.read_text()  # the file is not changed; the worker rewrites
    (x,) = materialise(task).get_inputs()
    assert tuple(x.shape) == (4, 1024)


def test_level2_name_is_a_fusion_and_folder_names_a_category() -> None:
    assert load_task(str(DATA / "12_Gemm_Multiply_LeakyReLU.py")).category == "fusion"
    assert load_task(str(DATA / "resize" / "resize_to_size.py")).category == "resize"


@pytest.mark.parametrize(
    ("path", "category"),
    [
        ("level1/1_Square_matrix_multiplication_.py", "matmul"),
        ("level1/23_Softmax.py", "activation"),
        ("level1/40_LayerNorm.py", "normalization"),
        ("level1/42_Max_Pooling_2D.py", "pooling"),
        ("level1/47_Sum_reduction_over_a_dimension.py", "reduction"),
        ("level1/51_Argmax_over_a_dimension.py", "indexing"),
        ("level1/63_conv_standard_2D__square_input__square_kernel.py", "convolution"),
        ("level1/89_cumsum.py", "math"),
        ("level1/95_CrossEntropyLoss.py", "loss"),
        ("x/1_Conv2D_ReLU_BiasAdd.py", "fusion"),
        ("level2/99_Matmul_GELU_Softmax.py", "fusion"),
        ("level3/1_MLP.py", "architecture"),
        ("reference/optimizer/adam.py", "optimizer"),
        ("reference/reduce/mean_reduction_over_a_dimension.py", "reduction"),
        ("mine/something.py", "uncategorised"),
    ],
)
def test_category_guess(path: str, category: str) -> None:
    assert guess_category(Path(path)) == category


# --- overrides ------------------------------------------------------------------------


def test_parse_overrides_types_values() -> None:
    parsed = parse_overrides(
        ["n=8", "eps=1e-5", "flag=true", "off=False", "mode=sum", "quoted='a b'", "big=1_000"]
    )
    assert parsed == {
        "n": 8,
        "eps": 1e-5,
        "flag": True,
        "off": False,
        "mode": "sum",
        "quoted": "a b",
        "big": 1000,
    }
    assert type(parsed["n"]) is int and type(parsed["flag"]) is bool


@pytest.mark.parametrize("item", ["dim", "=3", "2x=1", "a b=1"])
def test_parse_overrides_rejects_malformed_items(item: str) -> None:
    with pytest.raises(TaskError, match="expected NAME=VALUE"):
        parse_overrides([item])


def test_unknown_override_names_the_file_and_the_valid_constants() -> None:
    with pytest.raises(TaskError) as info:
        load_task(str(RELU), {"dimm": 3})
    message = str(info.value)
    assert str(RELU) in message
    assert "dimm" in message and "batch_size=16" in message and "dim=16384" in message


def test_override_of_wrong_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"dim is an integer \(16384\).*whole number"):
        load_task(str(RELU), {"dim": 1.5})
    assert load_task(str(RELU), {"dim": 2048.0}).overrides == {"dim": 2048}
    path = write(tmp_path, "t.py", GOOD.replace("size = 64", "size = 64\nscale = 0.5\nrelu = True"))
    assert load_task(str(path), {"scale": 2}).overrides == {"scale": 2.0}
    with pytest.raises(TaskError, match="relu is a bool"):
        load_task(str(path), {"relu": 1})


def test_override_reaches_derived_constants_and_keeps_line_numbers(tmp_path: Path) -> None:
    from daedalus.tasks import materialise

    text = GOOD.replace("size = 64", "size = (\n    64\n)\nhidden = size * 2  # derived").replace(
        "torch.randn(size)", "torch.randn(hidden)"
    )
    path = write(tmp_path, "derived.py", text)
    task = load_task(str(path), {"size": 8})
    rewritten = apply_overrides(task.source, task.overrides, str(path))
    assert rewritten.count("\n") == text.count("\n")
    assert "hidden = size * 2  # derived" in rewritten
    module = materialise(task)
    assert module.module.hidden == 16
    assert tuple(module.get_inputs()[0].shape) == (16,)


def test_only_constants_are_overridable(tmp_path: Path) -> None:
    path = write(
        tmp_path, "t.py", GOOD.replace("size = 64", "size = 64\ndevice = torch.device('cpu')")
    )
    with pytest.raises(TaskError, match="cannot override device"):
        load_task(str(path), {"device": "cuda"})


# --- sidecar metadata -----------------------------------------------------------------


def test_sidecar_sets_metadata(tmp_path: Path) -> None:
    path = write(tmp_path, "double.py", GOOD)
    write(
        tmp_path,
        "double.toml",
        'name = "doubler"\ncategory = "math"\ndescription = "Doubles"\natol = 1e-3\n'
        'rtol = 0\nbackends = ["cpu", "cuda"]\nfeatures = ["approach"]\nseed = 7\n'
        'objectives = ["speedup", {name = "memory_mb", direction = "min"}, "error:min"]\n',
    )
    task = load_task(str(path))
    assert (task.name, task.category, task.description) == ("doubler", "math", "Doubles")
    assert (task.atol, task.rtol, task.seed) == (1e-3, 0.0, 7)
    assert task.backends == ("cpu", "cuda") and task.features == ("approach",)
    assert [(o.name, o.direction) for o in task.objectives] == [
        ("speedup", "max"),
        ("memory_mb", "min"),
        ("error", "min"),
    ]


def test_missing_sidecar_gives_defaults(tmp_path: Path) -> None:
    task = load_task(str(write(tmp_path, "plain.py", GOOD)))
    assert (task.name, task.category, task.description) == ("plain", "uncategorised", "")
    assert task == Task(name="plain", kind="kernel", path=task.path, source=GOOD)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("nme = 'x'", r"unknown key\(s\) nme; valid keys are name, category"),
        ("atol = 'tiny'", "`atol` must be a non-negative number"),
        ("backends = 'cpu'", "`backends` must be a list of strings"),
        ("objectives = [{name = 'x', direction = 'up'}]", 'direction must be "max" or "min"'),
        ("name = ", "is not valid TOML"),
    ],
)
def test_bad_sidecar_names_the_file_and_problem(tmp_path: Path, toml: str, message: str) -> None:
    path = write(tmp_path, "t.py", GOOD)
    write(tmp_path, "t.toml", toml)
    with pytest.raises(TaskError, match=message) as info:
        load_task(str(path))
    assert str(tmp_path / "t.toml") in str(info.value)


# --- broken task files ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("def get_inputs():", "def get_inputs(:"), r"syntax error at line \d+"),
        (GOOD.replace("class Model", "class Mdl"), r"no `Model` defined at module level"),
        (GOOD.replace("def get_inputs", "def make_inputs"), r"no `get_inputs` defined"),
        (GOOD.replace("def get_init_inputs", "def init_inputs"), r"no `get_init_inputs` defined"),
    ],
)
def test_broken_file_error_names_file_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "broken.py", text)
    with pytest.raises(TaskError, match=message) as info:
        load_task(str(path))
    assert str(info.value).startswith(f"{path}: ")


def test_missing_and_non_python_paths(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="does not exist"):
        load_task(str(tmp_path / "nope.py"))
    with pytest.raises(TaskError, match=r"KernelBench-format \.py file"):
        load_task(str(write(tmp_path, "task.txt", GOOD)))


def test_loading_never_executes_task_code(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    text = f"open({str(marker)!r}, 'w').close()\nraise SystemExit(3)\n" + GOOD
    task = load_task(str(write(tmp_path, "sneaky.py", text)))
    assert task.name == "sneaky"
    assert not marker.exists()


def test_tuple_unpacked_constants_are_overridable(tmp_path: Path) -> None:
    from daedalus.tasks import materialise

    text = GOOD.replace("size = 64", "height, width = 32, 48  # KernelBench level-2 style").replace(
        "torch.randn(size)", "torch.randn(height, width)"
    )
    path = write(tmp_path, "pair.py", text)
    task = load_task(str(path), {"height": 4, "width": 6})
    rewritten = apply_overrides(task.source, task.overrides, str(path))
    assert "height, width = 4, 6  # KernelBench level-2 style" in rewritten
    assert tuple(materialise(task).get_inputs()[0].shape) == (4, 6)
    assert load_task(str(path), {"width": 5}).overrides == {"width": 5}
