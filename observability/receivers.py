"""Receivers that record pipeline signals as observability events (connected in apps.ready)."""
