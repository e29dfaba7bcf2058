"""automl's built-in method plugins. Each subpackage is a plugin module using only the public hooks."""
