"""The soak: flows under faults (see run.py)."""
