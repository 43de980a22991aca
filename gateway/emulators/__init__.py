"""Loopback doubles of the Azure services the gateway talks to.

Each emulator speaks the real wire protocol of its service and verifies its inputs the way the
service does, so the gateway's real clients (and Azure's own SDKs) can be exercised end to end
without Azure. They bind only to loopback and serve HTTPS with a locally generated CA, except the
IMDS double, which is plain HTTP like the real link-local IMDS. They are for development and tests
only: nothing here is trusted by a production configuration.
"""
