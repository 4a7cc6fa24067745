"""The CA session: the one owner of an opened CA.

Only the session unlocks keys, and only those an operation uses (a CA key to sign with
it, the appliance's OpenPGP key to seal the log); only it reads the clock against the
register's floor (invariant 8), seals the audit log, refreshes CRLs, recovers work/ after
a crash, and publishes results. The batch pipeline, renewal, revocation requests and the
commands use it; it calls none of them back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from cryptography import x509
from cryptography.hazmat.primitives.serialization import SSHCertPrivateKeyTypes

from spoolca.authority.revocation import (
    check_reason,
    due_crls,
    presign_crls,
    publish_crls,
    revoke_in,
)
from spoolca.authority.rotation import rotate_unlock_secret
from spoolca.authority.sshca import load_ssh_key, publish_ssh_files
from spoolca.authority.unlock import (
    key_store,
    load_audit_key,
    load_authorities,
    load_ca_certificates,
    load_generations,
)
from spoolca.config import Config, LintMode
from spoolca.errors import ClockError, InternalError, RegisterBehindError, SpoolcaError
from spoolca.keys.openpgp import ApplianceKey, keyring_owner
from spoolca.keys.token import TokenPool, TokenSigner
from spoolca.log import get_logger
from spoolca.process.authorization import SignerCheck
from spoolca.process.items import Cleared
from spoolca.process.sealing import Sealer
from spoolca.register.generations import current_name, older_names
from spoolca.register.rollback import behind_sentence
from spoolca.register.store import (
    CertificateRecord,
    CRLRecord,
    Store,
    Tx,
    format_time,
    parse_time,
)
from spoolca.spool.outgoing import Outgoing, PublishJob
from spoolca.spool.publisher import Publisher
from spoolca.spool.recovery import recorded_jobs
from spoolca.spool.results import ChainFiles, ca_files, older_chain_file
from spoolca.spool.tree import RESERVED_NAMES, Claimed, Spool, safe_name
from spoolca.x509.crl import CRLLinter
from spoolca.x509.issuer import IssuingCA

__all__ = ["QUARANTINED", "CASession", "Cleared", "utc_now"]

_log = get_logger("spoolca.process.session")
_RECOVERY_CHUNK = 500  # results recovery publishes between two watchdog pings
QUARANTINED = "quarantined:"  # meta key prefix: the SHA-256 of a quarantined file's bytes


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CASession:
    """An opened CA: its register, spool, certificates, and keys unlocked on first need."""

    def __init__(self, config: Config, store: Store, *,
                 clock: Callable[[], dt.datetime] = utc_now, actor: str = "process") -> None:
        self.config = config
        self.store = store
        self.actor = actor
        self._clock = clock
        self.spool = Spool(config.spool_dir, tuple(config.profiles),
                           tuple(config.ssh_profiles))
        self.ca_certificates = load_ca_certificates(store)  # the current generation's
        self.generations = load_generations(store)  # every CA certificate, by name
        root = self.ca_certificates["root"]
        current = current_name(store, "intermediate")
        self.outgoing = Outgoing(self.spool.outgoing)
        self.chains = {name: ChainFiles.above(cert, root, self.outgoing.ca,
                                              None if name in ("root", current)
                                              else older_chain_file(name))
                       for name, cert in self.generations.items()}
        self._authorities: dict[str, IssuingCA] = {}
        self._audit_key: ApplianceKey | None = None
        self._head_before_unlock: int | None = None
        self._ssh_keys: dict[str, SSHCertPrivateKeyTypes | TokenSigner] = {}
        # Backdating's lower bound: the floor before this process recorded anything, then
        # the last time backdated (so it never runs backwards within the session).
        self._backdate_floor: str | None = store.clock_floor()
        self._signer_check: SignerCheck | None = None
        self._crl_linter: Future[CRLLinter] | None = None
        self._ca_files_published = False
        self._closing: list[Callable[[], None]] = []
        self._published_mark = store.published_through()
        self._tokens = TokenPool()  # the PKCS#11 sessions of token keys, logged out at close
        self.workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spoolca-crypto")
        self._publisher = Publisher(self.outgoing, self.spool.archive)
        # Called as long work makes progress (a request, a result): the daemon's watchdog
        # ping, so a long batch or recovery is not taken for a hung one. A no-op elsewhere.
        self.heartbeat: Callable[[], None] = lambda: None
        self.quarantined = frozenset(key.removeprefix(QUARANTINED) for key in
                                     store.meta_keys(QUARANTINED))
        self._sealer = Sealer(store, self.audit_key, clock, self.outgoing)

    # -- the clock (invariant 8) --------------------------------------------------------

    def now(self, action: str, authorities: Iterable[str] = ()) -> dt.datetime:
        """The time for one operation, read once and checked: ClockError if it is behind
        the register's floor or past its ceiling (register.clock), or outside a named CA's
        validity."""
        now = self._clock()
        self.check_clock(now, action, authorities)
        return now

    def check_clock(self, now: dt.datetime, action: str, authorities: Iterable[str] = ()
                    ) -> None:
        text = format_time(now)
        problem = self.store.clock.problem(now, self.store.clock_floor())
        if problem is not None:
            raise ClockError(problem.sentence(action), floor=problem.floor, now=text,
                             action=action)
        for name in sorted(set(authorities)):
            cert = self.ca_certificates.get(name) or self.generations[name]
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise ClockError(
                    f"the clock reads {text}, outside the {name} CA's validity "
                    f"({format_time(cert.not_valid_before_utc)} to "
                    f"{format_time(cert.not_valid_after_utc)}): no {action} was signed",
                    floor=format_time(cert.not_valid_before_utc), now=text, action=action)

    def clock(self) -> dt.datetime:
        """The time as this session reads it, for a record that signs nothing."""
        return self._clock()

    def issuers(self) -> set[str]:
        """The CAs that sign for the configured profiles."""
        return {p.issuer for p in self.config.profiles.values()}

    # -- keys, scoped -------------------------------------------------------------------

    def preflight(self, action: str, names: Iterable[str] = (), *, current: bool = False
                  ) -> Cleared:
        """The one fail-closed check before anything is signed, in its order: the clock
        (before any key is unlocked), the keys of the CAs NAMES (only those; CURRENT: the
        generation of each that issues now), then the audit trail (everything recorded so
        far signed). The operation's time is read last, after what unlocking recorded.
        The only way to a CA's key outside this class (tests/test_layout.py)."""
        chosen = sorted(set(names))
        self.check_clock(self._clock(), action, chosen)
        cas = {name: self._issuing(name) if current else self._authority(name)
               for name in chosen}
        self.require_audit_trail()
        return Cleared(self.now(action, chosen), cas)

    def backdated(self, now: dt.datetime) -> dt.datetime:
        """The notBefore or thisUpdate to write for an operation at NOW: NOW less `[clock]
        backdate_minutes` (ADCS's clock skew, for relying parties whose clocks run slow),
        never below the clock floor the register had before this session recorded
        anything (its own entries, made a moment ago, would leave nothing to backdate),
        nor below the time it last backdated to, nor after NOW."""
        minutes = self.config.clock_backdate_minutes
        if not minutes:
            return now
        moment = now - dt.timedelta(minutes=minutes)
        if self._backdate_floor:
            moment = min(max(moment, parse_time(self._backdate_floor)), now)
        self._backdate_floor = format_time(moment)
        return moment

    def unlock(self, names: Iterable[str]) -> None:
        """Unlock the issuing CAs NAMES now, signing nothing: the daemon at start, so that
        a missing or wrong key is said before any request is claimed."""
        for name in names:
            self._issuing(name)

    def _authority(self, name: str) -> IssuingCA:
        """One CA by its register name (a generation: `intermediate` is the first), its key
        unlocked on first use (and recorded): never a key not needed."""
        if name not in self._authorities:
            self._before_unlock()
            self._authorities[name] = load_authorities(self.config, self.store, [name],
                                                       self._tokens)[name]
            self._record_unlock({"authorities": [name],
                                 "key_store": key_store(self.config, name)})
        return self._authorities[name]

    def _issuing(self, name: str) -> IssuingCA:
        """The CA a profile names (`intermediate`) in its generation that issues now."""
        return self._authority(current_name(self.store, name))

    @property
    def tokens(self) -> TokenPool:
        """This session's token sessions: a key made in a token (`ca rekey`) shares them."""
        return self._tokens

    def ssh_key(self, ca: str) -> SSHCertPrivateKeyTypes | TokenSigner:
        """The SSH CA CA's key ("user" or "host"), unlocked on first use (and recorded)."""
        if ca not in self._ssh_keys:
            self._before_unlock()
            self._ssh_keys[ca] = load_ssh_key(self.config, self.store, ca, self._tokens)
            self._record_unlock({"ssh_ca": ca, "key_store": self.config.ssh.key_store
                                 if self.config.ssh else "file"})
        return self._ssh_keys[ca]

    def forget_keys(self) -> None:
        """After a key store failed (a token pulled, a PIN refused): the next use unlocks
        afresh, in new token sessions."""
        self._authorities.clear()
        self._ssh_keys.clear()
        self._tokens.close()

    def audit_key(self) -> ApplianceKey:
        """The appliance's OpenPGP key alone: sealing, exports and stick signatures."""
        if self._audit_key is None:
            self._before_unlock()
            self._audit_key = load_audit_key(self.config, self.store)
            self._record_unlock({"audit_key": self._audit_key.fingerprint})
        return self._audit_key

    def rotate_unlock_secret(self, old: bytes, new: bytes) -> int:
        """Custody (`shares rotate`): every key at rest re-protected under NEW. Here, as
        every other unlock is, and never with a key of this session in use."""
        if self._authorities or self._audit_key is not None:
            raise InternalError("rotate the unlock secret in a fresh session")
        self._before_unlock()
        return rotate_unlock_secret(self.config, self.store, old, new)

    def _before_unlock(self) -> None:
        if self._head_before_unlock is None:
            # What this process did not write itself must be signed before it issues.
            self._head_before_unlock = self.store.audit_head()[0]

    def _record_unlock(self, what: dict[str, object]) -> None:
        with self.store.transaction(self.actor, self._clock()) as tx:
            if self.store.meta("config_sha256") != self.config.sha256:
                tx.record("config.loaded", {"path": str(self.config.path),
                                            "sha256": self.config.sha256})
                tx.set_meta("config_sha256", self.config.sha256)
            tx.record("key.unlocked", what)

    def signers(self) -> SignerCheck:
        """The signers' keyring, imported once into a temporary gnupg home."""
        if self._signer_check is None:
            if self.config.signers_keyring is None:
                raise SpoolcaError("no [signers] keyring is configured")
            self._signer_check = SignerCheck(self.config.signers_keyring,
                                             keyring_owner(self.config.path.parent))
        return self._signer_check

    # -- the audit trail ----------------------------------------------------------------

    def seal(self) -> int | None:
        """Sign a checkpoint of the audit head and export the log to outgoing/audit/.

        Fail closed: while a checkpoint cannot be signed, no batch is processed."""
        self.check_register()
        return self._sealer.seal()

    @property
    def exported(self) -> int:
        """The audit entry this session exported outgoing/audit/ up to (0: none yet)."""
        return self._sealer.exported

    def seal_behind(self) -> None:
        """After a batch: its checkpoint is signed while the next batch is decided, and
        stored in that batch's transaction (finish_seal) or by the next flush."""
        self._sealer.start_behind()

    def finish_seal(self, tx: Tx) -> None:
        """In a batch's transaction, before it commits: the previous batch's checkpoint,
        or AuditSignatureError (the batch rolls back: fail closed); and how far results
        are known published (recovery then compares only what came after)."""
        self._sealer.finish(tx)
        self._record_published(tx)

    def check_register(self) -> None:
        """Invariant 14: a register that went back in time is found before anything is
        signed: once against the newest checkpoint exported to outgoing/audit/ (the
        store checks it before its first write too; in recover, also against the
        results outgoing/ holds), then before each batch against what this session
        exported itself."""
        self.store.check_history()
        if self.store.audit_head()[0] < self._sealer.exported:
            raise RegisterBehindError(behind_sentence(
                "the register went back below the audit entry this process exported"))

    def require_audit_trail(self) -> None:
        """Before signing: the register holds all it published, and everything recorded
        so far is signed (fail closed)."""
        self.check_register()
        self.audit_key()
        assert self._head_before_unlock is not None
        if self._sealer.failure is not None or \
                self._head_before_unlock > self.store.latest_checkpoint_seq():
            self.seal()

    # -- CRLs and revocation ------------------------------------------------------------

    def refresh_crls(self, names: Sequence[str] | None = None, *,
                     until: dt.datetime | None = None) -> list[CRLRecord]:
        """Make and publish the named CAs' CRLs, or those that are due; UNTIL: an
        emergency re-sign with that nextUpdate (`spoolca crl --extend`)."""
        chosen = list(names) if names is not None else \
            due_crls(self.config, self.store, self._clock())
        if not chosen:
            return []
        cleared = self.preflight("CRL", chosen)
        authorities, now = cleared.authorities, cleared.now
        if until is not None and until <= now:
            raise SpoolcaError(f"--until {format_time(until)} is not after the clock "
                               f"({format_time(now)}): a CRL must end in the future")
        made = publish_crls(self.config, self.store, authorities, self.outgoing, now,
                            chosen, self._linter(), self.actor, since=self.backdated(now),
                            until=until)
        self.seal()
        return made

    def presign_crls(self, names: Sequence[str], count: int) -> dict[str, list[CRLRecord]]:
        """`spoolca crl --presign COUNT`: a series of future CRLs for each CA NAMES."""
        cleared = self.preflight("CRL", names)
        made = presign_crls(self.config, self.store, cleared.authorities, self.outgoing,
                            cleared.now, list(names), count, self._linter(), self.actor)
        self.seal()
        return made

    def _linter(self) -> CRLLinter | None:
        if self.config.lint != LintMode.PKIX:
            return None
        if self._crl_linter is None:  # importing pkilint takes 0.1 s: built on first need
            self._crl_linter = self.workers.submit(CRLLinter)
        return self._crl_linter.result()

    def revoke(self, serial: str, reason: str, invalidity: dt.datetime | None,
               requested_by: str | None = None) -> CertificateRecord:
        """`spoolca revoke`: checked against the clock floor, recorded, CRL remade."""
        now = self.now("revocation")
        check_reason(serial, reason, invalidity, now)
        self.check_register()
        with self.store.transaction(self.actor, now, signing="revocation") as tx:
            record = revoke_in(tx, serial, reason, invalidity, requested_by)
        return record

    # -- publication: the one path ------------------------------------------------------

    def ensure_ca_files(self) -> None:
        """outgoing/ca/ as init wrote it (restored if removed): the chains link to it."""
        if self._ca_files_published:
            return
        if any(not c.path.is_file() or c.path.read_bytes() != c.chain
               for c in self.chains.values()):
            try:
                self.outgoing.ca_files(ca_files(self.ca_certificates["root"],
                                                self.ca_certificates["intermediate"],
                                                self._older()))
            except OSError as exc:
                raise SpoolcaError(f"failed to write the CA certificates to "
                                   f"{self.outgoing.ca}: {exc.strerror or exc}; "
                                   "retrying") from None
        if not (self.outgoing.ssh / "revoked-keys.krl").is_file():  # a restore: made anew
            publish_ssh_files(self.store, self.outgoing, self._clock())
        self._ca_files_published = True

    def _older(self) -> dict[str, x509.Certificate]:
        """Earlier generations of the intermediate (after a rekey), by name."""
        return {name: self.generations[name]
                for name in older_names(self.store, "intermediate")}

    def publish(self, jobs: Sequence[PublishJob]) -> None:
        """Every result goes out this way: written, synced, then its original archived.
        Large batches publish behind, in a child process, while the next is decided."""
        if jobs:
            self.ensure_ca_files()
            self._publisher.submit(jobs, self.store.last_submission_id())

    def _record_published(self, tx: Tx) -> None:
        """The mark of what is confirmed published, in TX, if it moved."""
        if self._publisher.confirmed > self._published_mark:
            self._published_mark = self._publisher.confirmed
            tx.set_meta("published_through", str(self._published_mark))

    def expect_results(self, count: int) -> None:
        """COUNT results will be published in this pass: the publisher gets ready."""
        self._publisher.expect(count)

    def flush(self) -> None:
        """Until every submitted result is published, synced and archived, and the last
        batch's checkpoint signed and exported: the export first, while the publisher
        child writes the last batch (the two write different files)."""
        try:
            self._sealer.finish(None)
        finally:
            self._publisher.wait()

    def allocate_name(self, tx: Tx, file_name: str, identity: str) -> str:
        """outgoing/NAME for a submission: never a name that holds another request."""
        base = safe_name(file_name)
        candidate, counter = base, 1
        while candidate in RESERVED_NAMES or (tx.output_owners(candidate) - {identity}):
            counter += 1
            candidate = f"{base}-{counter}"
        return candidate

    # -- recovery -----------------------------------------------------------------------

    def recover(self) -> list[Claimed]:
        """After a crash or a fault: finish what the register decided, return the rest.

        Never while a batch is being published (it is waited for first). Results the
        register holds but outgoing/ lacks are published again; a file in work/ whose
        claim round already committed its answer is archived, not decided again; the
        claimed files still undecided are returned, for the caller to process."""
        self.flush()
        self.check_register()  # before anything decided in a lost history is redone
        self.ensure_ca_files()
        through = self.store.last_submission_id()
        jobs, unknown = recorded_jobs(self.store, self.chains, self.spool, self.heartbeat)
        if unknown:
            raise RegisterBehindError(behind_sentence(
                f"outgoing/ holds {len(unknown)} result(s) the register has no record of "
                f"({', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''}): it lost "
                "committed history (a lost ca.db-wal, or an older copy of ca.db)"))
        pending: list[Claimed] = []
        decided: dict[str, dict[tuple[str, str], str]] = {}
        for claimed in self.spool.pending_work():
            if claimed.claim is not None and claimed.claim not in decided:
                decided[claimed.claim] = self.store.decided_in_claim(claimed.claim)
            output = decided.get(claimed.claim or "", {}).get(
                (claimed.profile, claimed.file_name))
            if output is None:
                pending.append(claimed)
            else:
                jobs.append(PublishJob(output, {}, {}, claimed.path, claimed.file_name,
                                       claimed.signature, claimed.request_file))
        if jobs:
            _log.info("recovered", republished=sum(1 for j in jobs if j.files),
                      archived=sum(1 for j in jobs if j.original is not None))
            for start in range(0, len(jobs), _RECOVERY_CHUNK):  # the watchdog hears
                self._publisher.submit(jobs[start:start + _RECOVERY_CHUNK])  # between
                self.flush()
                self.heartbeat()
        self._publisher.confirm(through)  # all of it checked, or published again
        return pending

    # -- lifetime -------------------------------------------------------------------------

    def on_close(self, stop: Callable[[], None]) -> None:
        """Something of this session's to stop with it (the lint workers)."""
        self._closing.append(stop)

    def close(self) -> None:
        """Wait for the last publication, keep how far it is confirmed, and stop the
        helper threads and agents."""
        try:
            self.flush()
            if self._publisher.confirmed > self._published_mark:
                with self.store.transaction(self.actor, self._clock()) as tx:
                    self._record_published(tx)
        finally:
            for stop in self._closing:
                stop()
            self.workers.shutdown()
            self._sealer.close()
            self._tokens.close()
            self._publisher.close()
            if self._signer_check is not None:
                self._signer_check.close()
            if self._audit_key is not None:
                self._audit_key.close()  # the passphrase forgotten, the agent stopped

    def __enter__(self) -> CASession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
