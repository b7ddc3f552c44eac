"""Ray Serve edge (installed as ``labelmill.serve``): the student endpoint with its cascade to a
teacher. ``app.build_app`` is the application builder; ``local`` runs it for ``labelmill serve``."""
