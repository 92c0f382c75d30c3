"""Scratch space (emptyDir) against what writes into it, over every generated stack.

The kubelet evicts a pod whose emptyDir outgrows its sizeLimit, and an eviction ignores the
PodDisruptionBudget. Every emptyDir must have a limit, and every file a program is set up to keep
writing there must fit it. The programs here that keep writing files are the JVMs (Elasticsearch,
Logstash): the real JVM is asked which log files their options make it write (its own description
of its log outputs, -Xlog:logging), from the options each program's launcher hands it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import PurePosixPath

from components.settings import quantity_bytes
from tests import command_lines
from tests.conftest import require_tool
from tests.test_pod_inputs import template_of, workloads

# The options of each JVM program that come from its image rather than from the pod: the lines of
# the image's own options file that write files, and where the program runs (relative paths).
IMAGE_JVM_OPTIONS = {
    # elastic/elasticsearch 8.19 distribution/src/config/jvm.options (the Docker image's
    # /usr/share/elasticsearch/config/jvm.options; the init step copies it into ES_PATH_CONF). The
    # launcher (server-cli JvmOptionsParser) reads it, then jvm.options.d/*.options, then ES_JAVA_OPTS.
    "elasticsearch": {
        "workdir": "/usr/share/elasticsearch",
        "options": ["-XX:+HeapDumpOnOutOfMemoryError", "-XX:HeapDumpPath=data", "-XX:ErrorFile=logs/hs_err_pid%p.log",
                    "-Xlog:gc*,gc+age=trace,safepoint:file=logs/gc.log:utctime,level,pid,tags:filecount=32,filesize=64m"],
        "env": "ES_JAVA_OPTS",
    },
    # Logstash reads the options file that LS_JVM_OPTS names (bin/logstash.lib.sh, 8.19), then
    # LS_JAVA_OPTS; the pod names its own file, so nothing of the image's applies.
    "logstash": {"workdir": "/usr/share/logstash", "options": [], "env": "LS_JAVA_OPTS", "file_env": "LS_JVM_OPTS"},
}
# The options that decide what the JVM writes to files; heap sizes and the like stay out (this
# machine need not have the container's memory).
FILE_OPTIONS = re.compile(r"-Xlog(:.*)?|-XX:(ErrorFile|HeapDumpPath)=.*|-XX:[+-]HeapDumpOnOutOfMemoryError")
# "#2: file=logs/gc.log all=off,gc*=info ... filecount=32,filesize=65536K,async=false"
OUTPUT_LINE = re.compile(r"#\d+: file=(?P<path>\S+) (?P<levels>\S+) .*?filecount=(?P<count>\d+),filesize=(?P<size>\d+)K")


def mounted_file(pod: dict, container: dict, result, path: str) -> str:
    """The content of a file the container sees at ``path`` through a ConfigMap or Secret volume."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        directory = mount["mountPath"].rstrip("/")
        if path.startswith(directory + "/"):
            volume = volumes[mount["name"]]
            kind, name = (("ConfigMap", volume["configMap"]["name"]) if "configMap" in volume
                          else ("Secret", volume["secret"]["secretName"]))
            obj = result.one(kind, name)
            return (obj.get("data") or obj.get("stringData"))[path[len(directory) + 1:]]
    raise LookupError(f"{container['name']} has no file {path}")


def jvm_options(pod: dict, container: dict, result, program: str) -> list[str]:
    image = IMAGE_JVM_OPTIONS[program]
    env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
    options = list(image["options"])
    if image.get("file_env") in env:
        text = mounted_file(pod, container, result, env[image["file_env"]])
        options += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    options += shlex.split(env.get(image["env"], ""))
    return options


def log_files(java: str, options: list[str], workdir: str, root) -> list[tuple[str, int]]:
    """(path in the container, most bytes it may hold) of every file the JVM logs to with these
    options, as the JVM itself describes its outputs."""
    cwd = root / workdir.lstrip("/")
    cwd.mkdir(parents=True, exist_ok=True)
    for name in ("logs", "data"):
        (cwd / name).mkdir(exist_ok=True)
    # Absolute paths move under the throwaway root; relative ones resolve against the program's directory.
    local = [o.replace("file=/", f"file={root}/") for o in options if FILE_OPTIONS.fullmatch(o)]
    proc = subprocess.run([java, *local, "-Xlog:logging=info:stdout", "-version"], cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    files = []
    for match in OUTPUT_LINE.finditer(proc.stdout):
        if all(level.endswith("=off") for level in match["levels"].split(",")):
            continue  # an output the options switched off again
        path = PurePosixPath(match["path"])
        path = PurePosixPath("/" + str(path.relative_to(str(root)).as_posix())) if str(path).startswith(str(root)) \
            else PurePosixPath(workdir) / path
        count, size = int(match["count"]), int(match["size"]) * 1024
        # The JVM keeps the current file and `filecount` rotated ones; 0 means it never rotates.
        files.append((str(path), (count + 1) * size if count else -1))
    return files


def scratch_problems(result, java: str, root) -> list[str]:
    problems = []
    for obj in workloads(result):
        pod = template_of(obj)["spec"]
        scratch = {v["name"]: v["emptyDir"] for v in pod.get("volumes", []) if "emptyDir" in v}
        where = f"{result.stack}: {obj['kind']} {obj['metadata']['name']}"
        for name, empty_dir in scratch.items():
            if "sizeLimit" not in empty_dir:
                problems.append(f"{where}: emptyDir {name} has no sizeLimit")
        for container in pod["containers"]:
            program = command_lines.image_key(container["image"])
            if program not in IMAGE_JVM_OPTIONS:
                continue
            mounts = {m["mountPath"].rstrip("/"): scratch[m["name"]] for m in container.get("volumeMounts", [])
                      if m["name"] in scratch}
            used: dict[str, int] = {}
            options = jvm_options(pod, container, result, program)
            for path, size in log_files(java, options, IMAGE_JVM_OPTIONS[program]["workdir"], root / obj["metadata"]["name"]):
                directory = next((d for d in mounts if path.startswith(d + "/")), None)
                if directory is None:
                    continue  # on the data volume or nowhere the pod keeps
                if size < 0:
                    problems.append(f"{where}: {container['name']} logs to {path} without rotation, in an emptyDir")
                    continue
                used[directory] = used.get(directory, 0) + size
            for directory, size in used.items():
                limit = quantity_bytes(mounts[directory]["sizeLimit"])
                if size > limit:
                    problems.append(f"{where}: {container['name']}'s JVM may write {size // 2**20} MiB of logs into "
                                    f"{directory}, an emptyDir of {mounts[directory]['sizeLimit']}")
    return problems


def test_every_emptydir_holds_what_is_written_into_it(every_stack, tmp_path):
    java = require_tool("java")
    for result in every_stack.values():
        problems = scratch_problems(result, java, tmp_path / result.stack)
        assert not problems, "\n".join(problems)


def test_the_jvm_describes_the_image_default_gc_log(tmp_path):
    """The check sees what the image alone would do: 33 files of 64 MiB under logs/."""
    java = require_tool("java")
    files = log_files(java, IMAGE_JVM_OPTIONS["elasticsearch"]["options"], "/usr/share/elasticsearch", tmp_path)
    assert files == [("/usr/share/elasticsearch/logs/gc.log", 33 * 64 * 2**20)]
