"""A run's configuration: the typed `RunConfig` and its loading from YAML (with bounded aliases) and
options."""
