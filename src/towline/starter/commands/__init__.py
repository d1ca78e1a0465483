"""towline's commands, one module per theme; each registers its commands when imported
(towline.starter.registry).

To add a command, write it in the module of its theme (or in a new module, named in
:data:`MODULES`) with ``@command(...)`` above its handler: nothing else names it.
"""

import importlib

# Imported in this order, which is the order `towline --help` lists their commands in.
MODULES = ("server", "runs", "answers", "tools", "ops", "dashboard", "schedule", "completion")

for _module in MODULES:
    importlib.import_module(f"{__name__}.{_module}")
