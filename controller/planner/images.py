"""The plan of an Image on one host: import it into its pool, once. Pure.

Called by the reconciler for each host that needs the image (a VM placed there has a
disk made from it), before the VMs. An image volume is named by the image and its
sha256, so it is never changed: a complete one is used as it is; a missing one, or
one whose import was interrupted (the partial rule), is imported (downloaded,
verified, uploaded through libvirt).
"""

from __future__ import annotations

from ..model import Action, ImageSpec, Plan, Step, VolumeInfo


def plan_image(image: ImageSpec, have: VolumeInfo | None) -> Plan:
    if have is not None and not have.partial:
        return Plan()
    why = (f"an interrupted import of {image.pool}/{image.volume}: imported again"
           if have is not None else f"not in pool {image.pool} yet: {image.volume}")
    return Plan(steps=(Step(Action.IMPORT_IMAGE, why, image=image),))
