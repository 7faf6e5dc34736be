"""The optional compiled build (scripts/build-compiled, issue 9): the modules it compiles exist, the pure-Python
package imports and parses without any extension, and a compiled build that is present is the one imported."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
MODULES: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hipper"]["compiled"]["modules"]

# What the child runs: every listed module imported from a tree of .py files only, and a message round trip.
PURE_CHECK = """
import importlib, sys
sys.path.insert(0, sys.argv[1])
for name in sys.argv[2:]:
    module = importlib.import_module(name)
    assert module.__file__ is not None and module.__file__.endswith(".py"), module.__file__
from hipper.sip.message import Request, parse_message
data = (b"OPTIONS sip:a@b SIP/2.0\\r\\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\\r\\nFrom: <sip:x@y>;tag=1\\r\\n"
        b"To: <sip:a@b>\\r\\nCall-ID: c\\r\\nCSeq: 1 OPTIONS\\r\\n\\r\\n")
message = parse_message(data)
assert isinstance(message, Request) and message.from_.tag == "1"
assert parse_message(message.serialize()).top_via.branch == "z9hG4bK1"
print("pure ok")
"""


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def test_every_listed_module_exists() -> None:
    assert MODULES, "the compiled build lists no module"
    for path in MODULES:
        assert (SRC / path).is_file(), f"{path} is listed in [tool.hipper.compiled] but does not exist"


def test_the_pure_package_imports_without_any_extension(tmp_path: Path) -> None:
    # Only the sources: whatever a compiled build left in src/ is not copied, so this is the fallback itself.
    shutil.copytree(
        SRC / "hipper",
        tmp_path / "hipper",
        ignore=lambda folder, names: [
            name for name in names if not name.endswith(".py") and not (Path(folder) / name).is_dir()
        ],
    )
    names = [module_name(path) for path in MODULES]
    result = subprocess.run(
        [sys.executable, "-I", "-c", PURE_CHECK, str(tmp_path), *names],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pure ok" in result.stdout


def test_a_compiled_build_present_is_the_one_imported() -> None:
    built = [path for path in MODULES if list((SRC / path).parent.glob(Path(path).stem + ".*.so"))]
    if not built:
        pytest.skip("no compiled build in src/ (scripts/build-compiled makes one)")
    for path in built:
        module = importlib.import_module(module_name(path))
        assert module.__file__ is not None and module.__file__.endswith(".so"), module.__file__
