// Daedalus review: lazy run panels and live refresh of running runs. Served from this
// origin (the CSP allows no inline or remote script). Fetched HTML is parsed with
// DOMParser and moved into the page as nodes: scripts in it never run, and the server
// has escaped every archive text in it anyway.
(function () {
  "use strict";
  const opts = { credentials: "same-origin" };

  async function fetchHTML(url) {
    const response = await fetch(url, opts);
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    return new DOMParser().parseFromString(await response.text(), "text/html");
  }

  function loadPanels(root) {
    root.querySelectorAll("[data-panel]").forEach(async (el) => {
      const url = el.getAttribute("data-panel");
      el.removeAttribute("data-panel");
      try {
        const doc = await fetchHTML(url);
        el.replaceChildren(...Array.from(doc.body.childNodes).map((n) => document.adoptNode(n)));
      } catch (err) {
        el.textContent = "Could not load this panel (" + err.message + "); reload the page.";
      }
    });
  }

  async function refresh() {
    const doc = await fetchHTML(location.href);
    const fresh = doc.querySelector("main");
    const main = document.querySelector("main");
    if (fresh && main) {
      main.replaceWith(document.adoptNode(fresh));
      loadPanels(document.querySelector("main"));
    }
  }

  function startLive() {
    const url = document.body.getAttribute("data-live");
    if (!url) return;
    const badge = document.getElementById("livebadge");
    let version = document.body.getAttribute("data-version") || "";
    const every = 3000;
    async function poll() {
      try {
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (response.ok) {
          const data = await response.json();
          if (data.version !== version) {
            version = data.version;
            await refresh();
          }
          if (badge) badge.textContent = data.live ? "live · " + new Date().toLocaleTimeString() : "ended";
          if (!data.live) return;
        }
      } catch (err) {
        if (badge) badge.textContent = "offline";
      }
      setTimeout(poll, every);
    }
    setTimeout(poll, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    loadPanels(document);
    startLive();
  });
})();
