"""The server layer: the ASGI gateway, forwarding to the upstream, limits, health, metrics."""
