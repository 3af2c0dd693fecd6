"""``tastebud lab``: run the lab page on this machine (127.0.0.1 only)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``lab`` command to the CLI."""

    @app.command("lab")
    def lab(
        port: int = typer.Option(8765, "--port", "-p", min=1, max=65535, help="TCP port on 127.0.0.1"),
        model: Path | None = typer.Option(
            None, "--model", help="a saved model folder (or a folder of them) to show beside the built-in models"
        ),
    ) -> None:
        """Open the lab: the seed's matrix alive, an explorer of models, their evaluation.

        Works with no model given (the seed's 5 x 5 example and the synthetic data set); MovieLens
        100K appears too when $TASTEBUD_DATA points at a folder holding ml-100k/.
        """
        try:
            import uvicorn

            from tastebud.lab.routes import create_lab_app
        except ImportError as exc:
            typer.echo(f"error: the lab needs the serve extra (pip install tastebud[serve]): {exc}", err=True)
            raise typer.Exit(2) from None
        from tastebud.core.errors import TastebudError

        try:
            application = create_lab_app(None if model is None else str(model))
        except TastebudError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"tastebud lab on http://127.0.0.1:{port}/  (Ctrl+C to stop)")
        uvicorn.run(application, host="127.0.0.1", port=port, log_level="warning")
