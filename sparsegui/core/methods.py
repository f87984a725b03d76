"""The pruning methods SparseGUI offers: every ``torch.nn.utils.prune`` method plus plugins.

Plugins are :class:`~torch.nn.utils.prune.BasePruningMethod` subclasses found through the entry-point group
``sparsegui.pruning_methods``, named ``package.module:ClassName``, or loaded from a Python file the user picks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import pkgutil
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from torch.nn.utils import prune

from sparsegui.core.errors import PruneError
from sparsegui.core.nm import NMUnstructured

ENTRY_POINT_GROUP = "sparsegui.pruning_methods"
GLOBAL_METHODS = {"l1_unstructured": prune.L1Unstructured, "random_unstructured": prune.RandomUnstructured}


@dataclass(frozen=True)
class MethodSpec:
    """What a pruning method needs: the class, which settings it takes, and where it came from."""

    name: str
    cls: type[prune.BasePruningMethod]
    takes_amount: bool = False
    takes_n: bool = False
    takes_dim: bool = False
    takes_mask: bool = False
    takes_nm: bool = False
    """keep and group (N:M), and an optional dim (default: each tensor's input axis)."""
    random: bool = False
    origin: str = "torch"
    description: str = ""
    extra_params: tuple[str, ...] = ()

    @property
    def structured(self) -> bool:
        return self.takes_dim

    @property
    def seeded(self) -> bool:
        """Whether a step records a seed: random methods, and plugins (they may draw random numbers)."""
        return self.random or self.origin not in ("torch", "sparsegui")


BUILTINS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("identity", prune.Identity, description="a mask of ones (prunes nothing)"),
        MethodSpec(
            "random_unstructured", prune.RandomUnstructured, takes_amount=True, random=True,
            description="random entries",
        ),
        MethodSpec("l1_unstructured", prune.L1Unstructured, takes_amount=True, description="smallest |w| entries"),
        MethodSpec(
            "random_structured", prune.RandomStructured, takes_amount=True, takes_dim=True, random=True,
            description="random channels along dim",
        ),
        MethodSpec(
            "ln_structured", prune.LnStructured, takes_amount=True, takes_n=True, takes_dim=True,
            description="channels with the smallest Ln norm along dim",
        ),
        MethodSpec(
            "custom_from_mask", prune.CustomFromMask, takes_mask=True, description="a mask given by the user"
        ),
        MethodSpec(
            "nm_unstructured", NMUnstructured, takes_nm=True, origin="sparsegui",
            description="keep N of every M entries along the input axis (2:4 semi-structured)",
        ),
    )
}

_file_plugins: dict[str, MethodSpec] = {}
_broken: dict[str, str] = {}
log = logging.getLogger(__name__)


def spec_for_class(name: str, cls: type, origin: str) -> MethodSpec:
    """Describe a plugin class from its ``__init__`` signature."""
    if not (isinstance(cls, type) and issubclass(cls, prune.BasePruningMethod)):
        raise PruneError(f"method {name!r} is a {type(cls).__name__}, not a torch BasePruningMethod subclass")
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    doc = (inspect.getdoc(cls) or "").strip().splitlines()
    return MethodSpec(
        name=name,
        cls=cls,
        takes_amount="amount" in names,
        takes_n="n" in names,
        takes_dim="dim" in names,
        random=bool(getattr(cls, "RANDOM", False)) or "random" in cls.__name__.lower(),
        origin=origin,
        description=doc[0] if doc else cls.__name__,
        extra_params=tuple(sorted(names - {"amount", "n", "dim"})),
    )


def entry_point_methods() -> dict[str, MethodSpec]:
    """Plugins installed through the ``sparsegui.pruning_methods`` entry-point group (broken ones skipped)."""
    found: dict[str, MethodSpec] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = spec_for_class(ep.name, ep.load(), origin=f"plugin {ep.value}")
        except Exception as exc:  # a broken installed plugin must not take the others down; say which and why
            if ep.name not in _broken:
                _broken[ep.name] = f"{type(exc).__name__}: {exc}"
                log.warning("pruning plugin %s (%s) cannot be loaded: %s", ep.name, ep.value, _broken[ep.name])
    return found


def broken_plugins() -> dict[str, str]:
    """Installed plugins that failed to load, with why (``sparsegui methods`` and the Prune panel show them)."""
    entry_point_methods()
    return dict(_broken)


def load_plugin_file(path: str | Path) -> list[MethodSpec]:
    """Import a Python file and register every ``BasePruningMethod`` subclass it defines as ``FILE:Class``.

    This runs the file's code: only for files the user picked.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise PruneError(f"plugin file {str(path)!r} does not exist")
    module_name = "sparsegui_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PruneError(f"plugin file {path.name!r} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PruneError(f"plugin file {path.name!r} raised {type(exc).__name__}: {exc}") from exc
    specs = []
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if issubclass(cls, prune.BasePruningMethod) and cls.__module__ == module_name:
            method = spec_for_class(f"{path}:{cls.__name__}", cls, origin=f"file {path.name}")
            _file_plugins[method.name] = method
            specs.append(method)
    if not specs:
        raise PruneError(f"plugin file {path.name!r} defines no BasePruningMethod subclass")
    return specs


def code_needed(name: str, base_dir: Path | None = None) -> str | None:
    """What resolving method ``name`` would import or run, in words, or None when it runs nothing new: a built-in,
    an installed plugin (the ``sparsegui.pruning_methods`` entry points), a plugin file already loaded in this
    process, or a class of a module already imported."""
    if name in BUILTINS or name in _file_plugins or ":" not in name:
        return None
    target, _, _cls = name.rpartition(":")
    if target.endswith(".py"):
        file = Path(target) if base_dir is None or Path(target).is_absolute() else base_dir / target
        resolved = str(file.resolve())
        if any(key.rpartition(":")[0] == resolved for key in _file_plugins):
            return None
        return f"run the Python file {resolved}"
    if any(name in (ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP)):
        return None
    module = target.split(":")[0]
    if module in sys.modules:
        return None
    return f"import the Python module {module}"


def available_methods() -> dict[str, MethodSpec]:
    """Built-ins, installed plugins and plugin files loaded in this process."""
    return {**BUILTINS, **entry_point_methods(), **_file_plugins}


def resolve_method(name: str, base_dir: Path | None = None) -> MethodSpec:
    """Find a method by name: built-in, entry point, loaded file, ``package.module:Class`` or ``file.py:Class``."""
    if name in BUILTINS:
        return BUILTINS[name]
    if name in _file_plugins:
        return _file_plugins[name]
    installed = entry_point_methods()
    if name in installed:
        return installed[name]
    if ":" in name:
        target, _, cls_name = name.rpartition(":")
        if target.endswith(".py"):
            file = Path(target) if base_dir is None or Path(target).is_absolute() else base_dir / target
            for spec in load_plugin_file(file):
                if spec.cls.__name__ == cls_name:
                    return spec
            raise PruneError(f"plugin file {target!r} has no class {cls_name!r}")
        try:
            cls = pkgutil.resolve_name(name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise PruneError(f"cannot import pruning method {name!r} ({type(exc).__name__}: {exc})") from exc
        return spec_for_class(name, cls, origin=f"plugin {name}")
    known = ", ".join(available_methods())
    raise PruneError(f"unknown pruning method {name!r}; known: {known}")
