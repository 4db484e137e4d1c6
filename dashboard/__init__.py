"""The Dash dashboard: app factory, pages, figure builders."""
