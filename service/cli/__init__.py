"""The `spamgate` command; the only service code that imports `training`."""
