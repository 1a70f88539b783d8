"""`patchnb publish` against a local bare repository as the remote: the gh-pages branch holds the HTML."""
import subprocess

import pytest

from patchnb import cli
from patchnb.publish import PublishError, publish


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path):
    repo, remote = tmp_path / "repo", tmp_path / "remote.git"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init", cwd=repo)
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    html = repo / "_build" / "html"
    (html / "_static").mkdir(parents=True)
    (html / "index.html").write_text("<html>book</html>")
    (html / "_static" / "style.css").write_text("body{}")
    return repo, remote, html


def test_publish_pushes_the_html_to_gh_pages(checkout, monkeypatch):
    repo, remote, html = checkout
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@t")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@t")
    commit = publish(html, remote=str(remote), repo=repo)
    assert git("rev-parse", "gh-pages", cwd=remote) == commit
    files = set(git("ls-tree", "-r", "--name-only", "gh-pages", cwd=remote).splitlines())
    assert files == {".nojekyll", "index.html", "_static/style.css"}
    assert git("show", "gh-pages:index.html", cwd=remote) == "<html>book</html>"
    # the CLI does the same and republishing replaces the content
    (html / "index.html").write_text("<html>v2</html>")
    assert cli.main(["publish", "--html", str(html), "--remote", str(remote), "--repo", str(repo)]) == 0
    assert git("show", "gh-pages:index.html", cwd=remote) == "<html>v2</html>"


def test_publish_errors(checkout, tmp_path, capsys):
    repo, remote, html = checkout
    with pytest.raises(PublishError, match="run `make book` first"):
        publish(tmp_path / "nothing", remote=str(remote), repo=repo)
    with pytest.raises(PublishError, match="not a git repository"):
        publish(html, remote=str(remote), repo=tmp_path)
    assert cli.main(["publish", "--html", str(html), "--remote", str(tmp_path / "missing.git"),
                     "--repo", str(repo)]) == 2
    assert "could not publish" in capsys.readouterr().err
