"""The docs stay true to the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_generated_from_the_source() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_config_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_readme_gives_the_two_command_quickstart() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "scripts/test" in readme
    assert "scripts/demo" in readme


@pytest.mark.timeout(60)
@pytest.mark.parametrize("doc", ["README.md", "docs/getting-started.md"])
def test_python_examples_in_the_docs_run(doc: str) -> None:
    """Every ```python block runs as written (they bind 127.0.0.1 only)."""
    text = (ROOT / doc).read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert blocks, f"{doc} has no Python example"
    for block in blocks:
        exec(compile(block, doc, "exec"), {"__name__": "doc_example"})
