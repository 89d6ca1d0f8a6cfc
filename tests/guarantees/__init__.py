"""What docs/reliability.md and docs/security.md promise, each fault injected with real processes:
exactly-once accounting, worker deaths, outages, stranded batches, retry timing, the import policy."""
