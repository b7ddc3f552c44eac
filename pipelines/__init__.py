"""Ray Data jobs: thin edges around the pure `labelmill` core."""
