"""The passes as toggles: each with its main options beside it and the rest behind "advanced"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as W

from ..core.passes.base import Option
from ..core.passes.recipe import PassSpec, Recipe
from ..core.passes.registry import all_passes
from ..errors import WorkbenchError

__all__ = ["PassRows", "MAIN_OPTIONS"]

MAIN_OPTIONS = 2  # options shown beside a pass's toggle; the others fold under "advanced"


def _option_widget(o: Option) -> W.Widget:
    style = {"description_width": "initial"}
    layout = W.Layout(width="auto")
    if o.choices:
        return W.Dropdown(options=list(o.choices), value=o.default, description=o.name, style=style,
                          layout=layout, tooltip=o.help)
    if o.type is bool and o.default is None:  # tri-state: None lets the pass decide
        return W.Dropdown(options=[("auto", None), ("true", True), ("false", False)], value=None,
                          description=o.name, style=style, layout=layout, tooltip=o.help)
    if o.type is bool:
        return W.Checkbox(value=bool(o.default), description=o.name, indent=False, tooltip=o.help,
                          layout=layout)
    if o.type is int:
        return W.IntText(value=o.default, description=o.name, style=style, layout=W.Layout(width="150px"))
    if o.type is float:
        return W.FloatText(value=o.default, description=o.name, style=style, layout=W.Layout(width="160px"))
    value = "+".join(o.default) if isinstance(o.default, list) else ("" if o.default is None else str(o.default))
    return W.Text(value=value, description=o.name, placeholder="a+b" if o.type is list else "",
                  style=style, layout=W.Layout(width="260px"))


class PassRows:
    """One row per registered pass; ``on_change`` is called on every toggle or option change."""

    def __init__(self, on_change: Callable[[dict], None]) -> None:
        self.widgets: dict[str, tuple[W.ToggleButton, dict[str, W.Widget]]] = {}
        self.rows: list[W.Widget] = []
        self.advanced: dict[str, tuple[W.ToggleButton, W.HBox]] = {}  # pass -> its button and row
        for name, cls in all_passes().items():
            t = W.ToggleButton(description=name, value=False, tooltip=cls.summary,
                               layout=W.Layout(width="146px", min_width="146px"))
            opts = {o.name: _option_widget(o) for o in cls.options}
            t.observe(on_change, names="value")
            for w in opts.values():
                w.observe(on_change, names="value")
            self.widgets[name] = (t, opts)
            main, rest = list(opts.values())[:MAIN_OPTIONS], list(opts.values())[MAIN_OPTIONS:]
            line = [t, W.HBox(main, layout=W.Layout(flex_flow="row wrap", flex="1"))]
            box: list[W.Widget] = []
            if rest:  # the rest folded away: a user toggles a pass and perhaps its main options
                more = W.HBox(rest, layout=W.Layout(flex_flow="row wrap", display="none",
                                                    margin="0 0 4px 150px"))
                btn = W.ToggleButton(value=False, description=f"advanced ({len(rest)})", icon="sliders",
                                     tooltip="the pass's other options", layout=W.Layout(width="auto",
                                                                                       flex="0 0 auto"))
                btn.observe(lambda ch, more=more: setattr(more.layout, "display", "" if ch["new"] else "none"),
                            names="value")
                line.append(btn)
                box.append(more)
                self.advanced[name] = (btn, more)
            self.rows.append(W.VBox([W.HBox(line, layout=W.Layout(align_items="center")), *box]))

    def enable(self, name: str, **options: Any) -> None:
        """Turn a pass on, with options (as the CLI spells them)."""
        if name not in self.widgets:
            raise WorkbenchError(f"unknown pass {name!r}", f"passes are: {', '.join(self.widgets)}")
        toggle, widgets = self.widgets[name]
        for k, v in options.items():
            if k not in widgets:
                raise WorkbenchError(f"{name}: unknown option {k!r}", f"options are: {', '.join(widgets)}")
            widgets[k].value = "+".join(v) if isinstance(v, list) else v
        toggle.value = True

    def disable(self, name: str) -> None:
        self.widgets[name][0].value = False

    @property
    def recipe(self) -> Recipe:
        specs = []
        for name, (toggle, widgets) in self.widgets.items():
            if toggle.value:
                opts = {k: w.value for k, w in widgets.items()
                        if w.value is not None and not (isinstance(w, W.Text) and w.value == "")}
                specs.append(PassSpec(name, opts))
        return Recipe(tuple(specs))
