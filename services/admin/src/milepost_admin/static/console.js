// Copy buttons, confirmation prompts and word of a refresh that failed; everything else
// works without script.
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) return;
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(function () {
    button.textContent = "Copied";
  });
});
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

// A request htmx makes (a filter, a sort, the suggestions, the dashboard's refresh) that
// fails leaves the page as it was: say so, or what is shown passes for the answer. The
// reason is the error page's heading (the gateway's own errors are plain text).
function showLoadProblem(text) {
  var box = document.getElementById("load-problem");
  if (!box) return;
  box.textContent = text;
  box.hidden = !text;
}
document.addEventListener("htmx:responseError", function (event) {
  var xhr = event.detail.xhr;
  var answer = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
  var heading = answer.querySelector("h1");
  var reason = (heading ? heading.textContent : xhr.statusText || "An error").trim();
  reason = reason.replace(/\.$/, "");
  showLoadProblem("Not updated: " + reason + " (" + xhr.status + "). What you see is from before.");
});
document.addEventListener("htmx:sendError", function () {
  showLoadProblem("Not updated: the console cannot be reached. What you see is from before.");
});
document.addEventListener("htmx:afterSwap", function () {
  showLoadProblem("");
});
