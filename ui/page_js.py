"""The page's few functions that run in the browser: the open conversation kept in the page URL,
and the API key kept in the browser's storage. Gradio runs each before its event's Python handler
(and passes what it returns to it) or instead of one."""

from __future__ import annotations

KEY_STORAGE = "chatstack.apiKey"
"""Where the browser keeps the API key (localStorage, like any web app's token), so that a reload
stays signed in. assets/chat.js reads it there too, to download exports with it."""

# The page load reads the kept key and the open conversation, which lives in the page URL (?c=<id>),
# so a reload or a shared link reopens it.
READ_START_JS = f"""() => [
  window.localStorage.getItem("{KEY_STORAGE}") || "",
  new URLSearchParams(window.location.search).get("c") || "",
]"""
WRITE_URL_JS = """(id) => {
  const url = new URL(window.location.href);
  if (id) { url.searchParams.set('c', id); } else { url.searchParams.delete('c'); }
  window.history.replaceState(window.history.state, '', url);
  return [];
}"""
STORE_KEY_JS = f"""(key) => {{
  if (key) {{ window.localStorage.setItem("{KEY_STORAGE}", key); }}
  else {{ window.localStorage.removeItem("{KEY_STORAGE}"); }}
  return [];
}}"""
# Signing in opens the conversation of the URL the page was loaded with.
SIGN_IN_JS = """(key, id) => [key, new URLSearchParams(window.location.search).get("c") || ""]"""
