"""The wheel as a user installs it: what it puts in an environment, and what it leaves alone.

One wheel is built per run, from a copy of this checkout (so the build leaves
nothing behind here), with the environment's own setuptools and no download.
"""
from __future__ import annotations

import ast
import configparser
import email.parser
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent.parent
NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", "*.so", "build", "*.egg-info",
    ".hypothesis", ".mypy_cache", ".pytest_cache",
)


class Wheel(NamedTuple):
    path: Path
    #: everything ``pip wheel`` printed, the build backend's warnings included
    build_output: str

    def names(self) -> List[str]:
        with zipfile.ZipFile(self.path) as archive:
            return archive.namelist()

    def read(self, name: str) -> str:
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(name).decode()

    def dist_info(self, name: str) -> str:
        return self.read(f"baseplate_events-0.1.0.dist-info/{name}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wheel]:
    """``pip wheel .`` of a copy of this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(work / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
    [path] = (work / "dist").glob("baseplate_events-*.whl")
    yield Wheel(path, result.stdout + result.stderr)


def make_venv(where: Path) -> Path:
    """A fresh venv (no pip of its own); returns its site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return where / "lib" / version / "site-packages"


def pip_install(venv: Path, wheel: Path) -> None:
    """This environment's pip installs ``wheel`` into ``venv``, as ``pip install`` would."""
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True, capture_output=True, timeout=120,
    )


def lend_dependencies(site_packages: Path) -> None:
    """Let the venv import thrift, posix_ipc... from this environment, after its own packages.

    A path in a .pth file is appended to sys.path, and the .pth files found
    there are not run: this environment's editable install stays out.
    """
    (site_packages / "zz-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


def install_users_own_schemas(site_packages: Path) -> None:
    """The user's own ``event_schemas`` package, installed before ours."""
    package = site_packages / "event_schemas"
    (package / "shop").mkdir(parents=True)
    (package / "__init__.py").write_text('OWNER = "the user"\n')
    (package / "shop" / "__init__.py").write_text("")
    (package / "shop" / "ttypes.py").write_text("class Purchase:\n    pass\n")


def users_files(site_packages: Path) -> List[str]:
    return sorted(str(path.relative_to(site_packages))
                  for path in (site_packages / "event_schemas").rglob("*"))


def test_building_prints_no_experimental_warning(wheel: Wheel):
    """No setuptools warning that a pyproject table is still experimental."""
    assert [] == [line for line in wheel.build_output.splitlines() if "xperimental" in line]


def test_the_c_extension_is_built_into_the_wheel(wheel: Wheel):
    """publisher._landing is compiled and shipped (declared in setup.py)."""
    built = [n for n in wheel.names() if n.startswith("publisher/_landing.") and n.endswith(".so")]
    assert 1 == len(built), wheel.names()


def test_the_wheel_installs_no_top_level_event_schemas(wheel: Wheel):
    """Top level: our three packages and the metadata; the sample schema sits in demo_app."""
    top = {name.split("/")[0] for name in wheel.names()}
    expected = {"baseplate_events", "publisher", "demo_app", "baseplate_events-0.1.0.dist-info"}
    assert expected == top
    assert {"demo_app/event_schemas/event.thrift", "demo_app/event_schemas/event/ttypes.py"} <= set(
        wheel.names())


def test_the_pytest_plugin_entry_point_has_the_modules_own_name(wheel: Wheel):
    """pytest11: baseplate_events.testing = baseplate_events.testing."""
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel.dist_info("entry_points.txt"))
    assert {"baseplate_events.testing": "baseplate_events.testing"} == dict(
        entry_points["pytest11"])


def test_the_demo_extra_holds_the_demos_dependencies(wheel: Wheel):
    """The demo extra: both frameworks, the publisher's packages, waitress and requests."""
    metadata = email.parser.Parser().parsestr(wheel.dist_info("METADATA"))
    demo = sorted(
        requirement.split(";")[0].strip()
        for requirement in metadata.get_all("Requires-Dist", [])
        if requirement.replace("'", '"').endswith('extra == "demo"')
    )
    expected = ["baseplate-events[collector,flask,publisher,pyramid]", "requests>=2.28",
                "waitress>=2.1"]
    assert expected == demo


def _requirements(wheel: Wheel, extra: Optional[str]) -> List[str]:
    """The wheel's Requires-Dist for ``extra`` (None: the core), without markers, sorted."""
    metadata = email.parser.Parser().parsestr(wheel.dist_info("METADATA"))
    found = []
    for requirement in metadata.get_all("Requires-Dist", []):
        name, _, marker = requirement.partition(";")
        marker = marker.replace("'", '"').strip()
        if (extra is None and not marker) or marker.endswith(f'extra == "{extra}"'):
            found.append(name.strip())
    return sorted(found)


def test_a_web_app_installs_only_posix_ipc_and_thrift(wheel: Wheel):
    """The core's requirements: posix_ipc and thrift, nothing the collector alone needs."""
    assert ["posix_ipc>=1.1", "thrift>=0.16"] == _requirements(wheel, None)


def test_the_collector_extra_holds_msgspec(wheel: Wheel):
    """msgspec comes with the collector extra, which is the only code that imports it."""
    assert "msgspec>=0.18" in _requirements(wheel, "collector")


def test_the_test_extra_pulls_the_collector_extra(wheel: Wheel):
    """The test extra installs the collector (and so msgspec) besides the demo."""
    assert "baseplate-events[collector,demo,prometheus]" in _requirements(wheel, "test")


def test_a_users_own_event_schemas_is_left_as_it_was(wheel: Wheel, tmp_path: Path):
    """In a venv that already holds the user's event_schemas, ours installs beside it untouched."""
    site_packages = make_venv(tmp_path / "venv")
    install_users_own_schemas(site_packages)
    before = users_files(site_packages)
    pip_install(tmp_path / "venv", wheel.path)
    assert before == users_files(site_packages)
    lend_dependencies(site_packages)
    probe = (
        "import event_schemas, event_schemas.shop.ttypes\n"
        "from demo_app.event_schemas.event.ttypes import Event\n"
        "print(event_schemas.OWNER, event_schemas.shop.ttypes.Purchase.__name__, "
        "Event(action='view').action)\n"
    )
    # -I: neither this checkout (the current directory) nor PYTHONPATH is on sys.path.
    result = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-I", "-c", probe],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert ("the user Purchase view\n", "") == (result.stdout, result.stderr)


def test_the_installed_demo_runs_end_to_end(wheel: Wheel, tmp_path: Path):
    """python -m demo_app from the installed wheel, far from any checkout: delivered N/N."""
    site_packages = make_venv(tmp_path / "venv")
    pip_install(tmp_path / "venv", wheel.path)
    lend_dependencies(site_packages)
    result = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-I", "-m", "demo_app", "--requests", "20"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert (0, "delivered 20/20") == (result.returncode, output.strip().splitlines()[-1]), output


def test_no_installed_module_imports_the_checkouts_event_schemas():
    """The installed packages use demo_app.event_schemas; the repo-root one exists only here."""
    offenders = []
    for package in ("baseplate_events", "publisher", "demo_app"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom)
                         and node.level == 0 else [])
                offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names
                              if name.split(".")[0] == "event_schemas"]
    assert [] == offenders
