"""The local cloud: the whole system on one machine, from template.yaml (docs/local-cloud.md)."""
