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
  const response = await fetch(`/i18n/${language}.json`);
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

export function formatDateTime(value) {
  if (!value) return "";
  const date = new Date(value);
  return new Intl.DateTimeFormat(current === "nl" ? "nl-NL" : "en-GB", {
    dateStyle: "medium",
    timeStyle: "short",
  }).format(date);
}
