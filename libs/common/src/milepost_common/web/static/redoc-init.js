// Starts ReDoc on the reference page with the page's data- attributes: the OpenAPI URL and
// the nonce its run-time <style> elements need under the page's CSP (no inline script).
"use strict";
(function () {
  var root = document.getElementById("redoc");
  Redoc.init(root.dataset.openapiUrl, { nonce: root.dataset.nonce, disableSearch: true }, root);
})();
