// Web Push on this device (SPEC L): the notification toggles subscribe the service worker's pushManager with
// the exchange's VAPID key and hand the subscription to the exchange; both toggles off unsubscribes.

import { api } from "./api.js";

const bytes = (text) => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4)), (c) => c.charCodeAt(0));

export function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window && window.isSecureContext;
}

// "granted", "denied", "default", or "unsupported".
export function permission() {
  return pushSupported() ? Notification.permission : "unsupported";
}

async function registration() {
  // The worker is registered at boot; wait for it to be active, but not forever (a broken worker).
  return Promise.race([navigator.serviceWorker.ready, new Promise((_, reject) => setTimeout(() => reject(new Error("no service worker")), 10000))]);
}

// Without waiting for a worker: the settings screen asks this while it draws.
export async function currentSubscription() {
  if (!pushSupported()) return null;
  const worker = await navigator.serviceWorker.getRegistration();
  return worker ? worker.pushManager.getSubscription() : null;
}

// Resolves with the subscription the exchange now has; throws with `step` naming what failed.
export async function subscribe() {
  const fail = (step, cause) => Object.assign(new Error(step), { step, cause });
  if (!pushSupported()) throw fail("unsupported");
  if ((await Notification.requestPermission()) !== "granted") throw fail("denied");
  const worker = await registration();
  let subscription = await worker.pushManager.getSubscription();
  if (!subscription) {
    const { public_key: key } = await api.get("/push/vapid-public-key");
    try {
      subscription = await worker.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: bytes(key) });
    } catch (cause) {
      throw fail("push_service", cause); // the browser could not reach its push service
    }
  }
  const { endpoint, keys } = subscription.toJSON();
  await api.post("/me/push-subscriptions", { endpoint, keys });
  return subscription;
}

export async function unsubscribe() {
  const subscription = await currentSubscription().catch(() => null);
  if (!subscription) return;
  const endpoint = subscription.endpoint;
  await subscription.unsubscribe();
  await api.del(`/me/push-subscriptions?endpoint=${encodeURIComponent(endpoint)}`);
}
