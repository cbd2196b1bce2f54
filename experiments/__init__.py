"""The lab: the CPU protocol's ablation heads, models and grids, outside the installed package (README.md here).

Importing it registers the ablation heads with the plugin (experiments.heads), so their YAMLs parse and the
checkpoints kept before the lab moved out of the package load again.
"""

from . import heads  # noqa: F401
