"""The admin's policy: thresholds, presets, allow and block lists, per-domain sections, hot reload."""
