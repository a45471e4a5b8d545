"""The UI's pages as a logged-in browser gets them."""

from __future__ import annotations

import httpx

from tests.conftest import TOKEN, Running


async def page(running: Running, path: str) -> str:
    """A UI page's HTML, as a browser logged in with the admin token sees it."""
    async with httpx.AsyncClient(
        transport=running.client._transport, base_url="http://engine.test"
    ) as browser:
        login = await browser.post(
            "/login",
            content=f"token={TOKEN}&next=/workflows",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert login.status_code == 303, login.text
        response = await browser.get(path)
        assert response.status_code == 200, response.text
        return response.text
