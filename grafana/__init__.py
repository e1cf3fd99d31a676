"""The Grafana dashboard over regwatch's Prometheus series (``regwatch.json``, built by ``dashboard``)."""
