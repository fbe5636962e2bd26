// The account pages (invitation, password reset): read the one-time token from the link's
// fragment (never sent to a server), then post it with the chosen password as JSON.
"use strict";
(function () {
  var form = document.getElementById("account-form");
  var formError = document.getElementById("form-error");
  var linkError = document.getElementById("link-error");
  var done = document.getElementById("done");
  var token = new URLSearchParams(window.location.hash.slice(1)).get("token");

  function show(section) {
    form.hidden = section !== form;
    linkError.hidden = section !== linkError;
    done.hidden = section !== done;
  }

  function badLink(text) {
    document.getElementById("link-error-text").textContent = text;
    show(linkError);
  }

  function fieldError(text) {
    formError.textContent = text;
    formError.hidden = false;
  }

  if (!token) {
    badLink("The link is incomplete: it has no token. Open it exactly as you received it.");
    return;
  }
  show(form);

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    formError.hidden = true;
    var password = form.elements.password.value;
    if (password.length < 12) {
      fieldError("The password needs at least 12 characters.");
      return;
    }
    if (password !== form.elements.confirm.value) {
      fieldError("The two passwords differ.");
      return;
    }
    var button = form.querySelector("button");
    button.disabled = true;
    fetch(form.dataset.endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ token: token, password: password }),
      credentials: "omit",
    })
      .then(function (response) {
        if (response.ok) {
          // The token is spent: keep it out of the history too.
          history.replaceState(null, "", window.location.pathname);
          show(done);
          return;
        }
        return response.json().then(
          function (body) { answer(response.status, body.error || {}); },
          function () { answer(response.status, {}); }
        );
      })
      .catch(function () {
        fieldError("The server could not be reached. Check your connection and try again.");
      })
      .finally(function () {
        button.disabled = false;
      });
  });

  function answer(status, error) {
    if (status === 400) {
      badLink("It has expired (links are valid for 48 hours), was already used, or was replaced by a newer one.");
    } else if (status === 422) {
      var detail = (error.details || [])[0];
      fieldError(detail ? "Not accepted: " + detail.msg + "." : error.message || "Not accepted.");
    } else if (status === 429) {
      fieldError("Too many attempts. Wait a minute and try again.");
    } else {
      fieldError("Something went wrong (" + status + "). Try again in a moment.");
    }
  }
})();
