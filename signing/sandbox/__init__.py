"""The simulated iAM Smart+: its PKI, users, remote signer and state machine (no web framework)."""
