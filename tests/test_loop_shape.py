"""The training loop's shape, checked on the source (issue 24 item 4): train_loop runs one step
function and then the callbacks, with no function defined inside another; the loop's modules
import at module level only the standard library, torch and facegan (prefect, mlflow and tqdm
inside the functions that use them); each stays under 300 lines. Reads the code (ast)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.no_prefect

TRAINING = Path(__file__).resolve().parents[1] / "tasks" / "training"
LOOP = ("loop.py", "callbacks.py")
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def tree(name: str) -> ast.Module:
    return ast.parse((TRAINING / name).read_text())


@pytest.mark.parametrize("name", LOOP)
def test_no_function_inside_a_function(name):
    nested = [
        f"{name}:{inner.lineno} in {outer.name}"
        for outer in ast.walk(tree(name))
        if isinstance(outer, FUNCTIONS[:2])
        for inner in ast.walk(outer)
        if inner is not outer and isinstance(inner, FUNCTIONS)
    ]
    assert not nested, "nested functions: " + ", ".join(nested)


@pytest.mark.parametrize("name", LOOP)
def test_module_level_imports_are_stdlib_torch_or_facegan(name):
    allowed = {*sys.stdlib_module_names, "__future__", "torch", "facegan"}
    found = []
    for node in tree(name).body:
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append(node.module or "")
    assert found and all(m.split(".")[0] in allowed for m in found), found


@pytest.mark.parametrize("name", LOOP)
def test_loop_files_stay_short(name):
    assert len((TRAINING / name).read_text().splitlines()) <= 300


def test_train_loop_steps_then_runs_the_callbacks():
    """The loop body: one train_step call, then every callback's on_step."""
    train_loop = next(n for n in tree("loop.py").body if isinstance(n, ast.FunctionDef) and n.name == "train_loop")
    loop = next(n for n in ast.walk(train_loop) if isinstance(n, ast.While))
    body = ast.unparse(loop)
    assert "train_step(" in body and "callback.on_step(state)" in body, body
    assert len([n for n in ast.walk(loop) if isinstance(n, ast.Call)]) <= 5, body
