"""The catalog of models from the field reports (shared/seeds): their published
config.json, parameter counts and weight sizes, and the sm_121 caveats that
become plan warnings. Lets `inspect` and `plan` work offline for these models."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

from pydantic import BaseModel, Field

from sparkstack.modelfacts.quant_formats import BITS_PER_WEIGHT


class Recipe(BaseModel):
    """A known-good serving recipe from the field reports for one engine: flags,
    environment and image, applied unless the stack overrides them."""

    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    options: dict[str, object] = Field(default_factory=dict)
    """TensorRT-LLM: extra LLM API options (the --extra_llm_api_options YAML)."""
    source: str
    """Where the recipe comes from (a seed report and what it validated)."""

    def flags(self) -> list[list[str]]:
        """``args`` grouped as one flag and its values each (a value never starts with -)."""
        groups: list[list[str]] = []
        for arg in self.args:
            if arg.startswith("-") or not groups:
                groups.append([arg])
            else:
                groups[-1].append(arg)
        return groups


class CatalogEntry(BaseModel):
    id: str
    config: dict[str, object]
    total_params: int
    active_params: int
    weight_params_by_format: dict[str, int] = Field(default_factory=dict)
    """Parameters stored in each format; the rest are in ``rest_format``."""
    rest_format: str = "BF16"
    weight_bytes_by_format: dict[str, int] = Field(default_factory=dict)
    """Published sizes, used as they are when given."""
    source: str
    warnings: list[str] = Field(default_factory=list)
    recipes: dict[str, Recipe] = Field(default_factory=dict)
    """Serving recipe by engine name."""

    def bytes_by_format(self) -> dict[str, int]:
        if self.weight_bytes_by_format:
            return dict(self.weight_bytes_by_format)
        out = {
            fmt: int(params * BITS_PER_WEIGHT[fmt] / 8)
            for fmt, params in self.weight_params_by_format.items()
        }
        rest = self.total_params - sum(self.weight_params_by_format.values())
        out[self.rest_format] = out.get(self.rest_format, 0) + int(
            rest * BITS_PER_WEIGHT[self.rest_format] / 8
        )
        return out


@cache
def catalog() -> dict[str, CatalogEntry]:
    folder = files("sparkstack.modelfacts").joinpath("catalog")
    entries = {}
    for item in folder.iterdir():
        if item.name.endswith(".json"):
            entry = CatalogEntry.model_validate(json.loads(item.read_text(encoding="utf-8")))
            entries[entry.id.lower()] = entry
    return entries


def find(model_id: str) -> CatalogEntry | None:
    return catalog().get(model_id.lower())


def find_recipe(model_id: str, engine: str) -> Recipe | None:
    entry = find(model_id)
    return entry.recipes.get(engine) if entry else None
