"""Watching the service itself: Prometheus metrics, health checks, and the two routes
that answer them (``GET /metrics``, ``GET /api/v1/health``). Low in the layers (only
``config`` below) so that ingest, the store and the dashboard can all report to it."""
