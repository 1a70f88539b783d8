"""Publishing the built book: ``patchnb publish`` (``make publish`` builds first) puts ``_build/html`` on the
``gh-pages`` branch of a git remote with ``ghp-import`` (GitHub Pages serves that branch; any bare repository
works as a remote too). The branch holds only the HTML, with ``.nojekyll`` so folders starting with ``_``
are served."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


class PublishError(RuntimeError):
    """The book could not be published (no HTML, not a git repository, push refused)."""


def publish(html: str | Path = "_build/html", remote: str = "origin", branch: str = "gh-pages",
            repo: str | Path = ".", message: str | None = None) -> str:
    """Commit ``html`` as the whole content of ``branch`` in ``repo`` and push it to ``remote`` (a remote
    name or a URL/path). Returns the pushed commit."""
    html, repo = Path(html).resolve(), Path(repo).resolve()
    if not (html / "index.html").is_file():
        raise PublishError(f"no built book at {html} (index.html missing): run `make book` first")
    if subprocess.run(["git", "-C", str(repo), "rev-parse", "--git-dir"], capture_output=True).returncode:
        raise PublishError(f"{repo} is not a git repository: publish from the patchnb checkout")
    exe = shutil.which("ghp-import") or str(Path(sys.executable).with_name("ghp-import"))
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    msg = message or f"book built from {head or 'an uncommitted tree'}"
    r = subprocess.run([exe, "--no-jekyll", "--push", "--force", "--remote", remote, "--branch", branch,
                        "--message", msg, str(html)], cwd=repo, capture_output=True, text=True)
    if r.returncode:
        raise PublishError(f"ghp-import could not publish to {remote!r} ({branch}): {(r.stderr or r.stdout).strip()}")
    return subprocess.run(["git", "-C", str(repo), "rev-parse", branch], capture_output=True,
                          text=True).stdout.strip()
