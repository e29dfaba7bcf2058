"""automl's terminal dashboard (import name ``automl_tui``)."""
