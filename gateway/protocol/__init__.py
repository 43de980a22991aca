"""Sans-I/O protocol core: Binary HTTP, key configs, OHTTP, chunked OHTTP, the Azure profile.

Bytes in, bytes out. Nothing here imports asyncio, sockets, logging or os; tests/test_layering.py
enforces it.
"""
