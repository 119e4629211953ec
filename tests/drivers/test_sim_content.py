"""`content` and `pm clear` on the simulated phone: notes and contacts as AOSP's Content.java prints them."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from adb_clients import adbutils_device

from vlagent.drivers.sim.adb_server import SimAdbServer

ADB = shutil.which("adb")
needs_adb_cli = pytest.mark.skipif(ADB is None, reason="Debian's adb CLI is not installed (apt-get install adb)")
NOTES = "content://com.vlagent.notes/notes"
PHONES = "content://com.android.contacts/data/phones"


def test_notes_query_insert_delete_round_trip(adb_sim: SimAdbServer) -> None:
    phone, device = adb_sim["sim-0"].phone, adbutils_device(adb_sim)
    assert device.shell(["content", "query", "--uri", NOTES, "--projection", "_id:text", "--where", "_id=1"]) == (
        "Row: 0 _id=1, text=Call the dentist on Tuesday"
    )
    assert device.shell(["content", "insert", "--uri", NOTES, "--bind", "text:s:Buy milk, eggs"]) == ""
    assert phone.notes[-1] == "Buy milk, eggs"
    rows = device.shell(["content", "query", "--uri", NOTES]).splitlines()
    assert rows[-1] == "Row: 2 _id=3, text=Buy milk, eggs"
    assert device.shell(["content", "delete", "--uri", NOTES, "--where", "_id=1"]) == ""
    assert phone.notes == ["Ideas for the weekend\nHike, museum, pancakes", "Buy milk, eggs"]
    # ids survive the delete, as a provider's rows do
    assert device.shell(["content", "query", "--uri", NOTES, "--projection", "_id"]) == "Row: 0 _id=2\nRow: 1 _id=3"
    device.shell(["content", "delete", "--uri", NOTES])
    assert phone.notes == []
    assert device.shell(["content", "query", "--uri", NOTES]) == "No result found."


def test_query_sorts(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    by_name = ["content", "query", "--uri", PHONES, "--projection", "display_name", "--sort", "display_name DESC"]
    assert device.shell(by_name) == "Row: 0 display_name=Bob Chen\nRow: 1 display_name=Alice Martin"
    bad = device.shell2(["content", "query", "--uri", PHONES, "--sort", "nope"])
    assert "no such column: nope" in bad.output


def test_notes_added_in_the_ui_get_new_ids(adb_sim: SimAdbServer) -> None:
    phone, device = adb_sim["sim-0"].phone, adbutils_device(adb_sim)
    device.shell(["content", "query", "--uri", NOTES])
    phone.delete_notes("Call the dentist on Tuesday")
    phone.add_note("from the UI")
    assert device.shell(["content", "query", "--uri", NOTES, "--projection", "_id"]) == "Row: 0 _id=2\nRow: 1 _id=3"


@needs_adb_cli
def test_contacts_insert_the_android_way_then_query_and_delete(adb_sim: SimAdbServer) -> None:
    phone = adb_sim["sim-0"].phone
    assert ADB is not None
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(adb_sim.port)}

    def shell(*args: str) -> str:
        done = subprocess.run([ADB, "-s", "sim-0", "shell", *args], capture_output=True, timeout=20, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.decode()

    raw = "content://com.android.contacts/raw_contacts"
    shell("content", "insert", "--uri", raw, "--bind", "account_type:n:", "--bind", "account_name:n:")
    ids = shell("content", "query", "--uri", raw, "--projection", "_id").split()
    new_id = max(int(word.split("=")[1]) for word in ids if word.startswith("_id="))
    data = "content://com.android.contacts/data"
    for mimetype, value in (("name", "'Jane Doe'"), ("phone_v2", "'+1 555 0123'")):
        shell(
            "content", "insert", "--uri", data, "--bind", f"raw_contact_id:i:{new_id}",
            "--bind", f"mimetype:s:vnd.android.cursor.item/{mimetype}", "--bind", f"data1:s:{value}",
        )  # fmt: skip
    assert [(c.name, c.phone) for c in phone.contacts][-1] == ("Jane Doe", "+1 555 0123")
    legacy = shell("content", "query", "--uri", "content://contacts/phones/", "--projection", "display_name:number")
    assert legacy.splitlines()[-1] == "Row: 2 display_name=Jane Doe, number=+1 555 0123"
    modern = shell(
        "content", "query", "--uri", PHONES, "--projection", "display_name:data1", "--where", "\"data1='+1 555 0123'\""
    )
    assert modern == "Row: 0 display_name=Jane Doe, data1=+1 555 0123\n"
    shell("content", "delete", "--uri", raw, "--where", f"_id={new_id}")
    assert [c.name for c in phone.contacts] == ["Alice Martin", "Bob Chen"]


def test_a_contact_without_a_number_prints_null(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    device.shell(["content", "insert", "--uri", "content://com.android.contacts/raw_contacts", "--bind", "x:n:"])
    device.shell([
        "content", "insert", "--uri", "content://com.android.contacts/data", "--bind", "raw_contact_id:i:3",
        "--bind", "mimetype:s:vnd.android.cursor.item/name", "--bind", "data1:s:No Number",
    ])  # fmt: skip
    rows = device.shell(["content", "query", "--uri", PHONES, "--projection", "display_name:data1"])
    assert rows.splitlines()[-1] == "Row: 2 display_name=No Number, data1=NULL"


def test_provider_errors_print_like_content_java_and_exit_0(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    missing = device.shell2(["content", "query", "--uri", "content://com.example.nothing/x"])
    assert missing.returncode == 0
    assert missing.output.splitlines()[:2] == [
        "Error while accessing provider:com.example.nothing",
        "java.lang.IllegalStateException: Could not find provider: com.example.nothing",
    ]
    unknown = device.shell2(["content", "query", "--uri", "content://com.vlagent.notes/tags"])
    assert "java.lang.IllegalArgumentException: Unknown URI content://com.vlagent.notes/tags" in unknown.output
    column = device.shell2(["content", "query", "--uri", NOTES, "--projection", "title"])
    assert "Invalid column title" in column.output


def test_pm_clear(adb_sim: SimAdbServer) -> None:
    phone, device = adb_sim["sim-0"].phone, adbutils_device(adb_sim)
    assert phone.open_app("Notes")
    assert device.shell2("pm clear com.vlagent.notes").output == "Success\n"
    assert phone.notes == [] and phone.screen == "home"  # clearing data stops the app
    assert device.shell("pm clear com.android.providers.contacts") == "Success"
    assert phone.contacts == []
    failed = device.shell2("pm clear com.example.none", v2=True)
    assert (failed.returncode, failed.stdout, failed.stderr) == (1, "", "Failed\n")
