"""Ray edges (installed as ``labelmill.pipelines``): the CLI and the Ray Data / Ray Train jobs,
thin maps of the pure ``labelmill`` core over datasets."""
