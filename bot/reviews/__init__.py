"""Post-incident reviews: an incident's facts (facts.py) drafted as Markdown (draft.py)."""
