"""scripts/deploy asks for the secrets a stack needs, by the program's own rules, and no others.

The script runs as a person runs it, in a checkout of this repository (symbolic links to its
files) whose .venv is this interpreter, with a stand-in for the `pulumi` command first on PATH
that records every call and answers like the CLI: logged in, the stack selected, `config get`
found only for the keys the test says are set, `up` successful. The lists the script prints
are held against the exact lists below; the program itself, run under Pulumi's mocks, must
demand exactly the required ones and read no secret outside the list.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

from components.settings import PROJECT, SECRETS, SettingsError
from scripts import required_secrets
from tests.conftest import ROOT
from tools import offline

# What each committed stack needs: (required, optional), in the order the script lists them.
EXPECTED = {
    "dev": ([], ["alertmanagerWebhookUrl", "postgresDsn", "redisUrl"]),
    "prod": (["alertmanagerWebhookUrl", "postgresDsn", "redisUrl", "slackApiUrl", "smtpPassword",
              "dingtalkWebhookUrl", "heartbeatUrl", "escalationWebhookUrl", "loggingSnapshotAccessKey",
              "loggingSnapshotSecretKey", "thanosObjstoreAccessKey", "thanosObjstoreSecretKey"], ["dingtalkSecret"]),
}

# A shell script, so that each of the script's calls costs no interpreter start.
FAKE_PULUMI = r"""#!/bin/sh
# A stand-in for the Pulumi CLI: records its arguments (unit-separated), answers as a logged-in CLI would.
for arg in "$@"; do printf '%s\037' "$arg"; done >> "$FAKE_PULUMI_LOG"
echo >> "$FAKE_PULUMI_LOG"
case "$1 $2" in
  "whoami -v") echo "User: tester"; echo "Backend URL: file:///nowhere" ;;
  "whoami "*) echo tester ;;
  "stack select"|"login "*|"up "*) ;;
  "config get")
    key=${3#*:}
    case ",$FAKE_PULUMI_SET," in
      *",$key,"*) echo the-value ;;
      *) echo "error: configuration key '$3' not found for stack" >&2; exit 1 ;;
    esac ;;
  *) echo "the stand-in does not know: pulumi $*" >&2; exit 3 ;;
esac
"""


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The repository as a newcomer has it, with a virtualenv whose requirements are installed."""
    root = tmp_path_factory.mktemp("checkout")
    for entry in ROOT.iterdir():
        if entry.name not in (".venv", ".git", "build", ".pytest_cache"):
            (root / entry.name).symlink_to(entry)
    venv = root / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    (venv / "python").chmod(0o755)
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()
    (root / ".venv" / ".requirements.sha256").write_text(digest + "\n")
    bin_dir = root / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(FAKE_PULUMI)
    (bin_dir / "pulumi").chmod(0o755)
    return root


def deploy(checkout: Path, stack: str, *extra: str, set_keys: tuple[str, ...] = ()) -> tuple[int, str, list]:
    """(exit status, standard error, the pulumi calls) of `scripts/deploy <stack> <extra>`."""
    log = checkout / f"pulumi-calls-{stack}-{len(set_keys)}.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{checkout / 'fake-bin'}:{os.environ['PATH']}", "FAKE_PULUMI_LOG": str(log),
           "FAKE_PULUMI_SET": ",".join(set_keys), "PULUMI_CONFIG_PASSPHRASE": "not-used"}
    proc = subprocess.run([str(checkout / "scripts" / "deploy"), stack, *extra], cwd="/", env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    calls = [line.split("\x1f")[:-1] for line in log.read_text().splitlines()] if log.exists() else []
    return proc.returncode, proc.stderr, calls


def listed(stderr: str, heading: str) -> list[str]:
    """The keys of one of the script's lists: the lines `  <key>: <what it is for>` under its heading."""
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if heading in line), None)
    if start is None:
        return []
    keys = []
    for line in lines[start + 1:]:
        match = re.fullmatch(r"  (\w+): (.+)", line)
        if match:
            assert SECRETS[match.group(1)].doc == match.group(2), line  # each with what it is for
            keys.append(match.group(1))
        elif not line.startswith("    "):
            break
    return keys


REQUIRED = "needs these secrets before it can deploy"
OPTIONAL = "deploys without these optional secrets"


@pytest.mark.parametrize("stack", sorted(EXPECTED))
def test_the_script_lists_exactly_the_secrets_the_stack_needs(checkout, stack):
    required, optional = EXPECTED[stack]
    status, stderr, calls = deploy(checkout, stack)
    asked = [call[2].split(":", 1)[1] for call in calls if call[:2] == ["config", "get"]]
    assert asked == [key for key in SECRETS if key in required + optional], calls
    assert listed(stderr, REQUIRED) == required, stderr
    assert listed(stderr, OPTIONAL) == optional, stderr
    for key in required:
        assert f"pulumi config set --secret --stack {stack} {PROJECT}:{key} '<value>'" in stderr
    if required:
        assert status == 1 and ["up", "--stack", stack] not in calls, stderr
    else:
        assert status == 0 and calls[-1] == ["up", "--stack", stack], stderr


def test_the_script_deploys_once_the_required_secrets_are_set(checkout):
    required, optional = EXPECTED["prod"]
    status, stderr, calls = deploy(checkout, "prod", "--diff", set_keys=tuple(required))
    assert status == 0, stderr
    assert calls[-1] == ["up", "--stack", "prod", "--diff"]
    assert listed(stderr, REQUIRED) == [] and listed(stderr, OPTIONAL) == optional


def test_bad_settings_stop_the_list_as_they_stop_the_program(tmp_path, monkeypatch):
    (tmp_path / "Pulumi.broken.yaml").write_text(
        (ROOT / "Pulumi.dev.yaml").read_text().replace("retention: 3d", "retention: abc"))
    monkeypatch.setattr(required_secrets, "ROOT", tmp_path)
    monkeypatch.setattr(offline, "ROOT", tmp_path)
    with pytest.raises(SystemExit) as info:
        required_secrets.for_stack("broken")
    assert "invalid settings for stack 'broken':\n  - football-monitoring:prometheus.retention = 'abc' is not valid" \
        in str(info.value)


# ---------------------------------------------------------------- the program demands the same

def demanded(stack: str) -> set[str]:
    """The secrets the program refuses to run without: those it names as not set, with none set."""
    config, secret_keys = offline.stack_config(stack, secrets=())
    try:
        offline.run(stack, config=config, secret_keys=secret_keys)
    except SettingsError as error:
        message = str(error)
    else:
        return set()
    found = re.findall(rf"{PROJECT}:(\w+) is not set: expected a secret", message)
    assert message.count("\n  - ") == len(found), message  # nothing else is wrong
    return set(found)


@pytest.mark.parametrize("stack", sorted(EXPECTED))
def test_the_program_demands_the_required_secrets_and_reads_no_other(stack, monkeypatch):
    required, optional = EXPECTED[stack]
    assert demanded(stack) == set(required)
    read: list[str] = []
    for name in ("require_secret", "get_secret", "require", "get"):
        original = getattr(pulumi.Config, name)

        def recording(self, key, *args, _original=original, **kwargs):
            read.append(key)
            return _original(self, key, *args, **kwargs)

        monkeypatch.setattr(pulumi.Config, name, recording)
    config, secret_keys = offline.stack_config(stack, secrets=required + optional)
    offline.run(stack, config=config, secret_keys=secret_keys)
    assert {key for key in read if key in SECRETS} == set(required + optional)
    # The loader reads the plain settings from the engine's config as a whole, not key by key.
    assert set(read) <= set(SECRETS), read


def test_the_entry_point_prints_the_lists(capsys):
    assert required_secrets.main(["--stack", "prod"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    required, optional = EXPECTED["prod"]
    assert [row[0] for row in rows if row[1] == "required"] == required
    assert [row[0] for row in rows if row[1] == "optional"] == optional
    assert all(row[2] == SECRETS[row[0]].doc for row in rows)
    assert all(row[3] for row in rows if row[1] == "optional"), "an optional secret says what happens without it"
