"""The distilled student: a multi-label sequence classifier trained on aggregated soft labels.

Deliberately empty: the submodules (``model``, ``losses``, ``export``) import torch and
transformers, and ``labelmill`` core modules must stay importable without them.
"""
