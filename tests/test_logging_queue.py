"""Logstash's data volume holds everything Logstash may write to it: the persistent queue, the dead letter
queue, a heap dump and small files, beside the filesystem's own share. Checked on the rendered
logstash.yml, pipelines.yml and jvm.options of dev (Docker host and Kubernetes) and prod, and over a range
of volume sizes down to the smallest that works.

What Logstash does with these settings is derived from the Logstash 8.19 source, not from running it
(nothing Elastic runs on this machine):
- defaults (logstash-core/lib/logstash/environment.rb): queue.page_capacity 64mb, queue.max_bytes 1024mb,
  dead_letter_queue.max_bytes 1024mb, path.queue and path.dead_letter_queue under path.data; logstash.yml
  sets the defaults of every pipeline in pipelines.yml, each with its own queue and dead letter queue
  (<path>/<pipeline.id>);
- byte values (logstash-core/lib/logstash/util/byte_value.rb): "mb" is 2**20;
- PersistedQueueConfigValidator#check_page_capacity refuses queue.page_capacity > queue.max_bytes;
- Queue#write writes an element and only then blocks while isMaxBytesReached (the pages' written bytes at
  or over queue.max_bytes), so the queue passes its cap by up to one element, at most a page;
- DeadLetterQueueWriter measures only sealed segments against dead_letter_queue.max_bytes
  (computeQueueSize lists *.log), so the open segment, up to DeadLetterQueueFactory.MAX_SEGMENT_SIZE_BYTES
  (10 MiB), comes on top;
- -XX:HeapDumpPath (HotSpot) is where -XX:+HeapDumpOnOutOfMemoryError writes its dump.
"""

from __future__ import annotations

import re

import pytest
import yaml

from components.logging import configs
from components import logstash_volume as sizing
from components.settings import SettingsError, quantity_bytes
from tests.conftest import run_on_kubernetes
from tools import offline

MIB = 2**20
DEAD_LETTER_SEGMENT = 10 * MIB  # DeadLetterQueueFactory.MAX_SEGMENT_SIZE_BYTES
BLOCK = 4096  # a small file's share of an ext4 volume
# Logstash's defaults for what the rendered files may leave out (environment.rb).
DEFAULTS = {"queue.type": "memory", "queue.page_capacity": "64mb", "queue.max_bytes": "1024mb",
            "dead_letter_queue.enable": False, "dead_letter_queue.max_bytes": "1024mb"}
UNITS = {"b": 1, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20, "g": 2**30, "gb": 2**30, "t": 2**40,
         "tb": 2**40, "p": 2**50, "pb": 2**50}


def logstash_bytes(text: str) -> int:
    """A byte value as Logstash reads it (ByteValue.parse)."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]+)", text).groups()
    return int(float(number) * UNITS[unit])


def claims(files: dict[str, str], mount_path: str, volume: int) -> dict[str, int]:
    """Bytes that may land on the volume of ``volume`` bytes mounted at ``mount_path``, by what writes
    them, read from the rendered settings files."""
    settings = yaml.safe_load(files["logstash.yml"])
    assert settings["path.data"] == mount_path
    data = settings["path.data"]
    found = {"filesystem": sizing.filesystem_reserve(volume)}
    for pipeline in yaml.safe_load(files["pipelines.yml"]):
        effective = {**DEFAULTS, **settings, **pipeline}
        name = effective["pipeline.id"]
        for path in ("path.queue", "path.dead_letter_queue"):  # both default to path.data/<name>
            assert effective.get(path, data).startswith(data), (name, path)
        if effective["queue.type"] == "persisted":
            page = logstash_bytes(effective["queue.page_capacity"])
            cap = logstash_bytes(effective["queue.max_bytes"])
            assert page <= cap, f"{name}: Logstash refuses queue.page_capacity above queue.max_bytes"
            found[f"{name} queue"] = cap + page
            found[f"{name} small files"] = BLOCK * (cap // page + 2 + 2)  # checkpoints, two locks
        if effective["dead_letter_queue.enable"]:
            found[f"{name} dead letters"] = logstash_bytes(effective["dead_letter_queue.max_bytes"]) + DEAD_LETTER_SEGMENT
    jvm = files["jvm.options"].split()
    dumps = [o.split("=", 1)[1] for o in jvm if o.startswith("-XX:HeapDumpPath=")]
    if "-XX:+HeapDumpOnOutOfMemoryError" in jvm and dumps and dumps[0].startswith(data):
        found["heap dump"] = next(int(o[4:-1]) * MIB for o in jvm if re.fullmatch(r"-Xmx\d+m", o))
    found["node files"] = 2 * BLOCK  # the uuid and path.data's lock
    return found


def assert_fits(files: dict[str, str], mount_path: str, volume: int) -> dict[str, int]:
    found = claims(files, mount_path, volume)
    assert any(k.endswith(" queue") for k in found) and any(k.endswith(" dead letters") for k in found)
    assert sum(found.values()) <= volume, (volume, found)
    return found


def kubernetes_files(result) -> tuple[dict[str, str], str, int]:
    sts = result.one("StatefulSet", "logstash")
    mount = next(m["mountPath"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
                 if m["name"] == "data")
    claim = next(c for c in sts["spec"]["volumeClaimTemplates"] if c["metadata"]["name"] == "data")
    size = int(quantity_bytes(claim["spec"]["resources"]["requests"]["storage"]))
    return result.one("ConfigMap", "logstash-settings")["data"], mount, size


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_volume_holds_what_logstash_writes_on_kubernetes(runs, stack):
    files, mount, size = kubernetes_files(runs[stack])
    found = assert_fits(files, mount, size)
    assert found["heap dump"] > 0  # the dump goes to the volume, so it must be counted


def test_the_volume_holds_what_logstash_writes_on_a_docker_host(docker_dev):
    container = docker_dev.container("logstash")
    files = {u["file"].rsplit("/", 1)[1]: u["content"] for u in container.inputs["uploads"]
             if u["file"].rsplit("/", 1)[0] == "/etc/logstash"}
    mount = next(v["containerPath"] for v in container.inputs["volumes"] if v.get("volumeName"))
    # A named volume has no size of its own: the caps keep Logstash within the size the settings give it.
    config, _ = offline.file_config("dev")
    size = int(quantity_bytes(yaml.safe_load(config["football-monitoring:logging"])["logstash"]["storageSize"]))
    assert_fits(files, mount, size)


def dev_heap_mb() -> int:
    config, _ = offline.file_config("dev")
    limit = yaml.safe_load(config["football-monitoring:logging"])["logstash"]["resources"]["limits"]["memory"]
    return configs.heap_mb(limit, sizing.HEAP_PERCENT)


@pytest.mark.parametrize("size", ["smallest", "1Gi", "5Gi", "64Gi", "1Ti"])
def test_any_volume_from_the_smallest_holds_what_logstash_writes(size):
    if size == "smallest":
        size = f"{sizing.logstash_storage_minimum(dev_heap_mb()) // MIB}Mi"
    files, mount, volume = kubernetes_files(run_on_kubernetes("dev", {"logging": {"logstash": {"storageSize": size}}}))
    assert_fits(files, mount, volume)
    settings = yaml.safe_load(files["logstash.yml"])
    queue, dead_letters = logstash_bytes(settings["queue.max_bytes"]), logstash_bytes(settings["dead_letter_queue.max_bytes"])
    # The persistent queue gets the most; the dead letter queue at most Logstash's default.
    assert queue >= logstash_bytes(settings["queue.page_capacity"]) and dead_letters <= queue
    assert dead_letters <= 1024 * MIB


def test_a_volume_below_the_smallest_is_refused_before_logstash_would():
    smallest = sizing.logstash_storage_minimum(dev_heap_mb())
    too_small = f"{smallest // MIB - 1}Mi"
    with pytest.raises(SettingsError) as info:  # by the settings, before any resource is declared
        run_on_kubernetes("dev", {"logging": {"logstash": {"storageSize": too_small}}})
    assert (f"football-monitoring:logging.logstash.storageSize = {too_small!r} is not valid with "
            f"logging.logstash.resources.limits.memory = '768Mi': expected at least {smallest // MIB}Mi") in str(info.value)
    # At the smallest itself the program is declared.
    run_on_kubernetes("dev", {"logging": {"logstash": {"storageSize": f"{smallest // MIB}Mi"}}})


def test_the_caps_grow_with_the_volume():
    heap = dev_heap_mb()
    sizes = [sizing.logstash_storage_minimum(heap) + i * 512 * MIB for i in range(40)]
    volumes = [configs.logstash_volume(f"{s // MIB}Mi", heap) for s in sizes]
    queues = [v.queue_max_bytes for v in volumes]
    assert queues == sorted(queues) and queues[0] >= sizing.QUEUE_PAGE_BYTES
    # Large volumes give the dead letter queue Logstash's default and the rest to the persistent queue.
    assert volumes[-1].dead_letter_max_bytes == 1024 * MIB
