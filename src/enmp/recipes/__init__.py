"""The paper's two settings: their data (`settings`), the recipe YAMLs rendered from it (`render`), and the
KnOTS pickled-head converter (`heads`). Each changes for its own reason; this module only re-exports."""

from .heads import convert_heads, read_heads
from .render import recipe_dict, recipe_name, render_recipe, write_recipes
from .settings import (METHODS, NLP, PAPER_SEARCH, SETTINGS, SETTINGS_BY_NAME, VISION, RecipeTask, Setting,
                       task_info)

__all__ = ["METHODS", "NLP", "PAPER_SEARCH", "SETTINGS", "SETTINGS_BY_NAME", "VISION", "RecipeTask", "Setting",
           "convert_heads", "read_heads", "recipe_dict", "recipe_name", "render_recipe", "task_info",
           "write_recipes"]
