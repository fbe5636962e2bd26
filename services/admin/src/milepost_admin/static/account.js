// The console's invitation and password-reset pages: the link's one-time token is in its
// fragment (never sent to a server); put it in the form, which posts it in its body.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var field = document.getElementById("account-token");
  if (!field) return;
  var token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (token) {
    field.value = token;
  } else if (!field.value) {
    var form = document.getElementById("account-form");
    var note = document.createElement("p");
    note.className = "flash flash-error";
    note.setAttribute("role", "alert");
    note.textContent = "The link is incomplete: it has no token. Open it exactly as you received it.";
    form.replaceWith(note);
  }
});
