"""Generators for the Helm chart: values.schema.json and the README values table."""
