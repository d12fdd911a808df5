"""docs/config.md is the configuration reference generated from the config models: in sync."""
from conftest import REPO


def test_config_reference_is_in_sync():
    from flows.cli import SUBCOMMANDS
    from flows.config.reference import render

    text = render()
    assert all(f"## `facegan {name}`" in text for name in SUBCOMMANDS)
    assert "| `--cpu-minutes` | `4.0` |" in text and "| `--n`, `-n` | `300` |" in text
    assert (REPO / "docs" / "config.md").read_text() == text, \
        "docs/config.md is stale: run .venv/bin/python -m flows.config.reference > docs/config.md"
