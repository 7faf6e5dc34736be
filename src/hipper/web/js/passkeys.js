// Passkeys (SPEC A2/A3): the phone's fingerprint / Face ID as the step-up, through WebAuthn.
// The exchange hands out the options as JSON (base64url for the binary fields) and takes the credential back as
// JSON; the conversion is done here by hand rather than with PublicKeyCredential.parse*OptionsFromJSON, which
// older Safari and Firefox versions lack.

import { api } from "./api.js";
import { store } from "./state.js";

const KEY = "hipper.passkey";

const bytes = (text) => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4)), (c) => c.charCodeAt(0));
const text = (buffer) =>
  btoa(String.fromCharCode(...new Uint8Array(buffer)))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
const descriptors = (list) => (list || []).map((item) => ({ ...item, id: bytes(item.id) }));

export function passkeysSupported() {
  return Boolean(window.PublicKeyCredential && navigator.credentials && window.isSecureContext);
}

// The passkey of this device, remembered per user: another device's passkey cannot answer here.
export function localPasskey() {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY) || "null");
    return saved && store.profile && saved.username === store.profile.username ? saved : null;
  } catch {
    return null;
  }
}

export async function registerPasskey() {
  const options = await api.post("/auth/passkeys/register/options"); // asks for the PIN step-up first
  const created = await navigator.credentials.create({
    publicKey: {
      ...options,
      challenge: bytes(options.challenge),
      user: { ...options.user, id: bytes(options.user.id) },
      excludeCredentials: descriptors(options.excludeCredentials),
    },
  });
  const response = created.response;
  const saved = await api.post("/auth/passkeys/register", {
    name: navigator.userAgentData?.platform || navigator.platform || "",
    credential: {
      id: created.id,
      rawId: text(created.rawId),
      type: created.type,
      authenticatorAttachment: created.authenticatorAttachment,
      clientExtensionResults: created.getClientExtensionResults(),
      response: {
        clientDataJSON: text(response.clientDataJSON),
        attestationObject: text(response.attestationObject),
        transports: response.getTransports ? response.getTransports() : [],
      },
    },
  });
  localStorage.setItem(KEY, JSON.stringify({ username: store.profile.username, id: saved.id, credential_id: saved.credential_id }));
  return saved;
}

export async function removePasskey() {
  const local = localPasskey();
  localStorage.removeItem(KEY);
  if (local) await api.del(`/me/passkeys/${local.id}`).catch(() => {}); // already gone on the exchange: fine
}

// Resolves once the exchange granted the step-up; throws when the user cancels or the passkey is refused.
export async function passkeyStepUp() {
  const options = await api.post("/auth/passkeys/step-up/options");
  const assertion = await navigator.credentials.get({
    publicKey: { ...options, challenge: bytes(options.challenge), allowCredentials: descriptors(options.allowCredentials) },
  });
  const response = assertion.response;
  await api.post("/auth/passkeys/step-up", {
    credential: {
      id: assertion.id,
      rawId: text(assertion.rawId),
      type: assertion.type,
      authenticatorAttachment: assertion.authenticatorAttachment,
      clientExtensionResults: assertion.getClientExtensionResults(),
      response: {
        clientDataJSON: text(response.clientDataJSON),
        authenticatorData: text(response.authenticatorData),
        signature: text(response.signature),
        userHandle: response.userHandle ? text(response.userHandle) : null,
      },
    },
  });
}
