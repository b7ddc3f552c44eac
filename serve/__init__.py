"""Ray Serve app for the student classifier (later issue)."""
