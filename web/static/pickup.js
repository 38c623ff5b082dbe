// certmail pickup page: "Accept and sign with a key kept in this browser".
//
// Progressive enhancement: without this script (or without WebCrypto Ed25519) the page's forms
// accept with the agent's attestation alone. With it, the browser keeps an Ed25519 key for the
// recipient's address in IndexedDB, non-extractable, so the private key never leaves the
// browser; it enrols the public key through this pickup link, fetches the certificate of
// delivery the agent will check, signs exactly those bytes and posts the signature, all through
// the pickup API (/api/v1/pickup/{token}). Only a secure context (HTTPS or localhost) has
// crypto.subtle. Clearing the browser's data loses the key; the next pickup enrols a new one.
"use strict";

(function () {
  const box = document.getElementById("sign-in-browser");
  if (!box || !window.isSecureContext || !window.crypto || !crypto.subtle || !window.indexedDB) {
    return;
  }
  const token = box.dataset.token;
  const recipient = box.dataset.recipient;
  const label = box.dataset.label;
  const api = "/api/v1/pickup/" + token;
  const form = box.closest("form");
  const csrf = form.querySelector('input[name="csrf"]').value;
  const password = form.querySelector('input[name="password"]');
  const button = document.getElementById("sign-accept");
  const errorBox = document.getElementById("sign-error");
  const ed25519 = { name: "Ed25519" };

  // The key store: one key pair per recipient address, in the object store "keys".
  function openDB() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open("certmail", 1);
      req.onupgradeneeded = () => req.result.createObjectStore("keys");
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }

  // inStore runs f on the key store in one transaction and resolves with the value of the
  // request f returns, once the transaction has committed.
  function inStore(db, mode, f) {
    return new Promise((resolve, reject) => {
      const tx = db.transaction("keys", mode);
      const req = f(tx.objectStore("keys"));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }

  // keyPair returns the recipient's key pair, making and keeping one the first time. A key
  // another tab stored meanwhile wins, so one browser holds one key per address.
  async function keyPair() {
    const db = await openDB();
    try {
      const kept = await inStore(db, "readonly", (s) => s.get(recipient));
      if (kept) {
        return kept;
      }
      const fresh = await crypto.subtle.generateKey(ed25519, false, ["sign", "verify"]);
      try {
        await inStore(db, "readwrite", (s) => s.add(fresh, recipient));
        return fresh;
      } catch (e) {
        return await inStore(db, "readonly", (s) => s.get(recipient));
      }
    } finally {
      db.close();
    }
  }

  function base64(buf) {
    return btoa(String.fromCharCode(...new Uint8Array(buf)));
  }

  // call makes one pickup API request and returns its JSON; a problem+json answer becomes an
  // Error carrying the agent's own explanation.
  async function call(method, path, body) {
    const init = { method: method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(api + path, init);
    const doc = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      throw new Error(doc.detail || "the agent answered " + resp.status);
    }
    return doc;
  }

  function sentence(s) {
    s = s.charAt(0).toUpperCase() + s.slice(1);
    return s.endsWith(".") ? s : s + ".";
  }

  async function signAndAccept() {
    if (password && !password.reportValidity()) {
      return;
    }
    const pw = password ? password.value : "";
    const keys = await keyPair();
    const pub = await crypto.subtle.exportKey("raw", keys.publicKey);
    await call("POST", "/key", { csrf: csrf, password: pw, public_key: base64(pub) });
    const cod = await call("GET", "/cod");
    // Sign only a certificate for the message this page shows.
    if (!cod.text.startsWith("certmail-evidence/1\ntype COD") ||
        !cod.text.includes("\nlabel " + label + "\n") ||
        !cod.text.includes("\nrecipient " + recipient + "\n")) {
      throw new Error("the agent offered a certificate for another message; nothing was signed");
    }
    const sig = await crypto.subtle.sign(ed25519, keys.privateKey, new TextEncoder().encode(cod.text));
    await call("POST", "/accept", { csrf: csrf, password: pw, cod_text: cod.text, signature: base64(sig) });
    // Accepted: the page at the link now shows the message.
    location.assign("/pickup/" + token);
  }

  button.addEventListener("click", () => {
    button.disabled = true;
    errorBox.hidden = true;
    signAndAccept().catch((e) => {
      errorBox.textContent = sentence(e.message || String(e));
      errorBox.hidden = false;
    }).finally(() => {
      button.disabled = false;
    });
  });

  // Offer the button only where this browser can make Ed25519 keys.
  crypto.subtle.generateKey(ed25519, false, ["sign", "verify"]).then(() => {
    box.hidden = false;
  }, () => {});
})();
