"""Parsers of what Android's shell commands print (REFERENCE §9 formats, Android 5-15), on literal outputs."""

from __future__ import annotations

import pytest

from vlagent.tasks.android import (
    AmbiguousRowError,
    ShellOutputError,
    content_rows,
    dump_problem,
    focused_window,
    night_mode,
    provider_missing,
    resumed_activity,
    setting_value,
)
from vlagent.tasks.state import Foreground


@pytest.mark.parametrize(
    ("output", "value"),
    [
        ("1\n", "1"),
        ("1\r\n", "1"),
        ("null\n", None),  # an unknown or unset key
        ("3", "3"),
        ("com.android.adbkeyboard/.AdbIME\n", "com.android.adbkeyboard/.AdbIME"),
        ("WARNING: linker: unused DT entry\n0\n", "0"),
    ],
)
def test_setting_value(output: str, value: str | None) -> None:
    assert setting_value(output) == value


def test_empty_settings_output_is_not_an_answer() -> None:
    with pytest.raises(ShellOutputError, match="printed nothing"):
        setting_value("\r\n")


@pytest.mark.parametrize(
    ("output", "mode"),
    [
        ("Night mode: yes\n", "yes"),
        ("Night mode: no\r\n", "no"),
        ("Night mode: auto\n", "auto"),
        ("Night mode: custom_bedtime\n", "custom_bedtime"),
        ("Night mode: custom\n", "custom"),
        ("cmd: Can't find service: uimode\n", None),
        ("", None),
    ],
)
def test_night_mode(output: str, mode: str | None) -> None:
    assert night_mode(output) == mode


ANDROID_14_ACTIVITIES = """ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)
Display #0 (activities from top to bottom):
  * Task{bb1a8f3 #12 type=standard A=1000:com.android.settings U=0 visible=true mode=fullscreen}
    topResumedActivity=ActivityRecord{8782c44 u0 com.android.settings/.Settings t12}
    * Hist  #0: ActivityRecord{8782c44 u0 com.android.settings/.Settings t12}
  * Task{1c2a7d5 #1 type=home}
    * Hist  #0: ActivityRecord{a1b2c3 u0 com.google.android.apps.nexuslauncher/.NexusLauncherActivity t1}

  Resumed activities in task display areas (from top to bottom):
    Resumed: ActivityRecord{8782c44 u0 com.android.settings/.Settings t12}

  ResumedActivity: ActivityRecord{8782c44 u0 com.android.settings/.Settings t12}
"""
ANDROID_9_ACTIVITIES = """  Stack #1: type=standard mode=fullscreen
    mResumedActivity: ActivityRecord{3f2a1b u0 com.android.chrome/org.chromium.chrome.browser.ChromeTabbedActivity t5}
  mFocusedActivity: ActivityRecord{3f2a1b u0 com.android.chrome/org.chromium.chrome.browser.ChromeTabbedActivity t5}
"""


@pytest.mark.parametrize(
    ("dump", "foreground"),
    [
        (ANDROID_14_ACTIVITIES, Foreground("com.android.settings", ".Settings")),
        (ANDROID_9_ACTIVITIES, Foreground("com.android.chrome", "org.chromium.chrome.browser.ChromeTabbedActivity")),
        (
            "  ResumedActivity: ActivityRecord{1 u0 com.vlagent.notes/.MainActivity t3}\n",
            Foreground("com.vlagent.notes", ".MainActivity"),
        ),
        ("    Resumed: ActivityRecord{5 u10 com.work.app/.Main t9}\n", Foreground("com.work.app", ".Main")),
        ("  mFocusedActivity: ActivityRecord{5 u0 com.old.app/.Main t9}\n", Foreground("com.old.app", ".Main")),
        ("ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)\n  (nothing)\n", None),
        ("  mResumedActivity: null\n", None),
    ],
)
def test_resumed_activity_across_android_versions(dump: str, foreground: Foreground | None) -> None:
    assert resumed_activity(dump) == foreground


@pytest.mark.parametrize(
    ("dump", "foreground"),
    [
        ("  mCurrentFocus=Window{b27cd4c u0 com.android.settings/com.android.settings.Settings}\n",
         Foreground("com.android.settings", "com.android.settings.Settings")),
        # the shade has focus: no app window; the focused app still names the one behind it
        ("  mCurrentFocus=Window{1d3 u0 NotificationShade}\n  mFocusedApp=ActivityRecord{9 u0 com.x.y/.Main t349}\n",
         Foreground("com.x.y", ".Main")),
        ("  mFocusedApp=AppWindowToken{7 token=Token{8 ActivityRecord{9 u0 com.old/.Main t4}}}\n",
         Foreground("com.old", ".Main")),
        ("  mCurrentFocus=null\n  mFocusedApp=null\n", None),
    ],
)  # fmt: skip
def test_focused_window(dump: str, foreground: Foreground | None) -> None:
    assert focused_window(dump) == foreground


def test_content_rows_with_commas_newlines_nulls_and_crlf() -> None:
    output = (
        "Row: 0 display_name=Doe, Jane, data1=+1 555 0100\r\n"
        "Row: 1 display_name=NULL, data1=0100\r\n"
        "Row: 2 display_name=Two\nlines, data1=5\r\n"
    )
    assert content_rows(output, ("display_name", "data1")) == [
        {"display_name": "Doe, Jane", "data1": "+1 555 0100"},
        {"display_name": None, "data1": "0100"},
        {"display_name": "Two\nlines", "data1": "5"},
    ]
    assert content_rows("No result found.\n", ("display_name", "data1")) == []


def test_content_rows_after_an_id_take_the_first_separator() -> None:
    output = "Row: 0 _id=4, text=a, text=b\nRow: 1 _id=7, text=\n"
    assert content_rows(output, ("_id", "text")) == [{"_id": "4", "text": "a, text=b"}, {"_id": "7", "text": ""}]


def test_a_text_value_holding_the_next_column_is_ambiguous() -> None:
    with pytest.raises(AmbiguousRowError):
        content_rows("Row: 0 display_name=Jane, data1=x, data1=+1 555\n", ("display_name", "data1"))
    assert content_rows("Row: 0 display_name=Jane, data1=x\n", ("display_name",)) == [
        {"display_name": "Jane, data1=x"}  # one column per query: never ambiguous
    ]


@pytest.mark.parametrize(
    "output",
    [
        "Error while accessing provider:com.vlagent.notes\njava.lang.IllegalArgumentException: Unknown URI\n",
        "usage: adb shell content [subcommand] [options]\n",
        "Row: 1 _id=1, text=x\n",  # rows must count from 0
        "Row: 0 text=x\n",  # not the projection asked for
        "Row: 0 _id=x1, text=y\n",  # an id that is not a number
    ],
)
def test_content_rows_refuse_what_query_does_not_print(output: str) -> None:
    with pytest.raises(ShellOutputError):
        content_rows(output, ("_id", "text"))


def test_provider_missing() -> None:
    assert provider_missing("Error while accessing provider:com.vlagent.notes\njava.lang.IllegalArgumentException")
    assert provider_missing("[ERROR] Could not find provider: com.vlagent.notes")
    assert not provider_missing("No result found.\n")


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        ("<?xml version='1.0' ?><hierarchy rotation=\"0\"></hierarchy>UI hierchary dumped to: /dev/tty", None),
        ("ERROR: could not get idle state.\n", "idle"),
        ("ERROR: null root node returned by UiTestAutomationBridge.\n", "null root"),
        ("UI hierchary dumped to: /dev/tty\n", "no xml"),
        (
            "java.lang.IllegalStateException: UiAutomationService android.accessibilityservice."
            "IAccessibilityServiceClient$Stub$Proxy@f18df39already registered!\n",
            "taken",
        ),
        ("", "no xml"),
    ],
)
def test_dump_problem(output: str, problem: str | None) -> None:
    assert dump_problem(output) == problem
