"""The Logstash pipeline of the FootballPrediction logs. No Pulumi here.

``pipelines/10-input.conf`` and ``pipelines/30-output.conf`` are hand-written data;
``pipelines/20-filter.conf`` (parsing, @timestamp, field allow-list, redaction) is rendered
from ``elastic/pipeline.yaml`` by this module and kept in the repository so reviewers read
what runs; the test suite checks it is current and runs the same rules in Python on sample
lines. Regenerate with:

    .venv/bin/python -m components.logging.pipeline > pipelines/20-filter.conf
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "elastic" / "pipeline.yaml"
PIPELINES_DIR = ROOT / "pipelines"
FILTER_FILE = "20-filter.conf"
APP = "[@metadata][app]"  # parsed fields live under @metadata, which is never indexed


def rules(path: Path = RULES_FILE) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _string(text: str) -> str:
    """A Logstash double-quoted string (config.support_escapes is off: the text is kept verbatim)."""
    if '"' in text or "\n" in text:
        raise ValueError(f"no double quote or newline allowed in a pipeline string: {text!r}")
    return f'"{text}"'


def _field(path: str) -> str:
    """`level` -> `[@metadata][app][level]`."""
    return f"{APP}[{path}]"


def render_filter(data: Optional[dict] = None) -> str:
    data = data or rules()
    fields, conversions = data["fields"], data.get("conversions", {})
    lines = [
        "# Generated from elastic/pipeline.yaml by `python -m components.logging.pipeline`: edit that file, not this.",
        "filter {",
        "  # 1. Parse: a JSON line of the service, or else the plain-line pattern.",
        r"  if [message] =~ /^\s*\{/ {",
        "    json {",
        '      id => "football_json"',
        '      source => "message"',
        f'      target => "{APP}"',
        '      tag_on_failure => ["_jsonparsefailure"]',
        "    }",
        "  }",
        "  if ![@metadata][app] {",
        "    grok {",
        '      id => "football_plain_line"',
        f'      match => {{ "message" => {_string(data["plain_line"])} }}',
        f'      target => "{APP}"',
        '      tag_on_failure => ["_grokparsefailure"]',
        "    }",
        "  }",
        "  if [@metadata][app] {",
        "    # 2. The log's own time becomes @timestamp.",
        "    date {",
        '      id => "football_timestamp"',
        "      match => [" + ", ".join([_string(_field(data["timestamp_field"]))]
                                       + [_string(f) for f in data["timestamp_formats"]]) + "]",
        '      target => "@timestamp"',
        '      tag_on_failure => ["_dateparsefailure"]',
        "    }",
        "    # 3. Only the documented fields are kept, under their ECS names; the raw line goes.",
        "    mutate {",
        '      id => "football_raw_line"',
        '      replace => { "message" => "" }',
        "    }",
        "    mutate {",
        '      id => "football_fields"',
        "      rename => {",
    ]
    lines += [f"        {_string(_field(key))} => {_string(target)}" for key, target in fields.items()]
    lines += ["      }", "    }", "    mutate {", '      id => "football_types"']
    if conversions:
        lines.append("      convert => {")
        lines += [f"        {_string(fields[key])} => {_string(kind)}" for key, kind in conversions.items()]
        lines.append("      }")
    lines += [
        f'      lowercase => [{_string(fields["level"])}]',
        "    }",
        "  } else {",
        "    mutate {",
        '      id => "football_unparsed"',
        '      add_tag => ["unparsed"]',
        "    }",
        "  }",
        "  # 4. The service a line came from: its container's name or Compose service (Filebeat's metadata).",
        "  if ![service][name] {",
    ]
    for i, source in enumerate(data["service_name_from"]):
        lines += [
            f"    {'if' if i == 0 else '} else if'} {source} {{",
            "      mutate {",
            f'        id => "football_service_{i}"',
            f"        copy => {{ {_string(source)} => \"[service][name]\" }}",
            "      }",
        ]
    lines += [
        "    }",
        "  }",
        "  # 5. Redaction, in order, on every field that carries free text.",
        "  mutate {",
        '    id => "football_redact"',
        "    gsub => [",
    ]
    triples = [f"      {_string(field)}, {_string(rule['pattern'])}, {_string(rule['replacement'])}"
               for field in data["redact_fields"] for rule in data["redactions"]]
    lines += [t + ("," if i < len(triples) - 1 else "") for i, t in enumerate(triples)]
    lines += [
        "    ]",
        "  }",
        "  mutate {",
        '    id => "football_drop_original"',
        '    remove_field => ["[event][original]"]',
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def pipeline_files(directory: Path = PIPELINES_DIR) -> dict[str, str]:
    """Every *.conf of pipelines/, by name: what Logstash loads (in name order)."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(directory.glob("*.conf"))}


if __name__ == "__main__":
    sys.stdout.write(render_filter())
