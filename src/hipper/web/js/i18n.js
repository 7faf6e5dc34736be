// Dutch by default; English when the browser asks for it or the user chooses it in the app settings.

let strings = {};
let current = "nl";

export function resolveLanguage(preference) {
  if (preference === "nl" || preference === "en") return preference;
  const wanted = (navigator.languages && navigator.languages[0]) || navigator.language || "nl";
  return wanted.toLowerCase().startsWith("en") ? "en" : "nl";
}

export async function loadLanguage(preference) {
  const language = resolveLanguage(preference);
  // Relative to this module: under the app's versioned prefix (/v/<hash>/), so it is cached as long as the code.
  const response = await fetch(new URL(`../i18n/${language}.json`, import.meta.url));
  strings = await response.json();
  current = language;
  document.documentElement.lang = language;
  return language;
}

export function language() {
  return current;
}

export function t(key, vars) {
  let text = strings[key];
  if (text === undefined) text = key;
  if (vars) for (const [name, value] of Object.entries(vars)) text = text.replaceAll(`{${name}}`, String(value));
  return text;
}

// Dutch area codes of two digits after the 0 (010, 020, …); every other geographic code has three (0111, …).
const TWO_DIGIT_AREAS = new Set("10 13 15 20 23 24 26 30 33 35 36 38 40 43 45 46 50 53 55 58 70 71 72 73 74 75 76 77 78 79".split(" "));

// A number as a Dutch user reads it, as phonenumbers' national format writes it: +31201230201 → 020 123 0201,
// +31612340201 → 06 1234 0201, 0800 and 0900 numbers in groups of four. Extensions and foreign numbers stay
// as they are (foreign ones with a space after the country code would need the whole numbering plan).
export function formatNumber(number) {
  if (!number) return "";
  const text = String(number);
  if (!/^\+31[1-9][0-9]{8}$/.test(text)) return text;
  const national = `0${text.slice(3)}`;
  if (national.startsWith("06") || /^0(800|900|906|909|85|88|97)/.test(national)) {
    const head = /^0(800|900|906|909)/.test(national) ? 4 : national.startsWith("06") ? 2 : 3;
    return `${national.slice(0, head)} ${national.slice(head, head + 4)} ${national.slice(head + 4)}`.trim();
  }
  const head = TWO_DIGIT_AREAS.has(national.slice(1, 3)) ? 3 : 4;
  const rest = national.slice(head);
  return head === 3 ? `${national.slice(0, 3)} ${rest.slice(0, 3)} ${rest.slice(3)}` : `${national.slice(0, 4)} ${rest.slice(0, 3)} ${rest.slice(3)}`;
}

// Dutch and English plurals: key.one / key.other ("1 locatie", "2 locaties"), with {count}.
export function plural(key, count) {
  return t(`${key}.${count === 1 ? "one" : "other"}`, { count });
}

// "23:59" today, "vr 12 dec 17:00" another day: when something ends.
export function formatUntil(value) {
  const date = new Date(value);
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  const options = sameDay ? { timeStyle: "short" } : { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" };
  return new Intl.DateTimeFormat(current === "nl" ? "nl-NL" : "en-GB", options).format(date);
}

export function formatDateTime(value) {
  if (!value) return "";
  const date = new Date(value);
  return new Intl.DateTimeFormat(current === "nl" ? "nl-NL" : "en-GB", {
    dateStyle: "medium",
    timeStyle: "short",
  }).format(date);
}
