"""Sphinx configuration: the provider's guide (Markdown, through MyST) and its API reference (autodoc).

Build with ``make docs`` (warnings are errors). Autodoc imports the package, hence Airflow: an
AIRFLOW_HOME under build/ keeps that import from writing ``~/airflow``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "build" / "docs-airflow-home"))

import airflow_provider_smartmca  # noqa: E402
from airflow_provider_smartmca.get_provider_info import get_provider_info  # noqa: E402

project = "airflow-provider-smartmca"
author = "airflow-provider-smartmca maintainers"
copyright = "airflow-provider-smartmca maintainers"
release = version = airflow_provider_smartmca.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_default_options = {"show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
# Airflow's own classes are documented elsewhere; their members must not be pulled in here.
autodoc_inherit_docstrings = False

html_theme = "alabaster"
html_title = f"{project} {release}"
html_theme_options = {"description": "Apache Airflow provider for the SmartMCA API", "fixed_sidebar": True}


class ConnectionFieldsDirective(SphinxDirective):
    """``.. smartmca-connection-fields::``: the connection's fields, read from ``get_provider_info()``.

    The table comes from the metadata the Airflow UI builds its form from, so the two cannot drift.
    """

    def run(self) -> list[nodes.Node]:
        (conn_type,) = get_provider_info()["connection-types"]
        behaviour = conn_type["ui-field-behaviour"]
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - Field",
            "     - Type and default",
            "     - Meaning",
        ]
        for field, label in behaviour["relabeling"].items():
            placeholder = behaviour["placeholders"].get(field, "")
            lines += [f"   * - ``{field}`` ({label})", "     - text", f"     - e.g. ``{placeholder}``"]
        for name, spec in conn_type["conn-fields"].items():
            schema = spec["schema"]
            kind = " or ".join(t for t in schema["type"] if t != "null")
            default = f", default ``{json.dumps(schema['default'])}``" if "default" in schema else ""
            lines += [
                f"   * - extra ``{name}`` ({spec['label']})",
                f"     - {kind}{default}",
                f"     - {spec['description']}",
            ]
        lines += [
            "",
            "Hidden in the form: " + ", ".join(f"``{f}``" for f in behaviour["hidden-fields"]) + ".",
        ]
        return self.parse_text_to_nodes("\n".join(lines))


class CommandHelpDirective(SphinxDirective):
    """``.. smartmca-command-help:: module:function``: a console script's ``--help``, as it prints it."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module, _, function = self.arguments[0].partition(":")
        main = getattr(importlib.import_module(module), function)
        out = io.StringIO()
        columns = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal's width; a page has none
        try:
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                main(["--help"])
        finally:
            if columns is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = columns
        block = nodes.literal_block(text=out.getvalue().rstrip())
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> dict[str, bool]:
    app.add_directive("smartmca-connection-fields", ConnectionFieldsDirective)
    app.add_directive("smartmca-command-help", CommandHelpDirective)
    return {"parallel_read_safe": True}
