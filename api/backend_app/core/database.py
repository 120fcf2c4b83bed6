"""Kept for existing importers (every domain's models.py, Alembic): Base, its mixins and the
engine factory are `backend_app.db.base`."""

from __future__ import annotations

from backend_app.db.base import NAMING_CONVENTION, Base, CreatedAtMixin, create_engine

__all__ = ["NAMING_CONVENTION", "Base", "CreatedAtMixin", "create_engine"]
