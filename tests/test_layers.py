"""The architecture the README states, checked on the source: layers point down, no import cycle,
flows only wire, every Prefect task wrapper in one module. Reads the code (ast), imports nothing."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# each layer and the project layers it may import (config is the leaf every layer shares)
ALLOWED = {
    "config": set(),
    "models": {"config"},
    "evaluation": {"models", "config"},
    "tasks": {"evaluation", "models", "config"},
    "flows": {"tasks", "evaluation", "models", "config"},
}
FLOWS = ("acquire", "crop", "train", "generate", "evaluate", "pipeline")


def modules() -> dict[str, Path]:
    found = {}
    for layer in ALLOWED:
        for path in (ROOT / layer).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module named by an import in the file, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_layers_import_only_the_layers_below_them():
    wrong = []
    for name, path in modules().items():
        layer = name.split(".")[0]
        for imported in imports(path):
            top = imported.split(".")[0]
            if top in ALLOWED and top != layer and top not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not wrong, "layers must point down (flows -> tasks -> evaluation -> models; config a leaf):\n" + "\n".join(
        wrong
    )


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
                if isinstance(fn, ast.Name) and fn.id == "task" and name != "tasks.steps":
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
    sample.write_text("import os\n\ndef f():\n    from tasks.paths import data_home\n    return data_home\n")
    assert "tasks.paths" in imports(sample) and "tasks.paths.data_home" in imports(sample)
