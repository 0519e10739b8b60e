() => {
  // Must match KEY_STORAGE in ui/layout.py, which keeps the signed-in user's API key there.
  const KEY_STORAGE = "chatstack.apiKey";

  // On a phone the sidebar covers the whole screen: start with the conversation, and close the
  // list again once a conversation (or a new chat) has been picked from it. The sidebar may appear
  // only after signing in, so watch for it rather than looking once.
  const narrow = () => window.matchMedia("(max-width: 768px)").matches;
  const close = () => {
    const sidebar = document.querySelector("#cs-sidebar");
    if (sidebar && sidebar.classList.contains("open")) {
      sidebar.querySelector(".toggle-button")?.click();
    }
  };
  let sidebarSeen = null;
  const closeNewSidebar = () => {
    const sidebar = document.querySelector("#cs-sidebar");
    if (sidebar && sidebar !== sidebarSeen) {
      sidebarSeen = sidebar;
      if (narrow()) {
        close();
      }
    }
  };
  closeNewSidebar();
  new MutationObserver(closeNewSidebar).observe(document.body, { childList: true, subtree: true });
  document.addEventListener("click", (event) => {
    if (narrow() && event.target.closest("#cs-conversations label, #cs-new-chat")) {
      setTimeout(close, 0);
    }
  });

  // Export links are plain links, which cannot carry the API key: with a key, fetch the file with
  // it and hand the browser the result.
  const filename = (response) => {
    const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    return match ? match[1] : "conversation";
  };
  document.addEventListener("click", async (event) => {
    const link = event.target.closest(".cs-exports a[href]");
    const key = window.localStorage.getItem(KEY_STORAGE);
    if (!link || !key) {
      return;
    }
    event.preventDefault();
    const response = await fetch(link.href, { headers: { Authorization: `Bearer ${key}` } });
    if (!response.ok) {
      window.alert(`The export failed (${response.status}). Reload the page and try again.`);
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const save = document.createElement("a");
    save.href = url;
    save.download = filename(response);
    document.body.appendChild(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });
}
