#!/usr/bin/env bash
# Builds the real programs the tests run, from their Go modules, at exactly the versions the
# images pin (the tags in components/settings/images.py are the only source of versions).
#
#   scripts/install-test-tools.sh            build what is missing (two builds at a time)
#   scripts/install-test-tools.sh --bin-dir  the same, then print the one directory that holds
#                                            every tool by its plain name (build logs go to stderr)
#
# Each tool lands in ${FM_TOOLS_CACHE:-$HOME/.cache/football-monitoring/tools}/<name>-<version>/
# and is reused while that directory is complete; a new pin builds a new directory, an old
# binary is never used for a new pin. Grafana is not built: it is AGPL-licensed.
# openssl (test certificates), java, chromium, PostgreSQL and Redis still come from the system's packages.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${FM_TOOLS_CACHE:-$HOME/.cache/football-monitoring/tools}
jobs=${FM_TOOLS_JOBS:-2}
print_bin_dir=0
case "${1:-}" in
  --bin-dir) print_bin_dir=1 ;;
  --build-steps) ;;  # internal: one build, run by this script in its own process
  "") ;;
  *) echo "usage: $0 [--bin-dir]" >&2; exit 2 ;;
esac

die() { echo "install-test-tools: $*" >&2; exit 1; }

# openssl (test certificates) and a Java runtime (the JVM says which log files the generated JVM
# options make it write): from the distribution.
system_packages=()
command -v openssl >/dev/null 2>&1 || system_packages+=(openssl)
command -v java >/dev/null 2>&1 || system_packages+=(default-jre-headless)
# Headless Chromium renders the service level report's HTML page (tests/test_report.py).
command -v chromium >/dev/null 2>&1 || system_packages+=(chromium)
# The application's database and cache, which postgres_exporter and redis_exporter watch in
# tests/test_database_servers.py: the distribution's PostgreSQL server and Redis.
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || system_packages+=(postgresql)
command -v redis-server >/dev/null 2>&1 || system_packages+=(redis-server)
# Node and npm for the YAML editors' language server (NPM_TEST_TOOLS).
command -v npm >/dev/null 2>&1 || system_packages+=(npm)
if [ "${#system_packages[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "the tests need ${system_packages[*]}; install them with your package manager."
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "Installing ${system_packages[*]} ..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${system_packages[@]}" >/dev/null
fi

# The tool list: name, version (the image tag without "v"), how to build, module, module version,
# packages, -X flags, directories needing placeholder web assets, the build's own environment
# (VAR=value items, for that build alone) ("-": none; no field is empty). Derived from
# DEFAULT_IMAGES without importing the project.
plan=$(python3 - "$root/components/settings/images.py" "$root" <<'PY'
import ast, hashlib, re, sys

tree = ast.parse(open(sys.argv[1]).read())
def assigned(name):
    return next(ast.literal_eval(n.value) for n in tree.body
                if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == name for t in n.targets))
images, tools, npm_tools = assigned("DEFAULT_IMAGES"), assigned("TEST_TOOLS"), assigned("NPM_TEST_TOOLS")

def tag(key):
    t = images[key].rsplit(":", 1)[1]
    if not re.fullmatch(r"v?\d+\.\d+\.\d+", t):
        sys.exit(f"install-test-tools: image {key} = {images[key]}: tag {t!r} is not a release version X.Y.Z")
    return t.lstrip("v")

def common(version):  # github.com/prometheus/common/version, as the projects' own builds set it
    p = "github.com/prometheus/common/version"
    return (f"-X {p}.Version={version} -X {p}.Revision=v{version.lstrip('v')} -X {p}.Branch=HEAD"
            f" -X {p}.BuildUser=football-monitoring")

rows = []
# suffix: appended to each binary's name in the bin dir, for a second release of a tool whose
# binaries would otherwise take the names of the first ("-": none). Not part of the build recipe.
# env: VAR=value items of that build's own environment ("-": none; part of its recipe only when set).
def row(name, key, mode, module, modver, pkgs, ldflags=None, version=None, ui_stubs=(), suffix="-", env=()):
    version = version or tag(key)
    rows.append([name, version, mode, module, modver, " ".join(pkgs),
                 ldflags if ldflags is not None else common(version), " ".join(ui_stubs) or "-", suffix,
                 " ".join(env) or "-"])

# Prometheus tags its Go module v0.3XX.Y for release v3.XX.Y.
major, minor, patch = tag("prometheus").split(".")
if major != "3":
    sys.exit(f"install-test-tools: Prometheus {tag('prometheus')}: only 3.x maps to a Go module version here")
# Largest builds first, so two at a time finish together.
row("prometheus", "prometheus", "install", "github.com/prometheus/prometheus", f"v0.3{int(minor):02d}.{patch}",
    ["cmd/prometheus", "cmd/promtool"])
# Thanos replaces modules in its go.mod (go install refuses it), and its go.mod asks for a newer Go
# than the machine's 1.26: the go command fetches this toolchain from the module proxy for this
# build alone. Its release build (.promu.yml) sets the tags netgo and slicelabels (the label layout
# its gRPC codec is compiled for) and github.com/prometheus/common/version.
row("thanos", "thanos", "wrapper", "github.com/thanos-io/thanos", f"v{tag('thanos')}", ["cmd/thanos"],
    common(tag("thanos")), env=["GOTOOLCHAIN=go1.27.3", "GOFLAGS=-tags=netgo,slicelabels"])
otel = tag("otelCollector")
# The builder's manifest, written from this list: exactly the components the gateway configs use
# (components/configs/otel_collector.py), each at the collector's release. The list is part of the
# recipe, so adding a component rebuilds the collector.
core, contrib = "go.opentelemetry.io/collector", "github.com/open-telemetry/opentelemetry-collector-contrib"
otelcol = [("receivers", f"{core}/receiver/otlpreceiver"),
           ("processors", f"{core}/processor/memorylimiterprocessor"),
           ("processors", f"{core}/processor/batchprocessor"),
           ("processors", f"{contrib}/processor/probabilisticsamplerprocessor"),
           ("processors", f"{contrib}/processor/tailsamplingprocessor"),
           ("exporters", f"{core}/exporter/otlpexporter"),
           ("exporters", f"{contrib}/exporter/loadbalancingexporter"),
           ("extensions", f"{contrib}/extension/healthcheckextension")]
# Dependencies held at another version (module@version). The load-balancing exporter requires
# servicediscovery v1.48.0 for its aws_cloud_map resolver, which the gateway does not use; the Go
# module proxy refuses that version ("This module version is not available") and serves v1.40.2,
# which has the client and types the resolver calls (the build compiles it).
otelcol_replaces = ["github.com/aws/aws-sdk-go-v2/service/servicediscovery@v1.40.2"]
manifest = [f"{kind}={path}" for kind, path in otelcol] + [f"replace={r}" for r in otelcol_replaces]
# The build's directory carries a digest of the list after the release ("0.161.0-<digest>"; the
# collector reports the release alone): checkouts with different lists keep a build each instead
# of rebuilding over one another in the shared cache.
manifest_digest = hashlib.sha256(" ".join(manifest).encode()).hexdigest()[:8]
row("otelcol", "otelCollector", "otelcol", "go.opentelemetry.io/collector/cmd/builder", f"v{otel}", manifest, "-",
    version=f"{otel}-{manifest_digest}")
# Jaeger v2 is module github.com/jaegertracing/jaeger (no /v2) with v1.x tags: v1.(N+62).P = 2.N.P.
j = tag("jaeger").split(".")
if j[0] != "2":
    sys.exit(f"install-test-tools: Jaeger {tag('jaeger')}: only 2.x maps to a Go module version here")
# The cleaner's image carries the release's v1 number: jaeger 2.N.P goes with the cleaner 1.(N+62).P.
if tag("jaegerIndexCleaner") != f"1.{int(j[1]) + 62}.{j[2]}":
    sys.exit(f"install-test-tools: jaegerIndexCleaner {tag('jaegerIndexCleaner')} is not the release of jaeger "
             f"{tag('jaeger')} (its image tag is 1.{int(j[1]) + 62}.{j[2]})")
jv = "github.com/jaegertracing/jaeger/internal/version"
row("jaeger", "jaeger", "wrapper", "github.com/jaegertracing/jaeger", f"v1.{int(j[1]) + 62}.{j[2]}",
    ["cmd/jaeger", "cmd/es-index-cleaner"],
    f"-X {jv}.latestVersion=v{tag('jaeger')} -X {jv}.commitSHA=v{tag('jaeger')} -X {jv}.date=football-monitoring")
row("kube-state-metrics", "kubeStateMetrics", "wrapper", "k8s.io/kube-state-metrics/v2", f"v{tag('kubeStateMetrics')}",
    ["."], common("v" + tag("kubeStateMetrics")))
# prometheus-operator's go.mod replaces its own API modules with local paths: go install refuses it.
row("prometheus-config-reloader", "configReloader", "wrapper", "github.com/prometheus-operator/prometheus-operator",
    f"v{tag('configReloader')}", ["cmd/prometheus-config-reloader"])
# Alertmanager embeds its web UI, built by npm and not part of the module: the tests never load
# the UI, so the build gets placeholder pages in a temporary copy of the module.
row("alertmanager", "alertmanager", "wrapper", "github.com/prometheus/alertmanager", f"v{tag('alertmanager')}",
    ["cmd/alertmanager", "cmd/amtool"], ui_stubs=["ui/app/dist/elm", "ui/app/dist/mantine"])
# pint and sloth have no image: their versions sit beside the images, in TEST_TOOLS.
pint = tools["pint"].rsplit(":", 1)[1].lstrip("v")
row("pint", None, "wrapper", "github.com/cloudflare/pint", f"v{pint}", ["cmd/pint"],
    f"-X main.version=v{pint} -X main.commit=release", version=pint)
sloth = tools["sloth"].rsplit(":", 1)[1].lstrip("v")
row("sloth", None, "install", "github.com/slok/sloth", f"v{sloth}", ["cmd/sloth"],
    f"-X github.com/slok/sloth/internal/info.Version=v{sloth}", version=sloth)
cyclonus = tools["cyclonus"].rsplit(":", 1)[1].lstrip("v")
row("cyclonus", None, "wrapper", "github.com/mattfenwick/cyclonus", f"v{cyclonus}", ["cmd/cyclonus"],
    f"-X github.com/mattfenwick/cyclonus/pkg/cli.version=v{cyclonus}", version=cyclonus)
# Our own small program over an upstream library: built from scripts/pod-security-check/ in a
# throwaway module requiring the library's release; the source's digest is part of the recipe.
psa = tools["podSecurityAdmission"].rsplit(":", 1)[1].lstrip("v")
digest = hashlib.sha256(open(f"{sys.argv[2]}/scripts/pod-security-check/main.go", "rb").read()).hexdigest()[:16]
row("pod-security-check", None, "local", "k8s.io/pod-security-admission", f"v{psa}", ["scripts/pod-security-check"],
    f"-X main.sourceDigest={digest}", version=psa)
# The API server the admission tests run, with its controller manager, at one Kubernetes release.
# k8s.io/kubernetes replaces its k8s.io/* staging modules with directories of its repository, so
# the wrapper pins each of them to its published release v0.<minor>.<patch> instead ("kubernetes"
# mode); every other k8s.io module the tests build is at that same release.
def kube_release(key):
    release = tools[key].rsplit(":", 1)[1].lstrip("v")
    if not re.fullmatch(r"1\.\d+\.\d+", release):
        sys.exit(f"install-test-tools: {key} = Kubernetes {release}: only 1.x maps to staging module versions "
                 "v0.x here")
    return release, release.split(".")

def kube_flags(release):  # the version variables upstream's release build sets
    kmajor, kminor, _ = release.split(".")
    return " ".join(f"-X k8s.io/{pkg}/version.{key}={value}"
                    for pkg in ("client-go/pkg", "component-base")
                    for key, value in (("gitVersion", f"v{release}"), ("gitMajor", kmajor), ("gitMinor", kminor),
                                       ("gitTreeState", "clean")))

kube, (kmajor, kminor, kpatch) = kube_release("kubernetes")
if psa != f"0.{kminor}.{kpatch}":
    sys.exit(f"install-test-tools: podSecurityAdmission v{psa} is not the staging release of Kubernetes v{kube} "
             f"(v0.{kminor}.{kpatch})")
row("kubernetes", None, "kubernetes", "k8s.io/kubernetes", f"v{kube}",
    ["cmd/kube-apiserver", "cmd/kube-controller-manager"], kube_flags(kube), version=kube)
# The previous minor release, which the admission tests run too: its binaries are linked as
# kube-apiserver-previous and kube-controller-manager-previous.
previous, (_, pminor, _) = kube_release("kubernetesPrevious")
if int(pminor) != int(kminor) - 1:
    sys.exit(f"install-test-tools: kubernetesPrevious v{previous} is not of the minor release before "
             f"Kubernetes v{kube} (1.{int(kminor) - 1})")
row("kubernetes-previous", None, "kubernetes", "k8s.io/kubernetes", f"v{previous}",
    ["cmd/kube-apiserver", "cmd/kube-controller-manager"], kube_flags(previous), version=previous, suffix="-previous")
# etcd, the API server's storage: the server module has no main package of a usable name, so a
# generated one-line main calls its etcdmain.Main ("main" mode; the binary is named after the tool).
etcd = tools["etcd"].rsplit(":", 1)[1].lstrip("v")
row("etcd", None, "main", "go.etcd.io/etcd/server/v3", f"v{etcd}", ["etcdmain"], "-", version=etcd)
# The Pulumi CLI: its go.mod replaces the SDK with the repository's directory (the wrapper takes the
# published SDK of the same release) and pins a fork of one dependency (copied).
pulumi = tools["pulumi"].rsplit(":", 1)[1].lstrip("v")
row("pulumi", None, "wrapper", "github.com/pulumi/pulumi/pkg/v3", f"v{pulumi}", ["cmd/pulumi"],
    f"-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v{pulumi}", version=pulumi)
row("postgres_exporter", "postgresExporter", "wrapper", "github.com/prometheus-community/postgres_exporter",
    f"v{tag('postgresExporter')}", ["cmd/postgres_exporter"])
row("elasticsearch_exporter", "elasticsearchExporter", "wrapper",
    "github.com/prometheus-community/elasticsearch_exporter", f"v{tag('elasticsearchExporter')}", ["."])
row("node_exporter", "nodeExporter", "install", "github.com/prometheus/node_exporter", f"v{tag('nodeExporter')}", ["."])
row("blackbox_exporter", "blackboxExporter", "wrapper", "github.com/prometheus/blackbox_exporter",
    f"v{tag('blackboxExporter')}", ["."])
row("redis_exporter", "redisExporter", "wrapper", "github.com/oliver006/redis_exporter", f"v{tag('redisExporter')}",
    ["."], f"-X main.BuildVersion=v{tag('redisExporter')} -X main.BuildCommitSha=release -X main.BuildDate=release")
# npm packages, each installed with its dependencies into its own directory; pkgs: the commands it provides.
for pin in npm_tools.values():
    package, version = pin.rsplit("@", 1)
    row(package, None, "npm", package, version, [package], "-", version=version)
for r in rows:
    print("\t".join(r))
PY
) || exit 1

GO=${GO:-}
if [ -z "$GO" ]; then
  if [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; else GO=$(command -v go || true); fi
fi

# Binary name -> tool directory, for the bin dir.
declare -a names=() versions=() specs=() suffixes=()
while IFS=$'\t' read -r name version mode module modver pkgs ldflags stubs suffix env; do
  names+=("$name"); versions+=("$version"); suffixes+=("$suffix")
  # A build without an environment of its own keeps the recipe it had before that field existed.
  spec="$mode"$'\t'"$module"$'\t'"$modver"$'\t'"$pkgs"$'\t'"$ldflags"$'\t'"$stubs"
  [ "$env" = - ] || spec+=$'\t'"$env"
  specs+=("$spec")
done <<< "$plan"

mkdir -p "$cache/logs"

steps() {  # name version mode module modver pkgs ldflags stubs env tmp: the build itself, in its own process
  set -euo pipefail
  local name=$1 version=$2 mode=$3 module=$4 modver=$5 pkgs=$6 ldflags=$7 stubs=$8 env=$9 tmp=${10}
  [ "$ldflags" != - ] || ldflags=""
  if [ "$env" != - ]; then
    local item
    for item in $env; do export "${item?}"; done
  fi
  local -a targets=()
  for p in $pkgs; do
    if [ "$p" = . ]; then targets+=("$module"); else targets+=("$module/$p"); fi
  done
  export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath" GOBIN="$tmp/bin"
  mkdir -p "$tmp/bin"
  case $mode in
    install)
      local -a args=()
      for t in "${targets[@]}"; do args+=("$t@$modver"); done
      "$GO" install -ldflags "$ldflags" "${args[@]}"
      ;;
    wrapper|kubernetes|main)
      # A throwaway module that requires the upstream one at exactly its release, so upstream's
      # go.mod decides every dependency as with go install. Used where go install refuses the
      # module (replace directives) or the proxy answers only for the module path itself.
      # Upstream's local replaces become the published submodules of the same release; its
      # other replaces are copied.
      # Kubernetes requires its staging modules at the placeholder v0.0.0: in "kubernetes" mode
      # each local replace becomes that module at v0.<minor>.<patch> of the release.
      # "main" mode: the module has no main package to install; a generated main calls
      # <module>/<pkgs>.Main(os.Args), and the binary is named after the tool.
      local w="$tmp/wrapper" gomod staging=""
      [ "$mode" != kubernetes ] || staging=$(echo "$modver" | sed -E 's/^v[0-9]+\./v0./')
      mkdir -p "$w"; cd "$w"
      if [ "$mode" = main ]; then
        "$GO" mod init "football-monitoring.invalid/$name" >/dev/null 2>&1
        printf 'package main\n\nimport (\n\t"os"\n\n\t"%s/%s"\n)\n\nfunc main() { %s.Main(os.Args) }\n' \
          "$module" "$pkgs" "${pkgs##*/}" > main.go
        cat main.go
      else
        "$GO" mod init football-monitoring.invalid/tools-wrapper >/dev/null 2>&1
      fi
      gomod=$("$GO" mod download -json "$module@$modver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
      "$GO" mod edit -json "$gomod" | STAGING="$staging" python3 -c '
import json, os, sys
for r in json.load(sys.stdin).get("Replace") or []:
    new = r["New"]
    if new["Path"].startswith((".", "/")):
        if os.environ["STAGING"]:
            print("-replace=" + r["Old"]["Path"] + "=" + r["Old"]["Path"] + "@" + os.environ["STAGING"])
        continue  # a directory of the upstream repository: the published module of the same release is used
    old = r["Old"]["Path"] + ("@" + r["Old"]["Version"] if r["Old"].get("Version") else "")
    print("-replace=" + old + "=" + new["Path"] + "@" + new["Version"])' | xargs -r "$GO" mod edit
      if [ "$stubs" != - ]; then
        local src
        src=$("$GO" mod download -json "$module@$modver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
        cp -r "$src" "$w/upstream"; chmod -R u+w "$w/upstream"
        for d in $stubs; do
          mkdir -p "$w/upstream/$d"
          echo '<!doctype html><title>not built</title><p>Web UI not built (test build).' > "$w/upstream/$d/index.html"
        done
        "$GO" mod edit -require="$module@$modver" -replace="$module=./upstream"
      else
        "$GO" get "$module@$modver"
      fi
      if [ "$mode" = main ]; then
        "$GO" mod tidy
        "$GO" install -mod=mod -ldflags "$ldflags" .
      else
        "$GO" install -mod=mod -ldflags "$ldflags" "${targets[@]}"
      fi
      ;;
    npm)
      command -v npm >/dev/null 2>&1 || { echo "npm is needed to install $module (apt-get install npm)"; exit 1; }
      npm install --no-audit --no-fund --no-save --prefix "$tmp/npm" "$module@$modver"
      local command
      for command in $pkgs; do
        # A script beside the installed package: the tools directory links to it from elsewhere.
        printf '#!/bin/sh\nexec node "$(dirname "$(readlink -f "$0")")/../npm/node_modules/.bin/%s" "$@"\n' \
          "$command" > "$tmp/bin/$command"
        chmod +x "$tmp/bin/$command"
      done
      ;;
    local)
      local w="$tmp/wrapper"
      mkdir -p "$w"; cd "$w"
      "$GO" mod init "football-monitoring.invalid/$name" >/dev/null 2>&1
      cp "$root/$pkgs"/*.go "$w/"
      "$GO" get "$module@$modver"
      "$GO" install -mod=mod -ldflags "$ldflags" .
      ;;
    otelcol)
      # The collector builder, at the collector's release, with the components of the plan's list
      # ("kind=module" items of pkgs) and its replaces ("replace=module@version").
      "$GO" install "$module@$modver"
      local item kind path
      declare -A section=()
      for item in $pkgs; do
        kind=${item%%=*} path=${item#*=}
        case $kind in
          replace) section[replaces]+="  - ${path%@*} => ${path%@*} ${path##*@}"$'\n' ;;
          receivers|processors|exporters|extensions) section[$kind]+="  - gomod: $path $modver"$'\n' ;;
          *) echo "unknown collector manifest item $item"; exit 1 ;;
        esac
      done
      {
        printf 'dist:\n  name: otelcol\n  description: football-monitoring OpenTelemetry Collector gateway\n'
        printf '  version: %s\n  output_path: %s\n' "${version%%-*}" "$tmp/otelcol-src"
        for kind in receivers processors exporters extensions replaces; do
          [ -z "${section[$kind]:-}" ] || printf '%s:\n%s' "$kind" "${section[$kind]}"
        done
      } > "$tmp/manifest.yaml"
      cat "$tmp/manifest.yaml"
      PATH="$(dirname "$GO"):$PATH" "$tmp/bin/builder" --config "$tmp/manifest.yaml"
      mv "$tmp/otelcol-src/otelcol" "$tmp/bin/otelcol"
      rm -rf "$tmp/otelcol-src" "$tmp/bin/builder"
      ;;
  esac
  rm -rf "$tmp/wrapper"
  [ -n "$(ls -A "$tmp/bin")" ] || { echo "no binary was built"; exit 1; }
}

if [ "${1:-}" = --build-steps ]; then
  shift; steps "$@"; exit
fi

build_one() {  # name version mode module modver pkgs ldflags stubs env
  local name=$1 version=$2 module=$4 modver=$5 recipe
  recipe=$(IFS=$'\t'; printf "%s" "$*")
  [ "${9}" != - ] || recipe=${recipe%$'\t'-}
  local dest="$cache/$name-$version" log="$cache/logs/$name-$version.log" tmp start lock
  # Another checkout or CI job may be building the same tool right now: wait for it, then use
  # its result instead of building a second copy beside it.
  exec {lock}>"$cache/.lock-$name-$version"
  flock "$lock"
  if [ "$(cat "$dest/.complete" 2>/dev/null)" = "$recipe" ]; then
    echo "$name $version was built meanwhile by another run; using it" >&2
    return 0
  fi
  rm -rf "$cache/.build-$name-$version".*  # what an interrupted build left; none runs now
  tmp=$(mktemp -d "$cache/.build-$name-$version.XXXXXX")
  start=$(date +%s)
  if ! GO="$GO" "$BASH" "$0" --build-steps "$@" "$tmp" >"$log" 2>&1; then
    rm -rf "$tmp"
    local message  # one write, so two failing builds do not interleave
    message=$(
      echo "install-test-tools: building $name $version ($module@$modver) failed."
      echo "  last lines of $log:"
      tail -n 15 "$log" | sed 's/^/    /'
      echo "  fix: the version comes from components/settings/images.py; check that the Go module proxy serves it"
      echo "  (go mod download -json $module@$modver) and that $("$GO" version 2>/dev/null | cut -d' ' -f3) is new"
      echo "  enough for its go.mod, then run scripts/install-test-tools.sh again."
    )
    echo "$message" >&2
    return 1
  fi
  echo $(( $(date +%s) - start )) > "$tmp/build-seconds"
  printf '%s\n' "$recipe" > "$tmp/.complete"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  echo "built $name $version in $(cat "$dest/build-seconds") s" >&2
}

missing=()
for i in "${!names[@]}"; do
  # Complete, and built by this very recipe (module, version, flags); anything else is rebuilt.
  recipe="${names[$i]}"$'\t'"${versions[$i]}"$'\t'"${specs[$i]}"
  [ "$(cat "$cache/${names[$i]}-${versions[$i]}/.complete" 2>/dev/null)" = "$recipe" ] || missing+=("$i")
done

if [ "${#missing[@]}" -gt 0 ]; then
  [ -n "$GO" ] && "$GO" version >/dev/null 2>&1 || die "Go is needed to build the test tools (${#missing[@]} not built yet, e.g. ${names[${missing[0]}]} ${versions[${missing[0]}]}); install Go 1.26 or newer at /usr/local/go, or set GO=/path/to/go."
  echo "Building ${#missing[@]} test tools into $cache (logs in $cache/logs) ..." >&2
  started=$(date +%s)
  declare -A pids=()
  failed=0
  for i in "${missing[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || failed=1; done
    [ "$failed" = 0 ] || break
    IFS=$'\t' read -r mode module modver pkgs ldflags stubs env <<< "${specs[$i]}"
    build_one "${names[$i]}" "${versions[$i]}" "$mode" "$module" "$modver" "$pkgs" "$ldflags" "$stubs" "${env:--}" &
  done
  while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
  [ "$failed" = 0 ] || die "a test tool failed to build (see above); nothing older is used in its place."
  echo "built in $(( $(date +%s) - started )) s; cache uses $(du -sh "$cache" | cut -f1)" >&2
fi

# One directory with every tool by its plain name, per set of pins.
key=$(printf '%s\n' "$plan" | sha256sum | cut -c1-12)
bin="$cache/bin-$key"
exec {bin_lock}>"$cache/.lock-bin-$key"
flock "$bin_lock"
if [ ! -f "$bin/.complete" ]; then
  rm -rf "$bin.tmp"; mkdir -p "$bin.tmp"
  for i in "${!names[@]}"; do
    suffix=${suffixes[$i]}; [ "$suffix" != - ] || suffix=""
    for b in "$cache/${names[$i]}-${versions[$i]}/bin/"*; do
      ln -s "$b" "$bin.tmp/$(basename "$b")$suffix"
    done
  done
  touch "$bin.tmp/.complete"
  rm -rf "$bin"; mv "$bin.tmp" "$bin"
fi
[ "$print_bin_dir" = 0 ] || echo "$bin"
