"""The logging check (optional: stacks with an Elasticsearch output): Elasticsearch's cluster health."""

from __future__ import annotations

from tools.verify.checks import Context, check
from tools.verify.report import FAIL, PASS, WARN, Result


@check("elasticsearch.health", needs=("elasticsearch",))
def elasticsearch_health(ctx: Context) -> Result:
    """GET /_cluster/health (documented Elasticsearch cluster health API): green, yellow or red."""
    user, password = ctx.outputs.get("elasticsearchUser"), ctx.outputs.get("elasticsearchPassword")
    auth = (user, password) if isinstance(user, str) and isinstance(password, str) else None
    response = ctx.http.get(ctx.url("elasticsearch", "/_cluster/health?timeout=5s"), auth=auth)
    if response.status in (401, 403):
        return Result(FAIL, "elasticsearch.health", f"Elasticsearch refused the request (HTTP {response.status})",
                      action="provide elasticsearchUser/elasticsearchPassword outputs")
    health = response.json() if response.status in (200, 408) else {}
    state = health.get("status", "?")
    numbers = (f"cluster {health.get('cluster_name', '?')} {state}: {health.get('number_of_nodes', '?')} nodes, "
               f"{health.get('active_shards_percent_as_number', '?')}% shards active, "
               f"{health.get('unassigned_shards', '?')} unassigned")
    if response.status not in (200, 408):
        return Result(FAIL, "elasticsearch.health", f"HTTP {response.status} from /_cluster/health",
                      action="check the Elasticsearch pods and logs")
    if state == "green":
        return Result(PASS, "elasticsearch.health", numbers)
    if state == "yellow":
        return Result(WARN, "elasticsearch.health", numbers,
                      action="replica shards are unassigned: GET /_cluster/allocation/explain")
    return Result(FAIL, "elasticsearch.health", numbers,
                  action="primary shards are unassigned: GET /_cluster/allocation/explain and the node logs")
