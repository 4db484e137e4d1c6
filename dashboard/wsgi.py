"""WSGI entry point for production: ``gunicorn -w 4 -b 0.0.0.0:8050 dashboard.wsgi:server``.

The web process only reads; run ``python app.py worker`` separately (one process) for ingestion.
"""

from core.db import create_db_engine, migrate
from core.settings import Settings
from dashboard.app import create_app

settings = Settings()
engine = create_db_engine(settings.resolved_database_url)
migrate(engine)
server = create_app(settings, engine).server
