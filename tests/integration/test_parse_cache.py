"""parse_domain remembers its answers by the XML text (controller/domainxml/document.py):
a definition changed behind reconcile's back is another text, so the next pass, in the
same process (as the service's resyncs are), sees the change and undoes it."""

from __future__ import annotations

import libvirt

from controller import domainxml
from controller.domainxml import document
from controller.model import Result
from controller.virt import Hypervisor

from ..support.rig import Rig
from .conftest import Writer, vm


def test_the_same_text_is_parsed_once_and_another_text_afresh(
        rig: Rig, hypervisor: Hypervisor, write: Writer) -> None:
    rig.run_pass(write("a.yaml", vm("a", state="stopped")))
    xml = hypervisor.connection.conn.lookupByName("a").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    first = domainxml.parse_domain(xml)
    assert domainxml.parse_domain(xml) is first  # remembered
    assert domainxml.parse_domain(str(xml.encode().decode())) is first  # by value, not id
    edited = xml.replace("<memory unit='KiB'>65536</memory>",
                         "<memory unit='KiB'>131072</memory>")
    assert edited != xml
    assert domainxml.parse_domain(edited).memory_kib == 131072
    assert domainxml.parse_domain(xml).memory_kib == 65536


def test_a_full_cache_starts_over(rig: Rig, hypervisor: Hypervisor, write: Writer) -> None:
    rig.run_pass(write("a.yaml", vm("a", state="stopped")))
    xml = hypervisor.connection.conn.lookupByName("a").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    config = domainxml.parse_domain(xml)
    document._PARSED.clear()
    try:
        for index in range(document.PARSED_MAX):
            document._PARSED[f"<domain{index}/>"] = config
        other = xml.replace("<vcpu", " <vcpu", 1)
        assert domainxml.parse_domain(other) == config  # the same fields, parsed anew
        assert list(document._PARSED) == [other]
    finally:
        document._PARSED.clear()


def test_setmem_config_behind_its_back_is_seen_by_the_next_pass(
        rig: Rig, hypervisor: Hypervisor, write: Writer) -> None:
    load = write("a.yaml", vm("a", state="stopped"))
    rig.run_pass(load)
    assert [o.result for o in rig.run_pass(load).outcomes] == [Result.UNCHANGED]  # cached now

    dom = hypervisor.connection.conn.lookupByName("a")
    dom.setMemoryFlags(128 * 1024, libvirt.VIR_DOMAIN_MEM_CONFIG | libvirt.VIR_DOMAIN_MEM_MAXIMUM)
    assert dom.maxMemory() == 128 * 1024

    (outcome,) = rig.run_pass(load).outcomes
    assert outcome.result is Result.CONVERGED
    assert [step.action.value for step in outcome.steps] == ["define"]
    assert hypervisor.connection.conn.lookupByName("a").maxMemory() == 64 * 1024


def test_an_edited_definition_is_seen_by_the_next_pass(
        rig: Rig, hypervisor: Hypervisor, write: Writer) -> None:
    load = write("a.yaml", vm("a", state="stopped", vcpus=2))
    rig.run_pass(load)
    assert [o.result for o in rig.run_pass(load).outcomes] == [Result.UNCHANGED]

    conn = hypervisor.connection.conn
    xml = conn.lookupByName("a").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    edited = xml.replace(">2</vcpu>", ">1</vcpu>")
    assert edited != xml
    conn.defineXML(edited)  # `virsh edit`: the same domain, another definition
    assert domainxml.parse_domain(
        conn.lookupByName("a").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).vcpus == 1

    (outcome,) = rig.run_pass(load).outcomes
    assert outcome.result is Result.CONVERGED
    assert "vcpus" in " ".join(step.reason for step in outcome.steps)
    saved = conn.lookupByName("a").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert domainxml.parse_domain(saved).vcpus == 2
