"""Synthetic history of a realistic FootballPrediction fleet, as OpenMetrics text.

Used by scripts/dashboard_query_benchmark.py (realistic fleet, 7 days) and by
tests/test_dashboard_queries.py (a tiny fleet, a few hours) to back-fill a real
Prometheus TSDB with `promtool tsdb create-blocks-from openmetrics`, so that
every Grafana panel query runs against data of the right names, labels, types
and magnitudes.

What the fleet holds (every series carries ``environment``; the labels are the
ones the stack's scrape configuration produces, see
build/prod/config/prometheus-config/prometheus.yml):

* the application (metrics/catalog.yaml): ``api_pods`` pods of job
  football-prediction-api serving ``handlers`` route templates with a diurnal
  traffic shape, a few % 4xx/5xx, latency histograms whose tail grows with
  load; ``worker_pods`` Celery pods of job football-prediction-worker;
* ``nodes`` nodes with node-exporter, kubelet (volume stats) and the kubelet's
  cAdvisor (every pod of the stack), kube-state-metrics objects for all of it,
  the API server;
* blackbox probes as configured for the stack (``Pulumi.<stack>.yaml``
  ``probes``; prod configures no ICMP probe), postgres_exporter,
  redis_exporter, Prometheus (HA pair), Alertmanager (3), Grafana, and
  ``up``/``scrape_*`` for every target;
* families are typed as OpenMetrics wants them: counters declared on the name without
  ``_total`` (the exporters' counters that lack the suffix, pg_stat_database_* and
  node_vmstat_pgmajfault, are declared ``unknown`` so that their names stay as scraped), info
  metrics on the name without ``_info``; ``probe_ssl_earliest_cert_expiry`` only exists for
  https probe targets (prod has none);
* ``tracing``: Jaeger v2 in its Elasticsearch shape (query service, 2 collectors) behind 2
  OTel Collector gateways (components/tracing/__init__.py), with the collectors' own telemetry;
* ``logging``: the logging stack's exporters (components/logging/): cluster health and
  per-node disk, heap and indexing of a 3-node Elasticsearch, 2 Logstash pipelines, and every
  node's Filebeat;
* ``logging``: Elasticsearch (3 nodes) with its exporter, Logstash (2, exporter sidecar) and
  Filebeat on every node (components/logging/);
* ``incidents``: one extra worker pod crash-loops all the time (restart every
  20 min, down/CrashLoopBackOff in the last 8 min of each cycle, including the
  end of the range), with the alert it fires (KubePodCrashLooping) and the
  always-firing Watchdog. Without it, the panels that only show trouble
  (``up == 0``, ``> 0`` filters, firing alerts) would have nothing to show.

Values are closed-form functions of time (counters are integrals of positive
rates), so any time window can be generated on its own, in any order, in
constant memory: :func:`write_openmetrics` writes one window as a complete
OpenMetrics file (families grouped, ``# TYPE`` per family, counters declared
on the name without ``_total``, timestamps in seconds, ``# EOF``).
:func:`block_windows` splits a range on the 2 h TSDB block boundaries, which
is what promtool re-reads the whole input for (once per output block).

    .venv/bin/python -m tests.synthetic_fleet --hours 3 --out /tmp/fleet.om
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import promql_names as pn  # noqa: E402

BLOCK_SECONDS = 2 * 3600  # Prometheus' minimum (and promtool's only) block duration
DAY = 86400.0

# --------------------------------------------------------------------------
# the fleet's shape
# --------------------------------------------------------------------------

HANDLER_TEMPLATES = [
    ("GET", "/api/v1/predictions/{match_id}"), ("GET", "/api/v1/matches"), ("GET", "/api/v1/matches/{match_id}"),
    ("GET", "/health"), ("GET", "/api/v1/predictions"), ("GET", "/api/v1/odds/{match_id}"),
    ("GET", "/api/v1/teams/{team_id}"), ("GET", "/api/v1/leagues"), ("POST", "/api/v1/predictions"),
    ("GET", "/api/v1/leagues/{league_id}/table"), ("GET", "/api/v1/teams/{team_id}/form"),
    ("GET", "/api/v1/matches/{match_id}/lineups"), ("POST", "/api/v1/auth/login"), ("GET", "/api/v1/users/me"),
    ("GET", "/api/v1/fixtures"), ("GET", "/api/v1/players/{player_id}"), ("POST", "/api/v1/auth/refresh"),
    ("GET", "/api/v1/models"), ("GET", "/api/v1/models/{model}/metrics"), ("GET", "/api/v1/stats/summary"),
    ("PUT", "/api/v1/users/me"), ("GET", "/api/v1/search"), ("POST", "/api/v1/feedback"),
    ("GET", "/api/v1/odds"), ("GET", "/api/v1/matches/{match_id}/events"), ("DELETE", "/api/v1/users/me/sessions"),
    ("GET", "/metrics"), ("GET", "/api/v1/leagues/{league_id}/fixtures"), ("POST", "/api/v1/admin/reload"),
    ("GET", "/api/v1/docs"),
]
MODELS = ["xgboost-v3.2", "poisson-v1.4", "ensemble-v2.0"]
SOURCES = ["fixtures", "odds", "scores", "lineups", "injuries"]
ERROR_TYPES = ["timeout", "http_error", "parse_error", "rate_limited"]
CACHES = ["predictions", "features", "matches", "odds"]
TABLES = ["matches", "teams", "odds", "predictions", "players", "leagues"]
TASKS = ["collect_fixtures", "collect_odds", "collect_scores", "evaluate_models", "clean_data", "refresh_metrics"]
QUEUES = ["default", "predictions", "collection"]
DB_OPERATIONS = ["select", "insert", "update", "delete"]

HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
PREDICTION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
COLLECTION_BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]
DB_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
APISERVER_BUCKETS = [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60]
GRAFANA_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100]
ALERTMANAGER_BUCKETS = [1, 5, 10, 15, 20]
PLEG_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

CRASH_PERIOD = 1200  # the crash-looping pod restarts every 20 min ...
CRASH_DOWN = 480  # ... and spends the last 8 min of each cycle in CrashLoopBackOff

DEFAULT_PROBES = {  # the defaults of components/settings/models.py ProbeSettings
    "http": [{"name": "api-health", "target": "http://football-prediction-api.football-prediction.svc:8000/health"}],
    "tcp": [{"name": "postgres", "target": "postgres.football-prediction.svc:5432"},
            {"name": "redis", "target": "redis.football-prediction.svc:6379"}],
    "icmp": [],
}


def stack_probes(stack: str = "prod", root: Path = ROOT) -> dict[str, tuple[tuple[str, str], ...]]:
    """The blackbox probes a stack configures: {"http": ((name, target), ...), "tcp": ..., "icmp": ...}."""
    path = Path(root) / f"Pulumi.{stack}.yaml"
    configured = {}
    if path.exists():
        configured = (yaml.safe_load(path.read_text()) or {}).get("config", {}).get("football-monitoring:probes") or {}
    out = {}
    for kind, default in DEFAULT_PROBES.items():
        items = configured.get(kind, default) or []
        out[kind] = tuple((p["name"], p["target"]) for p in items)
    return out


@dataclass(frozen=True)
class FleetSpec:
    """Size and time range of the synthetic fleet."""

    api_pods: int = 20
    worker_pods: int = 4
    nodes: int = 5
    handlers: int = 30
    seconds: int = 7 * 86400  # length of the history
    step: int = 30  # seconds between samples (the stack scrapes every 30 s)
    end: Optional[int] = None  # unix seconds of the last sample; default: now, rounded down to `step`
    environment: str = "prod"
    incidents: bool = True
    tracing: bool = True  # Jaeger (Elasticsearch shape) + OTel gateway; off by default in the stack's settings
    logging: bool = True  # Elasticsearch (3 nodes) + exporter, Logstash (2), Filebeat on every node; off by default
    thanos: bool = True  # prod's thanos.enabled: a sidecar per Prometheus, Query (2), store gateway, compactor
    probes: dict = field(default_factory=lambda: stack_probes("prod"))

    def resolved(self) -> "FleetSpec":
        """A copy with `end` fixed (now, rounded down to the step, if unset)."""
        if self.end is not None:
            return self
        return replace(self, end=int(time.time()) // self.step * self.step)

    @property
    def start(self) -> int:
        assert self.end is not None, "call resolved() first"
        return self.end - self.seconds + self.step  # first sample; `seconds` of history including both ends


# --------------------------------------------------------------------------
# time bases shared by every series of one window
# --------------------------------------------------------------------------

TWO_PI = 2 * math.pi
DIURNAL_AMPLITUDE = 0.6  # traffic swings between 0.4x and 1.6x of its mean
DIURNAL_PHASE = 0.55  # peak around 19:00 UTC (evening matches)
WIGGLE_PERIODS = (2711.0, 613.0)  # two incommensurate short periods, a stand-in for noise


class Window:
    """Timestamps of one window and the basis functions of time evaluated on them.

    rate shape   g(t) = 1 + A sin(2pi(t/day - phase))          (diurnal traffic)
    integral     G(t) = int_{t0}^{t} g                          (counters: rate * G)
    square       Q(t) = int_{t0}^{t} g^2                        (slow requests grow with load^2)
    wiggles      w_k(t) = cos(2pi t / P_k),  W_k(t) = int_{t0}^{t} w_k
    """

    def __init__(self, ts: Sequence[int], t0: int):
        self.ts = list(ts)
        self.tss = [str(t) for t in self.ts]
        self.t0 = t0
        a, p = DIURNAL_AMPLITUDE, DAY
        ph = DIURNAL_PHASE

        def G_abs(t):
            return t - a * p / TWO_PI * math.cos(TWO_PI * (t / p - ph))

        def Q_abs(t):
            x = TWO_PI * (t / p - ph)
            return t - 2 * a * p / TWO_PI * math.cos(x) + a * a * (t / 2 - p / (4 * TWO_PI) * math.sin(2 * x))

        g0, q0 = G_abs(t0), Q_abs(t0)
        self.rel = [t - t0 for t in self.ts]
        self.g = [1 + a * math.sin(TWO_PI * (t / p - ph)) for t in self.ts]
        self.d = [(x - 1) / a for x in self.g]  # -1..1, +1 at the daily peak
        self.G = [G_abs(t) - g0 for t in self.ts]
        self.Q = [Q_abs(t) - q0 for t in self.ts]
        self.w = [[math.cos(TWO_PI * t / P) for t in self.ts] for P in WIGGLE_PERIODS]
        self.W = [[P / TWO_PI * (math.sin(TWO_PI * t / P) - math.sin(TWO_PI * t0 / P)) for t in self.ts]
                  for P in WIGGLE_PERIODS]


# --------------------------------------------------------------------------
# value models: each returns, for one window, a list of value strings (or None
# where the series has no sample)
# --------------------------------------------------------------------------


class Model:
    samples = 1  # OpenMetrics lines per timestamp

    def lines(self, name: str, labels: str, win: Window) -> Iterator[str]:
        prefix = f"{name}{{{labels}}} " if labels else f"{name} "
        for v, t in zip(self.values(win), win.tss):
            if v is not None:
                yield f"{prefix}{v} {t}\n"

    def values(self, win: Window) -> list:
        raise NotImplementedError


class Const(Model):
    def __init__(self, value: float, fmt: str = "%d"):
        self.s = fmt % value

    def values(self, win):
        return [self.s] * len(win.ts)


class Gauge(Model):
    """mean * (1 + diurnal * d(t) + wiggle * mix of w_k(t)), clamped, formatted."""

    def __init__(self, mean: float, diurnal: float = 0.0, wiggle: float = 0.05, lo: float = None, hi: float = None,
                 fmt: str = "%.6g", integer: bool = False):
        self.mean, self.diurnal, self.wiggle, self.lo, self.hi, self.fmt, self.integer = \
            mean, diurnal, wiggle, lo, hi, fmt, integer

    def values(self, win):
        m, dd, ww, fmt = self.mean, self.diurnal, self.wiggle, self.fmt
        out = []
        for d, w1, w2 in zip(win.d, win.w[0], win.w[1]):
            v = m * (1 + dd * d + ww * (0.6 * w1 + 0.4 * w2))
            if self.lo is not None and v < self.lo:
                v = self.lo
            if self.hi is not None and v > self.hi:
                v = self.hi
            out.append(fmt % (round(v) if self.integer else v))
        return out


class Counter(Model):
    """offset + rate * (G(t) + a1 W1(t) + a2 W2(t)): monotone (|a1| + |a2| < 0.3 < min g)."""

    def __init__(self, rate: float, a1: float = 0.1, a2: float = -0.08, offset: float = 0.0, traffic: bool = True,
                 fmt: str = "%d"):
        self.rate, self.a1, self.a2, self.offset, self.traffic, self.fmt = rate, a1, a2, offset, traffic, fmt

    def raw(self, win):
        r, a1, a2, off = self.rate, self.a1, self.a2, self.offset
        base = win.G if self.traffic else win.rel
        return [off + r * (b + a1 * x1 + a2 * x2) for b, x1, x2 in zip(base, win.W[0], win.W[1])]

    def values(self, win):
        fmt = self.fmt
        if fmt == "%d":
            return ["%d" % int(v) for v in self.raw(win)]
        return [fmt % v for v in self.raw(win)]


class Func(Model):
    """Any function of the timestamp (None: no sample). For the few special series."""

    def __init__(self, fn: Callable[[int], Optional[float]], fmt: str = "%.6g"):
        self.fn, self.fmt = fn, fmt

    def values(self, win):
        out = []
        for t in win.ts:
            v = self.fn(t)
            out.append(None if v is None else self.fmt % v)
        return out


def _lognormal_cdf(x: float, median: float, sigma: float) -> float:
    return 0.5 * (1 + math.erf(math.log(x / median) / (sigma * math.sqrt(2))))


def _fmt_le(b: float) -> str:
    """le as prometheus-client writes it (0.005, 1.0, 2.5, 10.0)."""
    return repr(float(b))


class Histogram(Model):
    """Requests split into a fast and a slow population (the slow share grows with load^2).

    fast F(t) = rate*(G + a1 W1 + a2 W2) - S(t), slow S(t) = rate*slow*Q(t), both monotone for slow <= 0.3;
    bucket_le = floor(F*cdf_fast(le) + S*cdf_slow(le)), count = floor(F + S), sum = F*mean_fast + S*mean_slow.
    """

    def __init__(self, rate: float, buckets: Sequence[float], median_fast: float, median_slow: float,
                 slow: float = 0.05, sigma: float = 0.6, a1: float = 0.1, a2: float = -0.08, offset: float = 0.0,
                 traffic: bool = True):
        assert 0 <= slow <= 0.3
        self.total = Counter(rate, a1, a2, offset, traffic)
        self.rate, self.slow, self.traffic = rate, slow, traffic
        self.les = [_fmt_le(b) for b in buckets] + ["+Inf"]
        self.cf = [_lognormal_cdf(b, median_fast, sigma) for b in buckets]
        self.cs = [_lognormal_cdf(b, median_slow, sigma) for b in buckets]
        self.mf = median_fast * math.exp(sigma * sigma / 2)
        self.ms = median_slow * math.exp(sigma * sigma / 2)
        self.samples = len(buckets) + 3

    def lines(self, name, labels, win):
        total = self.total.raw(win)
        q = win.Q if self.traffic else win.rel
        rs = self.rate * self.slow
        sep = "," if labels else ""
        bprefix = [f"{name}_bucket{{{labels}{sep}le=\"{le}\"}} " for le in self.les]
        cprefix = f"{name}_count{{{labels}}} " if labels else f"{name}_count "
        sprefix = f"{name}_sum{{{labels}}} " if labels else f"{name}_sum "
        cf, cs, mf, ms = self.cf, self.cs, self.mf, self.ms
        out = []
        for tot, qq, t in zip(total, q, win.tss):
            s = rs * qq
            f = tot - s
            n = int(tot)
            for p, a, b in zip(bprefix, cf, cs):
                out.append(f"{p}{int(f * a + s * b)} {t}\n")
            out.append(f"{bprefix[-1]}{n} {t}\n")
            out.append(f"{cprefix}{n} {t}\n")
            out.append(f"{sprefix}{f * mf + s * ms:.3f} {t}\n")
        return out


# --------------------------------------------------------------------------
# families
# --------------------------------------------------------------------------


@dataclass
class Family:
    name: str  # the series name as queried (http_requests_total, http_request_duration_seconds, node_uname_info)
    mtype: str  # counter | gauge | histogram | info | unknown
    series: list = field(default_factory=list)  # [(label string, Model)]

    @property
    def om_family(self) -> str:
        if self.mtype == "counter":
            assert self.name.endswith("_total"), self.name
            return self.name[: -len("_total")]
        if self.mtype == "info":
            assert self.name.endswith("_info"), self.name
            return self.name[: -len("_info")]
        return self.name

    def series_names(self) -> set[str]:
        if self.mtype == "histogram":
            return {self.name + s for s in pn.HISTOGRAM_SUFFIXES}
        return {self.name}


def _labels(d: dict) -> str:
    return ",".join(f'{k}="{v}"' for k, v in d.items() if v is not None)


class _Builder:
    """Collects families; `add` appends a series to a family, creating it on first use."""

    def __init__(self):
        self.families: dict[str, Family] = {}

    def add(self, name: str, mtype: str, labels: dict, model: Model):
        fam = self.families.get(name)
        if fam is None:
            fam = self.families[name] = Family(name, mtype)
        elif fam.mtype != mtype:
            raise ValueError(f"{name}: declared as {fam.mtype} and {mtype}")
        fam.series.append((_labels(labels), model))


def _h(*parts) -> float:
    """A stable pseudo-random number in [0, 1) from any key."""
    return (zlib.crc32("|".join(map(str, parts)).encode()) & 0xFFFFFFFF) / 2 ** 32


def _pod_suffix(*parts) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    n = zlib.crc32("|".join(map(str, parts)).encode())
    s = ""
    for _ in range(5):
        n, r = divmod(n, len(alphabet))
        s += alphabet[r]
    return s


def _counter_offset(rate: float, key) -> float:
    """A counter's value at the start of the history: the process has been up for a while."""
    return rate * DAY * 2 * _h("offset", key)


def build(spec: FleetSpec) -> list[Family]:
    """The families of the fleet, with one Model per series."""
    spec = spec.resolved()
    env = spec.environment
    b = _Builder()
    app_ns, mon_ns = "football-prediction", "monitoring"
    nodes = [f"ip-10-0-{i + 1}-{10 + 7 * i}.eu-west-1.compute.internal" for i in range(spec.nodes)]
    start, end = spec.start, spec.end

    def node_of(*key) -> str:
        return nodes[int(_h("node", *key) * len(nodes))]

    def ip(*key) -> str:
        x = zlib.crc32("|".join(map(str, key)).encode())
        return f"10.42.{x % 200 + 1}.{(x >> 8) % 250 + 2}"

    # ---------------------------------------------------------------- pods
    # (namespace, pod, container, node, deployment-ish owner, job or None, port, cpu cores, memory bytes)
    pods = []
    api_hash = _pod_suffix("api-rs")[:4] + "9f8c"
    for i in range(spec.api_pods):
        pods.append(dict(ns=app_ns, pod=f"football-prediction-api-{api_hash}-{_pod_suffix('api', i)}",
                         container="api", owner=("deployment", "football-prediction-api"),
                         job="football-prediction-api", port=8000, cpu=0.35, mem=420e6, kind="api"))
    wk_hash = _pod_suffix("worker-rs")[:4] + "7d6b"
    for i in range(spec.worker_pods):
        pods.append(dict(ns=app_ns, pod=f"football-prediction-worker-{wk_hash}-{_pod_suffix('worker', i)}",
                         container="worker", owner=("deployment", "football-prediction-worker"),
                         job="football-prediction-worker", port=9808, cpu=0.25, mem=610e6, kind="worker"))
    crash_pod = None
    if spec.incidents:
        crash_pod = dict(ns=app_ns, pod=f"football-prediction-worker-{wk_hash}-{_pod_suffix('worker', 'crash')}",
                         container="worker", owner=("deployment", "football-prediction-worker"),
                         job="football-prediction-worker", port=9808, cpu=0.25, mem=380e6, kind="crash")
        pods.append(crash_pod)
    pods.append(dict(ns=app_ns, pod="postgres-0", container="postgres", owner=("statefulset", "postgres"), job=None,
                     port=5432, cpu=0.6, mem=2.1e9, kind="db", pvc="data-postgres-0"))
    pods.append(dict(ns=app_ns, pod="redis-0", container="redis", owner=("statefulset", "redis"), job=None,
                     port=6379, cpu=0.15, mem=700e6, kind="db", pvc="data-redis-0"))
    for i in range(2):
        pods.append(dict(ns=mon_ns, pod=f"prometheus-{i}", container="prometheus", owner=("statefulset", "prometheus"),
                         job="prometheus", port=9090, cpu=0.8, mem=3.2e9, kind="mon", pvc=f"data-prometheus-{i}"))
    for i in range(3):
        pods.append(dict(ns=mon_ns, pod=f"alertmanager-{i}", container="alertmanager",
                         owner=("statefulset", "alertmanager"), job="alertmanager", port=9093, cpu=0.01, mem=40e6,
                         kind="mon", pvc=f"data-alertmanager-{i}"))
    for name, job, port, cpu, mem in (("grafana", "grafana", 3000, 0.05, 180e6),
                                      ("kube-state-metrics", "kube-state-metrics", 8080, 0.03, 90e6),
                                      ("blackbox-exporter", "blackbox-exporter", 9115, 0.005, 25e6),
                                      ("postgres-exporter", "postgres-exporter", 9187, 0.01, 30e6),
                                      ("redis-exporter", "redis-exporter", 9121, 0.005, 20e6)):
        p = dict(ns=mon_ns, pod=f"{name}-{_pod_suffix(name, 'rs')[:4]}c5d8-{_pod_suffix(name)}", container=name,
                 owner=("deployment", name), job=job, port=port, cpu=cpu, mem=mem, kind="mon")
        if name == "grafana":
            p["pvc"] = "grafana-data"
        pods.append(p)
    if spec.tracing:  # components/tracing/__init__.py, storage elasticsearch: query service, collectors, gateway
        for name, replicas, cpu, mem in (("jaeger", 1, 0.02, 120e6), ("jaeger-collector", 2, 0.15, 260e6),
                                         ("otel-gateway", 2, 0.2, 300e6)):
            for i in range(replicas):
                pods.append(dict(ns=mon_ns, pod=f"{name}-{_pod_suffix(name, 'rs')[:4]}b7f9-{_pod_suffix(name, i)}",
                                 container=name, owner=("deployment", name), job=name, port=8888, cpu=cpu, mem=mem,
                                 kind="tracing"))
    if spec.logging:  # the logging stack: Elasticsearch, its exporter, Logstash (+ exporter sidecar), Filebeat
        for i in range(3):
            pods.append(dict(ns=mon_ns, pod=f"elasticsearch-{i}", container="elasticsearch",
                             owner=("statefulset", "elasticsearch"), job=None, port=9200, cpu=0.6, mem=3.5e9,
                             kind="es", pvc=f"data-elasticsearch-{i}"))
        pods.append(dict(ns=mon_ns, pod=f"elasticsearch-exporter-{_pod_suffix('esx', 'rs')[:4]}d4c2-"
                                        f"{_pod_suffix('esx')}", container="elasticsearch-exporter",
                         owner=("deployment", "elasticsearch-exporter"), job="elasticsearch-exporter", port=9114,
                         cpu=0.01, mem=25e6, kind="mon"))
        for i in range(2):
            pods.append(dict(ns=mon_ns, pod=f"logstash-{i}", container="logstash", owner=("statefulset", "logstash"),
                             job="logstash", port=9198, cpu=0.4, mem=1.2e9, kind="logstash", pvc=f"queue-logstash-{i}"))
        for n in nodes:
            pods.append(dict(ns=mon_ns, pod=f"filebeat-{_pod_suffix('fb', n)}", container="filebeat",
                             owner=("daemonset", "filebeat"), job="filebeat", port=9479, cpu=0.05, mem=90e6,
                             kind="filebeat", node=n))
    for n in nodes:
        pods.append(dict(ns=mon_ns, pod=f"node-exporter-{_pod_suffix('ne', n)}", container="node-exporter",
                         owner=("daemonset", "node-exporter"), job="node-exporter", port=9100, cpu=0.02, mem=22e6,
                         kind="ne", node=n))
    for p in pods:
        p.setdefault("node", node_of(p["pod"]))
        p["ip"] = ip(p["pod"])

    def crash_down(t: int) -> bool:
        return (end - t) % CRASH_PERIOD < CRASH_DOWN

    def crash_restarts(t: int) -> int:
        # the container restarts when it leaves CrashLoopBackOff, at end - k * CRASH_PERIOD
        far = end - CRASH_PERIOD * (spec.seconds // CRASH_PERIOD + 2)
        return 3 + (t - far) // CRASH_PERIOD - (start - far) // CRASH_PERIOD

    # ------------------------------------------------ targets: up, scrape_*
    targets = []  # (labels dict, samples scraped, crash?)
    for p in pods:
        if not p["job"]:
            continue
        lab = dict(environment=env, job=p["job"], instance=f"{p['ip']}:{p['port']}", namespace=p["ns"], pod=p["pod"])
        if p["job"].startswith("football-prediction-"):
            lab["container"] = p["container"]  # kubernetes-pods job
        else:
            lab["node"] = p["node"]
        if p["job"] in ("node-exporter", "filebeat"):
            lab["instance"] = p["node"]
        targets.append((lab, {"api": 900, "worker": 260, "crash": 260}.get(p["kind"], 700), p is crash_pod))
    for n in nodes:
        for job, samples in (("kubelet", 1800), ("cadvisor", 5200)):
            targets.append((dict(environment=env, job=job, instance=n, node=n), samples, False))
    targets.append((dict(environment=env, job="apiserver", instance="10.0.0.1:6443"), 24000, False))
    for kind, job in (("http", "blackbox-http"), ("tcp", "blackbox-tcp"), ("icmp", "blackbox-icmp")):
        for name, target in spec.probes.get(kind, ()):
            targets.append((dict(environment=env, job=job, instance=target, probe=name), 12, False))
    for lab, samples, crash in targets:
        key = lab["instance"] + lab["job"]
        b.add("up", "gauge", lab, Func(lambda t: 0 if crash_down(t) else 1, "%d") if crash else Const(1))
        b.add("scrape_duration_seconds", "gauge", lab,
              Gauge(0.004 + samples / 200000 * (1 + _h(key)), wiggle=0.2, fmt="%.5f"))
        b.add("scrape_samples_scraped", "gauge", lab, Gauge(samples, wiggle=0.01, integer=True, fmt="%d"))

    # ---------------------------------------------------------------- API
    handlers = [HANDLER_TEMPLATES[i % len(HANDLER_TEMPLATES)] for i in range(spec.handlers)]
    handlers = [(m, h if i < len(HANDLER_TEMPLATES) else f"{h}/v{i // len(HANDLER_TEMPLATES) + 1}")
                for i, (m, h) in enumerate(handlers)]
    shares = [1 / (i + 1) ** 0.9 for i in range(len(handlers))]
    shares = [s / sum(shares) for s in shares]
    pod_rps = 10.0  # mean requests/s per API pod (200 req/s for 20 pods)
    api_pods = [p for p in pods if p["kind"] == "api"]
    worker_pods = [p for p in pods if p["kind"] == "worker"]

    def app_labels(p):
        return dict(environment=env, job=p["job"], instance=f"{p['ip']}:{p['port']}", namespace=p["ns"],
                    pod=p["pod"], container=p["container"])

    version = dict(version="2.14.3", commit="9c41e7b", python_version="3.11.9")
    for p in api_pods:
        base = app_labels(p)
        for hi, ((method, handler), share) in enumerate(zip(handlers, shares)):
            rate = pod_rps * share * (0.85 + 0.3 * _h(p["pod"], handler))
            a1 = 0.15 * (2 * _h("a1", p["pod"], handler) - 1)
            a2 = 0.1 * (2 * _h("a2", p["pod"], handler) - 1)
            off = _counter_offset(rate, (p["pod"], handler))
            fail5 = 0.005 + 0.04 * _h("5xx", handler) if hi % 3 != 2 else 0.0  # 2/3 of the handlers ever fail
            fail4 = 0.01 + 0.03 * _h("4xx", handler) if hi % 2 == 0 or handler.startswith("/api/v1/auth") else 0.0
            statuses = [("200" if method != "POST" else "201", 1 - fail5 - fail4)]
            if fail4:
                statuses.append(("401" if "auth" in handler or "users" in handler else "404", fail4))
            if fail5:
                statuses.append(("500" if hi % 2 else "503", fail5))
            lab = dict(base, method=method, handler=handler)
            for status, frac in statuses:
                b.add("http_requests_total", "counter", dict(lab, status=status),
                      Counter(rate * frac, a1, a2, off * frac))
            fast = 0.012 + 0.05 * _h("lat", handler)
            b.add("http_request_duration_seconds", "histogram", lab,
                  Histogram(rate, HTTP_BUCKETS, fast, fast * (8 + 10 * _h("slow", handler)),
                            slow=0.02 + 0.1 * _h("slowshare", handler), a1=a1, a2=a2, offset=off))
            b.add("http_requests_in_progress", "gauge", lab,
                  Gauge(rate * fast * 3, diurnal=0.6, wiggle=0.5, lo=0, integer=True, fmt="%d"))
        for model in MODELS:
            rate = 1.2 * (0.9 + 0.2 * _h(p["pod"], model)) / len(MODELS)
            off = _counter_offset(rate, (p["pod"], model))
            b.add("prediction_requests_total", "counter", dict(base, model=model, status="success"),
                  Counter(rate * 0.985, offset=off))
            b.add("prediction_requests_total", "counter", dict(base, model=model, status="error"),
                  Counter(rate * 0.015, offset=off * 0.015))
            b.add("prediction_duration_seconds", "histogram", dict(base, model=model),
                  Histogram(rate, PREDICTION_BUCKETS, 0.06 + 0.1 * _h(model), 0.9, slow=0.05, offset=off))
        b.add("predictions_stored_total", "counter", base, Counter(1.1, offset=_counter_offset(1.1, p["pod"])))
        b.add("active_users", "gauge", base, Gauge(90, diurnal=0.7, wiggle=0.1, lo=0, integer=True, fmt="%d"))
        for table in TABLES:
            rows = {"matches": 48000, "teams": 1900, "odds": 2.4e6, "predictions": 3.1e6, "players": 52000,
                    "leagues": 120}[table]
            growth = rows / (90 * DAY)
            b.add("football_table_row_count", "gauge", dict(base, table=table),
                  Func(lambda t, r=rows, g=growth: r + g * (t - start), "%d"))
        b.add("football_database_connections", "gauge", dict(base, state="active"),
              Gauge(3, diurnal=0.6, wiggle=0.4, lo=0, hi=10, integer=True, fmt="%d"))
        b.add("football_database_connections", "gauge", dict(base, state="idle"),
              Gauge(6, diurnal=-0.3, wiggle=0.3, lo=0, hi=10, integer=True, fmt="%d"))
        for op in DB_OPERATIONS:
            rate = {"select": 25, "insert": 2.5, "update": 1.2, "delete": 0.05}[op]
            b.add("football_database_query_duration_seconds", "histogram", dict(base, operation=op),
                  Histogram(rate, DB_BUCKETS, 0.002 + 0.004 * _h(op), 0.09, slow=0.03,
                            offset=_counter_offset(rate, (p["pod"], op))))
        b.add("football_metrics_last_update_timestamp", "gauge", base,
              Func(lambda t: (t - 20) // 60 * 60, "%d"))
        b.add("football_system_info", "info", dict(base, **version), Const(1))
        for cache in CACHES:
            rate = {"predictions": 4.0, "features": 6.0, "matches": 3.0, "odds": 1.5}[cache]
            hit = {"predictions": 0.86, "features": 0.93, "matches": 0.78, "odds": 0.62}[cache]
            off = _counter_offset(rate, (p["pod"], cache))
            b.add("cache_hits_total", "counter", dict(base, cache=cache), Counter(rate * hit, offset=off * hit))
            b.add("cache_misses_total", "counter", dict(base, cache=cache),
                  Counter(rate * (1 - hit), a1=-0.12, offset=off * (1 - hit)))

    # ---------------------------------------------------------------- workers
    nw = max(1, len(worker_pods))
    for p in worker_pods:
        base = app_labels(p)
        for model in MODELS:
            for window, acc in (("7d", 0.6 + 0.3 * _h(model, "7d")), ("30d", 0.62 + 0.25 * _h(model, "30d"))):
                b.add("prediction_accuracy", "gauge", dict(base, model=model, window=window),
                      Gauge(acc, wiggle=0.02, lo=0.6, hi=0.95, fmt="%.4f"))
        for source in SOURCES:
            rate = 1 / 60 / nw * (1 + _h(source))  # one to two runs a minute per source, across the workers
            err = 0.01 + 0.05 * _h("err", source)
            off = _counter_offset(rate, (p["pod"], source))
            b.add("football_data_collection_total", "counter", dict(base, source=source),
                  Counter(rate, traffic=False, offset=off))
            for k, et in enumerate(ERROR_TYPES):
                part = [0.5, 0.25, 0.15, 0.1][k]
                b.add("football_data_collection_errors_total", "counter", dict(base, source=source, error_type=et),
                      Counter(rate * err * part, traffic=False, offset=off * err * part))
            b.add("football_data_collection_duration_seconds", "histogram", dict(base, source=source),
                  Histogram(rate, COLLECTION_BUCKETS, 2 + 8 * _h("dur", source), 45, slow=0.05, traffic=False,
                            offset=off))
        b.add("football_data_cleaning_total", "counter", base,
              Counter(1 / 600 / nw, traffic=False, offset=_counter_offset(1 / 600, p["pod"])))
        b.add("football_data_cleaning_errors_total", "counter", base,
              Counter(0.02 / 600 / nw, traffic=False, offset=_counter_offset(0.02 / 600, p["pod"])))
        for task in TASKS:
            b.add("football_scheduler_task_delay_seconds", "gauge", dict(base, task=task),
                  Gauge(0.8 + 3 * _h(task), diurnal=0.3, wiggle=0.5, lo=0, fmt="%.3f"))
            b.add("football_scheduler_task_failures_total", "counter", dict(base, task=task),
                  Counter(0.002 / 60 * _h("fail", task) / nw, traffic=False,
                          offset=_counter_offset(0.002 / 60, (p["pod"], task))))
        for queue in QUEUES:
            b.add("celery_queue_length", "gauge", dict(base, queue=queue),
                  Gauge(4 + 20 * _h(queue), diurnal=0.8, wiggle=0.6, lo=0, integer=True, fmt="%d"))

    # ---------------------------------------------------------------- nodes: node-exporter
    ne_pod = {p["node"]: p for p in pods if p["kind"] == "ne"}
    cpus = 8
    for n in nodes:
        p = ne_pod[n]
        lab = dict(environment=env, job="node-exporter", instance=n, namespace=mon_ns, pod=p["pod"], node=n)
        busy = 0.25 + 0.3 * _h("busy", n)
        for c in range(cpus):
            modes = {"user": busy * 0.65, "system": busy * 0.22, "iowait": busy * 0.04, "irq": 0.002,
                     "softirq": busy * 0.05, "steal": 0.003, "nice": 0.001}
            modes["idle"] = 1 - sum(modes.values())
            for mode, frac in modes.items():
                b.add("node_cpu_seconds_total", "counter", dict(lab, cpu=str(c), mode=mode),
                      Counter(frac, a1=0.05 if mode == "idle" else 0.1, a2=0.03, traffic=mode != "idle",
                              offset=frac * 40 * DAY * (1 + _h(n)), fmt="%.2f"))
        b.add("node_load1", "gauge", lab, Gauge(cpus * busy, diurnal=0.5, wiggle=0.3, lo=0, fmt="%.2f"))
        mem_total = 32 * 2 ** 30
        b.add("node_memory_MemTotal_bytes", "gauge", lab, Const(mem_total))
        b.add("node_memory_MemAvailable_bytes", "gauge", lab,
              Gauge(mem_total * (0.35 + 0.3 * _h("mem", n)), diurnal=-0.15, wiggle=0.03, fmt="%d", integer=True))
        b.add("node_memory_SwapTotal_bytes", "gauge", lab, Const(0))  # Kubernetes nodes run without swap
        b.add("node_memory_SwapFree_bytes", "gauge", lab, Const(0))
        b.add("node_vmstat_pgmajfault", "unknown", lab, Counter(0.4, offset=90000 * (1 + _h(n))))
        b.add("node_boot_time_seconds", "gauge", lab, Const(start - 40 * DAY * (1 + _h("boot", n))))
        b.add("node_uname_info", "info", dict(lab, domainname="(none)", machine="x86_64", nodename=n,
                                              release="6.1.0-27-cloud-amd64", sysname="Linux",
                                              version="#1 SMP PREEMPT_DYNAMIC Debian 6.1.115-1"), Const(1))
        b.add("node_timex_offset_seconds", "gauge", lab, Gauge(0.0004 * (2 * _h("tx", n) - 1), wiggle=1, fmt="%.6f"))
        for dev, fstype, mnt, size in (("/dev/nvme0n1p1", "ext4", "/", 100e9), ("tmpfs", "tmpfs", "/run", 3.2e9),
                                       ("/dev/nvme1n1", "ext4", "/var/lib/kubelet/pods/x/volumes", 20e9)):
            flab = dict(lab, device=dev, fstype=fstype, mountpoint=mnt)
            used = 0.3 + 0.4 * _h("fs", n, mnt)
            b.add("node_filesystem_size_bytes", "gauge", flab, Const(size))
            b.add("node_filesystem_avail_bytes", "gauge", flab,
                  Func(lambda t, s=size, u=used: s * (1 - u - 0.02 * (t - start) / DAY / 7), "%d"))
            b.add("node_filesystem_free_bytes", "gauge", flab,
                  Func(lambda t, s=size, u=used: s * (1.05 - u - 0.02 * (t - start) / DAY / 7), "%d"))
            b.add("node_filesystem_files", "gauge", flab, Const(size / 16384))
            b.add("node_filesystem_files_free", "gauge", flab, Const(size / 16384 * (0.9 - used / 3)))
            b.add("node_filesystem_readonly", "gauge", flab, Const(0))
        b.add("node_disk_io_time_seconds_total", "counter", dict(lab, device="nvme0n1"),
              Counter(0.08, offset=3e5, fmt="%.3f"))
        b.add("node_disk_read_bytes_total", "counter", dict(lab, device="nvme0n1"), Counter(2.1e6, offset=5e11))
        b.add("node_disk_written_bytes_total", "counter", dict(lab, device="nvme0n1"), Counter(6.5e6, offset=9e11))
        for dev in ("eth0", "lo", "cali3f2a9c1d7e1"):
            dlab = dict(lab, device=dev)
            scale = {"eth0": 1, "lo": 0.3, "cali3f2a9c1d7e1": 0.1}[dev]
            b.add("node_network_receive_bytes_total", "counter", dlab, Counter(4.2e6 * scale, offset=8e11 * scale))
            b.add("node_network_transmit_bytes_total", "counter", dlab, Counter(3.1e6 * scale, offset=6e11 * scale))
            b.add("node_network_receive_errs_total", "counter", dlab, Counter(0.0005 * scale, offset=3))
            b.add("node_network_transmit_errs_total", "counter", dlab, Counter(0.0001 * scale, offset=1))
            b.add("node_network_receive_drop_total", "counter", dlab, Counter(0.002 * scale, offset=40))
            b.add("node_network_transmit_drop_total", "counter", dlab, Counter(0.0003 * scale, offset=2))

    # ---------------------------------------------------------------- kubelet, cAdvisor
    pvcs = [(p["ns"], p["pvc"], p["node"]) for p in pods if p.get("pvc")]
    for n in nodes:
        klab = dict(environment=env, job="kubelet", instance=n, node=n)
        b.add("kubelet_running_pods", "gauge", klab, Const(sum(1 for p in pods if p["node"] == n) + 4))
        for ns, pvc, pn_ in pvcs:
            if pn_ != n:
                continue
            cap = {"prometheus": 100, "alertmanager": 2, "grafana": 10, "postgres": 50, "redis": 8,
                   "elasticsearch": 200, "logstash": 20}
            size = next(v for k, v in cap.items() if k in pvc) * 2 ** 30
            used = 0.2 + 0.5 * _h("pvc", pvc)
            vlab = dict(klab, namespace=ns, persistentvolumeclaim=pvc)
            b.add("kubelet_volume_stats_capacity_bytes", "gauge", vlab, Const(size))
            b.add("kubelet_volume_stats_used_bytes", "gauge", vlab,
                  Func(lambda t, s=size, u=used: s * (u + 0.01 * (t - start) / DAY), "%d"))
            b.add("kubelet_volume_stats_available_bytes", "gauge", vlab,
                  Func(lambda t, s=size, u=used: s * (1 - u - 0.01 * (t - start) / DAY), "%d"))
    for p in pods:
        clab = dict(environment=env, job="cadvisor", instance=p["node"], node=p["node"], namespace=p["ns"],
                    pod=p["pod"])
        cid = f"/kubepods/burstable/pod{_pod_suffix('uid', p['pod'])}"
        for container in (p["container"], ""):  # the container and the pod's cgroup
            lab = dict(clab, container=container, id=cid + (f"/{_pod_suffix('c', p['pod'])}" if container else ""))
            busy = p["cpu"] * (0.7 + 0.6 * _h("cpu", p["pod"]))
            b.add("container_cpu_usage_seconds_total", "counter", lab,
                  Counter(busy, offset=busy * DAY * (1 + 3 * _h("up", p["pod"])), fmt="%.3f",
                          traffic=p["kind"] in ("api", "worker", "db")))
            b.add("container_memory_working_set_bytes", "gauge", lab,
                  Gauge(p["mem"] * (0.8 + 0.3 * _h("mem", p["pod"])), diurnal=0.1, wiggle=0.03, fmt="%d",
                        integer=True))
            periods = 10.0  # CFS periods/s (100 ms)
            b.add("container_cpu_cfs_periods_total", "counter", lab, Counter(periods, offset=periods * DAY))
            b.add("container_cpu_cfs_throttled_periods_total", "counter", lab,
                  Counter(periods * (0.002 + 0.05 * _h("thr", p["pod"])), offset=periods * DAY * 0.01))
            if container:
                b.add("container_oom_events_total", "counter", lab, Const(0))
        nlab = dict(clab, container="POD", id=cid, interface="eth0")
        b.add("container_network_receive_bytes_total", "counter", nlab,
              Counter(p["cpu"] * 3e5, offset=p["cpu"] * 3e5 * DAY))
        b.add("container_network_transmit_bytes_total", "counter", nlab,
              Counter(p["cpu"] * 4e5, offset=p["cpu"] * 4e5 * DAY))

    # ---------------------------------------------------------------- kube-state-metrics
    ksm = next(p for p in pods if p["job"] == "kube-state-metrics")
    kb = dict(environment=env, job="kube-state-metrics", instance=f"{ksm['ip']}:{ksm['port']}")
    for p in pods:
        plab = dict(kb, namespace=p["ns"], pod=p["pod"])
        kind, owner = p["owner"]
        b.add("kube_pod_info", "info", dict(plab, node=p["node"], host_ip=ip(p["node"]), pod_ip=p["ip"],
                                            created_by_kind={"deployment": "ReplicaSet"}.get(kind, kind.title()),
                                            created_by_name=owner, uid=_pod_suffix("uid", p["pod"])), Const(1))
        for phase in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
            b.add("kube_pod_status_phase", "gauge", dict(plab, phase=phase), Const(1 if phase == "Running" else 0))
        clab = dict(plab, container=p["container"])
        if p is crash_pod:
            b.add("kube_pod_container_status_restarts_total", "counter", clab, Func(crash_restarts, "%d"))
            b.add("kube_pod_container_status_waiting_reason", "gauge", dict(clab, reason="CrashLoopBackOff"),
                  Func(lambda t: 1 if crash_down(t) else None, "%d"))
            b.add("kube_pod_container_status_last_terminated_reason", "gauge", dict(clab, reason="Error"), Const(1))
        else:
            b.add("kube_pod_container_status_restarts_total", "counter", clab, Const(int(3 * _h("rs", p["pod"]))))
        b.add("kube_pod_container_resource_requests", "gauge", dict(clab, node=p["node"], resource="cpu", unit="core"),
              Const(p["cpu"] * 1.2, "%.3f"))
        b.add("kube_pod_container_resource_requests", "gauge",
              dict(clab, node=p["node"], resource="memory", unit="byte"), Const(p["mem"] * 1.1))
        b.add("kube_pod_container_resource_limits", "gauge",
              dict(clab, node=p["node"], resource="memory", unit="byte"), Const(p["mem"] * 2))
    owners: dict[tuple, list] = {}
    for p in pods:
        owners.setdefault((p["ns"],) + p["owner"], []).append(p)
    for (ns, kind, name), members in owners.items():
        ready = sum(1 for m in members if m is not crash_pod)
        if kind == "deployment":
            dlab = dict(kb, namespace=ns, deployment=name)
            b.add("kube_deployment_spec_replicas", "gauge", dlab, Const(len(members)))
            b.add("kube_deployment_status_replicas_available", "gauge", dlab, Const(ready))
            b.add("kube_deployment_status_replicas_unavailable", "gauge", dlab, Const(len(members) - ready))
        elif kind == "statefulset":
            slab = dict(kb, namespace=ns, statefulset=name)
            b.add("kube_statefulset_replicas", "gauge", slab, Const(len(members)))
            b.add("kube_statefulset_status_replicas_ready", "gauge", slab, Const(ready))
        elif kind == "daemonset":
            dlab = dict(kb, namespace=ns, daemonset=name)
            b.add("kube_daemonset_status_desired_number_scheduled", "gauge", dlab, Const(len(members)))
            b.add("kube_daemonset_status_number_ready", "gauge", dlab, Const(ready))
            b.add("kube_daemonset_status_number_unavailable", "gauge", dlab, Const(len(members) - ready))
    for n in nodes:
        for cond in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
            for status in ("true", "false", "unknown"):
                good = "true" if cond == "Ready" else "false"
                b.add("kube_node_status_condition", "gauge", dict(kb, node=n, condition=cond, status=status),
                      Const(1 if status == good else 0))
    for ns, pvc, _node in pvcs:
        for phase in ("Lost", "Bound", "Pending"):
            b.add("kube_persistentvolumeclaim_status_phase", "gauge",
                  dict(kb, namespace=ns, persistentvolumeclaim=pvc, phase=phase), Const(1 if phase == "Bound" else 0))

    # ---------------------------------------------------------------- API server
    alab = dict(environment=env, job="apiserver", instance="10.0.0.1:6443")
    for verb, resource, rate in (("GET", "pods", 6), ("LIST", "pods", 0.8), ("WATCH", "pods", 0.3),
                                 ("GET", "nodes", 2), ("LIST", "nodes", 0.2), ("WATCH", "endpointslices", 0.2),
                                 ("PATCH", "nodes", 0.6), ("PUT", "leases", 3.5), ("POST", "events", 0.5),
                                 ("GET", "configmaps", 1.2), ("DELETE", "pods", 0.01), ("CONNECT", "pods", 0.005)):
            scope = "namespace" if resource in ("pods", "configmaps", "events", "leases") else "cluster"
            rlab = dict(alab, verb=verb, resource=resource, scope=scope, group="", version="v1",
                        component="apiserver")
            for code, frac in (("200" if verb != "POST" else "201", 0.995), ("404", 0.004), ("500", 0.001)):
                b.add("apiserver_request_total", "counter", dict(rlab, code=code),
                      Counter(rate * frac, traffic=False, offset=_counter_offset(rate * frac, (verb, resource, code))))
            slow = 300 if verb in ("WATCH", "CONNECT") else 0.15
            b.add("apiserver_request_duration_seconds", "histogram", rlab,
                  Histogram(rate, APISERVER_BUCKETS, 0.008 if verb != "LIST" else 0.05, slow, slow=0.02,
                            traffic=False, offset=_counter_offset(rate, (verb, resource))))

    # ---------------------------------------------------------------- blackbox probes
    for kind, job in (("http", "blackbox-http"), ("tcp", "blackbox-tcp"), ("icmp", "blackbox-icmp")):
        for name, target in spec.probes.get(kind, ()):
            plab = dict(environment=env, job=job, instance=target, probe=name)
            b.add("probe_success", "gauge", plab, Func(lambda t, k=target: 0 if _h(k, t // 60) < 0.002 else 1, "%d"))
            b.add("probe_duration_seconds", "gauge", plab,
                  Gauge({"http": 0.012, "tcp": 0.002, "icmp": 0.0008}[kind], wiggle=0.4, lo=0.0001, fmt="%.6f"))
            if kind == "http":
                b.add("probe_http_status_code", "gauge", plab, Const(200))
                b.add("probe_http_ssl", "gauge", plab, Const(1 if target.startswith("https") else 0))
                if target.startswith("https"):
                    b.add("probe_ssl_earliest_cert_expiry", "gauge", plab, Const(end + 61 * DAY))

    # ---------------------------------------------------------------- postgres_exporter
    pgx = next(p for p in pods if p["job"] == "postgres-exporter")
    pglab = dict(environment=env, job="postgres-exporter", instance=f"{pgx['ip']}:{pgx['port']}", namespace=mon_ns,
                 pod=pgx["pod"], node=pgx["node"])
    b.add("pg_up", "gauge", pglab, Const(1))
    b.add("pg_postmaster_start_time_seconds", "gauge", pglab, Const(start - 12 * DAY, "%.3f"))
    b.add("pg_settings_max_connections", "gauge", pglab, Const(200))
    for datid, datname, scale in (("16384", "football", 1.0), ("5", "postgres", 0.01)):
        dlab = dict(pglab, datid=datid, datname=datname)
        b.add("pg_stat_database_numbackends", "gauge", dlab,
              Gauge(150 * scale, diurnal=0.2, wiggle=0.1, lo=1 if scale == 1 else 0, integer=True, fmt="%d"))
        for metric, rate in (("xact_commit", 320), ("xact_rollback", 0.8), ("blks_hit", 42000), ("blks_read", 380),
                             ("tup_returned", 150000), ("tup_fetched", 21000), ("tup_inserted", 60),
                             ("tup_updated", 25), ("tup_deleted", 2), ("deadlocks", 0.00002), ("conflicts", 0),
                             ("temp_bytes", 12000)):
            b.add(f"pg_stat_database_{metric}", "unknown", dlab,
                  Counter(rate * scale, offset=_counter_offset(rate * scale, (datname, metric))))
        b.add("pg_database_size_bytes", "gauge", dlab,
              Func(lambda t, s=scale: s * (18e9 + 2e9 * (t - start) / (7 * DAY)), "%d"))
        for state, n in (("active", 8), ("idle", 120), ("idle in transaction", 3), ("idle in transaction (aborted)", 0),
                         ("fastpath function call", 0), ("disabled", 0)):
            slab = dict(dlab, state=state, backend_type="client backend")
            b.add("pg_stat_activity_count", "gauge", slab,
                  Gauge(n * scale, diurnal=0.4, wiggle=0.2, lo=0, integer=True, fmt="%d"))
            b.add("pg_stat_activity_max_tx_duration", "gauge", slab,
                  Gauge(0.4 if n else 0, wiggle=0.8, lo=0, fmt="%.3f"))
        # An autovacuum worker in each database, its table in one transaction for up to half an hour.
        vlab = dict(dlab, state="active", backend_type="autovacuum worker")
        b.add("pg_stat_activity_count", "gauge", vlab, Const(1))
        b.add("pg_stat_activity_max_tx_duration", "gauge", vlab, Func(lambda t: (t - start) % 1800, "%.3f"))
        for mode in ("accesssharelock", "rowsharelock", "rowexclusivelock", "shareupdateexclusivelock", "sharelock",
                     "exclusivelock", "accessexclusivelock"):
            b.add("pg_locks_count", "gauge", dict(dlab, mode=mode),
                  Gauge({"accesssharelock": 40, "rowexclusivelock": 6}.get(mode, 0.4) * scale, diurnal=0.4,
                        wiggle=0.5, lo=0, integer=True, fmt="%d"))

    # ---------------------------------------------------------------- redis_exporter
    rx = next(p for p in pods if p["job"] == "redis-exporter")
    rlab = dict(environment=env, job="redis-exporter", instance=f"{rx['ip']}:{rx['port']}", namespace=mon_ns,
                pod=rx["pod"], node=rx["node"])
    redis_start = start - 9 * DAY
    b.add("redis_up", "gauge", rlab, Const(1))
    b.add("redis_instance_info", "info", dict(rlab, redis_version="7.2.5", redis_mode="standalone", role="master",
                                              os="Linux 6.1.0-27-cloud-amd64 x86_64"), Const(1))
    b.add("redis_uptime_in_seconds", "gauge", rlab, Func(lambda t: t - redis_start, "%d"))
    maxmem = 4 * 2 ** 30
    b.add("redis_memory_max_bytes", "gauge", rlab, Const(maxmem))  # a cache: maxmemory + allkeys-lru
    b.add("redis_memory_used_bytes", "gauge", rlab, Gauge(maxmem * 0.62, diurnal=0.1, wiggle=0.02, fmt="%d",
                                                          integer=True))
    b.add("redis_memory_used_rss_bytes", "gauge", rlab, Gauge(maxmem * 0.7, diurnal=0.1, wiggle=0.02, fmt="%d",
                                                              integer=True))
    b.add("redis_mem_fragmentation_ratio", "gauge", rlab, Gauge(1.13, wiggle=0.02, fmt="%.2f"))
    b.add("redis_connected_clients", "gauge", rlab,
          Gauge(12 * (spec.api_pods + spec.worker_pods) / 24 + 5, diurnal=0.1, wiggle=0.1, integer=True, fmt="%d"))
    b.add("redis_blocked_clients", "gauge", rlab, Gauge(spec.worker_pods, wiggle=0.2, lo=0, integer=True, fmt="%d"))
    b.add("redis_config_maxclients", "gauge", rlab, Const(10000))
    b.add("redis_rejected_connections_total", "counter", rlab, Const(0))
    cmd_rate = 14.5 * (spec.api_pods + 1)
    b.add("redis_commands_processed_total", "counter", rlab, Counter(cmd_rate, offset=cmd_rate * 9 * DAY))
    for cmd, share, usec in (("get", 0.55, 2.1), ("set", 0.12, 3.4), ("setex", 0.1, 3.6), ("del", 0.03, 2.9),
                             ("expire", 0.05, 1.8), ("brpop", 0.08, 9.5), ("lpush", 0.06, 2.7), ("info", 0.01, 40)):
        clab = dict(rlab, cmd=cmd)
        b.add("redis_commands_total", "counter", clab, Counter(cmd_rate * share, offset=cmd_rate * share * 9 * DAY))
        b.add("redis_commands_duration_seconds_total", "counter", clab,
              Counter(cmd_rate * share * usec / 1e6, offset=cmd_rate * share * usec / 1e6 * 9 * DAY, fmt="%.4f"))
    hits, misses = cmd_rate * 0.55 * 0.84, cmd_rate * 0.55 * 0.16
    b.add("redis_keyspace_hits_total", "counter", rlab, Counter(hits, offset=hits * 9 * DAY))
    b.add("redis_keyspace_misses_total", "counter", rlab, Counter(misses, offset=misses * 9 * DAY))
    b.add("redis_evicted_keys_total", "counter", rlab, Counter(0.05, offset=0.05 * 9 * DAY))
    b.add("redis_expired_keys_total", "counter", rlab, Counter(12, offset=12 * 9 * DAY))
    b.add("redis_connections_received_total", "counter", rlab, Counter(0.3, traffic=False, offset=0.3 * 9 * DAY))
    b.add("redis_net_input_bytes_total", "counter", rlab, Counter(cmd_rate * 180, offset=cmd_rate * 180 * 9 * DAY))
    b.add("redis_net_output_bytes_total", "counter", rlab, Counter(cmd_rate * 900, offset=cmd_rate * 900 * 9 * DAY))
    for db, keys in (("db0", 380000), ("db1", 2400)):
        b.add("redis_db_keys", "gauge", dict(rlab, db=db), Gauge(keys, diurnal=0.15, wiggle=0.02, integer=True,
                                                                 fmt="%d"))
        b.add("redis_db_keys_expiring", "gauge", dict(rlab, db=db),
              Gauge(keys * 0.8, diurnal=0.15, wiggle=0.02, integer=True, fmt="%d"))
    b.add("redis_rdb_last_save_timestamp_seconds", "gauge", rlab, Func(lambda t: (t - 60) // 900 * 900, "%d"))
    b.add("redis_rdb_last_bgsave_status", "gauge", rlab, Const(1))
    b.add("redis_rdb_changes_since_last_save", "gauge", rlab, Func(lambda t: ((t - 60) % 900) * 40, "%d"))

    # ---------------------------------------------------------------- Prometheus (HA pair)
    rule_groups = sorted({(r["_file"], r["_group"]) for r in pn.iter_rules(ROOT)})
    am_pods = [p for p in pods if p["job"] == "alertmanager"]
    series_total = sum(len(f.series) * (1 if f.mtype != "histogram" else 1) for f in b.families.values())
    for p in (q for q in pods if q["job"] == "prometheus"):
        plab = dict(environment=env, job="prometheus", instance=f"{p['ip']}:9090", namespace=mon_ns, pod=p["pod"],
                    node=p["node"])
        head = series_total * 1.15
        b.add("prometheus_build_info", "info", dict(plab, version="2.53.2", revision="a9cf1d3", branch="HEAD",
                                                    goversion="go1.22.6"), Const(1))
        b.add("prometheus_config_last_reload_successful", "gauge", plab, Const(1))
        b.add("prometheus_config_last_reload_success_timestamp_seconds", "gauge", plab,
              Const(start - 3 * DAY * (1 + _h(p["pod"]))))
        b.add("prometheus_tsdb_head_series", "gauge", plab, Gauge(head, wiggle=0.01, integer=True, fmt="%d"))
        b.add("prometheus_tsdb_head_chunks", "gauge", plab, Gauge(head * 1.3, wiggle=0.05, integer=True, fmt="%d"))
        b.add("prometheus_tsdb_head_series_created_total", "counter", plab,
              Counter(head / 7200 * 0.05, traffic=False, offset=head * 3))
        b.add("prometheus_tsdb_head_samples_appended_total", "counter", plab,
              Counter(head / 30, traffic=False, offset=head / 30 * 5 * DAY))
        b.add("prometheus_tsdb_storage_blocks_bytes", "gauge", plab,
              Func(lambda t, h=head: h * 1.5 * (20 + (t - start) / DAY), "%d"))
        b.add("prometheus_tsdb_wal_storage_size_bytes", "gauge", plab,
              Func(lambda t, h=head: h * 250 * (1 + (t % 7200) / 7200), "%d"))
        b.add("prometheus_tsdb_retention_limit_bytes", "gauge", plab, Const(85e9))
        b.add("prometheus_tsdb_lowest_timestamp_seconds", "gauge", plab,
              Func(lambda t: (t - 30 * DAY) // 7200 * 7200, "%d"))
        for name in ("prometheus_tsdb_compactions_failed_total", "prometheus_tsdb_reloads_failures_total",
                     "prometheus_tsdb_wal_corruptions_total", "prometheus_tsdb_head_truncations_failed_total",
                     "prometheus_notifications_dropped_total", "prometheus_target_scrapes_exceeded_sample_limit_total"):
            b.add(name, "counter", plab, Const(0))
        for f, g in rule_groups:
            glab = dict(plab, rule_group=f"/etc/prometheus/rules/{f};{g}")
            b.add("prometheus_rule_evaluations_total", "counter", glab,
                  Counter(0.2, traffic=False, offset=0.2 * 3 * DAY))
            b.add("prometheus_rule_evaluation_failures_total", "counter", glab, Const(0))
            b.add("prometheus_rule_group_iterations_missed_total", "counter", glab, Const(0))
            b.add("prometheus_rule_group_last_duration_seconds", "gauge", glab,
                  Gauge(0.002 + 0.03 * _h(g), wiggle=0.3, fmt="%.5f"))
            b.add("prometheus_rule_group_interval_seconds", "gauge", glab, Const(30))
        b.add("prometheus_notifications_alertmanagers_discovered", "gauge", plab, Const(len(am_pods)))
        b.add("prometheus_notifications_queue_length", "gauge", plab, Const(0))
        b.add("prometheus_notifications_queue_capacity", "gauge", plab, Const(10000))
        for am in am_pods:
            nlab = dict(plab, alertmanager=f"http://{am['pod']}.alertmanager-headless.monitoring.svc:9093/api/v2/alerts")
            b.add("prometheus_notifications_sent_total", "counter", nlab, Counter(0.1, traffic=False, offset=3e4))
            b.add("prometheus_notifications_errors_total", "counter", nlab, Const(2))
        b.add("prometheus_sd_discovered_targets", "gauge", dict(plab, config="kubernetes-pods", name="scrape"),
              Const(len(pods) * 3))

    # ---------------------------------------------------------------- Alertmanager (3), Grafana
    if spec.thanos:  # components/metrics/thanos.py; the names the pinned release exposes (tests/test_thanos_e2e.py)
        for p in (q for q in pods if q["job"] == "prometheus"):
            slab = dict(environment=env, job="thanos-sidecar", instance=f"{p['ip']}:10902", namespace=mon_ns,
                        pod=p["pod"], node=p["node"])
            b.add("thanos_shipper_uploads_total", "counter", slab, Counter(1 / 7200, traffic=False, offset=360))
            # A sync every 30 s; none fails (a failed one counts here, not in upload_failures).
            b.add("thanos_shipper_dir_syncs_total", "counter", slab, Counter(1 / 30, traffic=False, offset=8640))
            b.add("thanos_shipper_dir_sync_failures_total", "counter", slab, Const(0))
            for op in ("exists", "upload"):
                b.add("thanos_objstore_bucket_operation_failures_total", "counter",
                      dict(slab, bucket="football-monitoring-metrics", operation=op), Const(0))
            b.add("process_start_time_seconds", "gauge", slab, Const(start - 3 * DAY))
            b.add("thanos_sidecar_prometheus_up", "gauge", slab, Const(1))
        for i in range(2):
            pod = f"thanos-query-{_pod_suffix('thanos-query', 'rs')[:4]}a6e1-{_pod_suffix('thanos-query', i)}"
            qlab = dict(environment=env, job="thanos-query", instance=f"{ip('thanos-query', i)}:10902",
                        namespace=mon_ns, pod=pod, node=node_of("thanos-query", i))
            for code, rate in (("OK", 2.0), ("Canceled", 0.01)):
                b.add("grpc_client_handled_total", "counter",
                      dict(qlab, grpc_code=code, grpc_method="Series", grpc_service="thanos.Store",
                           grpc_type="server_stream"), Counter(rate, offset=rate * 3 * DAY))
            for store_type, n in (("sidecar", 2), ("store", 1)):
                b.add("thanos_store_nodes_grpc_connections", "gauge",
                      dict(qlab, external_labels="{}", store_type=store_type), Const(n))
        tlab = dict(environment=env, job="thanos-store", instance=f"{ip('thanos-store')}:10902", namespace=mon_ns,
                    pod="thanos-store-0", node=node_of("thanos-store"))
        for code, rate in (("OK", 1.0), ("Canceled", 0.005)):
            b.add("grpc_server_handled_total", "counter",
                  dict(tlab, grpc_code=code, grpc_method="Series", grpc_service="thanos.Store",
                       grpc_type="server_stream"), Counter(rate, offset=rate * 3 * DAY))
        b.add("thanos_bucket_store_blocks_loaded", "gauge", tlab, Func(lambda t: 300 + (t - start) // 7200, "%d"))
        b.add("thanos_bucket_store_block_load_failures_total", "counter", tlab, Const(0))
        b.add("thanos_objstore_bucket_operation_failures_total", "counter", dict(tlab, bucket="football-monitoring-metrics",
                                                                                  operation="get"), Const(0))
        clab = dict(environment=env, job="thanos-compactor", instance=f"{ip('thanos-compactor')}:10902",
                    namespace=mon_ns, pod="thanos-compactor-0", node=node_of("thanos-compactor"))
        b.add("thanos_compact_halted", "gauge", clab, Const(0))
        b.add("thanos_compact_iterations_total", "counter", clab, Counter(1 / 300, traffic=False, offset=800))
    for p in am_pods:
        alab = dict(environment=env, job="alertmanager", instance=f"{p['ip']}:9093", namespace=mon_ns, pod=p["pod"],
                    node=p["node"])
        b.add("alertmanager_build_info", "info", dict(alab, version="0.27.0", revision="0aa3c2a", branch="HEAD",
                                                      goversion="go1.21.7"), Const(1))
        b.add("alertmanager_cluster_members", "gauge", alab, Const(len(am_pods)))
        b.add("alertmanager_cluster_failed_peers", "gauge", alab, Const(0))
        b.add("alertmanager_cluster_health_score", "gauge", alab, Const(0))
        b.add("alertmanager_config_last_reload_successful", "gauge", alab, Const(1))
        b.add("alertmanager_config_last_reload_success_timestamp_seconds", "gauge", alab, Const(start - 2 * DAY))
        for state, n in (("active", 2), ("suppressed", 0), ("unprocessed", 0)):
            b.add("alertmanager_alerts", "gauge", dict(alab, state=state), Const(n))
        for status in ("firing", "resolved"):
            b.add("alertmanager_alerts_received_total", "counter", dict(alab, status=status, version="v2"),
                  Counter(0.13 if status == "firing" else 0.01, traffic=False, offset=5e4))
        b.add("alertmanager_alerts_invalid_total", "counter", dict(alab, version="v2"), Const(0))
        for integration, rate in (("webhook", 0.02), ("slack", 0.004), ("email", 0.002)):
            ilab = dict(alab, integration=integration)
            b.add("alertmanager_notifications_total", "counter", ilab,
                  Counter(rate, traffic=False, offset=rate * 20 * DAY))
            b.add("alertmanager_notifications_failed_total", "counter", dict(ilab, reason="other"),
                  Counter(rate * 0.01, traffic=False, offset=3))
            b.add("alertmanager_notification_latency_seconds", "histogram", ilab,
                  Histogram(rate, ALERTMANAGER_BUCKETS, 0.3, 4, slow=0.05, traffic=False, offset=rate * 20 * DAY))
        for state, n in (("active", 1), ("expired", 14), ("pending", 0)):
            b.add("alertmanager_silences", "gauge", dict(alab, state=state), Const(n))
    gp = next(p for p in pods if p["job"] == "grafana")
    glab = dict(environment=env, job="grafana", instance=f"{gp['ip']}:3000", namespace=mon_ns, pod=gp["pod"],
                node=gp["node"])
    b.add("grafana_build_info", "info", dict(glab, version="11.2.0", edition="oss"), Const(1))
    b.add("grafana_stat_totals_dashboard", "gauge", glab, Const(8))
    for handler, method, code, rate in (("/api/ds/query", "POST", "200", 2.5), ("/api/dashboards/uid/:uid", "GET", "200",
                                                                                 0.05),
                                        ("/api/health", "GET", "200", 0.1), ("/api/ds/query", "POST", "400", 0.01),
                                        ("/api/live/ws", "GET", "200", 0.01)):
        hlab = dict(glab, handler=handler, method=method, status_code=code)
        b.add("grafana_http_request_duration_seconds", "histogram", hlab,
              Histogram(rate, GRAFANA_BUCKETS, 0.03, 0.8, slow=0.05, offset=rate * DAY))

    # ---------------------------------------------------------------- tracing: OTel Collector telemetry
    gateways = [p for p in pods if p["job"] == "otel-gateway"]
    collectors = [p for p in pods if p["job"] == "jaeger-collector"]
    spans = pod_rps * spec.api_pods * 8  # spans/s the application sends (8 per request)
    sampled = 0.1  # the gateway keeps 10 %
    for group, exporter, accepted in ((gateways, "otlp_grpc/jaeger", spans / max(1, len(gateways))),
                                      (collectors, "jaeger_storage_exporter",
                                       spans * sampled / max(1, len(collectors)))):
        for p in group:
            tlab = dict(environment=env, job=p["job"], instance=f"{p['ip']}:{p['port']}", namespace=mon_ns,
                        pod=p["pod"], node=p["node"], service_name=p["job"], service_version="2.14.0")
            for transport, share in (("grpc", 0.9), ("http", 0.1)):
                rlab = dict(tlab, receiver="otlp", transport=transport)
                rate = accepted * share
                off = _counter_offset(rate, (p["pod"], transport))
                b.add("otelcol_receiver_accepted_spans_total", "counter", rlab, Counter(rate, offset=off))
                b.add("otelcol_receiver_refused_spans_total", "counter", rlab,
                      Counter(rate * 0.0005, offset=off * 0.0005))
            elab = dict(tlab, exporter=exporter)
            kept = accepted * (sampled if p["job"] == "otel-gateway" else 1.0)
            off = _counter_offset(kept, (p["pod"], exporter))
            b.add("otelcol_exporter_sent_spans_total", "counter", elab, Counter(kept * 0.9995, offset=off))
            b.add("otelcol_exporter_send_failed_spans_total", "counter", elab,
                  Counter(kept * 0.0005, offset=off * 0.0005))
            b.add("otelcol_exporter_enqueue_failed_spans_total", "counter", elab, Const(0))
            b.add("otelcol_exporter_queue_size", "gauge", elab,
                  Gauge(40, diurnal=0.8, wiggle=0.6, lo=0, integer=True, fmt="%d"))
            b.add("otelcol_exporter_queue_capacity", "gauge", elab, Const(1000))
            if p["job"] == "otel-gateway":
                # Two replicas with tail sampling: the routing tier (load_balancing exporter) sends every
                # span on to a replica's peer receiver (otlp/peers), about as many as the replica got.
                plab = dict(tlab, receiver="otlp/peers", transport="grpc")
                off = _counter_offset(accepted, (p["pod"], "otlp/peers"))
                b.add("otelcol_receiver_accepted_spans_total", "counter", plab, Counter(accepted, offset=off))
                b.add("otelcol_receiver_refused_spans_total", "counter", plab, Const(0))
                llab = dict(tlab, exporter="load_balancing")
                b.add("otelcol_exporter_sent_spans_total", "counter", llab, Counter(accepted, offset=off))
                b.add("otelcol_exporter_send_failed_spans_total", "counter", llab, Const(0))
                b.add("otelcol_exporter_enqueue_failed_spans_total", "counter", llab, Const(0))
                b.add("otelcol_exporter_queue_size", "gauge", llab,
                      Gauge(5, diurnal=0.8, wiggle=0.6, lo=0, integer=True, fmt="%d"))
                b.add("otelcol_exporter_queue_capacity", "gauge", llab, Const(5000))
            if p["job"] == "jaeger-collector":
                for kind, share in (("span", 1.0), ("service", 0.01)):
                    blab = dict(tlab, kind=kind, role="primary")
                    rate = kept * share / 50  # documents per bulk request
                    off = _counter_offset(rate, (p["pod"], kind))
                    b.add("jaeger_storage_bulk_index_attempts_total", "counter", blab, Counter(rate, offset=off))
                    b.add("jaeger_storage_bulk_index_inserts_total", "counter", blab,
                          Counter(rate * 0.999, offset=off * 0.999))
                    b.add("jaeger_storage_bulk_index_errors_total", "counter", blab,
                          Counter(rate * 0.001, offset=off * 0.001))

    # ---------------------------------------------------------------- logging (components/logging/)
    # elasticsearch_exporter (--es.all) on a 3-node cluster, logstash-exporter next to 2 Logstash
    # pods, beat-exporter next to every node's Filebeat; every line the fleet logs passes all three.
    log_lines = pod_rps * spec.api_pods * 3  # lines/s: about 3 per request, all services together
    cluster = f"football-logs-{env}"
    eslab = dict(environment=env, job="elasticsearch-exporter", instance=f"{ip('elasticsearch-exporter')}:9114",
                 namespace=mon_ns, pod=f"elasticsearch-exporter-{_pod_suffix('esx', 'rs')[:4]}c5d8-{_pod_suffix('esx')}",
                 node=node_of("elasticsearch-exporter"), cluster=cluster)
    for color, value in (("green", 1), ("yellow", 0), ("red", 0)):
        b.add("elasticsearch_cluster_health_status", "gauge", dict(eslab, color=color), Const(value))
    b.add("elasticsearch_cluster_health_number_of_nodes", "gauge", eslab, Const(3))
    b.add("elasticsearch_cluster_health_unassigned_shards", "gauge", eslab, Const(0))
    for i in range(3):
        nlab = dict(eslab, name=f"elasticsearch-{i}", host=ip("elasticsearch", i), es_master_node="true",
                    es_data_node="true", es_ingest_node="true", es_client_node="true")
        flab = dict(nlab, mount="/usr/share/elasticsearch/data (/dev/nvme1n1)", path="/usr/share/elasticsearch/data")
        b.add("elasticsearch_filesystem_data_size_bytes", "gauge", flab, Const(200 * 2**30))
        b.add("elasticsearch_filesystem_data_available_bytes", "gauge", flab,
              Gauge(120 * 2**30 * (1 + 0.1 * _h("es-disk", i)), diurnal=0.02, wiggle=0.01, fmt="%d", integer=True))
        b.add("elasticsearch_jvm_memory_max_bytes", "gauge", dict(nlab, area="heap"), Const(4 * 2**30))
        b.add("elasticsearch_jvm_memory_used_bytes", "gauge", dict(nlab, area="heap"),
              Gauge(2.4 * 2**30, diurnal=0.2, wiggle=0.15, fmt="%d", integer=True))
        rate = log_lines / 3
        b.add("elasticsearch_indices_indexing_index_total", "counter", nlab,
              Counter(rate, offset=_counter_offset(rate, ("es-index", i))))
    for i in range(2):
        llab = dict(environment=env, job="logstash", instance=f"{ip('logstash', i)}:9198", namespace=mon_ns,
                    pod=f"logstash-{i}", node=node_of("logstash", i), pipeline="football")
        rate = log_lines / 2
        off = _counter_offset(rate, ("logstash", i))
        # The exporter exposes these without _total (and the queue count as a counter): kept as scraped.
        b.add("logstash_stats_pipeline_events_in", "unknown", llab, Counter(rate, offset=off))
        b.add("logstash_stats_pipeline_events_out", "unknown", llab, Counter(rate * 0.999, offset=off * 0.999))
        b.add("logstash_stats_pipeline_queue_events_count", "unknown", llab,
              Gauge(200, diurnal=0.8, wiggle=0.5, lo=0, integer=True, fmt="%d"))
    for n in nodes:
        fblab = dict(environment=env, job="filebeat", instance=n, namespace=mon_ns,
                     pod=f"filebeat-{_pod_suffix('filebeat', n)}", node=n)
        rate = log_lines / len(nodes)
        off = _counter_offset(rate, ("filebeat", n))
        b.add("filebeat_libbeat_pipeline_events", "unknown", dict(fblab, type="published"), Counter(rate, offset=off))
        b.add("filebeat_libbeat_output_events", "unknown", dict(fblab, type="acked"),
              Counter(rate * 0.9999, offset=off * 0.9999))
        b.add("filebeat_libbeat_output_write_errors_total", "counter", fblab,
              Counter(rate * 1e-4, offset=off * 1e-4, fmt="%.3f"))

    # ---------------------------------------------------------------- logging: Elasticsearch, Logstash, Filebeat
    # Counters without _total (logstash, the untyped beat counters) are declared `unknown`.
    esx = next((p for p in pods if p["job"] == "elasticsearch-exporter"), None)
    if esx is not None:
        xlab = dict(environment=env, job="elasticsearch-exporter", instance=f"{esx['ip']}:{esx['port']}",
                    namespace=mon_ns, pod=esx["pod"], node=esx["node"], cluster="football-logs")
        es_nodes = [p for p in pods if p["kind"] == "es"]
        for color in ("green", "yellow", "red"):
            b.add("elasticsearch_cluster_health_status", "gauge", dict(xlab, color=color),
                  Const(1 if color == "green" else 0))
        b.add("elasticsearch_cluster_health_number_of_nodes", "gauge", xlab, Const(len(es_nodes)))
        b.add("elasticsearch_cluster_health_active_shards", "gauge", xlab, Const(84))
        for name in ("unassigned", "initializing", "relocating"):
            b.add(f"elasticsearch_cluster_health_{name}_shards", "gauge", xlab, Const(0))
        docs_rate = spec.api_pods * pod_rps * 1.5 / len(es_nodes)  # log lines per second per node
        for p in es_nodes:
            nlab = dict(xlab, name=p["pod"], host=p["ip"], es_data_node="true", es_master_node="true")
            size = 200 * 2 ** 30
            b.add("elasticsearch_filesystem_data_size_bytes", "gauge", dict(nlab, mount="/usr/share/elasticsearch/data"),
                  Const(size))
            b.add("elasticsearch_filesystem_data_available_bytes", "gauge",
                  dict(nlab, mount="/usr/share/elasticsearch/data"),
                  Func(lambda t, s=size: s * (0.55 - 0.02 * ((t - start) % DAY) / DAY), "%d"))
            for area, mx, used in (("heap", 2 * 2 ** 30, 0.62), ("non-heap", 0, 0.0)):
                b.add("elasticsearch_jvm_memory_max_bytes", "gauge", dict(nlab, area=area), Const(mx))
                b.add("elasticsearch_jvm_memory_used_bytes", "gauge", dict(nlab, area=area),
                      Gauge(mx * used if mx else 180e6, wiggle=0.2, integer=True, fmt="%d"))
            b.add("elasticsearch_indices_docs", "gauge", nlab,
                  Func(lambda t, r=docs_rate: r * (DAY * 7 + (t - start) % DAY), "%d"))
            b.add("elasticsearch_indices_indexing_index_total", "counter", nlab,
                  Counter(docs_rate, offset=docs_rate * 20 * DAY))
    for p in (q for q in pods if q["kind"] == "logstash"):
        llab = dict(environment=env, job="logstash", instance=f"{p['ip']}:{p['port']}", namespace=mon_ns,
                    pod=p["pod"], node=p["node"], pipeline="main")
        rate = spec.api_pods * pod_rps * 1.5 / 2
        b.add("logstash_stats_pipeline_up", "gauge", llab, Const(1))
        for name, share in (("in", 1.0), ("filtered", 0.999), ("out", 0.999)):
            b.add(f"logstash_stats_pipeline_events_{name}", "unknown", llab,
                  Counter(rate * share, offset=rate * 10 * DAY * share))
        b.add("logstash_stats_pipeline_queue_events_count", "unknown", llab,
              Gauge(150, diurnal=0.8, wiggle=0.7, lo=0, integer=True, fmt="%d"))
        b.add("logstash_stats_jvm_mem_heap_used_percent", "gauge", llab, Gauge(55, wiggle=0.2, fmt="%.0f"))
    for p in (q for q in pods if q["kind"] == "filebeat"):
        flab = dict(environment=env, job="filebeat", instance=p["node"], namespace=mon_ns, pod=p["pod"],
                    node=p["node"])
        rate = spec.api_pods * pod_rps * 1.5 / max(1, spec.nodes)
        for typ, share in (("acked", 1.0), ("total", 1.0), ("batches", 1 / 2048), ("failed", 0.0001)):
            b.add("filebeat_libbeat_output_events", "unknown", dict(flab, type=typ),
                  Counter(rate * share, offset=rate * share * 10 * DAY))
        b.add("filebeat_libbeat_output_events", "unknown", dict(flab, type="active"),
              Gauge(200, diurnal=0.5, wiggle=0.5, lo=0, integer=True, fmt="%d"))
        for typ in ("published", "total"):
            b.add("filebeat_libbeat_pipeline_events", "unknown", dict(flab, type=typ),
                  Counter(rate, offset=rate * 10 * DAY))
        b.add("filebeat_libbeat_output_write_errors_total", "counter", flab, Counter(0.0002, offset=5))
        b.add("filebeat_libbeat_output_read_errors_total", "counter", flab, Const(0))

    # ---------------------------------------------------------------- ALERTS
    # Watchdog: expr vector(1), so no series labels; `environment` is only an external label.
    b.add("ALERTS", "gauge", dict(alertname="Watchdog", alertstate="firing", service="prometheus", severity="info",
                                  team="platform"), Const(1))
    if crash_pod is not None:
        b.add("ALERTS", "gauge", dict(alertname="KubePodCrashLooping", alertstate="firing", container="worker",
                                      environment=env, instance=kb["instance"], job="kube-state-metrics",
                                      namespace=app_ns, pod=crash_pod["pod"], reason="CrashLoopBackOff",
                                      service="kubernetes", severity="warning", team="platform"),
              Func(lambda t: 1 if t >= start + 1200 else None, "%d"))
    return list(b.families.values())


# --------------------------------------------------------------------------
# coverage against what the dashboards query
# --------------------------------------------------------------------------


def dashboard_base_names(root: Path = ROOT) -> dict[str, list[str]]:
    """Series names every dashboard expression needs (through recording rules), -> where used."""
    contract = pn.load_contract(root)
    needed: dict[str, list[str]] = {}

    def add(expr: str, where: str, seen: tuple = ()):
        for name in pn.metric_names(expr):
            if name in contract.recording:
                if name not in seen:
                    add(contract.recording[name], where, seen + (name,))
            else:
                needed.setdefault(name, []).append(where)

    for path in pn.dashboard_files(root):
        for where, expr in pn.iter_dashboard_exprs(pn.load_dashboard(path)):
            add(expr, f"{path.name}: {where}")
    return needed


def missing_names(families: Iterable[Family], root: Path = ROOT) -> dict[str, list[str]]:
    """Names dashboards (or the application catalog) need that the fleet does not produce."""
    have = set()
    for fam in families:
        have |= fam.series_names()
    contract = pn.load_contract(root)
    needed = dashboard_base_names(root)
    for series in contract.app_series():
        needed.setdefault(series, []).append("metrics/catalog.yaml")
    return {name: where for name, where in needed.items() if name not in have}


def unlisted_names(families: Iterable[Family], root: Path = ROOT) -> list[str]:
    """Names the fleet produces that neither catalog lists: series no real program (as read by the
    exporter-name tests) or the application exposes, which would make a query look fine here only."""
    contract = pn.load_contract(root)
    return sorted(f.name for f in families
                  if f.name not in contract.exporter_metrics and f.name not in contract.app
                  and f.name.removesuffix("_total") not in contract.app)


def check_coverage(families: Iterable[Family], root: Path = ROOT) -> None:
    missing = missing_names(families, root)
    if missing:
        lines = [f"  {name}  (needed by {', '.join(sorted(set(w))[:3])})" for name, w in sorted(missing.items())]
        raise RuntimeError("the synthetic fleet cannot produce these metrics:\n" + "\n".join(lines))


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------


def block_windows(spec: FleetSpec) -> list[tuple[int, int]]:
    """[start, end] (inclusive, on the step grid) per 2 h TSDB block of the history."""
    spec = spec.resolved()
    out = []
    t = spec.start
    while t <= spec.end:
        block_end = (t // BLOCK_SECONDS + 1) * BLOCK_SECONDS
        last = min(spec.end, block_end - 1)
        last = t + (last - t) // spec.step * spec.step
        out.append((t, last))
        t = last + spec.step
    return out


def write_openmetrics(spec: FleetSpec, out, families: Optional[list[Family]] = None,
                      first: Optional[int] = None, last: Optional[int] = None) -> int:
    """Write samples with first <= t <= last (default: the whole history) as one OpenMetrics document.

    `out` is a path or a text file; returns the number of sample lines. Memory: one
    series' lines of one window at a time.
    """
    spec = spec.resolved()
    if families is None:
        families = build(spec)
    first = spec.start if first is None else first
    last = spec.end if last is None else last
    own = not hasattr(out, "write")
    fh = open(out, "w", encoding="utf-8", buffering=1 << 20) if own else out
    count = 0
    try:
        # chunks of at most one 2 h window keep the per-series line lists small
        chunks = [(a, b) for a, b in block_windows(spec) if b >= first and a <= last]
        wins = []
        for a, b in chunks:
            a, b = max(a, first), min(b, last)
            wins.append(Window(range(a, b + 1, spec.step), spec.start))
        for fam in families:
            fh.write(f"# TYPE {fam.om_family} {fam.mtype}\n")
            for labels, model in fam.series:
                for win in wins:
                    lines = model.lines(fam.name, labels, win)
                    if not isinstance(lines, list):
                        lines = list(lines)
                    count += len(lines)
                    fh.writelines(lines)
        fh.write("# EOF\n")
    finally:
        if own:
            fh.close()
    return count


def series_count(families: Iterable[Family]) -> int:
    n = 0
    for fam in families:
        for _labels, model in fam.series:
            n += model.samples
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="OpenMetrics file to write")
    ap.add_argument("--api-pods", type=int, default=FleetSpec.api_pods)
    ap.add_argument("--worker-pods", type=int, default=FleetSpec.worker_pods)
    ap.add_argument("--nodes", type=int, default=FleetSpec.nodes)
    ap.add_argument("--handlers", type=int, default=FleetSpec.handlers)
    ap.add_argument("--days", type=float, default=None)
    ap.add_argument("--hours", type=float, default=None)
    ap.add_argument("--step", type=int, default=FleetSpec.step)
    ap.add_argument("--no-incidents", action="store_true")
    a = ap.parse_args(argv)
    seconds = int((a.days or 0) * 86400 + (a.hours or 0) * 3600) or FleetSpec.seconds
    spec = FleetSpec(api_pods=a.api_pods, worker_pods=a.worker_pods, nodes=a.nodes, handlers=a.handlers,
                     seconds=seconds, step=a.step, incidents=not a.no_incidents).resolved()
    fams = build(spec)
    check_coverage(fams)
    t = time.perf_counter()
    n = write_openmetrics(spec, a.out, fams)
    print(f"{series_count(fams)} series, {n} samples in {time.perf_counter() - t:.1f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
