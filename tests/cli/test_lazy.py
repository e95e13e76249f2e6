"""The ``gossipreg`` command imports a subcommand's module only when that command runs."""

from __future__ import annotations

import subprocess
import sys

from gossipreg.cli.main import COMMANDS, load_all

#: Libraries an agent process has no use for: the test kit, the demo, the simulator.
HEAVY = ("pytest", "_pytest", "hypothesis", "matplotlib", "trio.testing", "gossipreg.testing",
         "gossipreg.cli.demo", "gossipreg.cli.simulate", "simulations")


def modules_after(*argv: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``gossipreg ARGV``."""
    code = (
        "import sys\n"
        "from gossipreg.cli.main import cli\n"
        f"try:\n    cli({list(argv)!r}, standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "print('\\n'.join(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return set(out.stdout.splitlines())


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_the_agent_command_loads_neither_the_demo_nor_the_simulator_nor_the_test_kit() -> None:
    modules = modules_after("agent", "--help")
    assert "gossipreg.cli.agent" in modules
    assert heavy(modules) == []


def test_the_demo_command_is_loaded_when_it_runs() -> None:
    assert "gossipreg.cli.demo" in modules_after("demo", "--help")


def test_every_command_of_the_table_is_defined_by_its_module() -> None:
    group = load_all()
    assert sorted(group.commands) == sorted(COMMANDS)
    for name, module in COMMANDS.items():
        command = group.commands[name]
        assert command.callback is not None, name
        assert command.callback.__module__ == f"gossipreg.cli.{module}", name
