"""MkDocs hook: bundle a pinned KaTeX with the site, so that maths renders offline.

``pymdownx.arithmatex`` (generic mode) wraps every formula in ``<span class="arithmatex">``
/ ``<div class="arithmatex">``; ``docs/assets/javascripts/katex-init.js`` renders those
with KaTeX. KaTeX itself is third-party code, so it is not committed: at build time this
hook takes the pinned release from the npm registry with ``npm pack`` (once; the tarball
is cached), checks it against the pinned ``sha512`` integrity, and adds ``katex.min.js``,
``katex.min.css``, the fonts and the licence to the site under ``assets/katex/``.

Offline builds: set ``TORCHEBM_KATEX_TGZ`` to a copy of ``katex-<version>.tgz`` (for
example one made earlier by ``npm pack katex@<version>``); the integrity is checked all
the same. The cache is ``$TORCHEBM_DOCS_CACHE`` (default ``~/.cache/torchebm-docs``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

KATEX_VERSION = "0.16.22"
#: ``npm view katex@0.16.22 dist.integrity``
KATEX_INTEGRITY = "sha512-XCHRdUw4lf3SKBaJe4EvgqIuWwkPSo9XoeO8GjQW94Bp7TWv9hNhzZjZ+OH9yf1UmLygb7DIT5GSFQiyt16zYg=="
#: Where the files land in the site (mkdocs.yml's extra_javascript/extra_css point here).
SITE_DIR = "assets/katex"

_dist: Path | None = None


def _cache() -> Path:
    base = os.environ.get("TORCHEBM_DOCS_CACHE") or Path.home() / ".cache" / "torchebm-docs"
    return Path(base)


def _integrity(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def _tarball() -> Path:
    name = f"katex-{KATEX_VERSION}.tgz"
    given = os.environ.get("TORCHEBM_KATEX_TGZ")
    if given:
        path = Path(given)
        if not path.is_file():
            raise PluginError(f"TORCHEBM_KATEX_TGZ={given!r} is not a file")
        return path
    path = _cache() / name
    if path.is_file():
        return path
    npm = shutil.which("npm")
    if npm is None:
        raise PluginError(
            f"KaTeX {KATEX_VERSION} is not cached at {path} and npm is not installed: install "
            f"Node.js/npm, or set TORCHEBM_KATEX_TGZ to a copy of {name} "
            f"(made by `npm pack katex@{KATEX_VERSION}`)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [npm, "pack", f"katex@{KATEX_VERSION}", "--silent"],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=300,
        )
        got = Path(tmp) / name
        if proc.returncode != 0 or not got.is_file():
            raise PluginError(f"`npm pack katex@{KATEX_VERSION}` failed: {proc.stderr.strip()}")
        shutil.move(str(got), path)
    return path


def _extract() -> Path:
    """The verified ``dist`` folder of the pinned KaTeX (extracted once into the cache)."""
    tgz = _tarball()
    found = _integrity(tgz)
    if found != KATEX_INTEGRITY:
        raise PluginError(
            f"{tgz} is not KaTeX {KATEX_VERSION}: integrity {found}, expected {KATEX_INTEGRITY}"
        )
    out = _cache() / f"katex-{KATEX_VERSION}-{found[7:23].replace('/', '_')}"
    if not (out / "katex.min.js").is_file():
        tmp = Path(tempfile.mkdtemp(dir=_cache()))
        with tarfile.open(tgz) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.isfile()
                and (m.name.startswith("package/dist/") or m.name == "package/LICENSE")
                and ".." not in m.name.split("/")
            ]
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **safe)  # checked names, pinned hash
        dist = tmp / "package" / "dist"
        shutil.copy(tmp / "package" / "LICENSE", dist / "LICENSE")
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(dist), out)
        shutil.rmtree(tmp)
    return out


def _wanted(rel: str) -> bool:
    return rel in ("katex.min.js", "katex.min.css", "LICENSE") or (
        rel.startswith("fonts/") and rel.endswith((".woff2", ".woff", ".ttf"))
    )


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    global _dist
    _dist = _extract()
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    assert _dist is not None
    for path in sorted(_dist.rglob("*")):
        rel = path.relative_to(_dist).as_posix()
        if path.is_file() and _wanted(rel):
            files.append(File.generated(config, f"{SITE_DIR}/{rel}", abs_src_path=str(path)))
    return files
