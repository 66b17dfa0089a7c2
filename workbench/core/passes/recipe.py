"""Recipes: an ordered list of passes with options, parsed from a CLI list or saved as JSON.

CLI grammar: ``PASS[:KEY=VALUE[:KEY=VALUE...]][,PASS...]``; list values are joined with ``+``.
Example: ``fuse,int8:calibration=entropy:exclude=conv1+fc,prune-channels:ratio=0.3``. A colon
starts an option only when ``KEY=`` follows it, so ``prune-2:4`` is a pass name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import UsageError

__all__ = ["PassSpec", "Recipe", "RECIPE_VERSION"]

RECIPE_VERSION = 1


@dataclass(frozen=True)
class PassSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"pass": self.name, "options": dict(sorted(self.options.items()))}

    def label(self) -> str:
        if not self.options:
            return self.name
        opts = ":".join(f"{k}={'+'.join(map(str, v)) if isinstance(v, list) else v}"
                        for k, v in sorted(self.options.items()))
        return f"{self.name}:{opts}"


@dataclass(frozen=True)
class Recipe:
    passes: tuple[PassSpec, ...]

    @classmethod
    def parse(cls, text: str) -> Recipe:
        """Parse the CLI form, checking pass names and options against the registry."""
        specs = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                raise UsageError(f"empty pass in {text!r}", "separate passes with single commas")
            # Split only at colons that start KEY=VALUE, so pass names may contain ':' (prune-2:4).
            name, *opts = re.split(r":(?=[A-Za-z_][\w-]*=)", part)
            if ":" in name:
                from .registry import all_passes  # noqa: PLC0415

                base, rest = name.split(":", 1)
                if name not in all_passes() and base in all_passes():
                    raise UsageError(f"option {rest!r} of pass {base!r} has no value",
                                     "write options as PASS:KEY=VALUE")
            options: dict[str, Any] = {}
            for o in opts:
                if "=" not in o:
                    raise UsageError(f"option {o!r} of pass {name!r} has no value",
                                     "write options as PASS:KEY=VALUE")
                k, v = o.split("=", 1)
                options[k.strip().replace("-", "_")] = v.strip()
            specs.append(PassSpec(name.strip(), options))
        recipe = cls(tuple(specs))
        recipe.instantiate()  # validate now, with clear errors
        return recipe

    def instantiate(self) -> list[Any]:
        from .registry import get_pass  # noqa: PLC0415  (the registry imports the passes)

        return [get_pass(s.name)(**s.options) for s in self.passes]

    def resolved(self) -> Recipe:
        """The same recipe with every option spelled out (defaults included), typed."""
        return Recipe(tuple(PassSpec(s.name, dict(p.opts)) for s, p in zip(self.passes, self.instantiate())))

    def preview(self) -> Recipe | None:
        """The recipe with each pass's ``preview`` options: same graph structure, built faster
        (e.g. channels cut without the reconstruction); None when no pass has a faster way."""
        changed, specs = False, []
        for s, p in zip(self.passes, self.instantiate()):
            quick = p.preview()
            changed |= bool(quick)
            specs.append(PassSpec(s.name, {**s.options, **(quick or {})}))
        return Recipe(tuple(specs)) if changed else None

    def to_dict(self) -> dict[str, Any]:
        return {"version": RECIPE_VERSION, "passes": [s.to_dict() for s in self.passes]}

    def label(self) -> str:
        return ",".join(s.label() for s in self.passes) or "baseline"

    def short_label(self) -> str:
        """Passes and only the options that differ from their defaults, for people:
        ``int8``, ``int8 (entropy)``, ``prune-channels (ratio 0.5) + int8``. The full recipe is
        :meth:`label` (``resolved().label()`` with every default spelled out)."""
        from .registry import get_pass  # noqa: PLC0415

        parts = []
        for s, p in zip(self.passes, self.instantiate()):
            defaults = {o.name: o for o in get_pass(s.name).options}
            shown = []
            for k in s.options:
                o = defaults.get(k)
                v = p.opts.get(k)
                if o is None or v == o.coerce(o.default, s.name):
                    continue
                shown.append(_short_value(k, v))
            parts.append(f"{s.name} ({', '.join(shown)})" if shown else s.name)
        return " + ".join(parts) or "baseline"

    @classmethod
    def from_dict(cls, d: Any, source: str = "recipe") -> Recipe:
        if not isinstance(d, dict) or not isinstance(d.get("passes"), list):
            raise UsageError(f"{source} is not a recipe", 'a recipe is {"version": 1, "passes": [...]}')
        if d.get("version", RECIPE_VERSION) != RECIPE_VERSION:
            raise UsageError(f"{source} has recipe version {d.get('version')!r}",
                             f"this workbench reads version {RECIPE_VERSION}")
        specs = []
        for i, p in enumerate(d["passes"]):
            if not isinstance(p, dict) or not isinstance(p.get("pass"), str):
                raise UsageError(f"{source}: entry {i} is not a pass", 'write {"pass": NAME, "options": {...}}')
            opts = p.get("options", {})
            if not isinstance(opts, dict):
                raise UsageError(f"{source}: options of {p['pass']!r} are not an object")
            specs.append(PassSpec(p["pass"], dict(opts)))
        recipe = cls(tuple(specs))
        recipe.instantiate()
        return recipe

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError as e:
            raise UsageError(f"no such recipe file: {path}") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"{path} is not valid JSON: {e}", "a recipe is a JSON file") from e
        return cls.from_dict(data, str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


def _short_value(key: str, value: Any) -> str:
    """``entropy`` for a word, ``ratio 0.5`` for a number, ``per_channel off`` for a flag,
    ``exclude 2 nodes`` for a list."""
    if isinstance(value, bool):
        return f"{key} {'on' if value else 'off'}"
    if isinstance(value, (list, tuple)):
        return f"{key} {value[0]}" if len(value) == 1 else f"{key} {len(value)} items"
    if isinstance(value, (int, float)):
        return f"{key} {value:g}"
    return str(value) if key == "calibration" else f"{key} {value}"
