"""Serving: FastAPI app, event store, model registry on disk, hybrid policy.

``tastebud serve --model DIR --port N`` or ``create_app(DIR)``; see docs/serving.md.
"""
