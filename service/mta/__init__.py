"""What a mail transfer agent's hook does with a verdict (the milter; `spamgate check` is in cli)."""
