"""arXiv search for the agent's `search_arxiv` tool: the Atom API over httpx, parsed to plain dicts; any failure
becomes a short note, never an exception (research goes on offline).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

ARXIV_URL_ENV = "AUTORESEARCH_ARXIV_URL"
DEFAULT_ARXIV_URL = "https://export.arxiv.org/api/query"
"""The arXiv API; `$AUTORESEARCH_ARXIV_URL` (read at each search, not at import) points it at a mirror."""


async def search_arxiv(query: str, max_results: int, url: str | None = None, timeout_s: float = 8.0) -> dict[str, Any]:
    """Query the arXiv Atom API over httpx; any failure becomes a short note, never an exception."""
    import httpx

    params = {"search_query": f"all:{query}", "start": 0, "max_results": max_results}
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(url or os.environ.get(ARXIV_URL_ENV, DEFAULT_ARXIV_URL), params=params)
            response.raise_for_status()
        return {"papers": parse_arxiv(response.text)}
    except Exception as exc:
        return {"papers": [], "note": f"arXiv is not reachable ({type(exc).__name__}); plan from what you know."}


def parse_arxiv(feed: str) -> list[dict[str, Any]]:
    """The entries of an arXiv Atom feed as small dicts."""
    ns = {"a": "http://www.w3.org/2005/Atom"}
    papers = []
    for entry in ET.fromstring(feed).findall("a:entry", ns):

        def text(tag: str, node: ET.Element = entry) -> str:
            found = node.find(tag, ns)
            return " ".join((found.text or "").split()) if found is not None else ""

        authors = [text("a:name", a) for a in entry.findall("a:author", ns)]
        papers.append(
            {
                "title": text("a:title"),
                "authors": authors[:5],
                "year": text("a:published")[:4],
                "summary": text("a:summary")[:600],
                "url": text("a:id"),
            }
        )
    return papers
