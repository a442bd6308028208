"""Facts of the CA node for redundancy and revocation. Each returns public material only
(names, hashes, the crl settings, ledger lines)."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from etcd_pki.commands.crl import ledger_scan_command
from etcd_pki.crl import LedgerEntry, crl_config_fact_command, parse_crl_config, parse_ledger
from etcd_pki.redundancy import dns_names_fact_command, parse_dns_names


class CaDnsNames(FactBase):
    """The `dnsNames` of step-ca's ca.json (its own TLS certificate's names), or None
    when there is no ca.json. Only that array is read, nothing else of the file.

    .. code:: python

        host.get_fact(CaDnsNames, ca_json="/etc/step-ca/config/ca.json")
    """

    def command(self, ca_json: str) -> str:
        return dns_names_fact_command(ca_json)

    def process(self, output: list[str]) -> list[str] | None:
        return parse_dns_names(output)


class CaCrlConfig(FactBase):
    """The top-level `crl` object of step-ca's ca.json ({} when it has none), or None
    when there is no ca.json. Only that object is read.

    .. code:: python

        host.get_fact(CaCrlConfig, ca_json="/etc/step-ca/config/ca.json")
    """

    def command(self, ca_json: str) -> str:
        return crl_config_fact_command(ca_json)

    def process(self, output: list[str]) -> dict | None:
        return parse_crl_config(output)


class LedgerLines(FactBase):
    """The ledger's lines of one kind ("issued" or "revoked"; public data).

    .. code:: python

        host.get_fact(LedgerLines, path="/etc/step-ca/ledger.tsv", kind="revoked")
    """

    default = list

    def command(self, path: str, kind: str) -> str:
        return f"grep {shlex.quote('^' + kind + chr(9))} {shlex.quote(path)} 2>/dev/null; true"

    def process(self, output: list[str]) -> list[LedgerEntry]:
        return parse_ledger("\n".join(output))


class LedgerPending(FactBase):
    """Ledger lines for the certificates step-ca logged since the ledger was last brought
    up to date (read-only: the journal cursor is not moved).

    .. code:: python

        host.get_fact(LedgerPending, cursor="/var/lib/etcd-pki/step-ca.cursor")
    """

    default = list

    def command(self, cursor: str) -> str:
        return ledger_scan_command(cursor, ledger=None)

    def process(self, output: list[str]) -> list[LedgerEntry]:
        return parse_ledger("\n".join(output))
