import { api } from "/assets/api.js";

const form = document.getElementById("login");
const error = document.getElementById("login-error");
const totpRow = document.getElementById("totp-row");
const totp = document.getElementById("totp");

// Only a path of this panel is followed after logging in.
function next() {
  const wanted = new URLSearchParams(location.search).get("next") || "/";
  return wanted.startsWith("/") && !wanted.startsWith("//") ? wanted : "/";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const body = {
    email: document.getElementById("email").value.trim(),
    password: document.getElementById("password").value,
  };
  if (!body.email || !body.password) {
    error.textContent = "Enter your email and password.";
    return;
  }
  if (!totpRow.hidden && totp.value.trim()) body.totp = totp.value.trim();
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await api("POST", "/api/auth/login", body);
    location.assign(next());
  } catch (e) {
    if (e.code === "two_factor_required") {
      totpRow.hidden = false;
      totp.focus();
      error.textContent = "Enter the code from your authenticator app.";
    } else {
      error.textContent = e.message || "Logging in failed.";
    }
  } finally {
    button.disabled = false;
  }
});

document.getElementById("email").focus();
