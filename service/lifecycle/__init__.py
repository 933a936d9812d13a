"""Models and reports over time: versions on disk, shipping, the feedback store."""
