"""The reconciler's PlanMemo: a name's last plan is reused only for the very same spec
and an equal situation, read afresh; anything else is planned anew."""

from __future__ import annotations

from dataclasses import replace

from controller.model import Action, DesiredState, Power
from controller.planner import Situation, plan_placement
from controller.reconciler import PlanMemo

from .test_planner_placement import seen, spec, xml


def test_the_same_spec_and_an_equal_situation_get_the_remembered_plan() -> None:
    memo, wanted = PlanMemo(), spec(host=None)
    first = memo.plan(wanted, Situation(host="", here=seen(Power.STOPPED, xml(owner=None))))
    again = memo.plan(wanted, Situation(host="", here=seen(Power.STOPPED, xml(owner=None))))
    assert again is first


def test_a_changed_situation_is_planned_anew() -> None:
    memo, wanted = PlanMemo(), spec(host=None, state=DesiredState.STOPPED)
    converged = memo.plan(wanted, Situation(host="", here=seen(Power.STOPPED, xml(owner=None))))
    assert not converged.steps
    behind_our_back = Situation(host="", here=seen(Power.STOPPED,
                                                   xml(owner=None, memory=131072)))
    changed = memo.plan(wanted, behind_our_back)
    assert changed == plan_placement(wanted, behind_our_back)
    assert [step.action for step in changed.steps] == [Action.DEFINE]


def test_another_spec_object_is_planned_anew() -> None:
    memo, wanted = PlanMemo(), spec(host=None)
    here = Situation(host="", here=seen(Power.STOPPED, xml(owner=None)))
    first = memo.plan(wanted, here)
    edited = replace(wanted, memory_kib=131072, current_memory_kib=131072)
    assert memo.plan(edited, here) == plan_placement(edited, here) != first
    assert memo.plan(replace(wanted), here) is not first  # equal, but not the same object
