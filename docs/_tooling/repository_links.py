"""MkDocs hook: a link from a page to a file of the repository outside docs/ points to the repository.

The pages link to ``../policies`` or ``../examples/demo.py`` so that they read well in
a checkout and on the forge; on the site those files do not exist, so such a link is
rewritten to the file's page under ``repo_url``. A link to a path that exists nowhere
is left alone, and the strict build reports it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    docs = Path(config["docs_dir"]).resolve()
    root = docs.parent
    here = (docs / page.file.src_uri).parent
    repository = str(config["repo_url"]).rstrip("/")

    def rewrite(match: re.Match[str]) -> str:
        target = match.group("target")
        if "://" in target or target.startswith(("/", "mailto:")):
            return match.group(0)
        path = (here / target).resolve()
        if path.is_relative_to(docs) or not path.is_relative_to(root) or not path.exists():
            return match.group(0)
        kind = "tree" if path.is_dir() else "blob"
        return f"]({repository}/{kind}/main/{path.relative_to(root).as_posix()}{match.group('anchor') or ''})"

    return LINK.sub(rewrite, markdown)
