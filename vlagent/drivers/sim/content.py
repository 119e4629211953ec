"""The simulated phone's content providers, as ``content query|insert|delete`` reach them.

Notes (``content://com.vlagent.notes/notes``: columns ``_id``, ``text``) and contacts
(``content://com.android.contacts/data/phones``, ``.../raw_contacts``, ``.../data``, the legacy
``content://contacts/phones/``: ``display_name``, ``number``/``data1``...) are rows over the
phone's own notes and contacts, with ids that survive edits made in the UI. A contact is
inserted as Android does it: a ``raw_contacts`` row, then ``data`` rows with
``raw_contact_id:i:ID`` and the name or ``phone_v2`` mimetype; it shows on the phone once it
has a name. Output follows AOSP ``Content.java``: ``Row: 0 display_name=Jane Doe,
data1=+1 555 0100``, ``NULL`` for nulls, ``No result found.``; a provider error is printed
(``Error while accessing provider:AUTHORITY`` and the exception) and the command still exits 0.
This module must not know the adb protocol.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vlagent.drivers.sim.catalog import Contact
from vlagent.drivers.sim.shell import ProgramError, Result

if TYPE_CHECKING:
    from vlagent.drivers.sim.device import SimDevice

__all__ = ["CONTACTS_PACKAGE", "NOTES_PACKAGE", "NOTES_URI", "ContentState", "content"]

NOTES_URI = "content://com.vlagent.notes/notes"
NOTES_PACKAGE = "com.vlagent.notes"
CONTACTS_PACKAGE = "com.android.providers.contacts"


def _ok(text: str = "") -> Result:
    return Result(stdout=text.encode("utf-8"))


# --- content providers --------------------------------------------------------------------------------


@dataclass
class _Ids:
    """Stable row ids for a list the phone keeps without ids (edits in the UI keep the others' ids)."""

    seen: list[Hashable] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    next_id: int = 1

    def sync(self, current: Sequence[Hashable]) -> list[int]:
        current = list(current)
        if current != self.seen:
            matcher = difflib.SequenceMatcher(a=self.seen, b=current, autojunk=False)
            ids: list[int] = [0] * len(current)
            for a, b, size in matcher.get_matching_blocks():
                ids[b : b + size] = self.ids[a : a + size]
            for i, value in enumerate(ids):
                if not value:
                    ids[i] = self.take()
            self.seen, self.ids = current, ids
        return list(self.ids)

    def take(self) -> int:
        value = self.next_id
        self.next_id += 1
        return value


@dataclass
class ContentState:
    """Row ids of the notes and contacts providers, and raw contacts that have no name yet."""

    notes: _Ids = field(default_factory=_Ids)
    contacts: _Ids = field(default_factory=_Ids)
    pending: dict[int, dict[str, str]] = field(default_factory=dict)


class _ProviderError(Exception):
    def __init__(self, authority: str, exception: str) -> None:
        super().__init__(exception)
        self.authority = authority


_Row = dict[str, str | int | None]
_WHERE_RE = re.compile(r"""^\s*(\w+)\s*(=|==|!=|<>|LIKE)\s*(?:'((?:[^']|'')*)'|"([^"]*)"|(-?\w+))\s*$""", re.I)


def _where(clause: str | None, authority: str) -> Callable[[_Row], bool]:
    """A tiny SQL selection: ``col=value`` terms joined by AND (what clients send to these providers)."""
    if not clause:
        return lambda row: True
    terms = []
    for part in re.split(r"\s+AND\s+", clause, flags=re.I):
        match = _WHERE_RE.match(part)
        if match is None:
            raise _ProviderError(
                authority, f'android.database.sqlite.SQLiteException: near "{part.strip()}": syntax error (code 1)'
            )
        column, op, quoted, double, bare = match.groups()
        value = quoted.replace("''", "'") if quoted is not None else double if double is not None else bare
        terms.append((column, op.upper(), value))

    def matches(row: _Row) -> bool:
        for column, op, value in terms:
            if column not in row:
                raise _ProviderError(authority, f"android.database.sqlite.SQLiteException: no such column: {column}")
            cell = "" if row[column] is None else str(row[column])
            if op == "LIKE":
                pattern = "^" + re.escape(value).replace("%", ".*").replace("_", ".") + "$"
                ok = re.match(pattern, cell, re.I | re.S) is not None
            else:
                ok = (cell == value) == (op in ("=", "=="))
            if not ok:
                return False
        return True

    return matches


def _note_rows(dev: SimDevice) -> list[_Row]:
    notes = dev.phone.notes
    return [{"_id": i, "text": text} for i, text in zip(dev.content.notes.sync(notes), notes, strict=True)]


def _contact_rows(dev: SimDevice) -> list[_Row]:
    contacts = dev.phone.contacts
    ids = dev.content.contacts.sync([(c.name, c.phone) for c in contacts])
    return [
        {
            "_id": i,
            "contact_id": i,
            "raw_contact_id": i,
            "display_name": c.name,
            "name": c.name,
            "mimetype": "vnd.android.cursor.item/phone_v2",
            "data1": c.phone or None,
            "number": c.phone or None,
            "person": i,
            "type": 2,
            "account_type": None,
            "account_name": None,
            "deleted": 0,
        }
        for i, c in zip(ids, contacts, strict=True)
    ]


def _raw_contact_rows(dev: SimDevice) -> list[_Row]:
    """Raw contacts: the phone's contacts, and those inserted that have no name yet (display_name NULL)."""
    pending: list[_Row] = [
        {"_id": i, "contact_id": i, "display_name": None, "account_type": None, "account_name": None, "deleted": 0}
        for i in sorted(dev.content.pending)
    ]
    return _contact_rows(dev) + pending


@dataclass(frozen=True)
class _Table:
    authority: str
    rows: Callable[[SimDevice], list[_Row]]
    columns: tuple[str, ...]
    """The columns a query without ``--projection`` prints."""


_CONTACT_PHONES = _Table(
    "com.android.contacts", _contact_rows, ("_id", "contact_id", "raw_contact_id", "display_name", "mimetype", "data1")
)
_TABLES = {
    NOTES_URI: _Table(NOTES_PACKAGE, _note_rows, ("_id", "text")),
    "content://com.android.contacts/data/phones": _CONTACT_PHONES,
    "content://com.android.contacts/data": _CONTACT_PHONES,
    "content://com.android.contacts/contacts": _Table("com.android.contacts", _contact_rows, ("_id", "display_name")),
    "content://com.android.contacts/raw_contacts": _Table(
        "com.android.contacts", _raw_contact_rows, ("_id", "contact_id", "display_name", "account_type", "deleted")
    ),
    "content://contacts/phones": _Table("contacts", _contact_rows, ("_id", "person", "name", "number", "type")),
}
_AUTHORITY_RE = re.compile(r"^content://([^/]+)")


def _table(uri: str) -> _Table:
    key = uri.rstrip("/")
    if key in _TABLES:
        return _TABLES[key]
    match = _AUTHORITY_RE.match(uri)
    authority = match.group(1) if match else uri
    known = {t.authority for t in _TABLES.values()}
    if authority in known:
        word = "URI" if authority == NOTES_PACKAGE else "URL"  # ContactsProvider2 says "Unknown URL"
        raise _ProviderError(authority, f"java.lang.IllegalArgumentException: Unknown {word} {uri}")
    raise _ProviderError(authority, f"java.lang.IllegalStateException: Could not find provider: {authority}")


def _content_args(args: list[str]) -> tuple[str, dict[str, str], list[tuple[str, str, str]]]:
    options: dict[str, str] = {}
    binds: list[tuple[str, str, str]] = []
    i = 0
    while i < len(args):
        name = args[i]
        if not name.startswith("--") or i + 1 >= len(args):
            raise ProgramError(f"[ERROR] Unsupported argument: {name}", 0)
        value = args[i + 1]
        if name == "--bind":
            column, _, typed = value.partition(":")
            kind, _, text = typed.partition(":")
            binds.append((column, kind, text))
        else:
            options[name[2:]] = value
        i += 2
    uri = options.get("uri")
    if uri is None:
        raise ProgramError("[ERROR] Content provider URI not specified. Did you specify --uri argument?", 0)
    return uri, options, binds


def content(dev: SimDevice, args: list[str]) -> Result:
    if not args or args[0] not in ("query", "insert", "delete"):
        raise ProgramError("'content' simulates query, insert and delete only")
    uri, options, binds = _content_args(args[1:])
    try:
        table = _table(uri)
        if args[0] == "query":
            return _query(dev, table, options)
        if args[0] == "insert":
            _insert(dev, uri, table, binds)
        else:
            _delete(dev, uri, table, options.get("where"))
        return _ok()
    except _ProviderError as exc:
        # Content.java prints the error and its stack trace, and the command still exits 0.
        message = f"Error while accessing provider:{exc.authority}\n{exc}\n\tat android.os.Parcel.createException\n"
        return Result(stderr=message.encode())


def _query(dev: SimDevice, table: _Table, options: dict[str, str]) -> Result:
    rows = [row for row in table.rows(dev) if _where(options.get("where"), table.authority)(row)]
    columns = tuple(options["projection"].split(":")) if "projection" in options else table.columns
    for column in columns:
        if rows and column not in rows[0]:
            raise _ProviderError(table.authority, f"java.lang.IllegalArgumentException: Invalid column {column}")
    if not rows:
        return _ok("No result found.\n")
    if "sort" in options:
        rows = _sorted(rows, options["sort"], table.authority)
    lines = []
    for index, row in enumerate(rows):
        cells = ", ".join(f"{c}={'NULL' if row.get(c) is None else row[c]}" for c in columns)
        lines.append(f"Row: {index} {cells}\n")
    return _ok("".join(lines))


def _sorted(rows: list[_Row], order: str, authority: str) -> list[_Row]:
    """``--sort "COLUMN [ASC|DESC]"`` (one column: what clients send)."""
    words = order.split()
    if not words or len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC")):
        raise _ProviderError(authority, f'android.database.sqlite.SQLiteException: near "{order}": syntax error')
    column = words[0]
    if column not in rows[0]:
        raise _ProviderError(authority, f"android.database.sqlite.SQLiteException: no such column: {column}")

    def key(row: _Row) -> tuple[int, int | str]:
        value = row[column]
        return (0, value) if isinstance(value, int) else (1, "" if value is None else str(value))

    return sorted(rows, key=key, reverse=len(words) == 2 and words[1].upper() == "DESC")


def _insert(dev: SimDevice, uri: str, table: _Table, binds: list[tuple[str, str, str]]) -> None:
    values = {column: text for column, kind, text in binds if kind != "n"}
    phone = dev.phone
    if table.authority == NOTES_PACKAGE:
        if "text" not in values:
            raise _ProviderError(table.authority, "java.lang.IllegalArgumentException: a note needs text")
        phone.add_note(values["text"])
        return
    kind = uri.rstrip("/").rsplit("/", 1)[-1]
    if kind == "raw_contacts":
        _contact_rows(dev)  # ids of the contacts there already, before taking a new one
        dev.content.pending[dev.content.contacts.take()] = {}
        return
    if kind != "data" or "raw_contact_id" not in values:
        raise _ProviderError(table.authority, f"java.lang.UnsupportedOperationException: Unknown uri: {uri}")
    raw = int(values["raw_contact_id"])
    field_name = {"vnd.android.cursor.item/name": "name", "vnd.android.cursor.item/phone_v2": "phone"}.get(
        values.get("mimetype", "")
    )
    rows = _contact_rows(dev)
    if field_name is None:
        return  # other data kinds (email, note...) are stored by Android; nothing on this phone shows them
    text = values.get("data1", "")
    if raw in dev.content.pending:
        pending = dev.content.pending[raw]
        pending[field_name] = text
        if "name" in pending:  # the contact shows up once it has a name
            del dev.content.pending[raw]
            phone.add_contact(pending["name"], pending.get("phone", ""))
            dev.content.contacts.seen.append((pending["name"], pending.get("phone", "")))
            dev.content.contacts.ids.append(raw)
        return
    ids = [row["_id"] for row in rows]
    if raw not in ids:
        raise _ProviderError(table.authority, f"java.lang.IllegalArgumentException: no raw contact {raw}")
    contacts = phone.contacts
    at = ids.index(raw)
    old = contacts[at]
    contacts[at] = Contact(text, old.phone) if field_name == "name" else Contact(old.name, text)
    phone.replace_contacts(contacts)
    dev.content.contacts.seen[at] = (contacts[at].name, contacts[at].phone)


def _delete(dev: SimDevice, uri: str, table: _Table, where: str | None) -> None:
    matches = _where(where, table.authority)
    phone = dev.phone
    if table.authority == NOTES_PACKAGE:
        rows = _note_rows(dev)
        keep = [row for row in rows if not matches(row)]
        phone.replace_notes([str(row["text"]) for row in keep])
        dev.content.notes.seen = [row["text"] for row in keep]
        dev.content.notes.ids = [int(str(row["_id"])) for row in keep]
        return
    if table.rows is _raw_contact_rows:
        for row in _raw_contact_rows(dev):
            if row["display_name"] is None and matches(row):
                dev.content.pending.pop(int(str(row["_id"])), None)
    rows = _contact_rows(dev)
    keep_rows = [(row, contact) for row, contact in zip(rows, phone.contacts, strict=True) if not matches(row)]
    phone.replace_contacts([contact for _, contact in keep_rows])
    dev.content.contacts.seen = [(c.name, c.phone) for _, c in keep_rows]
    dev.content.contacts.ids = [int(str(row["_id"])) for row, _ in keep_rows]
