"""Install the scripts the book serves itself, so the built site works with no internet.

The static book needs require.js and the ipywidgets HTML manager (to show the explorers without
a kernel) and MathJax (to render formulas). Sphinx and MyST-NB would load them from public
CDNs; instead ``make book`` runs this script, which installs the exact versions pinned in
``tools/web/package.json`` from the npm registry and copies what the page loads into
``book/_site_extra/vendor/`` (ignored by git; Sphinx copies it to the site root as ``vendor/``, outside ``_static`` because Jupyter Book adds every script under ``_static`` to every page). ``book/_config.yml`` points Sphinx and MyST-NB there.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "tools" / "web"
SITE_EXTRA = ROOT / "book" / "_site_extra"
VENDOR = SITE_EXTRA / "vendor"
# The widget manager's bundles ask for their icon fonts beside the AMD module that injected the
# stylesheet, resolved from the page. Four modules are defined ("@jupyter-widgets/base",
# ".../controls", ".../html-manager" and ".../html-manager/dist/libembed-amd"), so the fonts are
# asked for under <site root>/@jupyter-widgets/ or under .../html-manager/dist/, whichever
# module's stylesheet the browser applied first: serve a copy in both folders.
WIDGET_FONT_DIRS = [SITE_EXTRA / "@jupyter-widgets",
                    SITE_EXTRA / "@jupyter-widgets" / "html-manager" / "dist"]
# Bump when what is copied, or where, changes: the stamp then no longer matches.
LAYOUT = "2: fonts in every module folder"
FONT_SUFFIXES = (".woff2", ".woff", ".ttf", ".eot", ".svg")
MODULES = WEB / "node_modules"

# (source inside node_modules, destination inside book/_static/vendor)
COPIES = [
    ("requirejs/require.js", "require.js"),
    ("@jupyter-widgets/html-manager/dist", "html-manager"),
    ("mathjax/es5", "mathjax"),
]


def _installed_versions_match() -> bool:
    wanted = json.loads((WEB / "package.json").read_text())["dependencies"]
    for name, version in wanted.items():
        manifest = MODULES / name / "package.json"
        if not manifest.exists() or json.loads(manifest.read_text())["version"] != version:
            return False
    return True


def main() -> int:
    if not _installed_versions_match():
        if shutil.which("npm") is None:
            print("npm is not installed: install Node.js (Debian: apt-get install npm) to build "
                  "the offline book's scripts", file=sys.stderr)
            return 1
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-package-lock",
                        "--ignore-scripts"], cwd=WEB, check=True)
    stamp = VENDOR / ".versions.json"
    wanted = LAYOUT + "\n" + (WEB / "package.json").read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        return 0  # already copied
    shutil.rmtree(VENDOR, ignore_errors=True)
    shutil.rmtree(SITE_EXTRA / "@jupyter-widgets", ignore_errors=True)
    for source, target in COPIES:
        src, dst = MODULES / source, VENDOR / target
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.map", "*.LICENSE.txt"))
        else:
            shutil.copy2(src, dst)
    for folder in WIDGET_FONT_DIRS:
        folder.mkdir(parents=True, exist_ok=True)
        for font in (MODULES / "@jupyter-widgets/html-manager/dist").iterdir():
            if font.suffix in FONT_SUFFIXES:
                shutil.copy2(font, folder / font.name)
    stamp.write_text(wanted)
    print(f"copied the book's offline scripts into {VENDOR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
