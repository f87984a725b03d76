"""A recipe is data: applying it imports or runs nothing the user did not trust.

Every method a recipe names that is neither built in nor an installed plugin (``sparsegui.pruning_methods`` entry
points) is code: a ``package.module:Class`` would be imported, a ``file.py:Class`` run. Such a recipe is refused with
one line naming exactly what would run, before the model is even opened, unless ``--trust`` is given. Planted
modules and files write a marker file when their code runs; the marker must not appear.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLANTED = """
from pathlib import Path
Path({marker!r}).write_text("ran")
from torch.nn.utils import prune


class Evil(prune.BasePruningMethod):
    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t, default_mask):
        return default_mask
"""


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import sys\nfrom sparsegui.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=env)


def plant(folder: Path, name: str, marker: Path) -> Path:
    path = folder / name
    path.write_text(PLANTED.format(marker=str(marker)), encoding="utf-8")
    return path


def recipe_with(folder: Path, method: str) -> Path:
    path = folder / "recipe.json"
    path.write_text(json.dumps({"steps": [{"op": "prune", "method": method, "targets": ["fc1.weight"]}]}))
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


@pytest.mark.parametrize(("method", "said"), [
    ("evilmod:Evil", "import the Python module evilmod"),                       # planted in the working folder
    ("recipes_pkg.evilmod:Evil", "import the Python module recipes_pkg.evilmod"),
    ("evil.py:Evil", "run the Python file"),                                     # next to the recipe
    ("../elsewhere/evil.py:Evil", "run the Python file"),                        # climbing out of the folder
    ("ABSOLUTE:Evil", "run the Python file"),                                    # an absolute path
    ("antigravity:Fly", "import the Python module antigravity"),                 # a standard module with effects
])
def test_a_recipe_naming_code_is_refused_and_runs_nothing(work: Path, method: str, said: str) -> None:
    marker = work / "ran.txt"
    plant(work, "evilmod.py", marker)
    (work / "recipes_pkg").mkdir()
    (work / "recipes_pkg" / "__init__.py").write_text("")
    plant(work / "recipes_pkg", "evilmod.py", marker)
    plant(work / "recipes", "evil.py", marker)
    evil = plant(work / "elsewhere", "evil.py", marker)
    recipe = recipe_with(work / "recipes", method.replace("ABSOLUTE", str(evil)))
    result = run_cli(["apply", str(recipe), "--demo", "lenet", "-o", str(work / "out.pt")], work)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert said in lines[0] and "--trust" in lines[0]
    assert not marker.exists() and not (work / "out.pt").exists()


def test_trust_lets_the_named_code_run(work: Path) -> None:
    """With --trust the user agreed: the plugin file runs and its method prunes."""
    marker = work / "ran.txt"
    plant(work / "recipes", "evil.py", marker)
    recipe = recipe_with(work / "recipes", "evil.py:Evil")
    result = run_cli(["apply", str(recipe), "--demo", "lenet", "-o", str(work / "out.pt"), "--trust"], work)
    assert result.returncode == 0, result.stderr
    assert marker.exists() and (work / "out.pt").exists()


@pytest.mark.parametrize("method", ["l1_unstructured", "foobar", "sparsegui.plugins.foobar:FooBarPruningMethod"])
def test_built_ins_and_installed_plugins_need_no_trust(work: Path, method: str) -> None:
    step = {"op": "prune", "method": method, "targets": ["fc1.weight"]}
    if method == "l1_unstructured":
        step["amount"] = 0.5
    recipe = work / "r.json"
    recipe.write_text(json.dumps({"steps": [step]}))
    result = run_cli(["apply", str(recipe), "--demo", "lenet", "-o", str(work / "out.pt")], work)
    assert result.returncode == 0, result.stderr


def test_the_core_refuses_too(work: Path) -> None:
    """The check lives in the core: a script replaying a recipe gets TrustRequired listing the code, nothing runs."""
    code = """
import json
from sparsegui.core.document import Document
from sparsegui.core.errors import TrustRequired
from sparsegui.core.recipe import apply_recipe
recipe = {"steps": [{"op": "prune", "method": "evilmod:Evil", "targets": ["fc1.weight"]}]}
doc = Document.demo("lenet")
try:
    apply_recipe(doc, recipe)
except TrustRequired as exc:
    print(json.dumps(exc.wanted_imports))
print(doc.history.index)
"""
    marker = work / "ran.txt"
    plant(work, "evilmod.py", marker)
    result = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    wanted, index = result.stdout.strip().splitlines()
    assert json.loads(wanted) == ["import the Python module evilmod"] and index == "0"
    assert not marker.exists()
