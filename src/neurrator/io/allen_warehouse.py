"""The Allen Institute warehouse's "well known file" lookup for stimulus templates (movies and scenes).

AllenSDK's ``EcephysProjectWarehouseApi`` lists the Visual Coding Neuropixels stimulus templates with
one RMA query on ``api/v2/data/query.json``: the ``WellKnownFile`` records of type ``Stimulus``
attached to the ecephys product (id 714914585), fetched in pages (``rma::options[start_row$eq..]
[num_rows$eq..][order$eq'id']``) until ``total_rows`` are read. A record's ``path`` names the template
(``.../natural_movie_<n>.npy`` for movies, ``.../<n>.tiff`` for natural scenes) and its
``download_link`` (``/api/v2/well_known_file_download/<id>``) is the download, relative to the
warehouse. This module does that lookup with the standard library only (so no AllenSDK dependency);
the warehouse base URL is ``$NEURRATOR_ALLEN_API_URL`` or http://api.brain-map.org.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from urllib.parse import quote

from neurrator.errors import NeurratorError
from neurrator.io.httpfile import DEFAULT_TIMEOUT_S, timeout_message

__all__ = [
    "DEFAULT_WAREHOUSE",
    "ECEPHYS_PRODUCT_ID",
    "list_stimulus_templates",
    "movie_download_url",
    "scene_download_urls",
    "stimulus_templates_query",
    "warehouse_url",
]

DEFAULT_WAREHOUSE = "http://api.brain-map.org"
#: The Visual Coding Neuropixels product whose stimulus templates AllenSDK lists.
ECEPHYS_PRODUCT_ID = 714914585

_MOVIE_RE = re.compile(r".*natural_movie_(?P<num>\d+)\.npy$")
_SCENE_RE = re.compile(r".*/(?P<num>\d+)\.tiff$")


def warehouse_url(api_url: str | None = None) -> str:
    """The warehouse base URL: ``api_url``, else ``$NEURRATOR_ALLEN_API_URL``, else api.brain-map.org."""
    return (api_url or os.environ.get("NEURRATOR_ALLEN_API_URL") or DEFAULT_WAREHOUSE).rstrip("/")


def stimulus_templates_query(product_id: int = ECEPHYS_PRODUCT_ID) -> str:
    """The RMA criteria of the stimulus-template records (AllenSDK's ``_list_stimulus_templates``).

    Examples
    --------
    >>> stimulus_templates_query(1)
    "criteria=model::WellKnownFile,rma::criteria,well_known_file_type[name$eq'Stimulus'][attachable_type$eq'Product'][attachable_id$eq1]"
    """
    return ("criteria=model::WellKnownFile,rma::criteria,well_known_file_type[name$eq'Stimulus']"
            f"[attachable_type$eq'Product'][attachable_id$eq{int(product_id)}]")


def _get_json(url: str, *, timeout: float) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, TimeoutError):
            raise NeurratorError(url.split("?")[0], timeout_message(timeout, "querying the Allen warehouse")) from err
        raise NeurratorError(url.split("?")[0], f"Allen warehouse query failed: {reason}") from err


def list_stimulus_templates(
    *, api_url: str | None = None, product_id: int = ECEPHYS_PRODUCT_ID, page_size: int = 5000,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[dict]:
    """All stimulus-template records, each with ``path``, ``download_link`` (absolute) and
    ``movie_number`` / ``scene_number`` (int, or None when the path names neither).

    Raises
    ------
    NeurratorError
        The warehouse cannot be reached, answers ``success: false``, or pages do not add up.
    """
    base = warehouse_url(api_url)
    query = stimulus_templates_query(product_id)
    rows: list[dict] = []
    start, total = 0, None
    while total is None or start < total:
        paged = f"{query},rma::options[start_row$eq{start}][num_rows$eq{int(page_size)}][order$eq'id']"
        url = f"{base}/api/v2/data/query.json?{quote(paged, safe=':,=$[]()')}"
        body = _get_json(url, timeout=timeout)
        if not body.get("success", False):
            raise NeurratorError(f"{base}/api/v2/data/query.json", f"Allen warehouse query refused: {body.get('msg')}")
        msg = body.get("msg") or []
        total = int(body.get("total_rows", len(msg))) if total is None else total
        if not msg and start < total:
            raise NeurratorError(f"{base}/api/v2/data/query.json", f"warehouse returned {start} of {total} records")
        rows.extend(msg)
        start += int(body.get("num_rows", len(msg)))
    out = []
    for row in rows:
        path = str(row.get("path", ""))
        movie, scene = _MOVIE_RE.match(path), _SCENE_RE.match(path)
        link = str(row.get("download_link", ""))
        out.append({**row, "download_link": link if "://" in link else f"{base}/{link.lstrip('/')}",
                    "movie_number": int(movie["num"]) if movie else None,
                    "scene_number": int(scene["num"]) if scene and not movie else None})
    return out


def movie_download_url(number: int, *, api_url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """Download URL of ``natural_movie_<number>`` (exactly one record must match, as in AllenSDK)."""
    rows = [r for r in list_stimulus_templates(api_url=api_url, timeout=timeout) if r["movie_number"] == number]
    if len(rows) != 1:
        raise NeurratorError(f"{warehouse_url(api_url)}/api/v2/data/query.json",
                             f"expected exactly one natural_movie_{number} template, found {len(rows)}")
    return rows[0]["download_link"]


def scene_download_urls(*, api_url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> dict[int, str]:
    """Image index -> download URL of the natural-scene templates (``<n>.tiff``)."""
    return {r["scene_number"]: r["download_link"] for r in list_stimulus_templates(api_url=api_url, timeout=timeout)
            if r["scene_number"] is not None}
