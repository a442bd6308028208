"""The settings spec (the `Settings` fields), group_data/all.py and README's settings
table say the same: the same settings, in the same order, with the same defaults."""

from __future__ import annotations

import ast
import typing

from etcd_pki import settings_table
from etcd_pki.settings import SPEC, Settings

from .conftest import ALL_PY, load_defaults

NAMES = [s.name for s in SPEC]
# Settings whose checks need other settings too (settings._check_together); every other
# setting has a check of its own.
CHECKED_TOGETHER = {
    "install_mirror_url",  # with install_source = "mirror"
    "install_controller_dir",  # with install_source = "controller"
    "etcd_version",  # with etcd_install_source = "release"
    "etcd_release_url",  # likewise
    "backup_s3_endpoint",  # backup_s3_*: with one another (s3.target_problems)
    "backup_s3_bucket",
    "backup_s3_prefix",
    "backup_s3_region",
    "active_cert_manager",  # against the inventory (plan.py)
}


def _ours(defaults: dict) -> list[str]:
    """The names in group_data/all.py that are not pyinfra's own (a site may put
    connection data, `ssh_*`, and global arguments, `_sudo`, there too)."""
    return [n for n in defaults if not n.startswith(("_", "ssh_"))]


def test_group_data_all_py_has_every_setting_in_the_spec_order():
    defaults = load_defaults()
    missing = [n for n in NAMES if n not in defaults]
    unknown = [n for n in _ours(defaults) if n not in NAMES]
    assert not missing, f"in the spec, not in group_data/all.py: {missing}"
    assert not unknown, f"in group_data/all.py, not in the spec (etcd_pki/settings.py): {unknown}"
    assert _ours(defaults) == NAMES, "group_data/all.py and the spec list settings in another order"


def test_group_data_all_py_has_the_spec_defaults():
    defaults = load_defaults()
    differ = {
        s.name: (defaults[s.name], s.default)
        for s in SPEC
        if defaults[s.name] != s.default or type(defaults[s.name]) is not type(s.default)
    }
    assert not differ, f"group_data/all.py vs spec: {differ}"


def test_annotations_in_group_data_all_py_match_the_spec():
    tree = ast.parse(ALL_PY.read_text())
    written = {
        node.target.id: ast.unparse(node.annotation)
        for node in tree.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    types = {s.name: s.type for s in SPEC}
    assert {n: t for n, t in written.items() if n in types and types[n] != t} == {}


def test_every_setting_has_a_type_a_one_line_doc_and_a_check():
    hints = typing.get_type_hints(Settings)
    for s in SPEC:
        assert s.name in hints
        assert s.doc.strip() and "\n" not in s.doc and "|" not in s.doc, s.name
    unchecked = {s.name for s in SPEC if s.check is None}
    assert unchecked == CHECKED_TOGETHER


def test_the_readme_settings_table_is_current():
    text = settings_table.README.read_text()
    assert settings_table.current(text) == settings_table.render(), (
        "README.md's settings table differs from the spec: run `make settings-table`"
    )
    rows = [line for line in settings_table.render().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == NAMES


def test_the_table_check_fails_on_a_stale_table(tmp_path):
    stale = tmp_path / "README.md"
    text = settings_table.README.read_text()
    stale.write_text(text.replace("| `ca_port` | `9000` |", "| `ca_port` | `9001` |"))
    assert settings_table.main(["--check", str(stale)]) == 1
    assert settings_table.main([str(stale)]) == 0
    assert settings_table.main(["--check", str(stale)]) == 0
    assert stale.read_text() == text
