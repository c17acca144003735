"""MkDocs hooks of the enmp docs.

- docs/ goes on sys.path so that mkdocs-click can import the CLI helper `_cli` (reference/cli.md).
- The API reference must document exactly `enmp.api.__all__`: a public name without a `::: enmp.api.NAME`
  block, or a block for a name that is no longer public, is a warning, so `mkdocs build --strict` fails on a
  stale API page (mkdocstrings itself fails on a name that no longer exists).
"""

import logging
import re
import sys
from pathlib import Path

DOCS = str(Path(__file__).resolve().parent)
API_PAGE = "reference/api.md"
log = logging.getLogger("mkdocs.hooks.enmp")


def on_config(config):
    if DOCS not in sys.path:
        sys.path.insert(0, DOCS)
    return config


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == API_PAGE:
        from enmp import api

        documented = set(re.findall(r"^::: enmp\.api\.(\w+)\s*$", markdown, re.M))
        public = set(api.__all__)
        if public - documented:
            log.warning(f"{API_PAGE}: public names of enmp.api not documented: {', '.join(sorted(public - documented))}")
        if documented - public:
            log.warning(f"{API_PAGE}: documents names not in enmp.api.__all__: {', '.join(sorted(documented - public))}")
    return markdown
