// Gondola's service worker: keeps the app shell (the page, its scripts, the signing and privacy
// libraries, styles, manifest and icon) so the app opens without a network. It never touches API
// traffic: requests for anything outside SHELL pass straight through, uncached.

const CACHE = "gondola-shell-v4";
const SHELL = [
  "/",
  "/app.css",
  "/app.js",
  "/api.js",
  "/markdown.js",
  "/store.js",
  "/wallet.js",
  "/chain.js",
  "/browser-wallets.js",
  "/amounts.js",
  "/signing.js",
  "/transactions.js",
  "/privacy.js",
  "/oblivious.js",
  "/manifest.webmanifest",
  "/icon.svg",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((name) => name !== CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin || !SHELL.includes(url.pathname)) return;
  // Network first, so a new gateway's app is used at once; the cache is for when it is away.
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(url.pathname, copy)));
        }
        return response;
      })
      .catch(() => caches.match(url.pathname).then((cached) => cached ?? Response.error())),
  );
});
