"""From a plain request to a plain verdict: the engine, the policy applied to a score, the scoring workers."""
