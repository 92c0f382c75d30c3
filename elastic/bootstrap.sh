#!/bin/sh
# Applies the logging stack's configuration to Elasticsearch and Kibana: roles and users,
# the snapshot repository and snapshot lifecycle policy (when snapshots are on), the index
# lifecycle policy, the index template of the log data stream, and Kibana's data view,
# saved search, visualization and dashboard. Every call replaces the whole object (PUT, or an
# import with overwrite), so a second run changes nothing. The Job that runs this script is
# named after the hash of its inputs: changed policies run it again, unchanged ones never.
# Credentials come from files mounted from a Kubernetes Secret and reach curl on stdin
# (--config -), never on its command line.
set -eu
POLICIES=/etc/logging-bootstrap/policies
SECRETS=/etc/logging-bootstrap/secrets
CA="$SECRETS/ca.crt"

credentials() {
  printf 'user = "elastic:%s"\n' "$(cat "$SECRETS/elastic-password")"
}

# es METHOD PATH [BODY_FILE]: one Elasticsearch API call; fails on an HTTP error, with the answer.
es() {
  credentials | curl --silent --show-error --fail-with-body --config - --cacert "$CA" \
    --request "$1" --header 'Content-Type: application/json' \
    ${3:+--data-binary "@$3"} "$ELASTICSEARCH_URL$2"
  echo
}

echo "waiting for Elasticsearch at $ELASTICSEARCH_URL"
until credentials | curl --silent --fail --output /dev/null --config - --cacert "$CA" \
    "$ELASTICSEARCH_URL/_cluster/health?wait_for_status=yellow&timeout=10s"; do
  sleep 10
done

for file in "$POLICIES"/role-*.json; do
  role=$(basename "$file" .json)
  es PUT "/_security/role/${role#role-}" "$file"
done

# user NAME ROLE PASSWORD_FILE: the user with its generated password (set again on every run).
user() {
  umask 077
  printf '{"password":"%s","roles":["%s"],"metadata":{"managed_by":"football-monitoring"}}' \
    "$(cat "$SECRETS/$3")" "$2" > /tmp/user.json
  es PUT "/_security/user/$1" /tmp/user.json
  rm -f /tmp/user.json
}
user fm-logstash fm_logstash_writer logstash-password
user fm-exporter fm_metrics_reader exporter-password
user fm-grafana fm_logs_reader grafana-password
if [ -f "$SECRETS/jaeger-password" ]; then
  # Tracing keeps its spans in this Elasticsearch (tracing.storage elasticsearch).
  user fm-jaeger fm_jaeger_writer jaeger-password
fi

if [ -f "$POLICIES/snapshot-repository.json" ]; then
  # The S3 keys sit in each node's keystore; make the running nodes read them.
  es POST /_nodes/reload_secure_settings
  es PUT /_snapshot/football-logs "$POLICIES/snapshot-repository.json"
  es PUT /_slm/policy/football-logs-nightly "$POLICIES/slm-policy.json"
fi
es PUT /_ilm/policy/football-logs "$POLICIES/ilm-policy.json"
es PUT /_index_template/logs-football "$POLICIES/index-template.json"

echo "waiting for Kibana at $KIBANA_URL"
until credentials | curl --silent --fail --output /dev/null --config - "$KIBANA_URL/api/status"; do
  sleep 10
done
credentials | curl --silent --show-error --fail-with-body --config - --request POST \
  --header 'kbn-xsrf: football-monitoring' --form "file=@$POLICIES/kibana-objects.ndjson" \
  "$KIBANA_URL/api/saved_objects/_import?overwrite=true" > /tmp/import.json
cat /tmp/import.json; echo
grep -q '"success":true' /tmp/import.json
credentials | curl --silent --show-error --fail-with-body --config - --request POST \
  --header 'kbn-xsrf: football-monitoring' --header 'Content-Type: application/json' \
  --data '{"data_view_id":"football-logs","force":true}' "$KIBANA_URL/api/data_views/default"
echo
echo "logging bootstrap done"
