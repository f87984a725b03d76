"""Desktop integration and packaging: the desktop file, AppStream metainfo, MIME types, icons, package data and the
wheel agree with each other and with the package (one version, one app id, one entry point)."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
from importlib.resources import files
from pathlib import Path

import pytest

from sparsegui import __version__
from sparsegui.gui.app import APP_ID
from sparsegui.gui.dialogs import CHECKPOINT_FILTER
from sparsegui.resources import ACTION_ICONS, APP_ICON

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: build depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
DESKTOP = PACKAGING / f"{APP_ID}.desktop"
METAINFO = PACKAGING / f"{APP_ID}.metainfo.xml"
MIME = PACKAGING / f"{APP_ID}.mime.xml"
ICON_SIZES = (16, 32, 48, 64, 128, 256)
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"
SVG_NS = "{http://www.w3.org/2000/svg}"
HDF5_TYPES = {"application/x-hdf5", "application/x-hdf"}  # newer and older shared-mime-info names for .h5


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def script_name() -> str:
    scripts = pyproject()["project"]["scripts"]
    assert scripts == {"sparsegui": "sparsegui.cli:run"}
    return next(iter(scripts))


def desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(DESKTOP.read_text(encoding="utf-8"))
    assert parser.sections() == ["Desktop Entry"]
    return parser["Desktop Entry"]


def desktop_list(value: str) -> list[str]:
    assert value.endswith(";"), f"a desktop-file list ends with ';': {value!r}"
    return [item for item in value.split(";") if item]


def metainfo() -> ET.Element:
    return ET.parse(METAINFO).getroot()


def mime_types() -> dict[str, list[str]]:
    """The types our shared-mime-info file defines, with their globs."""
    root = ET.parse(MIME).getroot()
    assert root.tag == f"{MIME_NS}mime-info"
    return {t.get("type", ""): [g.get("pattern", "") for g in t.iter(f"{MIME_NS}glob")]
            for t in root.iter(f"{MIME_NS}mime-type")}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


# -- the desktop file ----------------------------------------------------------------------------------------------
def test_desktop_file_launches_the_entry_point_with_files() -> None:
    """Exec and TryExec name the [project.scripts] command; %F passes every file the user opened with it."""
    entry = desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Exec"].split() == [script_name(), "%F"]
    assert entry["TryExec"] == script_name()
    assert entry["Terminal"] == "false"


def test_desktop_file_is_named_and_iconed_by_the_app_id() -> None:
    """The file name, the Icon and the id the app gives Wayland (setDesktopFileName) are the same reverse-DNS id;
    StartupWMClass is the X11 WM_CLASS Qt derives from the application name."""
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QGuiApplication

    from sparsegui.gui.app import configure_application

    configure_application()
    entry = desktop_entry()
    assert DESKTOP.stem == APP_ID
    assert entry["Icon"] == APP_ID
    assert QGuiApplication.desktopFileName() == APP_ID
    assert entry["StartupWMClass"] == QCoreApplication.applicationName() == entry["Name"]


def test_desktop_file_offers_every_checkpoint_type() -> None:
    """MimeType lists the types our MIME file defines (PyTorch, safetensors) plus HDF5, and nothing else."""
    assert set(desktop_list(desktop_entry()["MimeType"])) == set(mime_types()) | HDF5_TYPES


def test_mime_file_covers_the_extensions_the_open_dialog_offers() -> None:
    """Every glob of our MIME types is an extension the Open dialog's filter lists, and each type has a comment."""
    types = mime_types()
    assert set(types) == {"application/x-pytorch", "application/x-safetensors"}
    assert types["application/x-pytorch"] == ["*.pt", "*.pth"]
    assert types["application/x-safetensors"] == ["*.safetensors"]
    offered = set(re.findall(r"\*\.[\w.]+", CHECKPOINT_FILTER))
    for globs in types.values():
        assert set(globs) <= offered, globs
    root = ET.parse(MIME).getroot()
    assert all(t.find(f"{MIME_NS}comment") is not None for t in root.iter(f"{MIME_NS}mime-type"))


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="needs desktop-file-utils")
def test_desktop_file_validates() -> None:
    """desktop-file-validate reports no error and no warning (hints are fine)."""
    result = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "error" not in result.stdout and "warning" not in result.stdout, result.stdout


# -- AppStream metainfo --------------------------------------------------------------------------------------------
def test_metainfo_describes_the_desktop_app() -> None:
    """id, launchable, name, summary, description, developer, licences, content rating and the binary it provides
    agree with the desktop file and pyproject.toml."""
    root = metainfo()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    launchable = root.find("launchable")
    assert launchable is not None and launchable.get("type") == "desktop-id" and launchable.text == DESKTOP.name
    assert root.findtext("name") == desktop_entry()["Name"]
    assert root.findtext("summary")
    assert root.find("description/p") is not None
    assert root.findtext("developer/name") == pyproject()["project"]["authors"][0]["name"]
    assert root.findtext("project_license") == pyproject()["project"]["license"]
    assert root.findtext("metadata_license") == "CC0-1.0"
    rating = root.find("content_rating")
    assert rating is not None and rating.get("type", "").startswith("oars-")
    assert [b.text for b in root.iter("binary")] == [script_name()]
    assert {m.text for m in root.iter("mediatype")} <= set(desktop_list(desktop_entry()["MimeType"]))


def test_one_version_for_app_wheel_metainfo_and_changelog() -> None:
    """The wheel takes its version from sparsegui.__version__, the newest AppStream release is that version, and
    CHANGELOG.md has a section for it dated like the release."""
    project = pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sparsegui.__version__"}
    releases = metainfo().findall("releases/release")
    assert releases and releases[0].get("version") == __version__
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    heading = re.search(rf"^## \[{re.escape(__version__)}\] - (\d{{4}}-\d\d-\d\d)$", changelog, re.MULTILINE)
    assert heading is not None, f"CHANGELOG.md has no '## [{__version__}] - DATE' section"
    assert releases[0].get("date") == heading.group(1)


def test_metainfo_screenshots_are_the_docs_screenshots() -> None:
    """Every screenshot URL points at an image that exists in docs/screenshots; one is the default."""
    screenshots = metainfo().findall("screenshots/screenshot")
    assert screenshots and [s.get("type") for s in screenshots].count("default") == 1
    for shot in screenshots:
        url = shot.findtext("image") or ""
        assert url.startswith("https://") and "/docs/screenshots/" in url, url
        assert (ROOT / "docs" / "screenshots" / url.rsplit("/", 1)[-1]).is_file(), url
        assert shot.findtext("caption")


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="needs appstream")
def test_metainfo_validates() -> None:
    """appstreamcli validate (offline) passes: no errors or warnings."""
    result = subprocess.run(["appstreamcli", "validate", "--no-net", str(METAINFO)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not re.search(r"^[EW]: ", result.stdout, re.MULTILINE), result.stdout


# -- icons and package data ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", ICON_SIZES)
def test_hicolor_icon_at_every_size(size: int) -> None:
    """packaging/icons/hicolor/NxN/apps/<app id>.png exists and is N×N pixels."""
    path = PACKAGING / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
    assert png_size(path) == (size, size)


def test_scalable_icon_is_the_packaged_artwork() -> None:
    """The scalable hicolor SVG is a copy of the SVG the app itself loads (render_icons.py keeps them equal)."""
    scalable = PACKAGING / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"
    assert scalable.read_bytes() == (files("sparsegui.resources") / APP_ICON).read_bytes()


@pytest.mark.parametrize("name", [APP_ICON, *(f"{n}.svg" for n in ACTION_ICONS)])
def test_package_data_found_through_importlib_resources(name: str) -> None:
    """Each icon is package data: importlib.resources finds it, and it is an SVG with a viewBox."""
    resource = files("sparsegui.resources") / name
    assert resource.is_file()
    root = ET.fromstring(resource.read_bytes())
    assert root.tag == f"{SVG_NS}svg" and root.get("viewBox")


def test_every_packaged_svg_is_declared_package_data() -> None:
    """pyproject.toml ships *.svg from sparsegui/resources, and the folder holds no icon the code does not name."""
    assert pyproject()["tool"]["setuptools"]["package-data"]["sparsegui.resources"] == ["*.svg"]
    shipped = {p.name for p in (ROOT / "sparsegui" / "resources").glob("*.svg")}
    assert shipped == {APP_ICON, *(f"{n}.svg" for n in ACTION_ICONS)}
    assert (ROOT / "resources" / "README.md").is_file()


# -- the wheel -----------------------------------------------------------------------------------------------------
GUI_SMOKE = """
import sys
from importlib.resources import files

import sparsegui
from sparsegui.gui.app import configure_application
from sparsegui.gui.main_window import MainWindow

app = configure_application()
window = MainWindow()
window.show()
for _ in range(20):
    app.processEvents()
assert not window.windowIcon().isNull(), "no window icon"
assert not window.open_action.icon().isNull(), "no toolbar icon"
print("module", sparsegui.__file__)
print("icon", files("sparsegui.resources") / "sparsegui.svg")
print("title", window.windowTitle())
window.close()
app.processEvents()
"""


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_wheel_installs_into_a_fresh_venv_and_starts(tmp_path: Path) -> None:
    """`python -m build` (sdist, then a wheel from it) on a copy of the sources gives a wheel of this version that
    installs into a new venv (sharing this environment's torch and Qt) and runs from there: `sparsegui --version`,
    and the main window offscreen with its icons found as package data."""
    source = tmp_path / "src"
    shutil.copytree(ROOT / "sparsegui", source / "sparsegui", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(source)], tmp_path)
    wheels = list((tmp_path / "dist").glob("*.whl"))
    assert [w.name for w in wheels] == [f"sparsegui-{__version__}-py3-none-any.whl"]

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    # share the dependencies of the environment running the tests (a venv or not): --system-site-packages would
    # share the base interpreter's instead, which lacks them in a fresh venv
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    new_site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip()
    Path(new_site, "shared_dependencies.pth").write_text("\n".join(sorted(shared)) + "\n", encoding="utf-8")
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", "-q",
         str(wheels[0])], tmp_path)

    assert run([str(bin_dir / "sparsegui"), "--version"], tmp_path).strip() == f"sparsegui {__version__}"
    home = tmp_path / "home"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache")}
    env.pop("PYTHONPATH", None)
    script = tmp_path / "gui_smoke.py"
    script.write_text(GUI_SMOKE, encoding="utf-8")
    lines = dict(line.split(" ", 1) for line in run([str(python), str(script)], tmp_path, env).splitlines()
                 if line.split(" ", 1)[0] in ("module", "icon", "title"))
    site = str(venv.resolve())
    assert str(Path(lines["module"]).resolve()).startswith(site), f"sparsegui came from {lines['module']}, not a wheel"
    assert str(Path(lines["icon"]).resolve()).startswith(site)
    assert lines["title"].endswith("SparseGUI")
