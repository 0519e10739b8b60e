"""The page's few functions that run in the browser: the session (signing in and out, and noticing
that it ended), and the open conversation kept in the page URL. Gradio runs each before its event's
Python handler (and passes what it returns to it), or instead of one: then what it returns updates
the page directly.

With API keys on, every request of the page to Gradio needs the session cookie (see app/ui_guard.py).
The page's script never holds the key: signing in sends it once to `SESSION_URL`, which answers with
an HttpOnly cookie, and only then does the page call a Python handler.
"""

from __future__ import annotations

import json

from ui.screen import KEY_NO_LONGER_ACCEPTED, KEY_REFUSED, NO_KEY_ENTERED, sign_in_message

SESSION_URL = "ui/session"
"""The session, relative to the page (app/ui_guard.py): GET checks it, POST starts it, DELETE ends it."""
START = "start"
SIGN_IN = "sign-in"
"""How the page came to hold a session, as the prefix of `Page.session` (which handler it runs)."""
ENDED_FLAG = "chatstack.sessionEnded"
"""sessionStorage: why the session ended, across the reload that clears the page."""
LEGACY_KEY_STORAGE = "chatstack.apiKey"
"""Where earlier versions kept the API key, readable by any script of the page: removed on load."""

_SKIP = '{"__type__": "update"}'
_SHOW = '{"__type__": "update", "visible": true}'
_MESSAGE_BEFORE, _MESSAGE_AFTER = sign_in_message("\x00").split("\x00")
# A sign-in message for a text only known in the browser (the server's error), escaped there.
_MESSAGE_JS = f"""(text) => {{
    const holder = document.createElement("div");
    holder.textContent = text;
    return {json.dumps(_MESSAGE_BEFORE)} + holder.innerHTML + {json.dumps(_MESSAGE_AFTER)};
  }}"""

READ_URL_JS = """(...values) => [
  ...values.slice(0, -1), new URLSearchParams(window.location.search).get("c") || ""
]"""
"""Replaces the last input with the conversation of the page URL (?c=<id>), so that a reload or a
shared link reopens it."""

WRITE_URL_JS = """(id) => {
  const url = new URL(window.location.href);
  if (id) { url.searchParams.set('c', id); } else { url.searchParams.delete('c'); }
  window.history.replaceState(window.history.state, '', url);
  return [];
}"""

CHECK_SESSION_JS = f"""async () => {{
  window.localStorage.removeItem({json.dumps(LEGACY_KEY_STORAGE)});
  const ended = window.sessionStorage.getItem({json.dumps(ENDED_FLAG)});
  window.sessionStorage.removeItem({json.dumps(ENDED_FLAG)});
  const message = {_MESSAGE_JS};
  let response = null;
  try {{
    response = await fetch({json.dumps(SESSION_URL)}, {{ cache: "no-store" }});
  }} catch (error) {{
    return [{_SKIP}, {_SHOW}, message("chatstack is not answering. Reload the page in a moment.")];
  }}
  if (response.ok) {{
    return [`{START}:${{Date.now()}}`, {_SKIP}, {_SKIP}];
  }}
  const body = await response.json().catch(() => null);
  const code = ended || body?.error?.code || "";
  if (response.status !== 401) {{
    return [{_SKIP}, {_SHOW}, message(body?.error?.message || `chatstack answered ${{response.status}}.`)];
  }}
  const why = code === "key_not_accepted" ? {json.dumps(sign_in_message(KEY_NO_LONGER_ACCEPTED))} : "";
  return [{_SKIP}, {_SHOW}, why];
}}"""
"""Page load (API keys on): with a session, set `Page.session` (its handler shows the chat); without
one, show the sign-in view, saying why if the key stopped working."""

SIGN_IN_JS = f"""async (entered, session) => {{
  const message = {_MESSAGE_JS};
  const key = (entered || "").trim();
  if (!key) {{
    return [session, {json.dumps(sign_in_message(NO_KEY_ENTERED))}];
  }}
  if (!/^[\\x21-\\x7e]+$/.test(key)) {{
    return [session, {json.dumps(sign_in_message(KEY_REFUSED))}];
  }}
  let response;
  try {{
    response = await fetch({json.dumps(SESSION_URL)}, {{
      method: "POST", headers: {{ Authorization: `Bearer ${{key}}` }}, cache: "no-store",
    }});
  }} catch (error) {{
    return [session, message("chatstack is not answering. Try again in a moment.")];
  }}
  if (response.ok) {{
    return [`{SIGN_IN}:${{Date.now()}}`, ""];
  }}
  if (response.status === 401) {{
    return [session, {json.dumps(sign_in_message(KEY_REFUSED))}];
  }}
  const body = await response.json().catch(() => null);
  return [session, message(body?.error?.message || `Signing in failed (${{response.status}}).`)];
}}"""
"""Sign in: the key goes to the server once, which keeps it in an HttpOnly cookie; then `Page.session`
is set, and its handler shows the chat."""

SIGN_OUT_JS = f"""async () => {{
  await fetch({json.dumps(SESSION_URL)}, {{ method: "DELETE", cache: "no-store" }}).catch(() => null);
  const url = new URL(window.location.href);
  url.searchParams.delete("c");
  window.location.replace(url);
  return [];
}}"""
"""Sign out: the server drops the cookie, and the page reloads without the last user's chat."""

SESSION_ENDED_JS = f"""async () => {{
  const response = await fetch({json.dumps(SESSION_URL)}, {{ cache: "no-store" }}).catch(() => null);
  if (response && response.status === 401) {{
    const body = await response.json().catch(() => null);
    window.sessionStorage.setItem({json.dumps(ENDED_FLAG)}, body?.error?.code || "not_signed_in");
    window.location.reload();
  }}
  return [];
}}"""
"""After any event failed: if it was because the session ended (the guard refused the request),
reload, which shows the sign-in view and why. Other failures are left to Gradio's error toast."""
