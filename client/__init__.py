"""kokaq.client: the SDK."""
