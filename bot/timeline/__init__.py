"""What happened to an incident (timeline events) and how each output hears of it."""
