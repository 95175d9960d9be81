"""The public status page: what customers see, built only from published updates."""
