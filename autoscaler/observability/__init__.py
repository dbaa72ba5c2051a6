"""Telling people what the controller does: Events, the status annotation, the decision log, the
`/metrics` registry, the health endpoints and the log format."""
