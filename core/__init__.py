"""Pulse core: settings, database, models, migrations, read-side queries, users, export."""
