"""Turns ExampleValidator anomalies into a readable report and a hard stop."""
