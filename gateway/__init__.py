"""In-TEE Oblivious HTTP gateway sidecar for confidential speech-to-text."""

__version__ = "0.1.0"
