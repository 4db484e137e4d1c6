"""Ingestion: the connector contract, normalisation, the sync runner and the sources."""
