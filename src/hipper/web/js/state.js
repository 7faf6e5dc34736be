// What the app knows about the logged-in user: the profile (/me), the licensed services and the app settings.

import { ApiError, api, session } from "./api.js";
import { DEFAULT_QUICK } from "./services.js";

const PREFS_KEY = "hipper.app-settings";
// The last profile seen, for the offline start screen (name and numbers; nothing secret).
const PROFILE_KEY = "hipper.profile";

export function cachedProfile() {
  try {
    return JSON.parse(localStorage.getItem(PROFILE_KEY) || "null");
  } catch {
    return null;
  }
}

// The shape of GET /me/app-settings (the exchange keeps them so every device of the user shows the same).
export const DEFAULT_PREFS = {
  quick_settings: DEFAULT_QUICK,
  theme: "system",
  push: { missed_calls: true, voicemail: true },
  contacts: { lists: ["group", "enterprise", "personal"], sort: "first_name", whatsapp_button: true },
  privacy: { analytics: true },
  language: "nl",
};
const LANGUAGE_CHOSEN_KEY = "hipper.language-chosen";

// Until the user picks a language in the app settings, the app follows the browser's language (Dutch unless
// the browser asks for English); the exchange's stored default ("nl") is not a choice the user made.
export function languagePreference() {
  return localStorage.getItem(LANGUAGE_CHOSEN_KEY) ? store.prefs.language : "system";
}

export function chooseLanguage(language) {
  localStorage.setItem(LANGUAGE_CHOSEN_KEY, "1");
  return savePrefs({ language });
}

export const store = {
  profile: null,
  services: new Set(),
  prefs: loadLocalPrefs(),
  // Whether the exchange keeps the app settings (/me/app-settings); otherwise they stay on this device.
  prefsOnServer: false,
};

function loadLocalPrefs() {
  try {
    return { ...DEFAULT_PREFS, ...JSON.parse(localStorage.getItem(PREFS_KEY) || "{}") };
  } catch {
    return { ...DEFAULT_PREFS };
  }
}

export function context() {
  return {
    numbers: (store.profile && store.profile.numbers) || {},
    licences: new Set((store.profile && store.profile.licences) || []),
  };
}

// "Restart app" (§7.8.5) does exactly this: re-read the profile, the licences and the app settings. The three
// requests go out together, and callers arriving while a load runs share it (boot starts it early).
let loading = null;

export function loadUser() {
  if (!loading) loading = readUser().finally(() => (loading = null));
  return loading;
}

async function readUser() {
  const [profile, services, remote] = await Promise.all([
    api.get("/me"),
    api.get("/me/services").catch(() => null),
    api.get("/me/app-settings").catch((error) => (error instanceof ApiError && error.unavailable ? null : Promise.reject(error))),
  ]);
  store.profile = profile;
  localStorage.setItem(PROFILE_KEY, JSON.stringify(profile));
  store.services = new Set(services ? services.services : profile.services || []);
  if (remote) {
    store.prefs = { ...DEFAULT_PREFS, ...remote };
    store.prefsOnServer = true;
    localStorage.setItem(PREFS_KEY, JSON.stringify(store.prefs));
  } else {
    store.prefsOnServer = false;
  }
  return store.profile;
}

// Nested objects merge field by field, as the exchange does with a partial document.
function merge(base, change) {
  const out = { ...base };
  for (const [key, value] of Object.entries(change)) {
    const nested = value && typeof value === "object" && !Array.isArray(value) && base[key] && typeof base[key] === "object";
    out[key] = nested ? merge(base[key], value) : value;
  }
  return out;
}

// The app's saves, one after another: the exchange merges each partial document into what it holds, so two PUTs
// in flight at once (a switch flipped twice, a theme then another) could land in either order and keep the older.
let saving = Promise.resolve();
let generation = 0; // one per signed-in user (`forget`): a save queued by one is never sent with the next's token

export function savePrefs(changes) {
  const mine = generation;
  const go = () => {
    if (mine !== generation) throw new Error("signed out");
    return saveNow(changes);
  };
  const run = saving.then(go, go);
  saving = run.catch(() => {});
  return run;
}

async function saveNow(changes) {
  const next = merge(store.prefs, changes);
  if (store.prefsOnServer) {
    // The exchange merges a partial document, so only the change is sent.
    const saved = await api.put("/me/app-settings", changes);
    store.prefs = { ...DEFAULT_PREFS, ...(saved || next) };
  } else {
    store.prefs = next;
  }
  localStorage.setItem(PREFS_KEY, JSON.stringify(store.prefs));
  return store.prefs;
}

export function forget() {
  generation += 1; // a save still queued is the user's who left: it is not sent
  saving = Promise.resolve();
  session.token = null;
  localStorage.removeItem(PROFILE_KEY);
  store.profile = null;
  store.services = new Set();
}
