"""The images the stack builds from this repository send only what their Dockerfiles copy.

Their build context is the repository itself; without .dockerignore every build would send .git
and the virtualenvs to the engine (hundreds of MB) and hash them into the build's inputs. The
ignore file is an allow-list, kept here equal to the COPY sources of every Dockerfile the stack
builds, as the dev stack (a Docker host) declares them.
"""

from __future__ import annotations

import shlex

from tests.conftest import ROOT


def built_images() -> list[dict]:
    from tools import offline

    result = offline.run("dev")
    builds = [r.inputs["build"] for r in result.resources if r.type == "docker:index/image:Image"]
    assert builds, "dev builds no image: the check has nothing to read"
    return builds


def copy_sources(dockerfile: str) -> set[str]:
    sources = set()
    for line in (ROOT / dockerfile).read_text().splitlines():
        words = shlex.split(line) if line.strip() and not line.lstrip().startswith("#") else []
        if words and words[0].upper() in ("COPY", "ADD"):
            args = [w for w in words[1:] if not w.startswith("--")]
            assert not any(w.startswith("--from") for w in words), line
            sources.update(a.rstrip("/") for a in args[:-1])
    return sources


def allow_list() -> tuple[list[str], set[str]]:
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return rules, {r[1:].rstrip("/") for r in rules if r.startswith("!")}


def test_every_build_context_is_the_repository_and_sends_only_what_is_copied():
    builds = built_images()
    assert {b["context"] for b in builds} == {"."}
    wanted = set().union(*(copy_sources(b["dockerfile"]) for b in builds))
    rules, allowed = allow_list()
    # Everything out, then the copied paths back in, then caches out of them again (last match wins).
    assert rules[0] == "*" and rules[-1] == "**/__pycache__", rules
    assert all(r.startswith("!") for r in rules[1:-1]), rules
    # Each allowed path is one a Dockerfile copies; each copied path is allowed (itself or its folder).
    assert allowed <= wanted, sorted(allowed - wanted)
    uncovered = [w for w in wanted if not any(w == a or w.startswith(a + "/") for a in allowed)]
    assert not uncovered, uncovered
    assert all((ROOT / path).exists() for path in allowed), allowed
