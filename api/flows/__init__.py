"""The state machines (signing requests, batches) and what they use: signer identity, the audit trail, the
iAM Smart gateway, CPU pools, retries, idempotency. Import store, worker and ``signing``; never
routes or the CLI."""
