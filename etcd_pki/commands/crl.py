"""Revocation plumbing: the members' CRL fetch (run now), and the CA's ledger of every
certificate step-ca issued, scanned from its journal."""

from __future__ import annotations

import shlex

from ..settings import Settings

# The member's CRL fetch (tasks/crl.py writes the units).
SERVICE = "etcd-pki-crl.service"
TIMER = "etcd-pki-crl.timer"
# Where step-ca's journal was read up to for the ledger (per node: not CA material).
CURSOR = "/var/lib/etcd-pki/step-ca-journal.cursor"


def ledger_scan_program() -> str:
    """awk that turns step-ca's request log lines (logrus text, one per request) into
    ledger lines for each certificate signed, renewed or rekeyed."""
    return (
        "function val(k,  s, v) {"
        '  if (!match($0, "(^| )" k "=")) return "";'
        "  s = substr($0, RSTART + RLENGTH);"
        '  if (substr(s, 1, 1) == "\\"") {'
        '    s = substr(s, 2); v = substr(s, 1, index(s, "\\"") - 1) }'
        '  else { v = s; sub(/ .*/, "", v) } return v }'
        " / serial=[0-9]/ && / path=[^ ]*\\/(sign|renew|rekey)( |$)/ {"
        '  printf "issued\\t%s\\t%s\\t%s\\t%s\\n", val("serial"), val("subject"),'
        '  val("valid-to"), val("path") }'
    )


def ledger_scan_command(cursor: str, ledger: str | None) -> str:
    """The ledger lines of what step-ca logged since the journal ``cursor``: printed
    (``ledger`` None: read-only, the cursor stays) or appended to ``ledger`` (the cursor
    moves on). With no cursor yet, step-ca's whole journal is read."""
    c, program = shlex.quote(cursor), shlex.quote(ledger_scan_program())
    journal = "journalctl -u step-ca.service -o cat --no-pager -q"
    if ledger is None:
        return (
            f'c=$(cat {c} 2>/dev/null || true); {journal} ${{c:+--after-cursor="$c"}} '
            f"2>/dev/null | awk {program}; true"
        )
    lg = shlex.quote(ledger)
    return (
        f"mkdir -p {shlex.quote(cursor.rsplit('/', 1)[0])} && "
        f"new=$({journal} --cursor-file={c} | awk {program}) && "
        f'if [ -n "$new" ]; then printf \'%s\\n\' "$new" | flock {lg} tee -a {lg} >/dev/null; fi'
    )


def crl_fetch_now_command() -> str:
    """Run the member's CRL fetch now; on failure show why (its journal) and fail."""
    return (
        f"systemctl start {SERVICE} || {{ journalctl -u {SERVICE} -n 5 -o cat --no-pager >&2; "
        "exit 1; }"
    )


def scan_ledger_command(s: Settings) -> str:
    """Append what step-ca logged since the last scan to the ledger (see `LedgerPending`)."""
    return "umask 022; " + ledger_scan_command(CURSOR, s.ledger)
