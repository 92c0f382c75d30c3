"""football-monitoring: the FootballPrediction monitoring system as Pulumi components."""
