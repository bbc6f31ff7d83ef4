"""The real-kernel lab gives the agents' operations timeouts fit for emulated machines
(lab/vm.py raise_operation_timeouts), whatever the pcs-examples script set: a floor per
provider, longer ones kept, other providers untouched; twice changes nothing more."""

from lab.vm import raise_operation_timeouts

CIB = """<cib><configuration><resources>
<primitive id="fs" class="ocf" provider="heartbeat" type="Filesystem"><operations>
<op id="fs-monitor" name="monitor" interval="5s" timeout="20s"/>
<op id="fs-start" name="start" interval="0s" timeout="2min"/>
<op id="fs-stop" name="stop" interval="0s"/>
<op id="fs-deep" name="monitor" interval="60s" timeout="30000ms"/>
</operations></primitive>
<primitive id="d" class="ocf" provider="pyha" type="drbd"><operations>
<op id="d-monitor" name="monitor" interval="29s" timeout="20s"/>
<op id="d-promote" name="promote" interval="0s" timeout="90s"/>
</operations></primitive>
<primitive id="x" class="ocf" provider="linbit" type="drbd"><operations>
<op id="x-monitor" name="monitor" interval="29s" timeout="20s"/>
</operations></primitive></resources></configuration></cib>"""


def timeouts(path):
    import xml.etree.ElementTree as ET
    return {op.get("id"): op.get("timeout") for op in ET.parse(path).getroot().iter("op")}


def test_short_and_missing_timeouts_are_raised_to_their_providers_floor_longer_ones_kept(
        tmp_path):
    path = tmp_path / "cib.xml"
    path.write_text(CIB)
    floors = {"heartbeat": 90, "pyha": 60}
    raise_operation_timeouts(path, floors)
    want = {"fs-monitor": "90s", "fs-start": "2min", "fs-stop": "90s", "fs-deep": "90s",
            "d-monitor": "60s", "d-promote": "90s", "x-monitor": "20s"}
    assert timeouts(path) == want
    raise_operation_timeouts(path, floors)
    assert timeouts(path) == want
