() => {
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

  // An answer's Copy button (in its footer, see ui/render.py) copies the answer as it reads: the chat
  // holds answers as HTML, which is not what anyone wants on their clipboard.
  const copy = async (text) => {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    const area = document.createElement("textarea");
    area.value = text;
    area.style.position = "absolute";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  };
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("#cs-chat .cs-copy-answer");
    const bubble = button && button.closest(".message-row");
    if (!bubble) {
      return;
    }
    const parts = [...bubble.querySelectorAll(".message-content .md")].filter(
      (part) => !part.closest(".thought-group") && !part.querySelector(".cs-meta, .cs-thinking"),
    );
    await copy(parts.map((part) => part.innerText.trim()).join("\n\n"));
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
}
