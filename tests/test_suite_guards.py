"""The suite's own guards: `just test-fast` refuses to start a real component, whatever
its binary is called."""

from __future__ import annotations

from tests.conftest import component_of


def test_the_components_are_recognised_by_the_names_they_are_started_with():
    assert component_of(["/x/site-packages/bin/fake-gcs-server-linux-amd64", "-port", "1"])
    assert component_of(["/usr/lib/jvm/java-17/bin/java", "-cp", "x"]) == "java"
    assert component_of(["/usr/bin/chromium-browser", "--headless"])
    assert component_of("chromedriver --port=1")
    assert component_of(["/venv/bin/python", "-m", "bytewax.run"]) is None
