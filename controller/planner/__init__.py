"""The planner: every decision about what to do, and nothing else. Pure: no libvirt, no
files, no clocks. Each function takes what was observed and returns a `Plan`.

    vm.py         one domain on its host: create, update, restart, remove, replace
    placement.py  one VM name across hosts: unknown, move, conflict, or vm.py's plan
    orphans.py    managed domains no manifest names: left as is, pruned, or refused
    disks.py      a define that would take another domain's disk
    devices.py    firmware, CPU, boot and consoles: changes, hot-plug steps, refusals
"""

from .placement import Copy, Situation, host_label, plan_move, plan_placement, preview_arrival
from .vm import Machines, plan, removal_steps

__all__ = ["Copy", "Machines", "Situation", "host_label", "plan", "plan_move",
           "plan_placement", "preview_arrival", "removal_steps"]
