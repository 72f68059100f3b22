"""`epm webhook`, the README's local change-notification endpoint, as a real process: it answers Graph's validation
handshake, prints each notification it is sent as a JSON line, and refuses what is no notification batch. The
whole path (a subscription's handshake through the gateway) runs in tests/e2e/test_readme.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp

from tests.system import ROOT, free_port


async def test_the_webhook_answers_the_handshake_and_prints_each_notification(tmp_path):
    port, out = free_port(), tmp_path / "out"
    with open(out, "wb") as stdout:
        webhook = subprocess.Popen([sys.executable, "-m", "services.cli", "webhook", "--port", str(port)],
                                   cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/epm"
        async with aiohttp.ClientSession() as http:
            for _ in range(200):  # until it listens
                try:
                    async with http.get(url) as listening:
                        assert listening.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            async with http.post(url, params={"validationToken": "Validation: a token & more"}) as handshake:
                assert (handshake.status, handshake.content_type) == (200, "text/plain")
                assert await handshake.text() == "Validation: a token & more"
            batch = [{"id": "1", "changeType": "created", "clientState": "s"}, {"id": "2", "changeType": "updated"}]
            async with http.post(url, json={"value": batch}) as notified:
                assert notified.status == 202
            for body in ({"value": "not a list"}, [1, 2], "{"):
                async with http.post(url, data=json.dumps(body) if body != "{" else body) as refused:
                    assert refused.status == 400
    finally:
        webhook.terminate()
        _, err = webhook.communicate(timeout=30)
    assert [json.loads(line) for line in out.read_text().splitlines()] == batch
    assert b"validated /epm" in err
