"""The notebook UI: ipywidgets and plotly over the core. Import only in a notebook."""

from .panel import Workbench

__all__ = ["Workbench"]
