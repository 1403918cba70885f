"""The HTTP face of a node: REST, health, metrics, the dashboard."""
