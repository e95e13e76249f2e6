#!/usr/bin/env python3
"""Mutation testing of the sans-IO core: do the tests notice a small wrong change?

Each mutant is one small change to one module (a comparison, boolean or
arithmetic operator swapped, a constant changed, ``continue`` and ``break``
swapped, a statement removed, a condition negated). The core and property
tests are run against it with ``-x``; a mutant the tests fail on is *killed*,
one they pass on *survived*: either a gap in the tests or a change that makes
no difference (an *equivalent* mutant).

Usage::

    scripts/mutation                                 # every core module (tens of minutes)
    scripts/mutation gossipreg/core/catalog.py       # the modules a change touched
    scripts/mutation --sample 150 --seed 1 gossipreg/core/node.py
    scripts/mutation --json gossipreg/core/codec.py  # one JSON object on stdout

How it runs, and why not mutmut: mutmut 3 rewrites every function of the
mutated module into a trampoline that imports its own machinery (socket,
threading), which ``tests/core/test_purity.py`` rightly rejects, so a clean
run fails before the first mutant. This runner instead copies the tree to a
temporary directory (the working tree is never modified), runs the selected
tests once with line tracing to learn which tests execute which lines of the
module, then for each mutant forks a child in which an import hook serves the
mutated source of that one module, and runs only the tests that execute the
mutated lines, fastest first, with ``pytest -x -q``. A child that runs over
its time limit is killed and counts as a killed mutant (the change hangs).
Hypothesis runs with a fixed seed so a run can be repeated.

Mutants judged equivalent (no behaviour changes) or message-only are listed,
one per line with a reason, in ``scripts/mutation-equivalent.txt``::

    gossipreg/core/catalog.py | Catalog.tick | 'exp[0][0] <= now' -> 'exp[0][0] < now' | reason

They are still run; a surviving listed one is reported as ``equivalent``
rather than ``survived`` and does not count against the score, and a listed
one that is killed is reported as ``stale_exclusions`` (remove its line). The
score is killed / (tried - equivalent).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import dataclasses
import importlib.abc
import importlib.util
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import CodeType, FrameType, FunctionType, ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODULES = (
    "gossipreg/core/catalog.py",
    "gossipreg/core/membership.py",
    "gossipreg/core/codec.py",
    "gossipreg/core/node.py",
    "gossipreg/core/pushpull.py",
    "gossipreg/core/tree.py",
    "gossipreg/core/chunks.py",
    "gossipreg/core/observe.py",
    "gossipreg/core/identity.py",
)
DEFAULT_TESTS = ("tests/core", "tests/properties")
EQUIVALENT_FILE = ROOT / "scripts" / "mutation-equivalent.txt"
COPIED = ("gossipreg", "simulations", "tests", "pyproject.toml")

_CMP_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BIN_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.BitXor: ast.BitOr,
}


# ---------------------------------------------------------------- mutants


@dataclasses.dataclass(frozen=True)
class Mutant:
    module: str  # path relative to the root
    index: int  # position in generation order
    line: int
    end_line: int
    scope: str  # qualified name of the enclosing function or class ('' at module level)
    in_function: bool
    function: str  # qualified name of the outermost enclosing function ('' if none)
    lines: tuple[int, int]  # the lines whose tests are run: those of the enclosing statement
    before: str
    after: str
    source: str  # the whole mutated module

    @property
    def ident(self) -> str:
        return f"{self.module} | {self.scope or '<module>'} | {self.before!r} -> {self.after!r}"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 90 else text[:87] + "..."


class _Collector(ast.NodeVisitor):
    """Walks a module and lists (node, replacement text, label) mutation sites."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = source.splitlines(keepends=True)
        # node, new text, before, scope, in a function, outermost function
        self.sites: list[tuple[ast.AST, str, str, str, bool, str]] = []
        self.kinds: list[str] = []  # "class" or "fn", along self.scope
        self.scope: list[str] = []
        self.fn_depth = 0
        self.skip_depth = 0
        self.call_args: set[ast.AST] = set()

    # -- helpers
    def _segment(self, node: ast.AST) -> str:
        seg = ast.get_source_segment(self.source, node)
        assert seg is not None
        return seg

    def _add(self, node: ast.AST, new: ast.AST | str, before: str | None = None) -> None:
        if self.skip_depth:
            return
        text = new if isinstance(new, str) else "(" + ast.unparse(new) + ")"
        shown = before if before is not None else self._segment(node)
        outer = self.kinds.index("fn") + 1 if "fn" in self.kinds else 0
        function = ".".join(self.scope[:outer])
        self.sites.append((node, text, shown, ".".join(self.scope), self.fn_depth > 0, function))

    # -- scopes and places never mutated
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for deco in node.decorator_list:
            self.visit(deco)
        self._visit_defaults(node.args)
        self.scope.append(node.name)
        self.kinds.append("fn")
        self.fn_depth += 1
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        for stmt in body:
            self.visit(stmt)
        self.fn_depth -= 1
        self.scope.pop()
        self.kinds.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def _visit_defaults(self, args: ast.arguments) -> None:
        for d in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.visit(d)

    def visit_Module(self, node: ast.Module) -> None:
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        for stmt in body:
            self.visit(stmt)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.kinds.append("class")
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        for stmt in body:
            self.visit(stmt)
        self.scope.pop()
        self.kinds.pop()

    def visit_Import(self, node: ast.Import) -> None:
        return

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        return

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_Assert(self, node: ast.Assert) -> None:
        return  # an assert states what the code already relies on

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return  # f-strings: messages

    def visit_If(self, node: ast.If) -> None:
        # `if TYPE_CHECKING:` blocks are for the type checker only.
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        self._negate(node.test)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self._negate(node.test)
        self.generic_visit(node)

    def _negate(self, test: ast.expr) -> None:
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return  # removing the `not` is the same mutant
        if (
            isinstance(test, ast.Compare)
            and len(test.ops) == 1
            and isinstance(test.ops[0], (ast.Eq, ast.NotEq, ast.Is, ast.IsNot, ast.In, ast.NotIn))
        ):
            return  # the operator swap is the negation
        self._add(test, ast.UnaryOp(ast.Not(), copy.deepcopy(test)))

    def visit_Raise(self, node: ast.Raise) -> None:
        self._add(node, "pass")  # a check that is dropped; the message itself is not mutated
        self.skip_depth += 1
        self.generic_visit(node)
        self.skip_depth -= 1

    # -- statements
    def visit_Continue(self, node: ast.Continue) -> None:
        self._add(node, "break")

    def visit_Break(self, node: ast.Break) -> None:
        self._add(node, "continue")

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant):
            return  # a docstring (of a module, class, function or attribute)
        if isinstance(node.value, ast.Call):
            self._add(node, "pass")
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.value, ast.Name) and node.value.id in ("Literal", "Final", "ClassVar"):
            return  # a type
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._add(node, "pass")
        swap = _BIN_SWAP.get(type(node.op))
        if swap is not None:
            new = copy.deepcopy(node)
            new.op = swap()
            self._add(node, ast.unparse(new))
        self.visit(node.value)

    def visit_Delete(self, node: ast.Delete) -> None:
        self._add(node, "pass")

    def visit_Assign(self, node: ast.Assign) -> None:
        if self.fn_depth and all(isinstance(t, (ast.Attribute, ast.Subscript)) for t in node.targets):
            self._add(node, "pass")
        target = node.targets[0]
        if len(node.targets) == 1 and isinstance(target, ast.Name) and target.id in ("__all__", "__slots__"):
            return
        self.visit(node.value)

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None
        ):
            self._add(node, "return None")
        self.generic_visit(node)

    # -- expressions
    def visit_Compare(self, node: ast.Compare) -> None:
        for i, op in enumerate(node.ops):
            swap = _CMP_SWAP.get(type(op))
            if swap is not None:
                new = copy.deepcopy(node)
                new.ops[i] = swap()
                self._add(node, new)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            if isinstance(arg, ast.Constant):
                self.call_args.add(arg)
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        new = copy.deepcopy(node)
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self._add(node, new)
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, (ast.Not, ast.USub)):
            self._add(node, copy.deepcopy(node.operand))
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        swap = _BIN_SWAP.get(type(node.op))
        if swap is not None:
            new = copy.deepcopy(node)
            new.op = swap()
            self._add(node, new)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        v = node.value
        if isinstance(v, bool):
            self._add(node, repr(not v))
        elif isinstance(v, int):
            self._add(node, repr(v + 1))
            if v != 0:
                self._add(node, "0")
        elif isinstance(v, float):
            self._add(node, repr(v + 1.0) if v == 0 else repr(v * 2))
        elif isinstance(v, str) and v and not (node in self.call_args and (" " in v or "." in v)):
            # (a string passed to a call that reads as a message or a field label, such as
            # the codec's "record.service", only changes what an error says: not mutated)
            self._add(node, repr("XX" + v + "XX"))
        elif isinstance(v, bytes) and v:
            self._add(node, repr(b"XX" + v))


def _span(source_lines: list[str], node: ast.AST) -> tuple[int, int]:
    """Character offsets of ``node`` in the source."""
    starts = [0]
    for line in source_lines:
        starts.append(starts[-1] + len(line))
    lineno = getattr(node, "lineno")  # noqa: B009
    end_lineno = getattr(node, "end_lineno")  # noqa: B009
    col = getattr(node, "col_offset")  # noqa: B009
    end_col = getattr(node, "end_col_offset")  # noqa: B009
    # col offsets are in UTF-8 bytes
    first = source_lines[lineno - 1].encode("utf-8")[:col].decode("utf-8")
    last = source_lines[end_lineno - 1].encode("utf-8")[:end_col].decode("utf-8")
    return starts[lineno - 1] + len(first), starts[end_lineno - 1] + len(last)


def generate(module: str, root: Path = ROOT) -> list[Mutant]:
    source = (root / module).read_text(encoding="utf-8")
    tree = ast.parse(source)
    col = _Collector(source)
    col.visit(tree)
    # Tests are chosen by the lines they execute; a constant folded into a multi-line
    # statement executes no line of its own, so the whole (simple) statement counts,
    # or the header of a compound one.
    enclosing: dict[ast.AST, ast.stmt] = {}
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.stmt):
            for child in ast.walk(stmt):
                enclosing[child] = stmt  # inner statements are walked later and win
    out: list[Mutant] = []
    seen: set[str] = set()
    for node, text, before, scope, in_fn, function in col.sites:
        a, b = _span(col.lines, node)
        if isinstance(node, ast.stmt) and "\n" in text:
            continue
        mutated = source[:a] + text + source[b:]
        try:
            ast.parse(mutated)
        except SyntaxError:
            continue
        stmt = enclosing.get(node, node)
        first, last = getattr(stmt, "lineno"), getattr(stmt, "end_lineno")  # noqa: B009
        body = getattr(stmt, "body", None)
        if isinstance(body, list) and body and isinstance(stmt, ast.stmt):
            last = max(first, body[0].lineno - 1)
        wrapped = text.startswith("(") and text.endswith(")") and not isinstance(node, ast.stmt)
        after = text[1:-1] if wrapped else text
        m = Mutant(
            module,
            len(out),
            getattr(node, "lineno"),  # noqa: B009
            getattr(node, "end_lineno"),  # noqa: B009
            scope,
            in_fn,
            function,
            (min(first, getattr(node, "lineno")), max(last, getattr(node, "end_lineno"))),  # noqa: B009
            _short(before),
            _short(after),
            mutated,
        )
        ident = m.ident
        n = 2
        while ident in seen:  # the same change twice in one scope: number the repeats
            m = dataclasses.replace(m, after=f"{_short(after)} #{n}")
            ident = m.ident
            n += 1
        seen.add(ident)
        out.append(m)
    return out


def load_equivalents(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        ident, sep, reason = line.rpartition(" | ")
        if not sep or not reason.strip():
            raise SystemExit(f"{path}: every line needs a reason after the last ' | ': {raw}")
        out[ident.strip()] = reason.strip()
    return out


# ---------------------------------------------------------------- running


class _MutantFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the mutated source for one module name."""

    def __init__(self, name: str, path: str, source: str) -> None:
        self.name, self.path, self.source = name, path, source

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if fullname != self.name:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=self.path)

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__file__ = self.path
        exec(compile(self.source, self.path, "exec"), module.__dict__)


def _pytest_args(tests: Sequence[str], extra: Sequence[str]) -> list[str]:
    return [
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "--hypothesis-seed=0",
        "--assert=plain",  # assertion rewriting would triple the start-up of every run
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",  # hypothesis is imported before pytest starts
        "-W",
        "ignore::pytest.PytestUnraisableExceptionWarning",
        *extra,
        *tests,
    ]


def _hypothesis_profile() -> None:
    """No deadlines or speed checks (line tracing and a loaded machine slow tests down), no
    example database (each mutant starts afresh, so a run can be repeated)."""
    from hypothesis import HealthCheck, settings

    every_check = list(HealthCheck)
    settings.register_profile("mutation", deadline=None, database=None, suppress_health_check=every_check)
    settings.load_profile("mutation")


def _quiet_child() -> None:
    if os.environ.get("MUTATION_DEBUG"):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def _run_forked(fn: Any, timeout: float) -> tuple[str, float]:
    """Run ``fn`` (returning an exit code) in a forked child; ('ok'|'fail'|'timeout', seconds)."""
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        code = 3
        try:
            os.setpgid(0, 0)
            _quiet_child()
            _hypothesis_profile()
            code = int(fn())
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return ("ok" if code == 0 else "fail"), time.monotonic() - start
        if time.monotonic() - start > timeout:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - start
        time.sleep(0.01)


@dataclasses.dataclass
class Baseline:
    lines: dict[str, set[int]]  # test id -> lines of the module it executes
    durations: dict[str, float]
    tests: list[str]
    paths: list[str]  # the test paths given
    import_lines: set[int]  # lines executed while the tests were imported and collected


class BaselineFailed(Exception):
    """The tests fail on a module's unchanged source: no mutant of it can be judged."""


def baseline(module: str, tests: Sequence[str], workdir: Path) -> Baseline:
    """Run the tests once on the unchanged module, tracing which lines each test runs."""
    target = str(workdir / module)
    out_file = workdir / ".mutation-baseline.json"

    def child() -> int:
        import pytest

        lines: dict[str, list[int]] = {}
        durations: dict[str, float] = {}

        def local(frame: FrameType, event: str, arg: object) -> Any:
            if event == "line":
                sink[0].add(frame.f_lineno)
            return local

        def global_trace(frame: FrameType, event: str, arg: object) -> Any:
            if frame.f_code.co_filename == target:
                sink[0].add(frame.f_lineno)
                return local
            return None

        # Lines run at import (module code, and functions it calls, such as tables built
        # once) belong to every test; the others to the test that ran them.
        import_lines: set[int] = set()
        sink = [import_lines]

        class Plugin:
            @pytest.hookimpl(hookwrapper=True)
            def pytest_runtest_protocol(self, item: Any, nextitem: Any) -> Iterator[None]:
                current: set[int] = set()
                sink[0] = current
                t0 = time.monotonic()
                try:
                    yield
                finally:
                    sink[0] = import_lines
                    durations[item.nodeid] = time.monotonic() - t0
                    lines[item.nodeid] = sorted(current)

            def pytest_runtest_logreport(self, report: Any) -> None:
                if report.failed:
                    failures.append(report.nodeid)

        failures: list[str] = []
        sys.settrace(global_trace)
        code = pytest.main(_pytest_args(tests, []), plugins=[Plugin()])
        sys.settrace(None)
        out_file.write_text(
            json.dumps(
                {"lines": lines, "durations": durations, "failures": failures, "import": sorted(import_lines)}
            )
        )
        return int(code)

    status, _ = _run_forked(child, timeout=3600)
    if status != "ok":
        detail = ""
        if out_file.exists():
            detail = f" (failing: {json.loads(out_file.read_text())['failures'][:5]})"
        raise BaselineFailed(f"the tests fail on the unchanged {module}{detail}: fix them first")
    data = json.loads(out_file.read_text())
    return Baseline(
        {k: set(v) for k, v in data["lines"].items()},
        data["durations"],
        list(data["durations"]),
        list(tests),
        set(data["import"]),
    )


def run_mutant(
    m: Mutant, base: Baseline, workdir: Path, timeout_factor: float
) -> tuple[str, str | None, float]:
    """'killed' | 'survived' | 'timeout' | 'uncovered', the killing test, seconds.

    Runs the selected tests in a fresh session in which the mutated module is imported.
    """
    chosen = _select(m, base)
    if not chosen:
        return "uncovered", None, 0.0
    limit = timeout_factor * sum(base.durations.get(t, 0.0) for t in chosen) + 3.0
    name = m.module[:-3].replace("/", ".")
    path = str(workdir / m.module)
    result_file = workdir / ".mutation-result"
    if result_file.exists():
        result_file.unlink()

    def child() -> int:
        import pytest

        sys.meta_path.insert(0, _MutantFinder(name, path, m.source))

        class Plugin:
            def pytest_runtest_logreport(self, report: Any) -> None:
                if report.failed:
                    result_file.write_text(report.nodeid)

        return int(pytest.main(_pytest_args(chosen, []), plugins=[Plugin()]))

    status, seconds = _run_forked(child, limit)
    if status == "ok":
        return "survived", None, seconds
    if status == "timeout":
        return "timeout", None, seconds
    killer = result_file.read_text() if result_file.exists() else "(collection or import error)"
    return "killed", killer, seconds


def _select(m: Mutant, base: Baseline) -> list[str]:
    """The tests that execute the mutated lines, fastest first (all tests at module level)."""
    span = set(range(m.lines[0], m.lines[1] + 1))
    if m.in_function and not span & base.import_lines:
        chosen = [t for t in base.tests if base.lines.get(t, set()) & span]
    else:
        chosen = list(base.tests)  # runs at import: every test depends on it
    return sorted(chosen, key=lambda t: base.durations.get(t, 0.0))


def _live_function(module: ModuleType, qualname: str) -> FunctionType | None:
    """The function object named ``qualname`` (a module function or a method)."""
    *classes, name = qualname.split(".")
    owner: object = module
    for cls in classes:
        owner = vars(owner).get(cls)
        if not isinstance(owner, type):
            return None
    raw = vars(owner).get(name)
    candidates: list[object] = [raw]
    if isinstance(raw, (staticmethod, classmethod)):
        candidates = [raw.__func__]
    elif isinstance(raw, property):
        candidates = [raw.fget, raw.fset, raw.fdel]
    for c in candidates:
        while isinstance(c, FunctionType) and hasattr(c, "__wrapped__"):
            c = c.__wrapped__
        if isinstance(c, FunctionType) and c.__code__.co_qualname == qualname:
            return c
    return None


def _mutated_code(m: Mutant, path: str, qualname: str, firstlineno: int) -> CodeType | None:
    """The code object of ``qualname`` in the mutated module (lines before the change are kept)."""
    todo = [compile(m.source, path, "exec")]
    while todo:
        code = todo.pop()
        for c in code.co_consts:
            if isinstance(c, CodeType):
                if c.co_qualname == qualname and c.co_firstlineno == firstlineno:
                    return c
                todo.append(c)
    return None


def run_fast(
    module: str, mutants: Sequence[Mutant], base: Baseline, workdir: Path, timeout_factor: float,
    progress: Any,
) -> dict[int, tuple[str, str | None, float]]:
    """Run the mutants inside functions in one collected pytest session.

    A forked driver collects the tests once; for each mutant a grandchild swaps the
    mutated function's code object in and runs the selected tests. Mutants it cannot
    swap in (module level, a function it cannot find) are left to :func:`run_mutant`.
    """
    name = module[:-3].replace("/", ".")
    path = str(workdir / module)
    results_file = workdir / ".mutation-fast.jsonl"
    killer_file = workdir / ".mutation-killer"
    results_file.write_text("")

    def driver() -> int:
        import pytest

        class Plugin:
            failed: str | None = None

            def pytest_runtest_logreport(self, report: Any) -> None:
                if report.failed and self.failed is None:
                    self.failed = report.nodeid

            @pytest.hookimpl(tryfirst=True)
            def pytest_runtestloop(self, session: Any) -> bool:
                items = {it.nodeid: it for it in session.items}
                mod = sys.modules.get(name)
                for m in mutants:
                    at_import = set(range(m.lines[0], m.lines[1] + 1)) & base.import_lines
                    swappable = m.in_function and not at_import
                    target = _live_function(mod, m.function) if mod is not None and swappable else None
                    code = None
                    if target is not None:
                        code = _mutated_code(m, path, m.function, target.__code__.co_firstlineno)
                    if target is None or code is None or code.co_freevars != target.__code__.co_freevars:
                        continue
                    chosen = [items[t] for t in _select(m, base) if t in items]
                    if not chosen:
                        entry: dict[str, Any] = {"index": m.index, "status": "uncovered", "seconds": 0.0}
                    else:
                        limit = timeout_factor * sum(base.durations.get(t.nodeid, 0.0) for t in chosen) + 3.0
                        if killer_file.exists():
                            killer_file.unlink()

                        def grandchild(target: FunctionType = target, code: CodeType = code,
                                       chosen: list[Any] = chosen) -> int:
                            target.__code__ = code
                            for i, item in enumerate(chosen):
                                nextitem = chosen[i + 1] if i + 1 < len(chosen) else None
                                item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
                                if self.failed is not None:
                                    killer_file.write_text(self.failed)
                                    return 1
                            return 0

                        status, seconds = _run_forked(grandchild, limit)
                        status = {"ok": "survived", "fail": "killed"}.get(status, status)
                        entry = {"index": m.index, "status": status, "seconds": seconds}
                        if status == "killed" and killer_file.exists():
                            entry["killer"] = killer_file.read_text()
                    with results_file.open("a") as out:
                        out.write(json.dumps(entry) + "\n")
                return True

        return int(pytest.main(_pytest_args(base.paths, []), plugins=[Plugin()]))

    # The driver reports as it goes; the main process follows the file for progress.
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.setpgid(0, 0)
            _quiet_child()
            _hypothesis_profile()
            code = driver()
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    done: dict[int, tuple[str, str | None, float]] = {}
    by_index = {m.index: m for m in mutants}
    seen = 0
    while True:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        lines = results_file.read_text().splitlines()
        for line in lines[seen:]:
            if not line.endswith("}"):
                break
            e = json.loads(line)
            done[e["index"]] = (e["status"], e.get("killer"), e["seconds"])
            progress(by_index[e["index"]], e["status"], e["seconds"])
            seen += 1
        if finished:
            return done
        time.sleep(0.2)


def _copy_tree(dest: Path, rev: str | None) -> None:
    if rev is not None:  # a commit's tree, not the working tree (which others may be editing)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, *COPIED], check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
        return
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def _preimport() -> None:
    """Import the third-party packages once, so each forked child only imports gossipreg."""
    for mod in ("pytest", "trio", "msgpack", "cryptography.hazmat.primitives.ciphers.aead"):
        with contextlib.suppress(ImportError):
            __import__(mod)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("modules", nargs="*", help=f"module paths (default: {' '.join(DEFAULT_MODULES)})")
    p.add_argument("--tests", nargs="+", default=list(DEFAULT_TESTS), help="test paths (%(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    p.add_argument("--sample", type=int, default=None, help="only N mutants per module, at random")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    p.add_argument("--timeout-factor", type=float, default=5.0, help="limit: x its tests' time")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--progress", action="store_true", help="one line per mutant on stderr")
    p.add_argument(
        "--survivors-of", type=Path, default=None,
        help="run only the mutants that survived in this earlier --json report",
    )
    p.add_argument("--rev", default=None, help="test a commit's tree (git archive REV), not the working tree")
    p.add_argument("--equivalent", type=Path, default=EQUIVALENT_FILE, help="exclusions file")
    p.add_argument(
        "--out", type=Path, default=None,
        help="also write the JSON report to this file, again after each module, so a stopped run "
        "keeps the modules it finished",
    )
    args = p.parse_args(argv)
    if args.out is not None:
        args.out = args.out.resolve()  # (the run changes directory)

    modules = [str(Path(m)) for m in args.modules] or list(DEFAULT_MODULES)
    for path in modules:
        if not (ROOT / path).is_file():
            p.error(f"no such module: {path}")
    equivalents = load_equivalents(args.equivalent)

    if args.list:
        for path in modules:
            for mu in generate(path):
                print(f"{mu.line}: {mu.ident}")
        return 0

    with contextlib.suppress(OSError):
        os.nice(10)  # share the machine
    # A terminated run still removes its temporary tree.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report: dict[str, Any] = {"tests": args.tests, "modules": {}}
    failed = False
    with tempfile.TemporaryDirectory(prefix="gossipreg-mutation-") as tmp:
        work = Path(tmp)
        _copy_tree(work, args.rev)
        os.chdir(work)
        sys.path.insert(0, str(work))
        _preimport()
        for module in modules:
            mutants = generate(module, work)
            total = len(mutants)
            if args.survivors_of is not None:
                earlier = json.loads(args.survivors_of.read_text())["modules"].get(module, {})
                wanted = {e["id"] for e in [*earlier.get("survivors", []), *earlier.get("equivalents", [])]}
                mutants = [m for m in mutants if m.ident in wanted]
            if args.sample is not None and args.sample < total:
                mutants = sorted(random.Random(args.seed).sample(mutants, args.sample), key=lambda x: x.index)
            t0 = time.monotonic()
            try:
                base = baseline(module, args.tests, work)
            except BaselineFailed as e:
                # The other modules are still measured; this one is reported, not scored.
                print(f"{module}: {e}", file=sys.stderr, flush=True)
                report["modules"][module] = {"error": str(e)}
                failed = True
                _write_report(args.out, report)
                continue
            results: dict[str, list[dict[str, Any]]] = {
                k: []
                for k in ("killed", "timeout", "survived", "uncovered", "equivalent", "stale_exclusions")
            }
            count = [0]

            def progress(
                m: Mutant, status: str, seconds: float, module: str = module, count: list[int] = count,
                n: int = len(mutants),
            ) -> None:
                count[0] += 1
                if args.progress:
                    line = f"{module}: {count[0]}/{n} {status} {seconds:.1f}s {m.ident}"
                    print(line, file=sys.stderr, flush=True)

            fast = run_fast(module, mutants, base, work, args.timeout_factor, progress)
            for m in mutants:
                if m.index in fast:
                    status, killer, seconds = fast[m.index]
                else:
                    status, killer, seconds = run_mutant(m, base, work, args.timeout_factor)
                    progress(m, status, seconds)
                entry = {"line": m.line, "id": m.ident, "seconds": round(seconds, 2)}
                if killer:
                    entry["killed_by"] = killer
                listed = m.ident in equivalents
                if status in ("survived", "uncovered") and listed:
                    results["equivalent"].append({**entry, "reason": equivalents[m.ident]})
                else:
                    results[status].append(entry)
                    if listed:
                        results["stale_exclusions"].append(entry)
            killed = len(results["killed"]) + len(results["timeout"])
            counted = len(mutants) - len(results["equivalent"])
            summary = {
                "generated": total,
                "tried": len(mutants),
                "killed": killed,
                "timeout": len(results["timeout"]),
                "survived": len(results["survived"]) + len(results["uncovered"]),
                "uncovered": len(results["uncovered"]),
                "equivalent": len(results["equivalent"]),
                "score": round(100.0 * killed / counted, 2) if counted else 100.0,
                "seconds": round(time.monotonic() - t0, 1),
                "survivors": sorted(results["survived"] + results["uncovered"], key=lambda e: e["line"]),
                "equivalents": results["equivalent"],
                "killed_by": {e["id"]: e.get("killed_by") for e in results["killed"]},
                "stale_exclusions": results["stale_exclusions"],
            }
            report["modules"][module] = summary
            _write_report(args.out, report)
            if not args.json:
                _print_module(module, summary, args.sample)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    return 1 if failed else 0


def _write_report(path: Path | None, report: dict[str, Any]) -> None:
    """Write ``report`` to ``path`` (if given) whole or not at all: a run stopped while
    writing leaves the previous module's report."""
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)


def _print_module(module: str, s: dict[str, Any], sample: int | None) -> None:
    sampled = f" (a sample of {s['tried']} of {s['generated']})" if sample is not None else ""
    print(
        f"{module}: {s['tried']} mutants tried{sampled}, {s['killed']} killed "
        f"({s['timeout']} by timeout), {s['survived']} survived ({s['uncovered']} run by no test), "
        f"{s['equivalent']} equivalent; score {s['score']} % in {s['seconds']} s"
    )
    for e in s["survivors"]:
        print(f"  survived {module}:{e['line']}: {e['id']}")
    for e in s["stale_exclusions"]:
        print(f"  listed as equivalent but killed (remove it): {e['id']}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
