"""The reviewer console in headless Chromium against the real gateway, services and PostgreSQL: the list (counts,
sorting, filters, paging), a request's details and timeline, Analyze, the decisions and why they may be refused,
live updates from the audit feed, the reports, sign-in with a pasted token, keyboard use and an axe audit.
With EPM_CONSOLE_SCREENSHOTS=<folder> the screenshots of the README are written there."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections import Counter
from pathlib import Path

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import expect

from . import console_demo as demo_data
from .console_demo import REQUESTS, Demo, decide, send
from .people import Person
from .test_elevation_requests import NEW_MEMBERS
from .test_role_assignments import MANAGER, READER, assign

SCREENSHOTS = os.environ.get("EPM_CONSOLE_SCREENSHOTS", "")


@pytest.fixture
async def demo(client, token, admin, shared_feeds) -> Demo:
    return await demo_data.seed(client, token, admin)


async def sign_in(page, gateway_url: str, who: Person, hash_: str = "", live: str = "● Live") -> None:
    """Paste the person's token on the sign-in screen, as a developer does; wait for the list and live updates."""
    await page.goto(f"{gateway_url}/console/{hash_}")
    await page.get_by_label("Access token").fill(who.headers["Authorization"].removeprefix("Bearer "))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#who")).to_contain_text(who.upn)
    await expect(page.locator("#live")).to_have_text(live)


def rows(page):
    return page.locator("table.requests tbody tr[data-id]")


def row(page, request_id: str):
    return page.locator(f'table.requests tr[data-id="{request_id}"]')


async def open_request(page, request_id: str) -> None:
    await row(page, request_id).get_by_role("link").click()
    await expect(page.locator("#detail h2")).to_be_focused()


def action(page, name: str):
    """A button of the open request (not the status tab "Approved" or "Denied")."""
    return page.locator("#detail").get_by_role("button", name=name, exact=True)


async def decide_with_reason(page, verb: str, title: str, reason: str) -> None:
    """Approve, Deny or Revoke the open request through its dialog, which opens with the reason focused."""
    await action(page, verb).click()
    dialog = page.get_by_role("dialog", name=title)
    await expect(dialog.get_by_label("Reason")).to_be_focused()
    await dialog.get_by_label("Reason").fill(reason)
    await dialog.get_by_role("button", name=verb).click()
    await expect(page.locator("dialog")).to_have_count(0)


async def count_of(page, tab: str) -> str:
    return await page.locator(f'[data-count="{tab}"]').text_content()


async def test_the_list_shows_pending_and_recent_requests_with_counts(page, gateway_url, demo):
    megan = demo.people["megan.bowen"]
    await sign_in(page, gateway_url, megan)
    await expect(rows(page)).to_have_count(4)  # the pending tab first: what needs a decision
    await expect(page.locator('[data-count="pending"]')).to_have_text("4")
    counts = {tab: await count_of(page, tab) for tab in ("all", "approved", "denied", "revoked", "expired")}
    assert counts == {"all": "7", "approved": "1", "denied": "1", "revoked": "1", "expired": "0"}
    malicious = row(page, demo.requests["malicious"]["id"])
    await expect(malicious.locator(".verdict-malicious")).to_have_text(re.compile("Malicious"))
    await expect(malicious).to_contain_text("LAPTOP-ALEX")
    await page.get_by_role("button", name=re.compile("^Denied")).click()
    await expect(rows(page)).to_have_count(1)
    await expect(rows(page)).to_contain_text("procdump64.exe")
    await page.get_by_role("button", name=re.compile("^All")).click()
    await expect(rows(page)).to_have_count(7)


async def test_sorting_filtering_and_paging(page, gateway_url, client, demo):
    for i in range(14):  # 18 pending in all: two pages of 15 (two devices: each may hold 10 open requests)
        await demo_data.request(client, demo, "adele.vance" if i < 7 else "diego.siciliani", demo_data.file(
            f"tool-{i:02}.exe", rf"C:\Tools\tool-{i:02}.exe", "Contoso Tools"), f"Batch job {i}")
    await sign_in(page, gateway_url, demo.people["megan.bowen"])
    await expect(rows(page)).to_have_count(15)
    await expect(page.locator("nav.pager")).to_contain_text("1–15 of 18")
    await page.get_by_role("button", name="Next ›").click()
    await expect(rows(page)).to_have_count(3)
    await expect(page.locator("nav.pager")).to_contain_text("16–18 of 18")
    await page.get_by_role("button", name="‹ Previous").click()
    await expect(rows(page)).to_have_count(15)

    await page.get_by_role("button", name="File").click()  # ascending by file name
    await expect(page.locator("th[aria-sort=ascending]")).to_have_text(re.compile("File"))
    await expect(rows(page).first).to_contain_text("7zFM.exe")
    await page.get_by_role("button", name="Next ›").click()
    await expect(rows(page)).to_have_count(3)
    last = await rows(page).last.get_by_role("link").text_content()  # the last name in the database's collation
    await page.get_by_role("button", name="File").click()
    await expect(page.locator("th[aria-sort=descending]")).to_have_text(re.compile("File"))
    await expect(rows(page).first.get_by_role("link")).to_have_text(last)
    await expect(rows(page).last).not_to_contain_text("7zFM.exe")  # back on the first page: 15 of 18
    await page.get_by_role("button", name="Next ›").click()
    await expect(rows(page).last.get_by_role("link")).to_have_text("7zFM.exe")

    await page.get_by_label("Device").fill("lynne")
    await page.get_by_role("button", name="Apply").click()
    await expect(rows(page)).to_have_count(1)
    await expect(rows(page)).to_contain_text("certutil.exe")
    await expect(page.locator('[data-count="pending"]')).to_have_text("1")  # counts follow the filters
    await page.get_by_label("Device").fill("")
    await page.get_by_label("User").fill("diego")
    await page.get_by_label("File").fill("tool-1")
    await page.get_by_role("button", name="Apply").click()
    await expect(rows(page)).to_have_count(4)  # tool-10 .. tool-13, diego's
    await page.get_by_role("button", name="Clear").click()
    await expect(rows(page)).to_have_count(15)


async def test_a_request_shows_file_device_user_timeline_and_countdown(page, gateway_url, demo):
    await sign_in(page, gateway_url, demo.people["megan.bowen"])
    request = demo.requests["dual-use"]
    await open_request(page, request["id"])
    detail = page.locator("#detail")
    for text in ("certutil.exe", r"C:\Windows\System32\certutil.exe", request["applicationDetail"]["fileHash"],
                 "Microsoft Windows", "Microsoft Windows Operating System 10.0.22621.4111",
                 "lynne.robbins@contoso.example", "Renew the VPN certificate the helpdesk sent", "LAPTOP-LYNNE",
                 "EliteBook 840"):
        await expect(detail).to_contain_text(text)
    await expect(detail.locator(".compliance-inGracePeriod")).to_have_text("inGracePeriod")
    await expect(detail.locator(".expiry")).to_have_text(re.compile(r"^Expires unreviewed in 6 d 23 h"))
    await expect(detail.locator(".timeline li")).to_have_count(1)
    await expect(detail.locator(".timeline li")).to_contain_text("Create by lynne.robbins@contoso.example")
    assert page.url.endswith(f"#/requests/{request['id']}")  # a link to it

    revoked = demo.requests["revoked"]
    await page.goto(f"{gateway_url}/console/#/requests/{revoked['id']}")  # opened from its link
    await expect(detail.locator(".timeline li")).to_have_count(3)
    await expect(detail.locator(".timeline")).to_contain_text("Revoke by megan.bowen@contoso.example")
    await expect(detail.locator(".timeline")).to_contain_text("The device fell out of compliance.")
    await expect(detail).to_contain_text("No decision left to take: the request is revoked.")
    await expect(action(page, "Approve")).to_have_count(0)


async def test_analyze_makes_a_malicious_driver_impossible_to_miss(page, gateway_url, demo):
    await sign_in(page, gateway_url, demo.people["megan.bowen"])
    await open_request(page, demo.requests["malicious"]["id"])
    await action(page, "Analyze").click()
    banner = page.locator("#detail .banner-danger[role=alert]")
    await expect(banner).to_contain_text("Malicious file: do not approve")
    card = page.locator("#detail .analysis-card")
    await expect(card.locator(".score-value")).to_have_text(re.compile(r"^(9\d|100)$"))
    await expect(card.locator(".evidence")).to_contain_text("loldrivers")
    await expect(card.locator(".sources a").first).to_have_attribute("href", re.compile("loldrivers.io"))
    await expect(card.locator(".summary")).to_contain_text("Risk")
    await expect(card).to_contain_text("User risk")
    await expect(card).to_contain_text("Device risk")
    await action(page, "Approve").click()  # the dialog repeats the warning
    await expect(page.locator("dialog .banner-danger")).to_contain_text("found this file malicious")
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator("dialog")).to_have_count(0)

    await open_request(page, demo.requests["dual-use"]["id"])
    await action(page, "Analyze").click()
    await expect(page.locator("#detail .banner-warn[role=alert]")).to_contain_text("Dual-use binary")
    await expect(page.locator("#detail .evidence")).to_contain_text("lolbas")

    await open_request(page, demo.requests["clean"]["id"])
    await action(page, "Analyze").click()
    await expect(page.locator("#detail .analysis-card")).to_be_visible()
    await expect(page.locator("#detail .banner")).to_have_count(0)  # nothing to warn of: no banner


async def test_approve_with_a_reason_changes_the_state_everywhere(page, gateway_url, client, demo):
    megan = demo.people["megan.bowen"]
    request = demo.requests["clean"]
    await sign_in(page, gateway_url, megan)
    await open_request(page, request["id"])
    await decide_with_reason(page, "Approve", "Approve elevation", "Auditor's archive, checked with the sender.")
    detail = page.locator("#detail")
    await expect(detail.locator(".status-approved")).to_have_text("Approved")
    await expect(detail.locator(".expiry")).to_have_text(re.compile(r"^Elevation allowed until .* \(in 23 h 59 min\)"))
    await expect(action(page, "Revoke")).to_be_enabled()
    await expect(detail.locator(".timeline")).to_contain_text("Approve by megan.bowen@contoso.example")
    await expect(row(page, request["id"]).locator(".status-approved")).to_have_text("Approved")
    await expect(page.locator('[data-count="pending"]')).to_have_text("3")
    stored = await send(client, "GET", f"{REQUESTS}/{request['id']}", megan.headers)
    assert stored["status"] == "approved" and stored["reviewCompletedByUserId"] == megan.oid
    assert stored["reviewerJustification"] == "Auditor's archive, checked with the sender."

    await decide_with_reason(page, "Revoke", "Revoke approval", "Sent by mistake")
    await expect(detail.locator(".status-revoked")).to_have_text("Revoked")
    assert (await send(client, "GET", f"{REQUESTS}/{request['id']}", megan.headers | NEW_MEMBERS))["status"] == \
        "revoked"


async def test_deny_with_a_reason(page, gateway_url, client, demo):
    megan = demo.people["megan.bowen"]
    request = demo.requests["malicious"]
    await sign_in(page, gateway_url, megan)
    await open_request(page, request["id"])
    await decide_with_reason(page, "Deny", "Deny elevation", "Known malicious driver (LOLDrivers).")
    await expect(page.locator("#detail .status-denied")).to_have_text("Denied")
    stored = await send(client, "GET", f"{REQUESTS}/{request['id']}", megan.headers)
    assert stored["status"] == "denied" and stored["reviewerJustification"] == "Known malicious driver (LOLDrivers)."


async def test_a_reader_sees_why_they_cannot_decide(page, gateway_url, client, admin, demo):
    reader = demo.people["diego.siciliani"]
    await assign(client, admin, reader.oid, READER)
    await sign_in(page, gateway_url, reader)
    await expect(page.locator("#who")).to_contain_text("Endpoint Privilege Reader")
    await open_request(page, demo.requests["clean"]["id"])
    for name in ("Approve", "Deny"):
        await expect(page.locator("#detail").get_by_role("button", name=name)).to_be_disabled()
    why = page.locator("#why-not")
    await expect(why).to_contain_text(
        "Deciding needs the Endpoint Privilege Manager or Endpoint Security Manager role.")
    await expect(why).to_contain_text("Your role: Endpoint Privilege Reader (view only).")
    await expect(action(page, "Approve")).to_have_attribute(
        "aria-describedby", "why-not")
    await action(page, "Analyze").click()  # viewing and analyzing stay open to a reader
    await expect(page.locator("#detail .analysis-card")).to_be_visible()


async def test_no_role_and_own_requests_cannot_be_decided(page, gateway_url, client, admin, demo):
    alex = demo.people["alex.wilber"]  # no Intune role
    await sign_in(page, gateway_url, alex, live="Live updates off")  # signed in, but he may not even view
    await expect(page.locator("table.requests [role=alert]")).to_contain_text("View elevation requests' is required")
    await expect(page.locator("#who")).not_to_contain_text("·")  # no role named beside him
    await page.get_by_role("button", name="Sign out").click()

    await assign(client, admin, alex.oid, MANAGER)  # a reviewer now, but not of his own request
    await sign_in(page, gateway_url, alex)
    await open_request(page, demo.requests["malicious"]["id"])
    await expect(action(page, "Approve")).to_be_disabled()
    await expect(page.locator("#why-not")).to_have_text(
        re.compile("You asked for this elevation yourself: another reviewer has to decide it."))
    await open_request(page, demo.requests["clean"]["id"])  # someone else's: his to decide
    await expect(action(page, "Approve")).to_be_enabled()


async def test_the_server_refusal_is_shown_when_the_role_ends_after_sign_in(page, gateway_url, client, admin, demo):
    diego = demo.people["diego.siciliani"]
    assignment = await assign(client, admin, diego.oid, MANAGER)
    await sign_in(page, gateway_url, diego)
    await open_request(page, demo.requests["clean"]["id"])
    await send(client, "DELETE", f"/beta/privilegedRoleAssignments/{assignment['id']}", admin, status=204)
    await action(page, "Approve").click()
    dialog = page.get_by_role("dialog", name="Approve elevation")
    await dialog.get_by_role("button", name="Approve").click()
    await expect(dialog.get_by_role("alert")).to_contain_text("Endpoint Privilege Manager")
    await page.keyboard.press("Escape")
    await expect(page.locator("dialog")).to_have_count(0)
    stored = await send(client, "GET", f"{REQUESTS}/{demo.requests['clean']['id']}", demo.people["megan.bowen"].headers)
    assert stored["status"] == "pending"


async def test_the_list_follows_other_reviewers_decisions_without_polling(page, gateway_url, client, token, admin,
                                                                         demo):
    await sign_in(page, gateway_url, demo.people["megan.bowen"])
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if "/beta/" in r.url else None)
    await asyncio.sleep(1.5)
    assert calls == [], "the console polls the server while nothing changes"
    unknown, dual_use = demo.requests["unknown"], demo.requests["dual-use"]
    await open_request(page, unknown["id"])
    nestor = demo_data.person(token, "nestor.wilke")  # another reviewer, elsewhere
    await assign(client, admin, nestor.oid, MANAGER)
    await decide(client, nestor, unknown, "deny", "Not for lab devices")
    await decide(client, nestor, dual_use, "approve", "Checked with the helpdesk")
    await expect(row(page, unknown["id"]).locator(".status-denied")).to_have_text("Denied")
    await expect(row(page, dual_use["id"]).locator(".status-approved")).to_have_text("Approved")
    await expect(page.locator("#detail .status-denied")).to_have_text("Denied")  # the open request too
    await expect(page.locator("#detail")).to_contain_text("Not for lab devices")
    await expect(page.locator('[data-count="pending"]')).to_have_text("2")
    await demo_data.request(client, demo, "adele.vance", demo_data.PROCDUMP, "Need a dump for support")
    await expect(page.locator(".notice")).to_contain_text("New requests arrived.")
    await page.get_by_role("button", name="Show them").click()
    await expect(rows(page)).to_have_count(3)


REPORT_TYPES = {"userConfirmedElevation": "User confirmed", "supportApprovedElevation": "Support approved",
                "zeroTouchElevation": "Automatic", "unmanagedElevation": "Unmanaged (Run as administrator)"}


def top(counter: Counter, n: int = 8) -> list[tuple[str, int]]:
    """The summary's order: most first, ties by key."""
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:n]


async def test_reports_chart_a_month_of_elevations(page, gateway_url, client, token, admin, shared_feeds):
    demo = await demo_data.seed(client, token, admin, elevations=60)
    events = demo.elevations
    await sign_in(page, gateway_url, demo.people["megan.bowen"])
    await page.get_by_role("link", name="Reports").click()
    reports = page.locator("#reports-view")
    await expect(reports.locator(".report-head")).to_contain_text("Last 30 days · 60 elevations")
    by_type = Counter(e["elevationType"] for e in events)
    for elevation_type, label in REPORT_TYPES.items():
        kpi = reports.locator(".kpi", has=page.get_by_text(label, exact=True))
        await expect(kpi.locator(".kpi-value")).to_have_text(str(by_type[elevation_type]))

    per_day = Counter((e["eventDateTime"][:10], e["elevationType"]) for e in events)
    await reports.get_by_text("Show as a table").click()
    table = await reports.locator("details table tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert len(table) == 30 and sum(int(n) for _, *counts in table for n in counts) == 60
    assert table == [[day, *(str(per_day[day, t]) for t in REPORT_TYPES)] for day, *_ in table]
    bars = reports.locator("svg.plot").first.locator("rect")
    await expect(bars).to_have_count(len(per_day))  # one bar segment per day and type that has elevations

    names = {e["hash"]: e["filePath"].rsplit("\\", 1)[-1] for e in events}
    expected = {
        "Top files": [(names[key], n) for key, n in top(Counter(e["hash"] for e in events))],
        "Top users": top(Counter(e["upn"] for e in events)),
        "Top devices": [(demo_name, n) for key, n in top(Counter(e["deviceId"] for e in events))
                        for demo_name, device_id in demo.devices.items() if device_id == key],
    }
    for title, ranking in expected.items():
        chart = reports.locator("section.chart", has=page.get_by_role("heading", name=title)).get_by_role("img")
        await expect(chart).to_have_attribute("aria-label", f"{title}: " + ", ".join(f"{k} {n}" for k, n in ranking))


async def test_a_bad_pasted_token_is_refused_with_the_reason(page, gateway_url, token):
    from services.common.auth import mint

    forged = mint("not-the-gateway-secret-but-long-enough-for-hs256", tenant=str(uuid.uuid4()),
                  scopes=["DeviceManagementConfiguration.Read.All"])
    for pasted, reason in (("this is no token", "This token was refused"), (forged, "This token was refused"),
                           (token(hours=-1), "expired")):
        await page.goto(f"{gateway_url}/console/")
        await page.get_by_label("Access token").fill(pasted)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#sign-in [role=alert]")).to_contain_text(reason)
        await expect(page.locator("header.top")).to_be_hidden()
        assert await page.evaluate("sessionStorage.length") == 0, "a refused token is kept"


async def focused_text(page) -> str:
    return await page.evaluate("document.activeElement.textContent.trim()")


async def test_a_reviewer_can_do_everything_with_the_keyboard(page, gateway_url, demo):
    megan = demo.people["megan.bowen"]
    await page.goto(f"{gateway_url}/console/")
    await expect(page.get_by_label("Access token")).to_be_focused()
    await page.keyboard.press("Shift+Tab")  # the skip link comes first
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Tab")
    await page.keyboard.insert_text(megan.headers["Authorization"])  # "Bearer ..." as copied: the prefix is dropped
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#who")).to_contain_text(megan.upn)

    request = demo.requests["clean"]
    await row(page, request["id"]).get_by_role("link").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail h2")).to_be_focused()
    for _ in range(4):
        if await focused_text(page) == "Approve":
            break
        await page.keyboard.press("Tab")
    await expect(action(page, "Approve")).to_be_focused()
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Approve elevation")
    await expect(dialog.get_by_label("Reason")).to_be_focused()
    for _ in range(3):  # Reason, Cancel, Approve and round again: focus stays in the dialog
        await page.keyboard.press("Tab")
    await expect(dialog.get_by_label("Reason")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.locator("dialog")).to_have_count(0)
    await expect(action(page, "Approve")).to_be_focused()  # back where the reviewer was
    await page.keyboard.press("Enter")
    await page.keyboard.type("Checked the archive's origin")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail .status-approved")).to_have_text("Approved")
    await expect(page.locator("#detail h2")).to_be_focused()


async def accessibility_violations(page) -> str:
    """axe-core's WCAG 2.x A/AA rules on the page as it is: the report, empty when there is nothing."""
    results = await Axe().run(page, options={"runOnly": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]})
    return results.generate_report() if results.violations_count else ""


async def test_every_screen_passes_an_axe_audit(page, gateway_url, client, token, admin, shared_feeds):
    demo = await demo_data.seed(client, token, admin, elevations=40)
    await page.goto(f"{gateway_url}/console/")
    await expect(page.get_by_label("Access token")).to_be_visible()
    screens = {"sign-in": await accessibility_violations(page)}
    await sign_in(page, gateway_url, demo.people["megan.bowen"])
    screens["list"] = await accessibility_violations(page)
    await open_request(page, demo.requests["malicious"]["id"])
    await action(page, "Analyze").click()
    await expect(page.locator("#detail .analysis-card")).to_be_visible()
    screens["request with analysis"] = await accessibility_violations(page)
    await action(page, "Deny").click()
    await expect(page.get_by_role("dialog")).to_be_visible()
    screens["reason dialog"] = await accessibility_violations(page)
    await page.keyboard.press("Escape")
    await page.get_by_role("link", name="Reports").click()
    await expect(page.locator("#reports-view .kpi")).to_have_count(4)
    screens["reports"] = await accessibility_violations(page)
    failing = {name: report for name, report in screens.items() if report}
    assert not failing, "\n".join(f"--- {name}\n{report}" for name, report in failing.items())


@pytest.mark.skipif(not SCREENSHOTS, reason="EPM_CONSOLE_SCREENSHOTS=<folder> writes the README's screenshots")
async def test_write_the_readme_screenshots(page, gateway_url, client, token, admin, shared_feeds):
    demo = await demo_data.seed(client, token, admin, elevations=120)
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    await sign_in(page, gateway_url, demo.people["megan.bowen"])
    await page.get_by_role("button", name=re.compile("^All")).click()
    await expect(rows(page)).to_have_count(7)
    await page.screenshot(path=folder / "console-list.png")
    await open_request(page, demo.requests["malicious"]["id"])
    await action(page, "Analyze").click()
    await expect(page.locator("#detail .analysis-card")).to_be_visible()
    await page.screenshot(path=folder / "console-request.png")
    await page.get_by_role("link", name="Reports").click()
    await expect(page.locator("#reports-view .kpi")).to_have_count(4)
    await page.screenshot(path=folder / "console-reports.png", full_page=True)
    assert all((folder / f"console-{name}.png").stat().st_size > 10_000 for name in ("list", "request", "reports"))
