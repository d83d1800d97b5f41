"""Alembic migration history for the marketplace database."""
