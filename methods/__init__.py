"""Every few-step method as a loss over one FlowMap. ``METHODS`` maps registry names to classes.

Each module in this package defines one method and registers it with ``@register(name)``; the
package imports them all, so adding a method is adding one file. A method's docstring states its
equation, source, kept defaults and deviations; design notes, derivations, translations and
measurements are in docs/methods.md.
"""

import importlib
import pkgutil

from methods.base import METHODS, Method, NotApplicable, build_config, register

_SKIP = {"base", "common"}
for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in _SKIP and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["METHODS", "Method", "NotApplicable", "build_config", "register"]
