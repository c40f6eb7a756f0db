"""Migration from Pacemaker: crm shell commands + corosync.conf -> hafd.yaml (`hafctl import-crm`).

What maps to what (details and reasons in `translate` and `resources`):

- ocf:heartbeat:IPaddr2 -> ipaddr (ip + cidr_netmask -> address IP/PREFIX, nic -> interface);
  without nic or cidr_netmask (IPaddr2 then reads the routing table), or with a
  parameter ipaddr cannot express, it stays `ocf` (heartbeat:IPaddr2, params unchanged).
- ocf:heartbeat:Filesystem -> filesystem (device, directory, fstype, options,
  force_unmount=false -> kill_holders: false); other parameters: stays `ocf`.
- ocf:linbit:drbd (in an ms / promotable clone) -> drbd (drbd_resource -> resource).
- lsb:NAME -> service (init: sysv); systemd:NAME / service:NAME -> service (unit NAME).
- any other OCF agent -> ocf (agent PROVIDER:TYPE, params); stonith: -> reported
  (hafd fences with cluster.fencing.command).
- colocation / order / group -> requires; ms/clone ids stand for their primitive.
- location scores -> node priorities; without any, nodeid order (100, 90, ...).
- op monitor -> monitor_interval (shortest active-role one); op timeouts -> timeout
  (largest); migration-threshold N -> migration_threshold N-1; failure-timeout ->
  failure_timeout; stickiness vs location preference -> failback.
- stonith-enabled / no-quorum-policy -> comments on what hafd does instead.
- corosync nodelist -> nodes and links (ring0_addr, ring1_addr, ...); cluster_name ->
  cluster.name; token -> a comment on deadtime.

Nothing is dropped silently: each thing not translated is a `Report` (file:line),
printed on stderr by hafctl and listed at the top of the output.  The output is always
a valid hafd.yaml; placeholders it had to invent are marked FIXME and reported.

Pure: texts in, text and reports out.
"""

from __future__ import annotations

from dataclasses import dataclass

from hafd.migrate.corosync import parse_corosync
from hafd.migrate.crm import parse_crm
from hafd.migrate.emit import render
from hafd.migrate.report import Report
from hafd.migrate.translate import translate

__all__ = ["ImportResult", "Report", "import_crm"]


@dataclass(frozen=True)
class ImportResult:
    yaml_text: str
    reports: tuple[Report, ...]

    @property
    def lost(self) -> tuple[Report, ...]:
        """What was not translated (as opposed to notes on what was translated differently)."""
        return tuple(r for r in self.reports if r.lost)


def import_crm(crm_text: str, crm_path: str = "crm", corosync_text: str | None = None,
               corosync_path: str = "corosync.conf") -> ImportResult:
    """Translate crm commands (and corosync.conf, when given) into hafd.yaml text."""
    crm = parse_crm(crm_text, crm_path)
    cs = parse_corosync(corosync_text, corosync_path) if corosync_text is not None else None
    result = translate(crm, cs)
    reports = tuple(sorted(result.reports, key=lambda r: (r.file != crm_path, r.line)))
    doc = result.document
    sources = crm_path + (f" and {corosync_path}" if cs else " (no corosync.conf)")
    doc.header = [f"hafd.yaml written by `hafctl import-crm` from {sources}.",
                  "Review it before use: every decision is explained next to the key it set."]
    lost = [r for r in reports if r.lost]
    notes = [r for r in reports if not r.lost]
    if lost:
        doc.header += ["", f"NOT TRANSLATED ({len(lost)}): review each of these by hand:"]
        doc.header += [f"  {r}" for r in lost]
    if notes:
        doc.header += ["", "Translated differently:"] + [f"  {r}" for r in notes]
    return ImportResult(render(doc), reports)
