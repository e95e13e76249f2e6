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


def test_the_library_does_not_import_the_cli_dependencies() -> None:
    """click, rich and h11 belong to the `cli` extra: `import gossipreg` must not need them."""
    code = (
        "import sys, gossipreg, gossipreg.registry, gossipreg.sync, gossipreg.default\n"
        "print(sorted({'click', 'rich', 'h11', 'matplotlib'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.timeout(60)
def test_getting_started_key_and_tls_commands_work(tmp_path: Path) -> None:
    """The `gossipreg keygen` and `gossipreg tls` lines of docs/getting-started.md, as written."""
    text = (ROOT / "docs" / "getting-started.md").read_text()
    lines = [
        line.split("#")[0].strip()
        for line in text.splitlines()
        if line.startswith(("gossipreg keygen", "gossipreg tls"))
    ]
    assert len(lines) == 3, lines
    exe = Path(sys.executable).with_name("gossipreg")
    for line in lines:
        words = line.split()
        out = words.index(">") if ">" in words else None
        argv = [str(exe), *words[1 : out if out is not None else len(words)]]
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False)
        assert result.returncode == 0, (line, result.stderr)
        if out is not None:
            (tmp_path / words[out + 1]).write_text(result.stdout)
    assert (tmp_path / "keyring").read_text().strip()
    for name in ("ca.pem", "web-1.pem", "web-1-key.pem"):
        assert (tmp_path / "tls" / name).exists()
