"""The sans-IO core never imports IO, clocks or the global random.

Checked two ways: statically, by reading every import statement under
``gossipreg/core``; and dynamically, by importing the core in a fresh
interpreter and checking that none of the forbidden modules got loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "gossipreg" / "core"
FORBIDDEN = {"trio", "socket", "ssl", "time", "asyncio", "threading", "selectors"}


def _core_files() -> list[Path]:
    files = sorted(CORE.rglob("*.py"))
    assert files, f"no core modules found under {CORE}"
    return files


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: p.name)
def test_core_module_imports_nothing_forbidden(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top not in FORBIDDEN, f"{path.name}:{node.lineno} imports {name}"


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: p.name)
def test_core_module_never_calls_global_random(path: Path) -> None:
    """``random.Random`` instances may be injected; module-level functions are banned."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            bad = [a.name for a in node.names if a.name != "Random"]
            assert not bad, f"{path.name}:{node.lineno} imports {bad} from random"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
            assert node.attr == "Random", f"{path.name}:{node.lineno} uses random.{node.attr}"


def test_importing_the_core_loads_no_forbidden_module() -> None:
    modules = [f"gossipreg.core.{p.stem}" for p in _core_files() if p.stem != "__init__"]
    # Register a bare ``gossipreg`` package so that its ``__init__`` (which pulls
    # in the trio runtime) does not run: only the core itself is measured.
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('gossipreg')\n"
        f"pkg.__path__ = [{str(CORE.parent)!r}]\n"
        "sys.modules['gossipreg'] = pkg\n"
        "before = set(sys.modules)\n"
        f"for m in {modules!r}: __import__(m)\n"
        "loaded = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        f"print(sorted(loaded & set({sorted(FORBIDDEN)!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_member_without_identities_does_not_load_the_signature_modules() -> None:
    # Elliptic-curve keys, signatures and certificates are identity work: a member
    # without identities must not pay their memory (about 2.8 MiB) for nothing.
    code = (
        "import random, sys\n"
        "from gossipreg.core.config import Config\n"
        "from gossipreg.core.crypto import Keyring\n"
        "from gossipreg.core.node import NodeCore\n"
        "core = NodeCore('a', ('10.0.0.1', 7946), config=Config(), rng=random.Random(0),\n"
        "                wall_clock=lambda: 0.0, now=0.0, keyring=Keyring(bytes(32)))\n"
        "core.tick(1.0)\n"
        "heavy = ('cryptography.hazmat.primitives.asymmetric.ec', 'cryptography.x509',\n"
        "         'cryptography.hazmat.primitives.serialization')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
