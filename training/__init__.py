"""Offline training: corpus readers, splits, fitting, calibration, evaluation."""
