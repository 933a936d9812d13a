"""The serving process: configuration, worker processes, logs, Prometheus metrics."""
