"""Facts for CA redundancy. Each returns public material only (names, hashes)."""

from __future__ import annotations

from pyinfra.api import FactBase

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
