"""Persistence: table models, the database engine and migrations, documents on disk, uploads, secrets and
API keys. Imports only ``signing`` and the settings."""
