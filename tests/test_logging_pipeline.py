"""The Logstash pipeline: syntax, generation from data, and what it does to sample log lines.

Logstash is not available here, so the checks are, honestly:

1. ``pipelines/20-filter.conf`` is exactly what ``elastic/pipeline.yaml`` renders to (the same
   rules the oracle below uses), and it applies every redaction rule to every free-text field.
2. Every ``pipelines/*.conf`` parses with a recursive-descent implementation of Logstash's config
   grammar (logstash-core's grammar.treetop: sections, plugins, attributes, arrays, hashes,
   strings, conditionals), and names only plugins and options we know exist.
3. A Python oracle runs the rules of ``elastic/pipeline.yaml`` with the filter's semantics (JSON
   or plain-line parse, @timestamp, field allow-list, ordered masking) on sample lines, and the
   tests assert on its output. The patterns are kept to the subset Ruby and Python read alike.

Not verified: that Logstash's Ruby regex engine matches byte for byte like Python's ``re``, and
that Logstash itself loads these files.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timezone

import pytest
import yaml

from components.logging import pipeline
from tests.conftest import ROOT

RULES = pipeline.rules()


# ------------------------------------------------------------------ Logstash config grammar


class ConfigSyntaxError(ValueError):
    pass


class LogstashConfig:
    """A parser for Logstash's pipeline config language; returns plugins with their attributes."""

    SECTIONS = ("input", "filter", "output")

    def __init__(self, text: str):
        self.text, self.pos = text, 0
        self.plugins: list[tuple[str, str, dict]] = []  # (section, plugin name, attributes)
        self.conditions: list[str] = []
        self._parse()

    # -- lexical helpers
    def error(self, what: str):
        line = self.text.count("\n", 0, self.pos) + 1
        raise ConfigSyntaxError(f"line {line}: expected {what} at {self.text[self.pos:self.pos + 30]!r}")

    def skip(self) -> None:
        while self.pos < len(self.text):
            if self.text[self.pos] in " \t\r\n":
                self.pos += 1
            elif self.text[self.pos] == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.pos += 1
            else:
                return

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def expect(self, literal: str) -> None:
        self.skip()
        if not self.peek(literal):
            self.error(repr(literal))
        self.pos += len(literal)

    def word(self) -> str:
        self.skip()
        match = re.compile(r"[A-Za-z0-9_-]+").match(self.text, self.pos)
        if not match:
            self.error("a name")
        self.pos = match.end()
        return match.group()

    def string(self) -> str:
        self.skip()
        quote = self.text[self.pos] if self.pos < len(self.text) else ""
        if quote not in "\"'":
            self.error("a string")
        end = self.pos + 1
        while end < len(self.text) and self.text[end] != quote:
            end += 2 if self.text[end] == "\\" else 1
        if end >= len(self.text):
            self.error("the end of the string")
        value = self.text[self.pos + 1:end]  # config.support_escapes is off: kept verbatim
        self.pos = end + 1
        return value

    # -- grammar
    def _parse(self) -> None:
        self.skip()
        if self.pos >= len(self.text):
            self.error("a plugin section")
        while True:
            self.skip()
            if self.pos >= len(self.text):
                return
            section = self.word()
            if section not in self.SECTIONS:
                self.error(f"one of {self.SECTIONS}, not {section!r}")
            self.expect("{")
            self.block(section)

    def block(self, section: str) -> None:
        """(branch_or_plugin)* '}'"""
        while True:
            self.skip()
            if self.peek("}"):
                self.pos += 1
                return
            if self.pos >= len(self.text):
                self.error("'}'")
            name = self.word()
            if name == "if":
                self.branch(section)
            elif name == "else":
                self.error("'if' before 'else'")
            else:
                self.expect("{")
                self.plugins.append((section, name, self.attributes()))

    def branch(self, section: str) -> None:
        self.conditions.append(self.condition())
        self.expect("{")
        self.block(section)
        while True:
            save = self.pos
            self.skip()
            if not re.compile(r"else\b").match(self.text, self.pos):
                self.pos = save
                return
            self.pos += 4
            self.skip()
            if re.compile(r"if\b").match(self.text, self.pos):
                self.pos += 2
                self.conditions.append(self.condition())
            self.expect("{")
            self.block(section)

    def condition(self) -> str:
        start = self.pos
        self.expression()
        while True:
            save = self.pos
            self.skip()
            match = re.compile(r"(and|or|xor|nand)\b").match(self.text, self.pos)
            if not match:
                self.pos = save
                return self.text[start:self.pos].strip()
            self.pos = match.end()
            self.expression()

    def expression(self) -> None:
        self.skip()
        if self.peek("!"):
            self.pos += 1
            self.skip()
            if self.peek("("):
                self.pos += 1
                self.condition()
                self.expect(")")
            else:
                self.selector()
            return
        if self.peek("("):
            self.pos += 1
            self.condition()
            self.expect(")")
            return
        self.rvalue()
        self.skip()
        match = re.compile(r"(==|!=|<=|>=|=~|!~|<|>|not in\b|in\b)").match(self.text, self.pos)
        if not match:
            return
        self.pos = match.end()
        if match.group() in ("=~", "!~"):
            self.skip()
            if self.peek("/"):
                self.regexp()
            else:
                self.string()
        else:
            self.rvalue()

    def selector(self) -> str:
        self.skip()
        match = re.compile(r"(\[[^\]\[,]+\])+").match(self.text, self.pos)
        if not match:
            self.error("a field reference such as [a][b]")
        self.pos = match.end()
        return match.group()

    def regexp(self) -> str:
        match = re.compile(r"/((?:\\/|[^/])*)/").match(self.text, self.pos)
        if not match:
            self.error("a /regexp/")
        self.pos = match.end()
        re.compile(match.group(1))
        return match.group(1)

    def rvalue(self) -> None:
        self.skip()
        if self.peek("["):
            self.selector()
        elif self.peek('"') or self.peek("'"):
            self.string()
        elif self.peek("/"):
            self.regexp()
        else:
            self.number()

    def number(self):
        self.skip()
        match = re.compile(r"-?[0-9]+(\.[0-9]*)?").match(self.text, self.pos)
        if not match:
            self.error("a value")
        self.pos = match.end()
        return float(match.group()) if "." in match.group() else int(match.group())

    def attributes(self) -> dict:
        attrs: dict = {}
        while True:
            self.skip()
            if self.peek("}"):
                self.pos += 1
                return attrs
            name = self.word()
            self.expect("=>")
            if name in attrs:
                self.error(f"{name!r} only once")
            attrs[name] = self.value()

    def value(self):
        self.skip()
        if self.peek('"') or self.peek("'"):
            return self.string()
        if self.peek("["):
            return self.array()
        if self.peek("{"):
            return self.hash()
        if re.compile(r"-?[0-9]").match(self.text, self.pos):
            return self.number()
        match = re.compile(r"[A-Za-z_][A-Za-z0-9_]+").match(self.text, self.pos)
        if not match:
            self.error("a value")
        self.pos = match.end()
        return match.group()

    def array(self) -> list:
        self.expect("[")
        items: list = []
        self.skip()
        if self.peek("]"):
            self.pos += 1
            return items
        while True:
            items.append(self.value())
            self.skip()
            if self.peek("]"):
                self.pos += 1
                return items
            self.expect(",")

    def hash(self) -> dict:
        self.expect("{")
        entries: dict = {}
        while True:
            self.skip()
            if self.peek("}"):
                self.pos += 1
                return entries
            key = self.string() if self.peek('"') or self.peek("'") else self.word()
            self.expect("=>")
            entries[key] = self.value()


# Plugins and options the pipeline may use (from the Logstash 8.19 plugin references).
KNOWN_OPTIONS = {
    ("input", "beats"): {"id", "port", "host", "ecs_compatibility", "ssl_enabled"},
    ("filter", "json"): {"id", "source", "target", "tag_on_failure", "skip_on_invalid_json"},
    ("filter", "grok"): {"id", "match", "target", "tag_on_failure", "pattern_definitions"},
    ("filter", "date"): {"id", "match", "target", "tag_on_failure", "timezone"},
    ("filter", "mutate"): {"id", "replace", "rename", "convert", "lowercase", "add_tag", "copy", "gsub",
                           "remove_field"},
    ("output", "elasticsearch"): {"id", "hosts", "user", "password", "ssl_enabled", "ssl_certificate_authorities",
                                  "ssl_verification_mode", "data_stream", "data_stream_type", "data_stream_dataset",
                                  "data_stream_namespace", "data_stream_auto_routing"},
}


def parse_pipeline(files: dict[str, str]) -> list[LogstashConfig]:
    return [LogstashConfig(text) for _, text in sorted(files.items())]


def syntax_problems(files: dict[str, str]) -> list[str]:
    problems = []
    for name, text in sorted(files.items()):
        try:
            config = LogstashConfig(text)
        except (ConfigSyntaxError, re.error) as exc:
            problems.append(f"{name}: {exc}")
            continue
        for section, plugin, attrs in config.plugins:
            known = KNOWN_OPTIONS.get((section, plugin))
            if known is None:
                problems.append(f"{name}: unknown {section} plugin {plugin!r}")
            elif set(attrs) - known:
                problems.append(f"{name}: {plugin}: unknown options {sorted(set(attrs) - known)}")
            if "id" not in attrs:
                problems.append(f"{name}: {plugin} without an id (its metrics would get a random one)")
    if problems:
        return problems
    ids = [attrs.get("id") for config in parse_pipeline(files) for _, _, attrs in config.plugins]
    if len(ids) != len(set(ids)):
        problems.append(f"plugin ids are not unique: {ids}")
    return problems


def test_filter_is_generated_from_the_rules():
    committed = (ROOT / "pipelines" / pipeline.FILTER_FILE).read_text()
    assert committed == pipeline.render_filter(), \
        "pipelines/20-filter.conf is stale: run .venv/bin/python -m components.logging.pipeline > pipelines/20-filter.conf"


def test_every_pipeline_file_parses_and_uses_known_plugins():
    files = pipeline.pipeline_files()
    assert set(files) == {"10-input.conf", "20-filter.conf", "30-output.conf"}
    assert syntax_problems(files) == []
    plugins = [(s, p) for config in parse_pipeline(files) for s, p, _ in config.plugins]
    assert ("input", "beats") in plugins and ("output", "elasticsearch") in plugins


@pytest.mark.parametrize("breakage, expected", [
    (lambda t: t.replace("}\n", "\n", 1), "expected"),  # a missing brace
    (lambda t: t.replace('source => "message"', 'source "message"'), "expected '=>'"),
    (lambda t: t.replace('target => "@timestamp"', 'target => "@timestamp'), "expected"),  # unterminated string
    (lambda t: t.replace("filter {\n", "filter {\n  else { }\n", 1), "'if' before 'else'"),
    (lambda t: t.replace("mutate {", "mutat {", 1), "unknown filter plugin 'mutat'"),
    (lambda t: t.replace("tag_on_failure", "tag_on_failur", 1), "unknown options"),
    (lambda t: t.replace(r"=~ /^\s*\{/", r"=~ /^\s*\{(/"), "unterminated subpattern"),  # a bad regexp in a condition
])
def test_syntax_check_catches_a_broken_pipeline(breakage, expected):
    files = pipeline.pipeline_files()
    broken = dict(files, **{"20-filter.conf": breakage(files["20-filter.conf"])})
    assert broken["20-filter.conf"] != files["20-filter.conf"]
    problems = syntax_problems(broken)
    assert any(expected in p for p in problems), problems


def gsub_triples(files: dict[str, str]) -> list[tuple[str, str, str]]:
    for config in parse_pipeline(files):
        for _, plugin, attrs in config.plugins:
            if plugin == "mutate" and "gsub" in attrs:
                values = attrs["gsub"]
                return [tuple(values[i:i + 3]) for i in range(0, len(values), 3)]
    return []


def test_the_pipeline_applies_every_rule_to_every_free_text_field_in_order():
    expected = [(field, rule["pattern"], rule["replacement"])
                for field in RULES["redact_fields"] for rule in RULES["redactions"]]
    assert gsub_triples(pipeline.pipeline_files()) == expected
    assert {"message", "[url][path]"} <= set(RULES["redact_fields"])


def test_the_rules_are_portable_between_ruby_and_python():
    patterns = [RULES["plain_line"]] + [rule["pattern"] for rule in RULES["redactions"]]
    for pattern in patterns:
        assert '"' not in pattern and "(?P" not in pattern, pattern
        assert "(?i)" not in pattern[4:], f"inline flags only at the start: {pattern}"
        re.compile(python_regex(pattern))
    for rule in RULES["redactions"]:
        assert rule["name"] and rule["why"] and "[REDACTED" in rule["replacement"], rule


# ------------------------------------------------------------------ the oracle


def python_regex(pattern: str) -> str:
    """Oniguruma's (?<name>...) as Python's (?P<name>...); lookbehinds stay."""
    return re.sub(r"\(\?<([A-Za-z_])", r"(?P<\1", pattern)


def _set(doc: dict, path: str, value) -> None:
    keys = re.findall(r"\[([^\]]+)\]", path) or [path]
    for key in keys[:-1]:
        doc = doc.setdefault(key, {})
    doc[keys[-1]] = value


def _get(doc: dict, path: str):
    keys = re.findall(r"\[([^\]]+)\]", path) or [path]
    for key in keys:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _timestamp(value, formats: list[str]):
    for fmt in formats:
        try:
            if fmt == "ISO8601":
                parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            elif fmt == "UNIX":
                parsed = datetime.fromtimestamp(float(value), timezone.utc)
            elif fmt == "UNIX_MS":
                parsed = datetime.fromtimestamp(int(value) / 1000, timezone.utc)
            else:
                python = fmt.replace("yyyy", "%Y").replace("MM", "%m").replace("dd", "%d").replace("HH", "%H") \
                    .replace("mm", "%M").replace("ss", "%S").replace("SSS", "%f")
                parsed = datetime.strptime(str(value), python)
        except (ValueError, TypeError, OverflowError):
            continue
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return None


def run_filter(line: str, rules: dict = RULES, container: str = "football-prediction-api",
               metadata: dict | None = None) -> dict:
    """What 20-filter.conf does to one event from Filebeat: the message plus Filebeat's metadata
    (by default Kubernetes metadata of ``container``)."""
    metadata = {"kubernetes": {"container": {"name": container}}} if metadata is None else metadata
    doc: dict = {"message": line, "tags": [], **json.loads(json.dumps(metadata))}
    app = None
    if re.match(r"^\s*\{", line):
        try:
            app = json.loads(line)
        except ValueError:
            doc["tags"].append("_jsonparsefailure")
    if app is None:
        match = re.match(python_regex(rules["plain_line"]), line)
        if match:
            app = {k: v for k, v in match.groupdict().items() if v is not None}
        else:
            doc["tags"].append("_grokparsefailure")
    if app is not None:
        app = app if isinstance(app, dict) else {}
        if rules["timestamp_field"] in app:
            stamp = _timestamp(app[rules["timestamp_field"]], rules["timestamp_formats"])
            if stamp:
                doc["@timestamp"] = stamp
            else:
                doc["tags"].append("_dateparsefailure")
        doc["message"] = ""
        for key, target in rules["fields"].items():
            if key in app:
                _set(doc, target, app[key])
        for key, kind in rules.get("conversions", {}).items():
            value = _get(doc, rules["fields"][key])
            if value is not None:
                _set(doc, rules["fields"][key], int(float(value)) if kind == "integer" else float(value))
        level = _get(doc, rules["fields"]["level"])
        if isinstance(level, str):
            _set(doc, rules["fields"]["level"], level.lower())
    else:
        doc["tags"].append("unparsed")
    if _get(doc, "[service][name]") is None:
        source = next((f for f in rules["service_name_from"] if _get(doc, f) is not None), None)
        if source:
            _set(doc, "[service][name]", _get(doc, source))
    for field in rules["redact_fields"]:
        for rule in rules["redactions"]:
            value = _get(doc, field)
            if isinstance(value, str):
                _set(doc, field, re.sub(python_regex(rule["pattern"]), rule["replacement"], value))
    return doc


SECRETS_IN_SAMPLES = ["hunter2", "abc123def", "bob@example.org", "alice@example.com", "secret1", "sk_live_51Habc123",
                      "abcdef123456789", "eyJhbGciOiJIUzI1NiJ9", "dXNlcjpwYXNz", "7946 0958", "13812345678",
                      "555-123-4567", "s3cr3t-token"]

STRUCTURED = json.dumps({
    "timestamp": "2026-05-01T12:00:00.123Z", "level": "ERROR", "logger": "api.auth",
    "message": "login failed for alice@example.com with password=hunter2",
    "request_id": "req-7f3a", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
    "user_id": "42", "path": "/api/v1/login?token=abc123def&next=/home", "status": "401", "duration_ms": 12.5,
    "password": "hunter2", "headers": {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"},
})


def test_structured_line_keeps_documented_fields_and_masks_secrets():
    doc = run_filter(STRUCTURED)
    assert doc["@timestamp"] == "2026-05-01T12:00:00.123Z"  # the log's own time
    assert doc["message"] == "login failed for [REDACTED-EMAIL] with password=[REDACTED]"
    assert doc["log"] == {"level": "error", "logger": "api.auth"}
    assert doc["http"] == {"request": {"id": "req-7f3a"}, "response": {"status_code": 401}}
    assert doc["trace"] == {"id": "4bf92f3577b34da6a3ce929d0e0e4736"} and doc["span"] == {"id": "00f067aa0ba902b7"}
    assert doc["user"] == {"id": "42"} and doc["event"] == {"duration_ms": 12.5}
    assert doc["url"] == {"path": "/api/v1/login?token=[REDACTED]&next=/home"}
    assert doc["tags"] == [] and doc["service"] == {"name": "football-prediction-api"}
    # The password field and the headers are not documented fields: they never reach the index.
    assert "password" not in doc and "headers" not in json.dumps(doc)
    assert not [s for s in SECRETS_IN_SAMPLES if s in json.dumps(doc)]


@pytest.mark.parametrize("line, message, level", [
    ("2026-05-01 12:00:01,456 WARNING [celery.worker] calling upstream with Authorization: Bearer abcdef123456789 failed",
     "calling upstream with Authorization: [REDACTED] failed", "warning"),
    ('{"timestamp": 1777636800.5, "level": "info", "message": "external call api_key=sk_live_51Habc123 returned 500"}',
     "external call api_key=[REDACTED] returned 500", "info"),
    ('{"timestamp": "2026-05-01T12:00:02Z", "level": "INFO", "message": "user phones +44 20 7946 0958 and 13812345678, '
     'fallback (555) 555-1234 or 555-123-4567"}',
     "user phones [REDACTED-PHONE] and [REDACTED-PHONE], fallback [REDACTED-PHONE] or [REDACTED-PHONE]", "info"),
    ('{"level": "debug", "message": "request headers {\'Authorization\': \'Basic dXNlcjpwYXNz\'}, token: s3cr3t-token"}',
     "request headers {'Authorization': '[REDACTED], token: [REDACTED]", "debug"),
])
def test_tokens_keys_phones_and_headers_are_masked(line, message, level):
    doc = run_filter(line)
    assert doc["message"] == message
    assert doc["log"]["level"] == level
    assert not [s for s in SECRETS_IN_SAMPLES if s in json.dumps(doc)]


def test_plain_line_gets_its_own_time_and_fields():
    doc = run_filter("2026-05-01 12:00:01,456 ERROR [celery.worker] Task predict[8d1] failed")
    assert doc["@timestamp"] == "2026-05-01T12:00:01.456Z"
    assert doc["log"] == {"level": "error", "logger": "celery.worker"}
    assert doc["message"] == "Task predict[8d1] failed" and doc["tags"] == []


def test_malformed_line_is_kept_tagged_and_still_redacted():
    line = '{"level": "error", "message": "broken json with password: secret1 and bob@example.org'
    doc = run_filter(line)
    assert doc["tags"] == ["_jsonparsefailure", "_grokparsefailure", "unparsed"]
    assert doc["message"] == ('{"level": "error", "message": "broken json with password: [REDACTED] and '
                              '[REDACTED-EMAIL]')
    assert "@timestamp" not in doc  # Filebeat's read time stays


def test_ordinary_numbers_and_ids_are_not_masked():
    text = ("processed 1234567 rows for run 2026-05-01 in 12.5s, trace 4bf92f3577b34da6a3ce929d0e0e4736, "
            "order 10.0.0.12, version 8.19.2, tokens_total=42")
    doc = run_filter(json.dumps({"level": "info", "message": text}))
    assert doc["message"] == text
    assert "REDACTED" not in doc["message"]


def test_json_line_without_message_loses_the_raw_line():
    doc = run_filter('{"timestamp": "2026-05-01T12:00:03Z", "level": "info", "token": "s3cr3t-token"}')
    assert doc["message"] == "" and "s3cr3t-token" not in json.dumps(doc)


def test_oracle_catches_a_missing_rule():
    """Without the e-mail rule (a broken copy of the data), the e-mail sample fails its assertion."""
    broken = copy.deepcopy(RULES)
    broken["redactions"] = [r for r in broken["redactions"] if r["name"] != "email"]
    doc = run_filter(STRUCTURED, broken)
    assert "alice@example.com" in doc["message"]
    # ...and the generated pipeline would differ from the committed one, which a test also catches.
    assert pipeline.render_filter(broken) != (ROOT / "pipelines" / pipeline.FILTER_FILE).read_text()


def test_rules_file_is_plain_data():
    document = yaml.safe_load((ROOT / "elastic" / "pipeline.yaml").read_text())
    assert set(document["fields"]) == {"level", "logger", "message", "request_id", "trace_id", "span_id", "user_id",
                                       "path", "status", "duration_ms"}
    assert document["timestamp_field"] == "timestamp"


@pytest.mark.parametrize("metadata, service", [
    ({"kubernetes": {"container": {"name": "football-prediction-api"}}}, "football-prediction-api"),
    # A Docker host: Filebeat's add_docker_metadata (labels de-dotted); the Compose service wins.
    ({"container": {"name": "footballprediction-worker-1",
                    "labels": {"com_docker_compose_service": "worker"}}}, "worker"),
    ({"container": {"name": "fm-dev-prometheus", "labels": {"app_kubernetes_io/name": "prometheus"}}},
     "fm-dev-prometheus"),
    ({}, None),
])
def test_service_name_from_either_platforms_metadata(metadata, service):
    doc = run_filter("2026-05-01 12:00:00,123 ERROR [celery.worker] Task failed", metadata=metadata)
    assert (doc.get("service") or {}).get("name") == service


def test_filter_reads_the_service_name_in_the_documented_order():
    text = (ROOT / "pipelines" / "20-filter.conf").read_text()
    positions = [text.index(f"copy => {{ \"{source}\" => \"[service][name]\" }}") for source in RULES["service_name_from"]]
    assert positions == sorted(positions) and "if ![service][name] {" in text
