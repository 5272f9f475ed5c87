"""`guestAgent`: the org.qemu.guest_agent.0 channel in the domain XML, and its plan (a
hot-plug where the running domain has a virtio-serial controller, else a restart)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from controller.domainxml import build_domain, parse_domain
from controller.model import Action, Plan, UpdatePolicy
from controller.planner import plan
from tests.unit.test_planner import MACHINES, off, on, spec, xml

AGENT = ("<channel type='unix'><source mode='bind'/>"
         "<target type='virtio' name='org.qemu.guest_agent.0'/>"
         "<address type='virtio-serial' controller='0' bus='0' port='1'/></channel>")
SPICE_AGENT = ("<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/>"
               "</channel>")
VSERIAL = "<controller type='virtio-serial' index='0'/>"


def steps(result: Plan) -> list[tuple[str, str]]:
    return [(step.action.value, step.reason) for step in result.steps]


def test_parse_finds_the_agent_and_the_controller() -> None:
    assert (parse_domain(xml()).guest_agent, parse_domain(xml()).virtio_serial) == (False, False)
    config = parse_domain(xml(devices=VSERIAL + AGENT + SPICE_AGENT))
    assert (config.guest_agent, config.virtio_serial) == (True, True)
    assert parse_domain(xml(devices=SPICE_AGENT)).guest_agent is False


def test_build_adds_and_removes_only_the_agent_channel() -> None:
    base = xml(devices=VSERIAL + SPICE_AGENT)
    added = build_domain(spec(guest_agent=True), base)
    channels = ET.fromstring(added).findall("devices/channel")
    assert [(c.get("type"), c.find("target").get("name"))  # type: ignore[union-attr]
            for c in channels] == [("spicevmc", "com.redhat.spice.0"),
                                   ("unix", "org.qemu.guest_agent.0")]
    assert parse_domain(added).guest_agent is True
    removed = build_domain(spec(guest_agent=False), added)
    names = [c.find("target").get("name")  # type: ignore[union-attr]
             for c in ET.fromstring(removed).findall("devices/channel")]
    assert names == ["com.redhat.spice.0"]
    assert ET.fromstring(removed).find("devices/controller") is not None  # the controller stays


def test_an_agent_that_is_there_is_not_touched() -> None:
    base = xml(devices=VSERIAL + AGENT)
    assert build_domain(spec(guest_agent=True), base) == build_domain(spec(), base)
    assert build_domain(spec(guest_agent=None), xml()) == build_domain(spec(), xml())


def test_a_new_domain_gets_the_channel_only_when_asked() -> None:
    assert parse_domain(build_domain(spec())).guest_agent is False
    assert parse_domain(build_domain(spec(guest_agent=True))).guest_agent is True


WITH_CONTROLLER = xml(devices=VSERIAL)
WITH_AGENT = xml(devices=VSERIAL + AGENT)


@pytest.mark.parametrize(("desired", "observed", "expected", "pending"), [
    pytest.param(spec(guest_agent=True), on(WITH_CONTROLLER),
                 [("attach", "guestAgent false → true (live)"),
                  ("define", "guestAgent false → true")], None, id="hot-plug"),
    pytest.param(spec(guest_agent=False), on(WITH_AGENT),
                 [("detach", "guestAgent true → false (live)"),
                  ("define", "guestAgent true → false")], None, id="unplug"),
    pytest.param(spec(guest_agent=True), on(xml()),
                 [("destroy", "guestAgent false → true needs a restart"),
                  ("define", "guestAgent false → true"),
                  ("start", "start again after the restart")], None,
                 id="no-controller-restart"),
    pytest.param(spec(guest_agent=True, update_policy=UpdatePolicy.NEXT_BOOT), on(xml()),
                 [("define", "guestAgent false → true")],
                 "guestAgent false → true takes effect at the next boot",
                 id="no-controller-next-boot"),
    pytest.param(spec(guest_agent=True, update_policy=UpdatePolicy.NEXT_BOOT),
                 on(WITH_CONTROLLER),
                 [("attach", "guestAgent false → true (live)"),
                  ("define", "guestAgent false → true")], None, id="next-boot-hot-plugs"),
    pytest.param(spec(guest_agent=True), on(WITH_AGENT, WITH_CONTROLLER),
                 [("attach", "guestAgent false → true (live)")], None,
                 id="saved-has-it-live-does-not"),
    pytest.param(spec(guest_agent=True, vcpus=2), on(WITH_CONTROLLER),
                 [("destroy", "vcpus 1 → 2, guestAgent false → true needs a restart"),
                  ("define", "vcpus 1 → 2, guestAgent false → true"),
                  ("start", "start again after the restart")], None,
                 id="restarting-anyway-no-hot-plug"),
    pytest.param(spec(guest_agent=True, vcpus=2, update_policy=UpdatePolicy.NEXT_BOOT),
                 on(WITH_CONTROLLER),
                 [("attach", "guestAgent false → true (live)"),
                  ("define", "vcpus 1 → 2, guestAgent false → true")],
                 "vcpus 1 → 2 takes effect at the next boot", id="next-boot-hot-plugs-the-rest"),
    pytest.param(spec(guest_agent=True), off(WITH_CONTROLLER),
                 [("define", "guestAgent false → true"),
                  ("start", "state is running, the domain is stopped")], None, id="stopped"),
    pytest.param(spec(guest_agent=True), on(WITH_AGENT), [], None, id="converged"),
    pytest.param(spec(guest_agent=False), on(WITH_CONTROLLER), [], None, id="converged-off"),
    pytest.param(spec(), on(WITH_AGENT), [], None, id="left-out-keeps-it"),
])
def test_plan(desired: object, observed: object, expected: list[tuple[str, str]],
              pending: str | None) -> None:
    result = plan(desired, observed, machines=MACHINES)  # type: ignore[arg-type]
    assert steps(result) == expected
    assert result.restart_pending == pending


def test_the_change_is_live_when_hot_plugged() -> None:
    hot = plan(spec(guest_agent=True), on(WITH_CONTROLLER))
    assert [(c.field, c.needs_restart) for c in hot.changes] == [("guestAgent", False)]
    cold = plan(spec(guest_agent=True), on(xml()))
    assert [(c.field, c.needs_restart) for c in cold.changes] == [("guestAgent", True)]
    attach = hot.steps[0]
    assert attach.action is Action.ATTACH
    target = ET.fromstring(attach.xml or "").find("target")
    assert target is not None and target.get("name") == "org.qemu.guest_agent.0"


def test_what_was_built_plans_nothing() -> None:
    for desired in (spec(guest_agent=True), spec(guest_agent=False)):
        for base in (None, xml(), WITH_AGENT):
            built = build_domain(desired, base)
            assert plan(desired, on(built), machines=MACHINES) == Plan()
