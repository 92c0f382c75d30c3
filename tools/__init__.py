"""Tools a person runs: the offline runner, render, verify."""
