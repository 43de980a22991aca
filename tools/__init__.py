"""Gateway-independent project tools: chart docs and schema, SBOM signing."""
