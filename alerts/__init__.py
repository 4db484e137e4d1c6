"""Alerts: spike detection, alert lifecycle, email outbox and daily digest (to come)."""
