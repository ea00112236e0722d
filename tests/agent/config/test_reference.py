"""docs/config.md is generated from the config models; this keeps it from drifting."""

from __future__ import annotations

from pathlib import Path

from agent.config.reference import config_reference_markdown

DOC = Path(__file__).resolve().parents[3] / "docs" / "config.md"


def test_config_reference_in_docs_matches_the_models() -> None:
    assert DOC.read_text() == config_reference_markdown(), (
        "docs/config.md is stale: run `edge-inspect check-config --reference > docs/config.md`"
    )


def test_every_section_and_a_nested_tls_key_are_documented() -> None:
    text = config_reference_markdown()
    for key in ("`model.path`", "`cameras[].source`", "`mqtt.tls.ca_file`", "`queue.band`", "`commands.hmac_key`"):
        assert key in text
