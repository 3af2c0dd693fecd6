"""The lab: a web page to see recommendation at work (matrix lab, explorer, evaluation).

``router`` mounts it on any FastAPI app; ``create_lab_app()`` is the stand-alone app that
``tastebud lab`` runs.
"""

from __future__ import annotations

from tastebud.lab.routes import create_lab_app, router
from tastebud.lab.state import LabState

__all__ = ["LabState", "create_lab_app", "router"]
