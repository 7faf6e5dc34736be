// Offline shell: the app's own files are served network-first (so an update shows at once) and fall back to
// the cache when offline. The API is never cached: settings must be live or clearly unavailable.
// The exchange writes the app's version here when it serves this file ("/v/<hash>", hipper/api/web.py): the
// page loads its CSS, modules and language files under that prefix, so the shell caches those names.
const VERSION = "";
const CACHE = `hipper-shell-v6${VERSION.replaceAll("/", "-")}`;
const VERSIONED = [
  "/app.css",
  "/js/app.js",
  "/js/calls.js",
  "/js/api.js",
  "/js/dom.js",
  "/js/forms.js",
  "/js/incall.js",
  "/js/i18n.js",
  "/js/lists.js",
  "/js/push.js",
  "/js/passkeys.js",
  "/js/screens.js",
  "/js/services.js",
  "/js/settings.js",
  "/js/state.js",
  "/js/ui.js",
  "/i18n/nl.json",
  "/i18n/en.json",
];
const SHELL = ["/", "/index.html", "/terms.html", "/terms.css", "/manifest.webmanifest", "/icons/icon.svg", "/icons/icon-192.png", ...VERSIONED.map((path) => VERSION + path)];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((key) => key !== CACHE).map((key) => caches.delete(key))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || url.pathname.startsWith("/api/")) return;
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(event.request, copy));
        }
        return response;
      })
      .catch(() =>
        caches.match(event.request).then((hit) => hit || (event.request.mode === "navigate" ? caches.match("/index.html") : Response.error())),
      ),
  );
});

// Web Push from the exchange (hipper.notify.push): {type, title, body, url, tag}. Every push shows a notification
// (userVisibleOnly); a tag replaces the previous one of the same kind instead of piling up.
self.addEventListener("push", (event) => {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch {
    message = { body: event.data ? event.data.text() : "" };
  }
  event.waitUntil(
    self.registration.showNotification(message.title || "Hipper+", {
      body: message.body || "",
      tag: message.tag || message.type || undefined,
      icon: "/icons/icon-192.png",
      badge: "/icons/icon-192.png",
      data: { url: message.url || "/#/overview" },
    }),
  );
});

// A tap opens the app at the message's screen, reusing an open window when there is one.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL(event.notification.data?.url || "/", self.location.origin).href;
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const open = windows.find((client) => new URL(client.url).origin === self.location.origin);
      if (open) return open.navigate(url).then((client) => (client || open).focus());
      return self.clients.openWindow(url);
    }),
  );
});
