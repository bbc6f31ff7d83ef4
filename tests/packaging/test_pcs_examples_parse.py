"""Every runnable pcs script in pcs-examples/ parses under each shell a user may run it
with: bash always, and sh (dash) too for a #!/bin/sh script. The lab runs mfs.sh with sh on
namespaces and with bash through the VM nodes, and a quote that dash accepts inside
${VAR:+...} is an unterminated string to bash."""
import shutil
import subprocess
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "pcs-examples").glob("*.sh"))


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_the_script_parses(shell, script):
    if shell == "sh" and not script.read_text().startswith("#!/bin/sh"):
        pytest.skip(f"{script.name} is a bash script")
    if not shutil.which(shell):
        pytest.skip(f"{shell} missing")
    result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_there_are_scripts_to_check():
    assert len(EXAMPLES) >= 2
