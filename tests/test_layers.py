"""The architecture the README states, checked on the source: one import root (facegan), layers
point down, no import cycle, flows only wire, every Prefect task wrapper in one module. Reads the
code (ast), imports nothing."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "facegan"  # the one import root: facegan.<layer> is the folder <layer>/ (pyproject.toml)
# each layer and the project layers it may import (config is the leaf every layer shares); the
# root package's own modules (facegan/: __init__, testing) import no layer
ALLOWED = {
    "config": set(),
    "models": {"config"},
    "evaluation": {"models", "config"},
    "tasks": {"evaluation", "models", "config"},
    "flows": {"tasks", "evaluation", "models", "config"},
}
FLOWS = ("acquire", "crop", "train", "generate", "evaluate", "pipeline")
# every folder of Python files that imports project code: the package's and the scripts' and tests'
SOURCES = (*ALLOWED, PACKAGE, "bench", "infra", "tests")


def modules() -> dict[str, Path]:
    """facegan's modules by import name (facegan.tasks.steps: tasks/steps.py)."""
    found = {}
    for folder in (*ALLOWED, PACKAGE):
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts if folder == PACKAGE else (PACKAGE, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def layer(module: str) -> str:
    """facegan.tasks.steps -> tasks; facegan and facegan.testing -> facegan (the root package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else parts[0]


def imports(path: Path) -> set[str]:
    """Every module named by an import in the file, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_every_project_import_goes_through_the_facegan_root():
    """`from facegan.tasks import ...`, never `from tasks import ...` (the folders are no import
    packages of their own), and no sys.path edit anywhere (facegan is installed: `pip install -e .`)."""
    wrong = []
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for imported in imports(path):
                if imported.split(".")[0] in ALLOWED:
                    wrong.append(f"{path.relative_to(ROOT)} imports {imported} (not {PACKAGE}.{imported})")
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "path"
                    and isinstance(node.value.value, ast.Name)
                    and node.value.value.id == "sys"
                    and node.attr in ("insert", "append", "extend")
                ):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} edits sys.path")
    assert not wrong, "\n".join(wrong)


def test_layers_import_only_the_layers_below_them():
    wrong = []
    for name, path in modules().items():
        mine = layer(name)
        for imported in imports(path):
            if imported.split(".")[0] != PACKAGE:
                continue
            theirs = layer(imported)
            if theirs != mine and theirs not in ALLOWED.get(mine, set()):
                wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not wrong, "layers must point down (flows -> tasks -> evaluation -> models; config a leaf):\n" + "\n".join(
        wrong
    )


def test_only_the_tracking_package_imports_mlflow():
    """One place talks to MLflow: facegan.tasks.common.tracking (its modules); the rest calls it."""
    wrong = [
        f"{path.relative_to(ROOT)} imports {imported}"
        for name, path in modules().items()
        if not (name + ".").startswith("facegan.tasks.common.tracking.")
        for imported in imports(path)
        if imported.split(".")[0] == "mlflow"
    ]
    assert not wrong, "MLflow is imported only in tasks/common/tracking/:\n" + "\n".join(wrong)


def test_no_import_cycle_between_project_modules():
    mods = modules()
    graph = {name: {m for m in imports(path) if m in mods and m != name} for name, path in mods.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return trail + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, trail + [node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [])
            assert cycle is None, "import cycle: " + " -> ".join(cycle[cycle.index(cycle[-1]) :])


def test_every_prefect_task_wrapper_lives_in_tasks_steps():
    defined = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            decorators = getattr(node, "decorator_list", [])
            calls = [node] if isinstance(node, ast.Call) else []
            for expr in [*decorators, *calls]:
                fn = expr.func if isinstance(expr, ast.Call) else expr
                if isinstance(fn, ast.Name) and fn.id == "task" and name != "facegan.tasks.steps":
                    defined.append(f"{path.relative_to(ROOT)}:{expr.lineno}")
    assert not defined, "Prefect tasks are defined only in tasks/steps.py, found: " + ", ".join(defined)


def test_flow_files_only_wire():
    """No loops over data, no report or artifact building, no MLflow logging, no file I/O in a
    flow file: those are steps. (The pipeline loops over its stages' configs: that is wiring.)"""
    banned_calls = {
        "log_metrics",
        "log_artifact",
        "log_figure",
        "log_image",
        "log_dict",
        "log_table",
        "create_table_artifact",
        "create_markdown_artifact",
        "write_text",
        "open",
        "read_text",
        "rmtree",
        "mkdir",
    }
    found = []
    for flow in FLOWS:
        path = ROOT / "flows" / f"{flow}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.For, ast.While)) and flow != "pipeline":
                found.append(f"{path.name}:{node.lineno} loop")
            if isinstance(node, ast.Call):
                fn = node.func
                called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
                if called in banned_calls:
                    found.append(f"{path.name}:{node.lineno} {called}()")
    assert not found, "flow files only wire tasks: " + ", ".join(found)
    pipeline = (ROOT / "flows" / "pipeline.py").read_text()
    loops = [n for n in ast.walk(ast.parse(pipeline)) if isinstance(n, ast.For)]
    assert all("configs" in ast.unparse(loop.iter) for loop in loops), "the pipeline loops only over stage configs"


def test_the_checks_above_can_fail(tmp_path):
    """The import walker sees imports inside functions too (how layer breaks usually hide)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n\ndef f():\n    from facegan.tasks.common.paths import data_home\n    return data_home\n"
    )
    assert "facegan.tasks.common.paths" in imports(sample) and "facegan.tasks.common.paths.data_home" in imports(sample)
    assert layer("facegan.tasks.common.paths.data_home") == "tasks" and layer("facegan.testing") == "facegan"
    assert "facegan.flows.cli" in modules() and "facegan.tasks.training" in modules() and "facegan" in modules()
