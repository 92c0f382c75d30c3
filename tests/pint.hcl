# pint's configuration for tests/test_pint.py: its own checks run as shipped, and these rules add
# what every alert of this stack must carry for routing (severity, team) and for the person paged
# (summary, description, and a runbook in this repository).
rule {
  match {
    kind = "alerting"
  }
  label "severity" {
    severity = "bug"
    value    = "(critical|warning|info)"
    required = true
  }
  label "team" {
    severity = "bug"
    required = true
  }
  annotation "summary" {
    severity = "bug"
    required = true
  }
  annotation "description" {
    severity = "bug"
    required = true
  }
  annotation "runbook_url" {
    severity = "bug"
    value    = "https://github.com/football-prediction/football-monitoring/blob/main/docs/runbooks/[A-Za-z0-9]+[.]md"
    required = true
  }
}
