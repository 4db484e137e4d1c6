"""Pages registered with dash.register_page; Dash imports every module here."""
