from __future__ import annotations

import re

import yaml  # type: ignore[import-untyped]

from recflow.core.config import PROJECT_ROOT, declared_settings
from recflow.core.config_docs import DOC_PATH, render


def test_the_committed_page_is_what_the_declaration_renders() -> None:
    on_disk = (PROJECT_ROOT / DOC_PATH).read_text()
    assert on_disk == render(), f"{DOC_PATH} is out of date: run `make docs-config` and commit it"


def test_every_setting_has_a_row() -> None:
    page = render()
    for setting in declared_settings():
        assert f"| `{setting.env.name}` | `settings.{'.'.join(setting.path)}` |" in page


def test_warehouse_outputs_are_valid_profiles_that_hold_no_secret() -> None:
    snippets = re.findall(r"```yaml\n(.*?)```", render(), flags=re.DOTALL)
    outputs = {}
    for snippet in snippets:
        outputs.update(yaml.safe_load(snippet)["recflow"]["outputs"])
    assert {name: output["type"] for name, output in outputs.items()} == {
        "redshift": "redshift",
        "snowflake": "snowflake",
    }
    for output in outputs.values():
        for key in ("password", "private_key", "user", "host", "account"):
            if key in output:
                assert str(output[key]).startswith("{{ env_var("), (key, output[key])
