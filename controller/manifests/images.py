"""Image documents to ImageSpecs: names unique among Images, the sha256 in lower case.

Called by the loader before the VMs are checked, since a VM disk's `image:` must
name a valid Image.
"""

from __future__ import annotations

from typing import Any

from ..model import ImageSpec
from .result import Invalid, LoadResult, printable


def read_images(candidates: list[tuple[str, int, dict[str, Any]]], result: LoadResult) -> None:
    """The schema-valid Image documents into `result.images`; a name defined twice makes
    both documents invalid."""
    places: dict[str, list[tuple[str, int]]] = {}
    for relative, index, document in candidates:
        places.setdefault(document["metadata"]["name"], []).append((relative, index))
    for relative, index, document in candidates:
        name = document["metadata"]["name"]
        if len(places[name]) > 1 or name in result.invalid_images:
            others = ", ".join(f"{printable(f)}[{i}]" for f, i in places[name]
                               if (f, i) != (relative, index))
            result.invalid.append(Invalid(relative, index, "metadata.name",
                                          f"image '{name}' is also defined in "
                                          f"{others or 'an invalid document'}"))
            result.invalid_images.add(name)
            continue
        spec = document["spec"]
        result.images[name] = ImageSpec(name=name, source=relative, url=spec["url"],
                                        sha256=spec["sha256"].lower(),
                                        format=spec.get("format", "qcow2"),
                                        pool=spec.get("pool", "default"))
