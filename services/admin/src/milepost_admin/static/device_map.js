// One vehicle's last position on a small Leaflet map (a device's console page). The position
// comes with the page, in the map element's data attributes; the name goes in through
// textContent, never parsed as HTML. The fleet map (map.js) shows it live with its trips.
(function () {
  "use strict";

  var el = document.getElementById("device-map");
  if (!el || !window.L) return;
  var cfg = el.dataset;
  var lat = parseFloat(cfg.lat);
  var lon = parseFloat(cfg.lon);
  if (!isFinite(lat) || !isFinite(lon)) return;
  var status = ["online", "offline", "unknown"].indexOf(cfg.status) >= 0 ? cfg.status : "unknown";

  var map = L.map(el, { scrollWheelZoom: false }).setView([lat, lon], 15);
  if (cfg.tileUrl) {
    L.tileLayer(cfg.tileUrl, { maxZoom: 19, attribution: cfg.tileAttribution || "" }).addTo(map);
  } else {
    map.attributionControl.addAttribution("No map tiles configured");
  }
  L.control.scale().addTo(map);

  var holder = document.createElement("div");
  var dot = document.createElement("span");
  dot.className = "vehicle-dot";
  holder.appendChild(dot);
  var icon = L.divIcon({ className: "vehicle-marker status-" + status, html: holder, iconSize: [18, 18] });
  var marker = L.marker([lat, lon], { icon: icon, title: cfg.name, keyboard: true }).addTo(map);
  var label = document.createElement("span");
  label.textContent = cfg.name;
  marker.bindTooltip(label, { permanent: true, direction: "right", offset: [10, 0], className: "vehicle-label" });
  var node = marker.getElement();
  if (node) {
    node.dataset.vehicleId = cfg.vehicleId;
    node.dataset.status = status;
    node.setAttribute("aria-label", cfg.name + ", " + status);
  }
  el.dataset.ready = "true";
})();
