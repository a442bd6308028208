"""facts/snapshot.py: parsing, and "would this operation change nothing?" answers."""

from __future__ import annotations

import base64
import hashlib

from facts.snapshot import HostSnapshot, Want, parse

WANT = Want(
    stat=frozenset({"/etc/etcd", "/etc/etcd/etcd.env", "/etc/etcd/ssl/peer-ca.crt", "/gone"}),
    sha1=frozenset({"/etc/etcd/etcd.env"}),
    links=frozenset({"/etc/etcd/ssl/peer-ca.crt"}),
    contents=frozenset({"/etc/step/config/defaults.json", "/etc/etcd/ssl/root_ca.crt"}),
    units=frozenset({"etcd.service", "step-renew-a.timer", "gone.timer"}),
    finds=frozenset({("/etc/systemd/system", "step-renew-*")}),
)
DEFAULTS = '{"ca-url": "https://10.0.0.1:9000"}'  # no final newline, like step writes it


def output() -> list[str]:
    return [
        "==> stat",
        "directory|root|root|755|/etc/etcd",
        "regular file|root|root|644|/etc/etcd/etcd.env",
        "symbolic link|root|root|777|/etc/etcd/ssl/peer-ca.crt",
        "==> sha1",
        "0123abcd  /etc/etcd/etcd.env",
        "==> link /etc/etcd/ssl/peer-ca.crt",
        "root_ca.crt",
        "==> content /etc/etcd/ssl/root_ca.crt",
        "",
        "==> content /etc/step/config/defaults.json",
        base64.b64encode(DEFAULTS.encode()).decode(),
        "==> find /etc/systemd/system step-renew-*",
        "f /etc/systemd/system/step-renew-a.service",
        "f /etc/systemd/system/step-renew-a.timer",
        "d /etc/systemd/system/step-renew-a.timer.d",
        "==> units",
        "Id=etcd.service",
        "LoadState=loaded",
        "SubState=running",
        "UnitFileState=enabled",
        "",
        "UnitFileState=enabled",  # order inside a block does not matter
        "SubState=waiting",
        "Id=step-renew-a.timer",
        "",
        "Id=gone.timer",
        "LoadState=not-found",
        "SubState=dead",
        "UnitFileState=",
    ]


def test_paths_links_and_checksums():
    snap = parse(output(), WANT)
    assert snap.is_directory("/etc/etcd", user="root", group="root", mode="755")
    assert not snap.is_directory("/etc/etcd", mode="700")
    assert not snap.is_directory("/etc/etcd", user="etcd")
    assert not snap.is_directory("/etc/etcd/etcd.env")
    assert snap.is_file("/etc/etcd/etcd.env", mode="644")
    assert snap.has_content("/etc/etcd/etcd.env", "0123abcd", mode="644")
    assert not snap.has_content("/etc/etcd/etcd.env", "ffff", mode="644")
    assert not snap.has_content("/etc/etcd/etcd.env", "0123abcd", mode="600")
    digest = hashlib.sha1(b"A=1\n").hexdigest()
    lines = ["==> sha1", f"{digest}  /e", "==> stat", "regular file|root|root|644|/e"]
    text_snap = parse(lines, Want.of(stat=["/e"], sha1=["/e"]))
    assert text_snap.has_text("/e", "A=1\n", mode="644")
    assert not text_snap.has_text("/e", "A=2\n", mode="644")
    assert snap.is_link("/etc/etcd/ssl/peer-ca.crt", "root_ca.crt")
    assert not snap.is_link("/etc/etcd/ssl/peer-ca.crt", "other.crt")
    assert not snap.is_file("/gone") and not snap.is_directory("/gone")


def test_what_was_not_asked_for_never_reads_as_unchanged():
    snap = parse(output(), Want())
    assert not snap.is_directory("/etc/etcd")
    assert not snap.has_content("/etc/etcd/etcd.env", "0123abcd")
    assert not snap.is_link("/etc/etcd/ssl/peer-ca.crt", "root_ca.crt")
    assert not snap.unit_is("etcd.service", running=True, enabled=True)


def test_contents_read_like_public_file():
    snap = parse(output(), WANT)
    assert snap.contents["/etc/etcd/ssl/root_ca.crt"] is None  # missing or empty
    assert snap.contents["/etc/step/config/defaults.json"] == DEFAULTS + "\n"


def test_units_and_find():
    snap = parse(output(), WANT)
    assert snap.unit_is("etcd.service", running=True, enabled=True)
    assert snap.unit_is("step-renew-a.timer", running=True, enabled=True)  # waiting = running
    assert not snap.unit_is("gone.timer", running=True, enabled=True)
    assert snap.unit_is("gone.timer", running=False, enabled=False)
    # Only a unit systemd reported as not-found counts as never loaded.
    assert snap.unit_not_loaded("gone.timer")
    assert not snap.unit_not_loaded("etcd.service")
    assert not snap.unit_not_loaded("step-renew-a.timer")  # no LoadState in its block
    assert not parse(output(), Want()).unit_not_loaded("gone.timer")  # not asked for
    assert snap.found[("/etc/systemd/system", "step-renew-*")] == [
        "/etc/systemd/system/step-renew-a.service",
        "/etc/systemd/system/step-renew-a.timer",
    ]
    assert snap.found_dirs[("/etc/systemd/system", "step-renew-*")] == [
        "/etc/systemd/system/step-renew-a.timer.d"
    ]


def test_wants_combine_and_cover():
    a = Want.of(stat=["/a"], units={"x.service"})
    b = Want.of(stat={"/b"}, finds={("/d", "*")})
    both = a | b
    assert both.stat == {"/a", "/b"} and both.units == {"x.service"} and both.finds == {("/d", "*")}
    assert both.covers(a) and both.covers(b) and both.covers(Want())
    assert not a.covers(both) and not a.covers(Want.of(sha1=["/a"]))


def test_command_reads_each_thing_once_and_always_succeeds():
    command = HostSnapshot().command(WANT)
    assert command.count("stat --printf") == 1 and command.count("sha1sum") == 1
    assert command.count("systemctl show") == 1 and command.endswith("; true")
    assert "base64 -w0 /etc/step/config/defaults.json" in command


def test_find_command_lists_files_and_directories(tmp_path):
    import subprocess

    (tmp_path / "step-renew-a.timer").write_text("")
    (tmp_path / ".issue-x").mkdir()
    (tmp_path / "other").write_text("")
    want = Want.of(finds={(str(tmp_path), "step-renew-*"), (str(tmp_path), ".issue-*")})
    out = subprocess.run(
        ["sh", "-c", HostSnapshot().command(want)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    snap = parse(out, want)
    assert snap.found[(str(tmp_path), "step-renew-*")] == [f"{tmp_path}/step-renew-a.timer"]
    assert snap.found_dirs[(str(tmp_path), ".issue-*")] == [f"{tmp_path}/.issue-x"]
    assert snap.found[(str(tmp_path), ".issue-*")] == []


def test_fact_commands_run_inside_the_snapshot_and_keep_their_lines():
    import subprocess

    from facts.pki import PublicFile

    want = Want.of(
        commands={
            ("lines", "printf 'a\\n\\nb\\n'"),
            ("missing", PublicFile().command(path="/nonexistent/file")),
            ("failing", "echo partial; exit 3"),
            ("no-newline", "printf '{}'"),  # like step's defaults.json
            ("header-like", "echo '==> stat'; echo '|x'"),  # CertStates prints such lines
        },
        stat={"/nonexistent/other"},
    )
    out = subprocess.run(
        ["sh", "-c", HostSnapshot().command(want)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    snap = parse(out, want)
    assert snap.outputs["lines"] == ["a", "", "b"]
    assert PublicFile().process(snap.outputs["missing"]) is None
    assert snap.outputs["failing"] == ["partial"]  # a failing part does not stop the rest
    assert snap.outputs["no-newline"] == ["{}"]
    assert snap.outputs["header-like"] == ["==> stat", "|x"]
    assert snap.paths == {}  # the "==> stat" above opened no section


def test_absent_only_when_the_answer_is_complete_and_the_path_was_asked():
    snap = parse([*output(), "==> end"], WANT)
    assert snap.complete
    assert snap.is_absent("/gone")
    assert not snap.is_absent("/etc/etcd/etcd.env")  # there
    assert not snap.is_absent("/not/asked")  # not known
    cut = parse(output(), WANT)  # no end marker: cut short, nothing is known absent
    assert not cut.complete and not cut.is_absent("/gone")


def test_the_command_ends_with_the_end_marker():
    assert HostSnapshot().command(WANT).endswith("{ echo '==> end'; }; true")
