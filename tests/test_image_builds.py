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


# ---------------------------------------------------------------- reproducible installs

IMAGE_REQUIREMENTS = ("demo/requirements.txt", "components/report/requirements.txt")
# The images' Python (their base image's tag) on their platform: the markers a dependency is chosen by.
IMAGE_MARKERS = {"python_version": "3.11", "python_full_version": "3.11.13", "sys_platform": "linux",
                 "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
                 "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def pins(path: str) -> dict[str, str]:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    out = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path}: {line} is not pinned"
            out[canonicalize_name(req.name)] = spec.version
    return out


def closure(names: set[str]) -> set[str]:
    """Every distribution the named ones need on the images' Python, from their installed metadata."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.distribution(name).requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({**IMAGE_MARKERS, "extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def test_each_image_pins_every_package_it_installs():
    """A tag names the image's content (components/demo.py image_tag): every package the image installs
    is pinned, its dependencies too, at the version the tests run it with."""
    from importlib import metadata

    for path in IMAGE_REQUIREMENTS:
        pinned = pins(path)
        for name, version in pinned.items():
            assert metadata.version(name) == version, f"{path}: {name}=={version}, the tests run {metadata.version(name)}"
        missing = sorted(closure(set(pinned)) - set(pinned))
        assert not missing, f"{path}: installs these unpinned: {missing}"
