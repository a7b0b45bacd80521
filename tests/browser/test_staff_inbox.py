"""The staff inbox in a real browser (issue 17): headless Chromium through Selenium, Django's live server.

Three users write to the page (the Send API is the harness's fake Graph server on loopback, so the
project's own HTTP client runs): one asks for a person, one can't be reached (551, with a trace id),
one just chats. A support agent then logs in, finds who is waiting, reads the transcript, answers as
staff (the staff-reply job runs in this process with an rq ``SimpleWorker`` burst and reaches the fake
server) and gives the conversation back to the bot. Screenshots of the waiting queue and of a
transcript, 1400 px wide, go to ``var/screenshots/`` (the README's pictures come from them).

No skip: without Chromium the test fails (``scripts/test.sh`` installs ``chromium`` and
``chromium-driver`` when ``chromedriver`` is missing).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from conversations.models import Conversation
from harness.fake_graph import FakeGraph
from harness.webhooks import PAGE_ID, text_body
from messenger import circuit
from messenger.graph import reset_session
from tests.messenger.helpers import run_worker

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent.parent
SCREENSHOTS = ROOT / "var" / "screenshots"
WAITING, UNREACHABLE, CHATTY = "7000000000000101", "7000000000000102", "7000000000000103"
PASSWORD = "pw-support-agent-123"


def _chrome() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    assert binary and driver_path, "chromium and chromedriver must be installed (scripts/test.sh installs them)"
    options.binary_location = binary
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture
def fake_graph(settings):
    """The fake Send API on loopback, with a page token and a fresh Graph client around the test."""
    with FakeGraph() as fake:
        settings.MESSENGER_GRAPH_API_URL = fake.base_url
        settings.MESSENGER_PAGE_ACCESS_TOKEN = "EAAtestpagetoken"
        settings.MESSENGER_HANDOVER_APP_ID = ""
        reset_session()
        circuit.get_breaker().reset()
        yield fake
        reset_session()
        circuit.get_breaker().reset()


@pytest.fixture
def browser():
    driver = _chrome()
    yield driver
    driver.quit()


def _users_write(post_webhook, fake: FakeGraph) -> None:
    error = json.loads((ROOT / "tests/fixtures/graph/send_error_user_unavailable.json").read_text())
    fake.refuse_psids[UNREACHABLE] = error
    turns = [
        (CHATTY, "hi"),
        (CHATTY, "what are your opening hours?"),
        (UNREACHABLE, "hello, is anyone reading this?"),
        (WAITING, "hi"),
        (WAITING, "My order 4711 arrived broken and I have been waiting for a refund for two weeks now."),
        (WAITING, "I want to talk to a person"),
        (WAITING, "hello?? anyone there"),
    ]
    for number, (psid, text) in enumerate(turns):
        post_webhook(text_body(text, mid=f"m_browser_{number}", psid=psid))
        run_worker()


def _wait_for(driver, css: str):
    return WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def _screenshot(driver, name: str) -> Path:
    """A screenshot 1400 px wide and as tall as the page (capped), under var/screenshots/."""
    height = min(driver.execute_script("return document.body.scrollHeight"), 2400)
    driver.set_window_size(1400, max(height, 800))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    return path


def test_staff_inbox_in_browser_finds_waiting_reads_replies_and_gives_back(
    live_server, browser, fake_graph, post_webhook
):
    """Log in, open the waiting conversation first in the list, read it, answer, give it back."""
    _users_write(post_webhook, fake_graph)
    waiting = Conversation.objects.get(psid=WAITING)
    assert waiting.waiting_since is not None
    assert Conversation.objects.get(psid=UNREACHABLE).waiting_since is not None
    get_user_model().objects.create_superuser("agent", "agent@example.com", PASSWORD)

    browser.get(f"{live_server.url}/admin/login/")
    _wait_for(browser, "#id_username").send_keys("agent")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    banner = _wait_for(browser, "#waiting-banner")
    assert banner.text == "2 conversations waiting for a person"

    banner.find_element(By.TAG_NAME, "a").click()
    _wait_for(browser, "#result_list")
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "th a").text for r in rows] == [UNREACHABLE, WAITING]
    assert "hello?? anyone there" in rows[1].text
    overflow = "const r = document.querySelector('.results'); return r.scrollWidth - r.clientWidth"
    assert browser.execute_script(overflow) == 0  # the columns fit 1400 px, no sideways scrolling
    _screenshot(browser, "waiting-queue")

    rows[1].find_element(By.CSS_SELECTOR, "th a").click()
    _wait_for(browser, ".transcript")
    user_texts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".msg-user .msg-text")]
    assert user_texts[-2:] == ["I want to talk to a person", "hello?? anyone there"]
    markers = browser.find_elements(By.CSS_SELECTOR, ".marker-handed_over")
    assert [m.text.split(":")[0] for m in markers] == ["Stored; a human has the conversation"]
    policy = browser.find_element(By.CSS_SELECTOR, ".reply-policy").text
    assert policy == "Goes as a normal reply (within 24 hours of the user's last message)."
    _screenshot(browser, "transcript")

    browser.find_element(By.ID, "id_staff_reply").send_keys("Sorry about that! I'm Ana, I'll sort out the refund now.")
    browser.find_element(By.NAME, "_continue").click()
    success = _wait_for(browser, ".messagelist .success")
    assert success.text.startswith("Staff reply queued")
    run_worker()
    assert fake_graph.replies()[-1] == "Sorry about that! I'm Ana, I'll sort out the refund now."

    browser.refresh()
    _wait_for(browser, ".msg-staff")
    assert browser.find_elements(By.CSS_SELECTOR, ".msg-staff .msg-text")[-1].text.startswith("Sorry about that!")
    browser.find_element(By.ID, "give-back").click()
    assert _wait_for(browser, ".messagelist .success").text == "Given back to the bot."
    notes = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".msg-note")]
    assert notes[-1].startswith("— Given back to the bot. —")
    waiting.refresh_from_db()
    assert (waiting.status, waiting.waiting_since) == ("active", None)
    assert waiting.page_id == PAGE_ID
